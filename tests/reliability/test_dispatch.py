"""Dispatch through a real Cloud Tasks server (gcloud-tasks-emulator) to two crontick
services (gunicorn, 2 workers each) sharing one JSON store.

* 8 concurrent tickers over HTTP on both services: every due job runs exactly once
  (the ledger counts the handler's effects), each run delivered as one task to the
  *other* service's ``/tasks/run``.
* Every task created twice (the emulator ignores task-name dedup, so both copies are
  delivered, to both services): still every job once; each extra copy is answered
  ``duplicate_delivery``.
* A handler that runs many times its lease, kept alive by the heartbeat, is never
  claimed again; SIGKILL of the service running it gets it recovered after one lease
  with one extra attempt.

The emulator sends no OIDC token, so these services run with ``AUTH_MODE=disabled``;
``tests/test_tasks_auth.py`` checks ``/tasks/run``'s token with real signed tokens.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from scheduler.clock import utc_now
from scheduler.dispatch import DispatchRequest, DispatchResult
from scheduler.engine import TickEngine
from scheduler.model import JobStatus, Source
from scheduler.settings import Settings
from storage.jsonfile import JsonFileStore
from tests.reliability.conftest import ledger_jobs, size
from tests.support.handlers import read_ledger
from tests.support.jobs import make_job
from tests.support.processes import Gunicorn, free_port, service_env
from tests.support.tasks_emulator import tasks_emulator  # noqa: F401 - session fixture

pytestmark = pytest.mark.slow

JOBS = size(150, 500)


def _service(tmp_path: Path, name: str, port: int, target_port: int, emulator, queue: str, **extra: str) -> Gunicorn:
    env = service_env(
        PORT=str(port),
        SCHEDULER_STORAGE="json",
        SCHEDULER_JSON_PATH=str(tmp_path / "data" / "jobs.json"),
        SCHEDULER_HANDLER_MODULES="tests.support.handlers",
        SCHEDULER_DISPATCH="cloud_tasks",
        CLOUD_TASKS_EMULATOR_HOST=emulator.host,
        CLOUD_TASKS_QUEUE=queue,
        CLOUD_TASKS_TARGET_URL=f"http://127.0.0.1:{target_port}/tasks/run",
        SCHEDULER_CLAIM_BATCH_SIZE="100",
        **extra,
    )
    command = ["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "8", "--timeout", "0", "main:app"]
    return Gunicorn(env, tmp_path / f"{name}.log", command=command)


def _wait_all_final(store: JsonFileStore, count: int, timeout: float, *, pending: int = 0) -> dict[str, int]:
    """Store counts once ``count`` jobs are completed and ``pending`` (recurring ones) are back
    to pending, none running: every run settled. A cron job's settle can come after the last
    one-off's (its first cron read loads croniter), so completed alone is not enough."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        counts = store.count_by_status()
        if counts["completed"] == count and counts["pending"] == pending and counts["running"] == 0:
            return counts
        time.sleep(0.2)
    return store.count_by_status()


def _log_lines(server: Gunicorn) -> list[dict]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_two_services_and_eight_tickers_run_every_job_once(tmp_path, tasks_emulator):
    queue = tasks_emulator.create_queue()
    store = JsonFileStore(tmp_path / "data" / "jobs.json")
    store.open()
    ledger = tmp_path / "ledger.txt"
    for job in ledger_jobs(JOBS, ledger, cron_every=5):
        store.add_job(job)
    port_a, port_b = free_port(), free_port()
    a = _service(tmp_path, "a", port_a, port_b, tasks_emulator, queue)
    b = _service(tmp_path, "b", port_b, port_a, tasks_emulator, queue)
    ticks: list[dict] = []
    lock = threading.Lock()
    try:
        def ticker(server: Gunicorn) -> None:
            for _ in range(10):
                status, body = server.post("/cron/tick")
                assert status == 200, body
                with lock:
                    ticks.append(json.loads(body))

        threads = [threading.Thread(target=ticker, args=(a if i % 2 else b,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        counts = _wait_all_final(store, JOBS - JOBS // 5, timeout=size(120, 300), pending=JOBS // 5)
    finally:
        a.stop()
        b.stop()
    rows = read_ledger(ledger)
    per_job = Counter(row[0] for row in rows)
    assert len(per_job) == JOBS and set(per_job.values()) == {1}, Counter(per_job.values())
    assert counts["completed"] == JOBS - JOBS // 5 and counts["pending"] == JOBS // 5  # the cron jobs wait for next January
    assert sum(t["jobs_dispatched"] for t in ticks) == JOBS
    assert sum(t["jobs_dispatch_failed"] for t in ticks) == 0
    settled = [line for server in (a, b) for line in _log_lines(server) if line.get("action") == "job_settled"]
    assert len(settled) == JOBS
    ran_on = Counter(int(row[3]) for row in rows)
    assert len(ran_on) >= 2, ran_on  # the runs spread over more than one worker process


class _Twice:
    """Creates every task twice, once for each service: duplicate deliveries by construction."""

    def __init__(self, *dispatchers) -> None:
        self.dispatchers = dispatchers

    def dispatch(self, requests: list[DispatchRequest]) -> DispatchResult:
        results = [d.dispatch(requests) for d in self.dispatchers]
        return DispatchResult(dispatched=results[0].dispatched, failed=results[0].failed)

    def close(self) -> None:
        for d in self.dispatchers:
            d.close()


def test_every_task_created_twice_still_runs_each_job_once(tmp_path, tasks_emulator):
    from scheduler.cloud_tasks import CloudTasksDispatcher

    queue = tasks_emulator.create_queue()
    store = JsonFileStore(tmp_path / "data" / "jobs.json")
    store.open()
    ledger = tmp_path / "ledger.txt"
    count = size(60, 300)
    for job in ledger_jobs(count, ledger):
        store.add_job(job)
    port_a, port_b = free_port(), free_port()
    a = _service(tmp_path, "a", port_a, port_b, tasks_emulator, queue)
    b = _service(tmp_path, "b", port_b, port_a, tasks_emulator, queue)

    def settings_for(port: int) -> Settings:
        return Settings(
            auth_mode="disabled", storage="json", dispatch="cloud_tasks", cloud_tasks_queue=queue,
            cloud_tasks_emulator_host=tasks_emulator.host, cloud_tasks_target_url=f"http://127.0.0.1:{port}/tasks/run",
        )

    dispatcher = _Twice(CloudTasksDispatcher(settings_for(port_a)), CloudTasksDispatcher(settings_for(port_b)))
    engine = TickEngine(JsonFileStore(tmp_path / "data" / "jobs.json"), {}, settings_for(port_a), rng=random.Random(1), dispatcher=dispatcher)
    try:
        threads = [threading.Thread(target=lambda i=i: engine.run_tick(now=utc_now(), tick_id=f"t{i}", source=Source.MANUAL)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        counts = _wait_all_final(store, count, timeout=size(120, 300))
        deadline = time.monotonic() + 60  # let the emulator deliver the second copies too
        while tasks_emulator.list_tasks(queue) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        dispatcher.close()
        a.stop()
        b.stop()
    per_job = Counter(row[0] for row in read_ledger(ledger))
    assert len(per_job) == count and set(per_job.values()) == {1}, Counter(per_job.values())
    assert counts["completed"] == count
    answers = Counter(line["action"] for server in (a, b) for line in _log_lines(server) if line.get("action") in ("duplicate_delivery", "job_settled"))
    assert answers == {"job_settled": count, "duplicate_delivery": count}


def test_a_long_run_is_kept_alive_by_its_heartbeat_and_recovered_after_a_kill(tmp_path, tasks_emulator):
    """A handler that runs 6 leases long (60 s under a 10 s lease in the long form) is never
    claimed again while its heartbeat runs; SIGKILL of the service running it: recovered
    after one lease, one extra attempt."""
    lease = size(1.5, 10.0)
    queue = tasks_emulator.create_queue()
    store = JsonFileStore(tmp_path / "data" / "jobs.json")
    store.open()
    ledger = tmp_path / "ledger.txt"
    release = tmp_path / "release"
    store.add_job(make_job("long", now=utc_now(), job_type="ledger_then_hang", payload={"ledger": str(ledger), "release": str(release)}, timeout_seconds=60))
    port_a, port_b = free_port(), free_port()
    extra = {"SCHEDULER_DISPATCH_LEASE_SECONDS": str(lease)}
    runner = _service(tmp_path, "runner", port_b, port_b, tasks_emulator, queue, **extra)
    ticker = _service(tmp_path, "ticker", port_a, port_b, tasks_emulator, queue, **extra)
    try:
        status, body = ticker.post("/cron/tick")
        assert status == 200 and json.loads(body)["jobs_dispatched"] == 1
        deadline = time.monotonic() + 20
        while not read_ledger(ledger) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(read_ledger(ledger)) == 1
        lease_untils = []
        for _ in range(int(6 * lease / 0.5)):  # 6 leases long, ticking every 0.5 s
            status, body = ticker.post("/cron/tick")
            assert json.loads(body)["jobs_due"] == 0  # never claimable: the heartbeat keeps the lease ahead
            lease_untils.append(store.get_job("long").lease_until)
            time.sleep(0.5)
        assert len(set(lease_untils)) >= 5  # extended about every lease/3
        assert len(read_ledger(ledger)) == 1
        # Kill the service running the handler: no heartbeat, no settle.
        workers = Path(f"/proc/{runner.proc.pid}/task/{runner.proc.pid}/children").read_text().split()
        os.kill(runner.proc.pid, signal.SIGKILL)
        for pid in workers:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        runner.proc.wait(10)
        killed_at = time.monotonic()
        runner = _service(tmp_path, "runner2", port_b, port_b, tasks_emulator, queue, **extra)
        release.write_text("go")
        deadline = time.monotonic() + 30
        while store.get_job("long").status is not JobStatus.COMPLETED and time.monotonic() < deadline:
            ticker.post("/cron/tick")
            time.sleep(0.3)
        recovered_after = time.monotonic() - killed_at
    finally:
        release.write_text("go")
        ticker.stop()
        runner.stop()
    job = store.get_job("long")
    assert job.status is JobStatus.COMPLETED
    assert [row[2] for row in read_ledger(ledger)] == ["1", "2"]  # one extra attempt
    assert recovered_after >= lease * 0.5  # not before the old lease ran out


def test_tasks_delivered_during_a_store_outage_get_503_then_each_job_runs_once(tmp_path, tasks_emulator):
    """The store goes down after the tick dispatched: /tasks/run answers 503, Cloud Tasks
    (the emulator) delivers again, and once the store is back every job runs exactly once."""
    queue = tasks_emulator.create_queue()
    data = tmp_path / "data"
    store = JsonFileStore(data / "jobs.json")
    store.open()
    ledger = tmp_path / "ledger.txt"
    count = size(20, 100)
    for job in ledger_jobs(count, ledger):
        store.add_job(job)
    port = free_port()
    service = _service(tmp_path, "svc", port, port, tasks_emulator, queue, SCHEDULER_JSON_LOCK_TIMEOUT_SECONDS="0.5")
    try:
        tasks_emulator.client().pause_queue(name=queue, timeout=10)  # hold the tasks until the store is down
        status, body = service.post("/cron/tick")
        assert status == 200 and json.loads(body)["jobs_dispatched"] == count
        saved = data.with_name("data-saved")
        data.rename(saved)
        data.write_text("the store is down\n")
        tasks_emulator.client().resume_queue(name=queue, timeout=10)
        deadline = time.monotonic() + 30
        while "store_unavailable" not in service.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # deliveries keep failing (503) and being retried meanwhile
        data.unlink()
        saved.rename(data)
        counts = _wait_all_final(JsonFileStore(data / "jobs.json"), count, timeout=size(60, 180))
    finally:
        service.stop()
    assert counts["completed"] == count
    per_job = Counter(row[0] for row in read_ledger(ledger))
    assert len(per_job) == count and set(per_job.values()) == {1}
    refused = [line for line in _log_lines(service) if line.get("message") == "Store unavailable"]
    assert refused, "no delivery met the outage"
