"""Drill: the store goes down for a while in the middle of a run.

A ticker posts ``/cron/tick`` every 0.2 s (as a fast Cloud Scheduler would)
over jobs that fall due throughout the run. Between two ticks the store is
taken down (JSON: the data folder is replaced by a file; Firestore: the
emulator stops, its data exported) for OUTAGE seconds while ticks keep coming,
then brought back. Ticks answer 503 with the store error, ``/health`` stays
200, the process stays up, and every job runs exactly once.

(An outage that starts inside a tick, between its claim and its settle, runs
that tick's jobs again after their leases expire: tests/test_firestore_store.py
covers that case.)
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter

import pytest

from scheduler.model import JobStatus
from tests.reliability.conftest import ledger_jobs, size
from tests.support.handlers import read_ledger
from tests.support.processes import Gunicorn

pytestmark = pytest.mark.slow

OUTAGE = size(5, 30)
JOBS = size(60, 400)
SPREAD = size(6.0, 40.0)  # seconds over which the jobs fall due


def test_ticks_answer_503_during_an_outage_and_every_job_runs_once_after(backend, tmp_path):
    ledger = tmp_path / "ledger.txt"
    env = backend.env(**backend.short_leases, SCHEDULER_CLAIM_BATCH_SIZE="20")
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=2, threads=4)
    jobs = ledger_jobs(JOBS, ledger, spread=SPREAD, cron_every=5)  # due from now on, over SPREAD seconds
    backend.seed(jobs)
    between_ticks = threading.Lock()
    stop = threading.Event()
    outage = {"down": False}
    answers: list[tuple[bool, int, dict]] = []  # (store down when sent, status, body)
    health: list[int] = []

    def ticker() -> None:
        while not stop.is_set():
            with between_ticks:
                down = outage["down"]
                status, body = server.post("/cron/tick", timeout=60)
                answers.append((down, status, json.loads(body)))
            time.sleep(0.2)

    def prober() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
                    health.append(response.status)
            except OSError as exc:
                health.append(getattr(exc, "code", 0) or -1)
            time.sleep(0.25)

    threads = [threading.Thread(target=ticker), threading.Thread(target=prober)]
    try:
        for t in threads:
            t.start()
        time.sleep(min(2.0, SPREAD / 3))  # some jobs run before the outage
        with between_ticks:
            backend.down()
            outage["down"] = True
        ran_before = len(read_ledger(ledger))
        time.sleep(OUTAGE)
        during = len(read_ledger(ledger))
        with between_ticks:
            backend.up()
            outage["down"] = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_ledger(ledger)) < JOBS:
            time.sleep(0.2)
        time.sleep(1.0)  # a few more ticks: nothing more may run
    finally:
        stop.set()
        for t in threads:
            t.join(90)
        if outage["down"]:
            backend.up()
        assert server.proc.poll() is None, "the service died"
        assert server.stop() == 0
    assert 0 < ran_before < JOBS
    assert during == ran_before, "a handler ran while the store was down"
    refused = [body for down, status, body in answers if down]
    assert refused and {body["error"]["code"] for body in refused} == {"store_unavailable"}
    assert {status for down, status, _ in answers if down} == {503}
    assert {status for down, status, _ in answers if not down} == {200}
    assert health and set(health) == {200}
    rows = read_ledger(ledger)
    counts = Counter(row[0] for row in rows)
    assert len(rows) == JOBS and set(counts) == {j.id for j in jobs} and set(counts.values()) == {1}
    assert {row[2] for row in rows} == {"1"}
    assert sum(body["jobs_succeeded"] for down, status, body in answers if status == 200) == JOBS
    final = backend.all_jobs()
    assert Counter(j.status for j in final) == Counter({JobStatus.COMPLETED: JOBS - JOBS // 5, JobStatus.PENDING: JOBS // 5})
