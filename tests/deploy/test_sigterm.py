"""SIGTERM while a tick runs a long handler: the image's gunicorn drains the tick, then exits cleanly.

Cloud Run sends SIGTERM and allows 10 s; the Dockerfile's --graceful-timeout 8 lets the
in-flight tick finish and settle its jobs within that.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from storage.jsonfile import JsonFileStore
from tests.deploy.test_tooling import dockerfile_cmd
from tests.support.handlers import read_ledger
from tests.support.jobs import make_job
from tests.support.processes import Gunicorn, free_port, service_env


def test_sigterm_during_a_long_handler_drains_the_tick_and_exits_0(tmp_path: Path) -> None:
    from scheduler.clock import utc_now

    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    release, ledger = tmp_path / "release", tmp_path / "ledger.txt"
    store.add_job(make_job("long", now=utc_now(), job_type="ledger_then_hang", payload={"ledger": str(ledger), "release": str(release)}))
    port = free_port()
    env = service_env(PORT=str(port), SCHEDULER_STORAGE="json", SCHEDULER_JSON_PATH=str(store.path), SCHEDULER_HANDLER_MODULES="tests.support.handlers")
    cmd = dockerfile_cmd()
    assert cmd[:1] == ["gunicorn"] and "--graceful-timeout" in cmd
    server = Gunicorn(env, tmp_path / "gunicorn.log", command=cmd)
    proc = server.proc
    try:
        answer: dict = {}
        ticker = threading.Thread(target=lambda: answer.update(zip(("status", "body"), server.post("/cron/tick"))))
        ticker.start()
        deadline = time.monotonic() + 30
        while not read_ledger(ledger) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_ledger(ledger), "the handler never started"
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the handler is still running when the shutdown begins...
        release.touch()  # ...and finishes well within the 8 s graceful timeout
        ticker.join(15)
        assert proc.wait(15) == 0, server.log()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer["status"] == 200
    body = json.loads(answer["body"])
    assert (body["jobs_executed"], body["jobs_succeeded"]) == (1, 1)
    assert store.get_job("long").status.value == "completed"
    assert "Handling signal: term" in server.log()
