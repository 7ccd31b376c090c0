"""Drill: many concurrent ticks across several gunicorn worker processes over one store.

What it proves is exactly-once under claims that race *across processes*, so at least
two workers must really claim jobs while another holds its own. That is not left to the
OS's scheduling (on a busy machine one worker used to drain the whole store before the
others got the CPU): the first jobs each tick runs hang until a second worker has a run
in the ledger, and each worker accepts at most TICKERS / WORKERS connections, so once one
worker's slots are all taken by hanging ticks the other tickers must be served by the
other workers. Then the hang is released, and the rest of the drill is the free-for-all
it always was (usually every worker runs jobs).

Not "every worker": on Firestore every ticker reads the same earliest candidates and one
claimer wins each race, so the number of claim rounds before the last worker wins one is
a matter of luck and of the emulator's speed; a second worker needs at most
TICKERS / WORKERS + 1 winning rounds.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from scheduler.clock import utc_now
from scheduler.model import JobStatus
from tests.reliability.conftest import ledger_jobs, size
from tests.reliability.test_worker_kill import wait_for
from tests.support.handlers import read_ledger
from tests.support.processes import Gunicorn

pytestmark = pytest.mark.slow

JOBS = size(300, 2000)
WORKERS = 4
TICKERS = size(8, 16)
RELEASE_AFTER = 30.0  # seconds the first jobs wait at most for a second worker to run one


def test_concurrent_ticks_run_every_occurrence_exactly_once(backend, tmp_path):
    ledger = tmp_path / "ledger.txt"
    release = tmp_path / "release"
    jobs = ledger_jobs(JOBS, ledger, cron_every=4, job_type="ledger_then_hang", release=str(release))
    backend.seed(jobs)
    expected = {job.id: job.fire_at.isoformat() for job in jobs}
    # Small batches, so that every tick gets a share and the claims really race.
    # Each worker takes at most TICKERS / WORKERS connections at once (a gthread worker
    # would otherwise accept every connection itself), so the ticks spread over the workers.
    slots = str(TICKERS // WORKERS)
    # gunicorn answers /health as soon as one worker is up; a hook marks each worker that has loaded the app.
    ready = tmp_path / "ready"
    ready.mkdir()
    config = tmp_path / "gunicorn_conf.py"
    config.write_text("import os, pathlib\n\ndef post_worker_init(worker):\n    pathlib.Path(os.environ['CRONTICK_READY_DIR'], str(worker.pid)).touch()\n")
    env = backend.env(SCHEDULER_CLAIM_BATCH_SIZE=str(max(10, JOBS // 40)), CRONTICK_READY_DIR=str(ready))
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=WORKERS, threads=TICKERS // WORKERS, extra_args=("-c", str(config), "--worker-connections", slots))
    wait_for(lambda: len(list(ready.iterdir())) == WORKERS, 60, "every worker to load the app")
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(TICKERS)

    def ticker() -> None:
        start.wait()
        for _ in range(200):
            status, body = server.post("/cron/tick", timeout=120)
            data = json.loads(body)
            with lock:
                results.append((status, data))
            if status != 200 or data["jobs_due"] == 0:
                return

    held: list[float] = []

    def releaser() -> None:
        # Well under the job timeout (60 s): a hang that long would fail attempts and retry them.
        begin = time.monotonic()
        while time.monotonic() < begin + RELEASE_AFTER and len({row[3] for row in read_ledger(ledger)}) < 2:
            time.sleep(0.02)
        release.touch()
        held.append(time.monotonic() - begin)

    threads = [threading.Thread(target=ticker) for _ in range(TICKERS)] + [threading.Thread(target=releaser)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        release.touch()
        assert server.stop() == 0
    assert [s for s, _ in results if s != 200] == []
    rows = read_ledger(ledger)
    occurrences = Counter((row[0], row[1]) for row in rows)
    assert len(rows) == JOBS, f"{len(rows)} handler runs for {JOBS} jobs"
    assert set(occurrences.values()) == {1}, [o for o, c in occurrences.items() if c > 1][:10]
    assert {job_id: fire_at for job_id, fire_at in occurrences} == expected
    assert {row[2] for row in rows} == {"1"}  # every run was a first attempt: nothing recovered, nothing retried
    # Two workers (at least) claimed and ran jobs while another held its own (see the module docstring).
    assert len({row[3] for row in rows}) >= 2, f"only one worker process ran jobs (the first jobs were held {held} s)"
    bodies = [data for _, data in results]
    assert sum(b["jobs_executed"] for b in bodies) == JOBS
    assert sum(b["jobs_succeeded"] for b in bodies) == JOBS
    assert sum(b["lease_lost"] for b in bodies) == 0 and sum(b["jobs_recovered"] for b in bodies) == 0
    log = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    tick_lines = [line for line in log if line.get("message") == "Scheduler tick completed"]
    assert len(tick_lines) == len(results) and sum(line["jobs_executed"] for line in tick_lines) == JOBS
    now = utc_now()
    final = {job.id: job for job in backend.all_jobs()}
    one_offs = [j for j in final.values() if j.cron is None]
    crons = [j for j in final.values() if j.cron is not None]
    assert len(final) == JOBS and len(crons) == JOBS // 4
    assert {j.status for j in one_offs} == {JobStatus.COMPLETED}
    assert {j.status for j in crons} == {JobStatus.PENDING} and all(j.next_run_at > now for j in crons)
