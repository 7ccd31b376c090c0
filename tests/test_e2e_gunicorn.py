"""End to end through real processes: gunicorn workers, real HTTP, the flask CLI, one JSON file."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from storage.jsonfile import JsonFileStore
from tests.support.handlers import read_ledger
from tests.support.jobs import make_job
from tests.support.processes import Gunicorn, flask_cli, service_env


@pytest.fixture
def env(tmp_path):
    return service_env(
        SCHEDULER_STORAGE="json",
        SCHEDULER_JSON_PATH=str(tmp_path / "jobs.json"),
        SCHEDULER_HANDLER_MODULES="tests.support.handlers",
        SCHEDULER_CLAIM_BATCH_SIZE="50",
    )


def test_overlapping_ticks_across_gunicorn_workers_run_each_job_once(tmp_path, env):
    from scheduler.clock import utc_now

    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    ledger = str(tmp_path / "ledger.txt")
    for i in range(300):
        store.add_job(make_job(f"j{i:03d}", now=utc_now(), job_type="ledger", payload={"ledger": ledger}))
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=2, threads=4)
    try:
        results: list[dict] = []
        lock = threading.Lock()

        def ticker():
            for _ in range(20):
                status, body = server.post("/cron/tick")
                assert status == 200
                data = json.loads(body)
                with lock:
                    results.append(data)
                if data["jobs_due"] == 0:
                    return

        threads = [threading.Thread(target=ticker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        assert server.stop() == 0
    counts = Counter(row[0] for row in read_ledger(ledger))
    assert len(counts) == 300 and set(counts.values()) == {1}
    assert sum(r["jobs_executed"] for r in results) == 300
    log_lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    tick_lines = [line for line in log_lines if line.get("message") == "Scheduler tick completed"]
    assert len(tick_lines) == len(results)
    assert sum(line["jobs_executed"] for line in tick_lines) == 300
    assert len({line["tick_id"] for line in tick_lines}) == len(results)


def test_a_job_added_with_the_cli_runs_on_the_next_tick(tmp_path, env):
    added = flask_cli(env, "jobs", "add", "--type", "log", "--at", "2020-01-01T00:00:00Z", "--payload", '{"hello": "world"}', "--id", "hello")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("created hello  pending")
    bad = flask_cli(env, "jobs", "add", "--type", "log", "--cron", "not a cron")
    assert bad.returncode != 0 and "cron expression 'not a cron' must have 5 fields" in bad.stderr
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=1)
    try:
        status, body = server.post("/cron/tick")
        assert status == 200 and json.loads(body)["jobs_succeeded"] == 1
    finally:
        server.stop()
    shown = flask_cli(env, "jobs", "show", "hello")
    assert json.loads(shown.stdout)["status"] == "completed"
    ran = [entry for line in server.log().splitlines() if line.startswith("{") and (entry := json.loads(line)).get("message") == "log job ran"]
    assert [(entry["job_id"], entry["payload"]) for entry in ran] == [("hello", {"hello": "world"})]
    listed = flask_cli(env, "jobs", "list", "--status", "completed")
    assert listed.stdout.splitlines()[-1] == "1 job(s)"
