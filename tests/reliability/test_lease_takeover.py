"""Drill: a handler outlives its lease while another tick takes the job over.

A worker is frozen (SIGSTOP, as a VM pause or Cloud Run's CPU throttling would)
while its tick runs handlers. Its leases expire; a tick on the other worker
recovers the jobs and runs them; then the frozen worker resumes (SIGCONT) and
tries to settle. Exactly one settle per job wins: the late one is refused by
the fence and counted as ``lease_lost`` in that tick's answer and log line.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from scheduler.clock import utc_now
from scheduler.model import JobStatus, Outcome
from tests.reliability.conftest import ledger_jobs, size
from tests.reliability.test_worker_kill import wait_for
from tests.support.handlers import read_ledger
from tests.support.processes import Gunicorn

pytestmark = pytest.mark.slow

ROUNDS = size(1, 3)
JOBS = size(3, 8)  # all run at once (SCHEDULER_MAX_CONCURRENCY=8)


def test_a_late_settle_after_a_takeover_is_refused_and_counted_as_lease_lost(backend, tmp_path):
    ledger = tmp_path / "ledger.txt"
    env = backend.env(**backend.short_leases, SCHEDULER_MAX_CONCURRENCY="8")
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=2, threads=4)
    late_ticks: list[str] = []
    try:
        for round_no in range(ROUNDS):
            release = tmp_path / f"release-{round_no}"
            jobs = ledger_jobs(JOBS, ledger, prefix=f"r{round_no}-", job_type="ledger_then_hang", release=str(release))
            ids = {j.id for j in jobs}
            backend.seed(jobs)
            answers: dict[str, tuple[int, dict]] = {}

            def slow_tick() -> None:
                status, body = server.post("/cron/tick", timeout=120)
                answers["late"] = (status, json.loads(body))

            first = threading.Thread(target=slow_tick)
            first.start()
            rows = wait_for(lambda: (r := [x for x in read_ledger(ledger) if x[0] in ids]) and len(r) == JOBS and r, 30, "every handler to start")
            (pid,) = {int(r[3]) for r in rows}
            os.kill(pid, signal.SIGSTOP)  # frozen mid-handler, leases running out
            try:
                leased = [j for j in backend.all_jobs() if j.id in ids]
                time.sleep(max(0.0, (max(j.lease_until for j in leased) - utc_now()).total_seconds() + 0.2))
                release.touch()
                status, body = server.post("/cron/tick")  # the other worker: the frozen one accepts nothing
                taker = json.loads(body)
                assert status == 200, body
                assert (taker["jobs_recovered"], taker["jobs_succeeded"], taker["lease_lost"]) == (JOBS, JOBS, 0), taker
                after_takeover = {j.id: j for j in backend.all_jobs() if j.id in ids}
            finally:
                os.kill(pid, signal.SIGCONT)
            first.join(60)
            status, late = answers["late"]
            assert status == 200, late
            assert late["lease_lost"] == JOBS, late
            late_ticks.append(late["tick_id"])
            # The late settle changed nothing: each job is as the taker left it.
            assert {j.id: j for j in backend.all_jobs() if j.id in ids} == after_takeover
            assert {j.status for j in after_takeover.values()} == {JobStatus.COMPLETED}
            assert {j.lease_epoch for j in after_takeover.values()} == {2}
            history = backend.store().list_executions(limit=1000)
            mine = sorted((e.job_id, e.tick_id == late["tick_id"], e.outcome) for e in history if e.job_id in ids)
            assert mine == sorted([(i, True, Outcome.LEASE_LOST) for i in ids] + [(i, False, Outcome.SUCCEEDED) for i in ids])
    finally:
        assert server.stop() == 0
    rows = read_ledger(ledger)
    assert len(rows) == 2 * JOBS * ROUNDS  # each job: the frozen attempt and the taker's
    assert sorted(r[2] for r in rows) == ["1"] * JOBS * ROUNDS + ["2"] * JOBS * ROUNDS
    log = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    lost = {line["tick_id"]: line["lease_lost"] for line in log if line.get("message") == "Scheduler tick completed" and line["lease_lost"]}
    assert lost == {tick_id: JOBS for tick_id in late_ticks}
