"""The engine's one run path: job isolation, timeouts and cancellation, the lease
heartbeat, overlap policies, and /tasks/run's use of it (in-process, real stores)."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import timedelta

import pytest

from handlers.registry import HandlerRegistry
from main import create_app
from scheduler.context import Cancellation
from scheduler.engine import TickEngine
from scheduler.heartbeat import LeaseKeeper
from scheduler.model import JobStatus, Outcome, Overlap, RunRef, Source, TickRecord
from scheduler.settings import Settings
from storage.jsonfile import JsonFileStore
from storage.memory import MemoryStore
from tests.support.clock import T0, FakeClock
from tests.support.jobs import make_job

SETTINGS = Settings(auth_mode="disabled", retry_base_seconds=10, retry_max_seconds=600, lease_seconds=300, tick_budget_seconds=150, job_timeout_seconds=60)


def registry_with(**handlers) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("log", lambda job, ctx: None)
    for name, fn in handlers.items():
        registry.register(name, fn)
    return registry


# -- isolation ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory", "json"])
def test_poisoned_jobs_planted_in_the_store_fail_alone(tmp_path, kind):
    """Finding 3: a never-firing cron with run_all and a 10**12 s interval used to crash
    every tick (500) and leave the whole batch leased. Now they fail alone."""
    store = MemoryStore() if kind == "memory" else JsonFileStore(tmp_path / "jobs.json")
    store.open()
    for n in range(5):
        store.add_job(make_job(f"ok-{n}"))
    never = make_job("never", schedule_at=None, cron="0 0 30 2 *", misfire="run_all")
    huge = make_job("huge", schedule_at=None, interval_seconds=10**12)
    if kind == "json":  # plant them in the file, as an old version or a hand edit would
        store.close()
        doc = json.loads((tmp_path / "jobs.json").read_text())
        doc.pop("generation", None)
        doc["jobs"]["never"] = never.to_dict()
        doc["jobs"]["huge"] = huge.to_dict()
        (tmp_path / "jobs.json").write_text(json.dumps(doc))
        store = JsonFileStore(tmp_path / "jobs.json")
        store.open()
    else:
        store.add_job(never)
        store.add_job(huge)
    engine = TickEngine(store, registry_with(), SETTINGS, rng=random.Random(1))
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    assert (metrics.jobs_due, metrics.jobs_succeeded, metrics.jobs_failed) == (7, 6, 1)
    assert [store.get_job(f"ok-{n}").status for n in range(5)] == [JobStatus.COMPLETED] * 5
    never_after = store.get_job("never")
    assert never_after.status is JobStatus.PENDING and never_after.lease_owner is None  # a failed attempt, retried with backoff
    assert never_after.last_error.startswith("CronError: cron expression '0 0 30 2 *'")
    huge_after = store.get_job("huge")  # its handler ran; its next fire time overflows: dead letter
    assert huge_after.status is JobStatus.FAILED and huge_after.lease_owner is None
    assert huge_after.last_error.startswith("cannot plan the next run: OverflowError")
    assert store.count_due(T0) == 0


def test_a_bug_in_the_run_path_settles_the_batch_as_failed_attempts(monkeypatch):
    store = MemoryStore()
    for n in range(3):
        store.add_job(make_job(f"j{n}"))
    engine = TickEngine(store, registry_with(), SETTINGS, rng=random.Random(1))
    monkeypatch.setattr(engine, "_execute", lambda jobs, scope: 1 / 0)
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    assert metrics.jobs_failed == 3
    for n in range(3):
        job = store.get_job(f"j{n}")
        assert job.status is JobStatus.PENDING and job.lease_owner is None
        assert job.last_error == "internal error in the tick: ZeroDivisionError: division by zero"


# -- threads ----------------------------------------------------------------------------
def _run_a_batch(n_jobs: int, handler, *, max_concurrency: int):
    store = MemoryStore()
    for n in range(n_jobs):
        store.add_job(make_job(f"j{n:03d}", job_type="probe"))
    engine = TickEngine(store, registry_with(probe=handler), SETTINGS.replace(max_concurrency=max_concurrency), rng=random.Random(1))
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    return metrics


def test_handlers_that_return_at_once_stay_on_the_one_thread_started_first(monkeypatch):
    import scheduler.engine as engine_module

    # No ramp check before the batch is done (the first wait is the poll, before any handler started).
    monkeypatch.setattr(engine_module, "_RAMP_SECONDS", 60.0)
    monkeypatch.setattr(engine_module, "_POLL_SECONDS", 60.0)
    names: set[str] = set()
    metrics = _run_a_batch(300, lambda job, ctx: names.add(threading.current_thread().name), max_concurrency=8)
    assert metrics.jobs_succeeded == 300 and len(names) == 1


def test_handlers_that_block_get_threads_up_to_max_concurrency_and_no_more():
    """Six handlers that each wait at a 3-party barrier: they can only finish if three run at
    once, so the threads must ramp up to 3 (max_concurrency), and a fourth would be one too many."""
    barrier = threading.Barrier(3, timeout=20)
    lock, running, most = threading.Lock(), [0], [0]
    names: set[str] = set()

    def meet(job, ctx):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            names.add(threading.current_thread().name)
        try:
            barrier.wait()
        finally:
            with lock:
                running[0] -= 1

    metrics = _run_a_batch(6, meet, max_concurrency=3)
    assert metrics.jobs_succeeded == 6 and most[0] == 3 and len(names) == 3


# -- timeouts ---------------------------------------------------------------------------
def hanging_handler():
    """(handler, release, ran): the handler records each job id in ``ran`` and blocks until
    ``release`` is set (10 s at most)."""
    release = threading.Event()
    ran: list[str] = []

    def hang(job, ctx):
        ran.append(job.id)
        release.wait(10)

    return hang, release, ran


def abandoned_runs_after_they_end(engine: TickEngine, within: float = 5.0) -> int:
    """The engine's count of abandoned runs once their handlers have been let go (polled)."""
    deadline = time.monotonic() + within
    while engine.abandoned_runs() and time.monotonic() < deadline:
        time.sleep(0.01)
    return engine.abandoned_runs()


def test_a_timed_out_handler_is_told_to_stop_and_counted_until_it_does():
    release = threading.Event()
    seen_cancel = threading.Event()

    def slow(job, ctx):
        if ctx.cancelled.wait(5):
            seen_cancel.set()
        release.wait(5)

    store = MemoryStore()
    store.add_job(make_job("s1", job_type="slow", timeout_seconds=0.2))
    engine = TickEngine(store, registry_with(slow=slow), SETTINGS, rng=random.Random(1))
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    assert metrics.jobs_failed == 1 and metrics.runs_abandoned == 1
    assert seen_cancel.wait(2)
    assert engine.abandoned_by_type() == {"slow": 1}
    release.set()
    assert abandoned_runs_after_they_end(engine) == 0


def test_a_handler_calling_sys_exit_fails_its_job_and_not_the_tick():
    import sys

    store = MemoryStore()
    store.add_job(make_job("quits", job_type="quit"))
    store.add_job(make_job("fine"))
    engine = TickEngine(store, registry_with(quit=lambda job, ctx: sys.exit(3)), SETTINGS, rng=random.Random(1))
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    assert (metrics.jobs_succeeded, metrics.jobs_failed) == (1, 1)
    assert store.get_job("quits").last_error == "the handler did not return: SystemExit: 3"
    assert abandoned_runs_after_they_end(engine) == 0


def test_a_job_queued_behind_a_hung_handler_is_deferred_at_the_deadline_and_the_thread_counted():
    """One handler thread: the first job hangs past its timeout (abandoned, its thread held),
    so the second never starts; at the tick's deadline it is deferred, not left waiting."""
    hang, release, ran = hanging_handler()
    store = MemoryStore()
    store.add_job(make_job("a-hang", job_type="hang", timeout_seconds=0.3, due_in=-2))
    store.add_job(make_job("b-next", job_type="hang", timeout_seconds=0.3, due_in=-1))
    settings = SETTINGS.replace(tick_budget_seconds=0.8, job_timeout_seconds=0.5, max_concurrency=1)
    engine = TickEngine(store, registry_with(hang=hang), settings, rng=random.Random(1))
    try:
        started = time.monotonic()
        metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
        elapsed = time.monotonic() - started
        assert (metrics.jobs_failed, metrics.jobs_deferred, metrics.runs_abandoned) == (1, 1, 1)
        assert ran == ["a-hang"] and 0.3 <= elapsed < 5
        assert store.get_job("b-next").status is JobStatus.PENDING and store.get_job("b-next").attempts == 0
        assert "timed out after 0.3 s" in store.get_job("a-hang").last_error
    finally:
        release.set()
    assert abandoned_runs_after_they_end(engine) == 0 and ran == ["a-hang"]  # the freed thread took nothing more


def test_new_runs_of_a_type_are_deferred_while_too_many_are_abandoned():
    hang, release, started = hanging_handler()
    store = MemoryStore()
    settings = SETTINGS.replace(max_abandoned_runs=2)
    for n in range(3):
        store.add_job(make_job(f"h{n}", job_type="hang", timeout_seconds=0.1, due_in=-10 + n))
    engine = TickEngine(store, registry_with(hang=hang), settings, rng=random.Random(1))
    try:
        first = engine.run_tick(now=T0, tick_id="t1").tick.metrics
        assert first.jobs_failed == 3 and first.runs_abandoned == 3
        for n in range(3):
            store.update_job(f"h{n}", lambda job: job.replace(next_run_at=T0, attempts=0))
        second = engine.run_tick(now=T0 + timedelta(seconds=1), tick_id="t2").tick.metrics
        assert (second.jobs_executed, second.jobs_deferred) == (0, 3)  # refused: 3 >= 2 of its type still run
        assert len(started) == 3
        assert [store.get_job(f"h{n}").status for n in range(3)] == [JobStatus.PENDING] * 3
    finally:
        release.set()


def test_a_queued_run_whose_lease_is_lost_while_it_waits_is_not_started():
    """The batch's leases are kept from the start, queued runs' too; an operator pausing a
    queued job takes its lease, the next beat cancels the run, and it never starts."""
    store = MemoryStore()
    store.add_job(make_job("a", job_type="first"))
    store.add_job(make_job("b", job_type="second"))
    ran: list[str] = []
    engine: TickEngine | None = None

    def first(job, ctx):
        ran.append(job.id)
        store.update_job("b", lambda b: b.replace(status=JobStatus.PAUSED, lease_owner=None, lease_until=None, lease_epoch=b.lease_epoch + 1))
        beats = engine.keeper.beats
        deadline = time.monotonic() + 5
        while engine.keeper.beats < beats + 2 and time.monotonic() < deadline:  # a whole beat after the pause
            time.sleep(0.01)

    settings = SETTINGS.replace(max_concurrency=1)  # b waits behind a
    engine = TickEngine(store, registry_with(first=first, second=lambda job, ctx: ran.append(job.id)), settings, rng=random.Random(1))
    engine.keeper.interval_seconds = 0.05
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    assert ran == ["a"]
    assert metrics.jobs_succeeded == 1 and metrics.jobs_deferred == 1 and metrics.lease_lost == 1
    assert store.get_job("b").status is JobStatus.PAUSED and store.get_job("a").status is JobStatus.COMPLETED
    assert store.list_executions(job_id="b") == []


# -- heartbeat --------------------------------------------------------------------------
def test_the_heartbeat_extends_a_long_run_and_a_lost_lease_cancels_it():
    store = MemoryStore()
    clock = FakeClock()
    store.add_job(make_job("long"))
    claimed = store.claim_due_jobs(now=T0, tick=_tick("t1"), lease_seconds=10, limit=10).claimed[0]
    keeper = LeaseKeeper(store, lease_seconds=10, clock=clock, interval_seconds=3600)  # beats driven by hand
    cancelled = Cancellation()
    [held] = keeper.hold([(claimed, cancelled)])
    for step in range(1, 4):
        clock.advance(3)
        keeper.beat()
        assert store.get_job("long").lease_until == T0 + timedelta(seconds=3 * step + 10)
    assert not cancelled.is_set()
    store.update_job("long", lambda job: job.replace(status=JobStatus.PAUSED, lease_owner=None, lease_until=None, lease_epoch=job.lease_epoch + 1))
    clock.advance(3)
    keeper.beat()
    assert cancelled.is_set() and cancelled.wait(0)
    keeper.release([held])
    assert held.beats == 3
    keeper.beat()  # released: nothing held, nothing written
    assert held.beats == 3 and keeper.beats == 4


def test_overlap_replace_hands_the_lease_to_the_next_occurrence():
    store = MemoryStore()
    clock = FakeClock()
    job = make_job("r", schedule_at=None, interval_seconds=60, overlap=Overlap.REPLACE, created_at=T0 - timedelta(seconds=60), next_run_at=T0, fire_at=T0)
    store.add_job(job)
    claimed = store.claim_due_jobs(now=T0, tick=_tick("t1"), lease_seconds=30, limit=10).claimed[0]
    keeper = LeaseKeeper(store, lease_seconds=30, clock=clock, interval_seconds=3600)
    cancelled = threading.Event()  # a plain Event works as the run's cancellation too
    keeper.hold([(claimed, cancelled)])
    clock.advance(30)
    keeper.beat()
    assert not cancelled.is_set()  # the next occurrence (T0+60) has not come
    clock.advance(31)
    keeper.beat()
    assert cancelled.is_set()
    stored = store.get_job("r")
    assert stored.status is JobStatus.PENDING and stored.next_run_at == T0 + timedelta(seconds=60)
    assert stored.lease_epoch == claimed.lease_epoch + 1 and stored.lease_owner is None


def test_overlap_replace_leaves_a_finished_run_to_its_settle():
    """A run whose handler has returned stays held (its lease kept) until its batch is
    done, but is not handed to the next occurrence: that would refuse its settle."""
    store = MemoryStore()
    clock = FakeClock()
    store.add_job(make_job("r", schedule_at=None, interval_seconds=60, overlap=Overlap.REPLACE, created_at=T0 - timedelta(seconds=60), next_run_at=T0, fire_at=T0))
    claimed = store.claim_due_jobs(now=T0, tick=_tick("t1"), lease_seconds=30, limit=10).claimed[0]
    keeper = LeaseKeeper(store, lease_seconds=30, clock=clock, interval_seconds=3600)
    cancelled = Cancellation()
    [held] = keeper.hold([(claimed, cancelled)])
    held.finished = True
    clock.advance(61)
    keeper.beat()
    stored = store.get_job("r")
    assert not cancelled.is_set() and held.beats == 1
    assert stored.status is JobStatus.RUNNING and stored.lease_epoch == claimed.lease_epoch and stored.lease_until == T0 + timedelta(seconds=91)


# -- overlap at settle: dispatched runs that outlast their period ---------------------------
def _tick(tick_id):
    return TickRecord(tick_id=tick_id, started_at=T0, source=Source.MANUAL)


@pytest.mark.parametrize(
    "overlap, next_run, skipped",
    [
        (Overlap.SKIP, T0 + timedelta(minutes=4), 3),
        (Overlap.BUFFER_ONE, T0 + timedelta(minutes=3), 0),
        (Overlap.BUFFER_ALL, T0 + timedelta(minutes=1), 0),
    ],
)
def test_overlap_policy_at_settle(overlap, next_run, skipped):
    """A minutely job whose run takes 3.5 minutes: three fire times pass during it."""
    clock = FakeClock()
    store = MemoryStore()
    store.add_job(make_job("o", schedule_at=None, cron="* * * * *", overlap=overlap, next_run_at=T0, fire_at=T0))
    claimed = store.claim_due_jobs(now=T0, tick=_tick("t1"), lease_seconds=300, limit=10).claimed[0]

    def long(job, ctx):
        clock.advance(210)

    engine = TickEngine(store, registry_with(long=long), SETTINGS, rng=random.Random(1), clock=clock)
    store.update_job("o", lambda job: job.replace(job_type="long"))
    claimed = claimed.replace(job_type="long")
    outcome = engine.run_dispatched(RunRef.of(claimed))
    assert outcome.result == "settled" and outcome.outcome == "succeeded"
    stored = store.get_job("o")
    assert stored.status is JobStatus.PENDING and stored.next_run_at == next_run
    history = store.list_executions(job_id="o")
    assert sum(1 for e in history if e.outcome is Outcome.SKIPPED_OVERLAP) == skipped
    assert sum(1 for e in history if e.outcome is Outcome.SUCCEEDED) == 1


# -- /tasks/run ---------------------------------------------------------------------------------
@pytest.fixture
def tasks_app(config, clock, registry):
    return create_app(config, store=MemoryStore(), clock=clock, registry=registry, rng=random.Random(3))


def test_tasks_run_runs_a_current_lease_once_and_refuses_stale_deliveries(tasks_app, clock):
    store = tasks_app.extensions["crontick"].store
    client = tasks_app.test_client()
    store.add_job(make_job("t1", now=clock()))
    claimed = store.claim_due_jobs(now=clock(), tick=_tick("tick-x"), lease_seconds=300, limit=10).claimed[0]
    body = {"job_id": "t1", "lease_owner": claimed.lease_owner, "lease_epoch": claimed.lease_epoch, "fire_at": claimed.fire_at.isoformat().replace("+00:00", "Z")}
    headers = {"X-CloudTasks-TaskName": "projects/p/locations/l/queues/q/tasks/run-1", "X-CloudTasks-TaskRetryCount": "0", "X-CloudTasks-TaskExecutionCount": "0"}
    first = client.post("/tasks/run", json=body, headers=headers)
    assert first.status_code == 200 and first.get_json()["result"] == "settled" and first.get_json()["outcome"] == "succeeded"
    assert store.get_job("t1").status is JobStatus.COMPLETED
    [execution] = store.list_executions(job_id="t1")
    assert execution.task == {"name": headers["X-CloudTasks-TaskName"], "retry_count": 0, "execution_count": 0}
    assert execution.source.value == "cloud_tasks"
    again = client.post("/tasks/run", json=body, headers=headers)
    assert again.status_code == 200 and again.get_json()["result"] == "duplicate_delivery"
    assert len(store.list_executions(job_id="t1")) == 1  # nothing ran twice
    stale = client.post("/tasks/run", json=body | {"lease_epoch": claimed.lease_epoch - 1})
    assert stale.get_json()["result"] == "duplicate_delivery"
    missing = client.post("/tasks/run", json=body | {"job_id": "nope"})
    assert missing.status_code == 200 and missing.get_json()["result"] == "duplicate_delivery"


@pytest.mark.parametrize(
    "body, field",
    [({}, "job_id"), ({"job_id": "a", "lease_owner": "o", "lease_epoch": -1, "fire_at": "2026-01-01T00:00:00Z"}, "lease_epoch"), ({"job_id": "a", "lease_owner": "o", "lease_epoch": 1, "fire_at": "soon"}, "fire_at"), ([], "body")],
)
def test_tasks_run_refuses_bad_bodies_naming_the_field(tasks_app, body, field):
    response = tasks_app.test_client().post("/tasks/run", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field


def test_tasks_run_answers_503_when_the_store_is_down(tmp_path, config, clock, registry):
    store = JsonFileStore(tmp_path / "data" / "jobs.json", lock_timeout=0.2)
    app = create_app(config, store=store, clock=clock, registry=registry)
    store.add_job(make_job("d1", now=clock()))
    claimed = store.claim_due_jobs(now=clock(), tick=_tick("tick-x"), lease_seconds=300, limit=10).claimed[0]
    (tmp_path / "data" / "jobs.json").rename(tmp_path / "moved.json")
    (tmp_path / "data").rename(tmp_path / "data-away")
    (tmp_path / "data").write_text("not a folder")
    body = {"job_id": "d1", "lease_owner": claimed.lease_owner, "lease_epoch": claimed.lease_epoch, "fire_at": "2026-01-05T11:59:59Z"}
    response = app.test_client().post("/tasks/run", json=body)
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_two_deliveries_of_one_task_arriving_together_run_it_once():
    store = MemoryStore()
    clock = FakeClock()
    store.add_job(make_job("twice", job_type="slow"))
    claimed = store.claim_due_jobs(now=T0, tick=_tick("t1"), lease_seconds=300, limit=10).claimed[0]
    runs: list[str] = []
    gate = threading.Event()

    def slow(job, ctx):
        runs.append(job.id)
        gate.wait(2)

    engine = TickEngine(store, registry_with(slow=slow), SETTINGS, rng=random.Random(1), clock=clock)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(engine.run_dispatched(RunRef.of(claimed)).result)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(5)
    assert runs == ["twice"]
    assert sorted(results) == ["duplicate_delivery"] * 3 + ["settled"]
    assert store.get_job("twice").status is JobStatus.COMPLETED


def test_a_dispatched_run_feeds_the_per_run_histograms(config, clock, registry):
    app = create_app(config | {"METRICS_ENABLED": "true"}, store=MemoryStore(), clock=clock, registry=registry, rng=random.Random(3))
    store = app.extensions["crontick"].store
    store.add_job(make_job("m1", now=clock(), due_in=-90))
    claimed = store.claim_due_jobs(now=clock(), tick=_tick("tick-x"), lease_seconds=300, limit=10).claimed[0]
    body = {"job_id": "m1", "lease_owner": claimed.lease_owner, "lease_epoch": claimed.lease_epoch, "fire_at": claimed.fire_at.isoformat().replace("+00:00", "Z")}
    client = app.test_client()
    assert client.post("/tasks/run", json=body).get_json()["result"] == "settled"
    text = client.get("/metrics").get_data(as_text=True)
    assert "crontick_schedule_lag_seconds_count 1" in text
    assert 'crontick_schedule_lag_seconds_bucket{le="60.0"} 0' in text and 'crontick_schedule_lag_seconds_bucket{le="120.0"} 1' in text  # 90 s late
    assert 'crontick_run_duration_seconds_count{job_type="log"} 1' in text


def test_overlap_replace_cancels_a_running_dispatched_handler_and_refuses_its_settle():
    """The next occurrence comes while the run still goes: the heartbeat hands it the lease,
    the handler sees ctx.cancelled, its settle is refused, the new occurrence is pending."""
    store = MemoryStore()
    clock = FakeClock()
    store.add_job(make_job("r", job_type="long", schedule_at=None, interval_seconds=60, overlap=Overlap.REPLACE,
                           created_at=T0 - timedelta(seconds=60), next_run_at=T0, fire_at=T0))
    claimed = store.claim_due_jobs(now=T0, tick=_tick("t1"), lease_seconds=0.3, limit=10).claimed[0]
    seen: list[bool] = []

    def long(job, ctx):
        clock.advance(61)  # the next fire time (T0+60) passes while this runs
        seen.append(ctx.cancelled.wait(5))

    settings = SETTINGS.replace(lease_seconds=0.3, tick_budget_seconds=0.2, job_timeout_seconds=0.1)
    engine = TickEngine(store, registry_with(long=long), settings, rng=random.Random(1), clock=clock)
    store.update_job("r", lambda job: job.replace(timeout_seconds=10))
    outcome = engine.run_dispatched(RunRef.of(claimed))
    assert seen == [True]
    assert outcome.result == "lease_lost"
    job = store.get_job("r")
    assert job.status is JobStatus.PENDING and job.fire_at == T0 + timedelta(seconds=60) and job.lease_owner is None
    assert [e.outcome for e in store.list_executions(job_id="r")] == [Outcome.LEASE_LOST]


# -- the run's cancellation -------------------------------------------------------------
def test_a_cancellation_answers_as_an_event_from_any_thread():
    unset = Cancellation()
    assert not unset.is_set() and unset.wait(0.01) is False and repr(unset) == "<Cancellation unset>"
    early = Cancellation()
    early.set()
    assert early.is_set() and early.wait() is True and early.wait(0) is True
    late = Cancellation()
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(late.wait(5))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.05)  # let them block (a set before their wait must wake them as well)
    late.set()
    for waiter in waiters:
        waiter.join(5)
    assert woken == [True] * 4 and late.is_set()
