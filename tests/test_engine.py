"""The tick engine on the in-memory store: outcomes, retries, misfires, budget, leases."""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta, timezone

import pytest

from handlers.registry import HandlerRegistry
from scheduler.engine import TickEngine
from scheduler.jobspec import build_job
from scheduler.model import JobStatus, Outcome, Source, TickRecord
from scheduler.settings import Settings
from storage.memory import MemoryStore
from tests.support.clock import T0, FakeClock
from tests.support.jobs import make_job

SETTINGS = Settings(auth_mode="disabled", retry_base_seconds=10, retry_max_seconds=600, lease_seconds=300, tick_budget_seconds=150, job_timeout_seconds=60)


class Recorder:
    """Handlers whose calls the test reads back: (job_id, fire_at, attempt)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime, int]] = []
        self.lock = threading.Lock()

    def ok(self, job, ctx):
        with self.lock:
            self.calls.append((job.id, ctx.fire_at, ctx.attempt))

    def fail(self, job, ctx):
        self.ok(job, ctx)
        raise RuntimeError("boom")


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def env(rec):
    registry = HandlerRegistry()
    registry.register("ok", rec.ok)
    registry.register("fail", rec.fail)
    store = MemoryStore(history_limit=500)
    clock = FakeClock()
    engine = TickEngine(store, registry, SETTINGS, rng=random.Random(3))

    class Env:
        pass

    e = Env()
    e.store, e.clock, e.engine, e.registry = store, clock, engine, registry

    def add(data):
        job = build_job(data, known_types=registry.names(), now=clock())
        return store.add_job(job)[0]

    def tick(tick_id=None, **kw):
        return e.engine.run_tick(now=clock(), tick_id=tick_id or f"tick-{clock().isoformat()}", **kw).tick.metrics

    e.add, e.tick = add, tick
    return e


def iso(dt):
    return dt.isoformat().replace("+00:00", "Z")


def test_one_off_job_runs_once_then_completes(env, rec):
    job = env.add({"job_type": "ok", "schedule_at": iso(T0 + timedelta(seconds=30))})
    assert env.tick().jobs_due == 0
    env.clock.advance(30)
    metrics = env.tick()
    assert (metrics.jobs_due, metrics.jobs_executed, metrics.jobs_succeeded) == (1, 1, 1)
    stored = env.store.get_job(job.id)
    assert stored.status is JobStatus.COMPLETED and stored.next_run_at is None and stored.attempts == 0
    assert stored.last_outcome == "succeeded" and stored.lease_owner is None
    env.clock.advance(600)
    assert env.tick().jobs_executed == 0
    assert rec.calls == [(job.id, T0 + timedelta(seconds=30), 1)]


def test_one_off_in_the_past_runs_on_the_next_tick(env, rec):
    env.add({"job_type": "ok", "schedule_at": "2020-01-01T00:00:00+02:00"})
    assert env.tick().jobs_succeeded == 1
    assert rec.calls[0][1] == datetime(2019, 12, 31, 22, tzinfo=timezone.utc)


def test_cron_job_reschedules_from_the_fire_time_not_the_run_end(env, rec):
    job = env.add({"job_type": "ok", "cron": "*/5 * * * *"})
    assert job.next_run_at == T0 + timedelta(minutes=5)
    env.clock.advance(minutes=5, seconds=40)  # tick runs 40 s late
    env.tick()
    stored = env.store.get_job(job.id)
    assert stored.status is JobStatus.PENDING
    assert stored.next_run_at == T0 + timedelta(minutes=10)
    assert rec.calls == [(job.id, T0 + timedelta(minutes=5), 1)]


def test_interval_job_keeps_its_grid(env, rec):
    job = env.add({"job_type": "ok", "interval_seconds": 600})
    assert job.next_run_at == T0 + timedelta(minutes=10)
    env.clock.advance(minutes=10, seconds=3)
    env.tick()
    assert env.store.get_job(job.id).next_run_at == T0 + timedelta(minutes=20)


def test_failures_retry_with_backoff_then_dead_letter(env, rec):
    job = env.add({"job_type": "fail", "schedule_at": iso(T0), "max_attempts": 3})
    ceilings = [10, 20]
    for attempt, ceiling in enumerate(ceilings, start=1):
        metrics = env.tick()
        assert (metrics.jobs_executed, metrics.jobs_failed) == (1, 1)
        stored = env.store.get_job(job.id)
        assert stored.status is JobStatus.PENDING and stored.attempts == attempt
        assert stored.last_error == "RuntimeError: boom" and stored.fire_at == T0
        delay = (stored.next_run_at - env.clock()).total_seconds()
        assert 1 <= delay <= ceiling
        assert env.tick().jobs_executed == 0  # not due before its backoff
        env.clock.set(stored.next_run_at)
    env.tick()
    stored = env.store.get_job(job.id)
    assert stored.status is JobStatus.FAILED and stored.next_run_at is None
    assert stored.attempts == 3 and stored.last_outcome == "dead" and stored.last_error == "RuntimeError: boom"
    assert [c[2] for c in rec.calls] == [1, 2, 3]
    assert [e.outcome for e in env.store.list_executions(job_id=job.id)] == [Outcome.FAILED] * 3


def test_success_after_a_retry_resets_attempts(env, rec):
    calls = {"n": 0}

    def flaky(job, ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("first time fails")

    env.registry.register("flaky", flaky)
    job = env.add({"job_type": "flaky", "cron": "0 * * * *"})
    env.clock.set(job.next_run_at)
    env.tick()
    retry_at = env.store.get_job(job.id).next_run_at
    env.clock.set(retry_at)
    assert env.tick().jobs_succeeded == 1
    stored = env.store.get_job(job.id)
    assert stored.attempts == 0 and stored.last_error is None
    assert stored.next_run_at == T0 + timedelta(hours=2)


def test_a_handler_past_its_timeout_fails_the_attempt(env):
    gate = threading.Event()
    env.registry.register("slow", lambda job, ctx: gate.wait(5))
    job = env.add({"job_type": "slow", "schedule_at": iso(T0), "timeout_seconds": 0.2})
    metrics = env.tick()
    gate.set()
    assert metrics.jobs_failed == 1
    stored = env.store.get_job(job.id)
    assert stored.last_error == "timed out after 0.2 s" and stored.status is JobStatus.PENDING


def test_unknown_job_type_at_run_time_is_a_failed_attempt(env):
    job = env.add({"job_type": "ok", "schedule_at": iso(T0)})
    env.store.update_job(job.id, lambda j: j.replace(job_type="gone"))
    env.tick()
    assert env.store.get_job(job.id).last_error == "LookupError: no handler registered for job_type 'gone'"


# -- misfire ------------------------------------------------------------------


def test_run_once_runs_an_overdue_job_once_then_moves_to_the_future(env, rec):
    job = env.add({"job_type": "ok", "cron": "*/10 * * * *"})
    env.clock.advance(hours=3, minutes=5)  # 18 fire times missed
    assert env.tick().jobs_executed == 1
    assert len(rec.calls) == 1
    assert env.store.get_job(job.id).next_run_at == T0 + timedelta(hours=3, minutes=10)


def test_skip_does_not_run_when_later_than_the_grace(env, rec):
    job = env.add({"job_type": "ok", "cron": "0 * * * *", "misfire": "skip", "misfire_grace_seconds": 120})
    env.clock.advance(hours=1, minutes=5)  # 5 min late > 2 min grace
    metrics = env.tick()
    assert (metrics.jobs_executed, metrics.jobs_misfired) == (0, 1)
    assert rec.calls == []
    stored = env.store.get_job(job.id)
    assert stored.next_run_at == T0 + timedelta(hours=2) and stored.last_outcome == "misfired"
    assert [e.outcome for e in env.store.list_executions(job_id=job.id)] == [Outcome.MISFIRED]
    env.clock.set(T0 + timedelta(hours=2, minutes=1))  # within grace: runs
    assert env.tick().jobs_executed == 1


def test_run_all_runs_each_missed_fire_time_in_order(env, rec):
    job = env.add({"job_type": "ok", "cron": "*/10 * * * *", "misfire": "run_all"})
    env.clock.advance(minutes=45)
    metrics = env.tick()
    assert metrics.jobs_executed == 1 and metrics.jobs_succeeded == 1
    assert [c[1] for c in rec.calls] == [T0 + timedelta(minutes=m) for m in (10, 20, 30, 40)]
    assert env.store.get_job(job.id).next_run_at == T0 + timedelta(minutes=50)
    assert len(env.store.list_executions(job_id=job.id)) == 4


def test_run_all_is_bounded_to_100(env, rec):
    env.add({"job_type": "ok", "cron": "* * * * *", "misfire": "run_all"})
    env.clock.advance(minutes=250, seconds=30)
    env.tick()
    assert len(rec.calls) == 100
    assert rec.calls[-1][1] == T0 + timedelta(minutes=250)  # the most recent 100 are kept
    assert len({c[1] for c in rec.calls}) == 100


# -- leases, recovery, budget ----------------------------------------------------


def test_a_tick_that_died_mid_run_is_recovered_after_its_lease(env, rec):
    job = env.add({"job_type": "ok", "schedule_at": iso(T0)})
    dead = TickRecord("dead-tick", T0, Source.MANUAL)
    env.store.claim_due_jobs(now=T0, tick=dead, lease_seconds=300, limit=10)  # ...and never settles
    env.clock.advance(299)
    assert env.tick().jobs_executed == 0
    env.clock.advance(1)
    metrics = env.tick()
    assert (metrics.jobs_recovered, metrics.jobs_executed) == (1, 1)
    assert rec.calls == [(job.id, T0, 2)]
    assert env.store.get_job(job.id).status is JobStatus.COMPLETED


def test_a_recovered_job_without_attempts_left_is_dead_lettered_without_running(env, rec):
    job = env.add({"job_type": "ok", "schedule_at": iso(T0), "max_attempts": 1})
    env.store.claim_due_jobs(now=T0, tick=TickRecord("dead", T0, Source.MANUAL), lease_seconds=300, limit=10)
    env.clock.advance(301)
    metrics = env.tick()
    assert (metrics.jobs_recovered, metrics.jobs_executed, metrics.jobs_failed) == (1, 0, 1)
    stored = env.store.get_job(job.id)
    assert stored.status is JobStatus.FAILED and "lease expired during attempt 1 of 1" in stored.last_error
    assert rec.calls == []


def test_a_tick_that_outlives_its_lease_loses_the_settle(env):
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow_first(job, ctx):
        runs.append(ctx.tick_id)
        if ctx.tick_id == "slow":
            started.set()
            release.wait(10)

    env.registry.register("slow_first", slow_first)
    job = env.add({"job_type": "slow_first", "schedule_at": iso(T0)})
    result = {}
    slow = threading.Thread(target=lambda: result.setdefault("m", env.engine.run_tick(now=T0, tick_id="slow").tick.metrics))
    slow.start()
    assert started.wait(5)
    late = T0 + timedelta(seconds=301)
    fast = env.engine.run_tick(now=late, tick_id="fast").tick.metrics
    assert (fast.jobs_recovered, fast.jobs_succeeded, fast.lease_lost) == (1, 1, 0)
    release.set()
    slow.join(10)
    assert result["m"].lease_lost == 1
    stored = env.store.get_job(job.id)
    assert stored.status is JobStatus.COMPLETED and stored.lease_epoch == 2
    outcomes = sorted((e.tick_id, e.outcome.value) for e in env.store.list_executions(job_id=job.id))
    assert outcomes == [("fast", "succeeded"), ("slow", "lease_lost")]
    assert runs == ["slow", "fast"]


def test_jobs_not_started_within_the_budget_are_deferred_and_stay_due(rec):
    registry = HandlerRegistry()
    registry.register("ok", rec.ok)
    store = MemoryStore()
    ticks = iter([0.0] + [100.0] * 1000)  # the budget is gone right after the claim
    settings = SETTINGS.replace(tick_budget_seconds=150, job_timeout_seconds=60)
    engine = TickEngine(store, registry, settings, monotonic=lambda: next(ticks))
    for i in range(3):
        store.add_job(make_job(f"j{i}", job_type="ok"))
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    assert (metrics.jobs_due, metrics.jobs_executed, metrics.jobs_deferred) == (3, 0, 3)
    assert rec.calls == []
    for i in range(3):
        job = store.get_job(f"j{i}")
        assert job.status is JobStatus.PENDING and job.attempts == 0 and job.lease_owner is None
    assert store.count_due(T0) == 3


def test_batches_continue_until_nothing_is_due(env, rec):
    engine = TickEngine(env.store, env.registry, SETTINGS.replace(claim_batch_size=7))
    for i in range(30):
        env.store.add_job(make_job(f"j{i:02d}", job_type="ok"))
    metrics = engine.run_tick(now=T0, tick_id="t").tick.metrics
    assert (metrics.jobs_due, metrics.jobs_executed, metrics.jobs_deferred) == (30, 30, 0)
    assert sorted(c[0] for c in rec.calls) == [f"j{i:02d}" for i in range(30)]


def test_concurrent_ticks_over_500_jobs_run_each_exactly_once(env, rec):
    for i in range(500):
        env.store.add_job(make_job(f"j{i:03d}", job_type="ok"))
    engines = [TickEngine(env.store, env.registry, SETTINGS.replace(claim_batch_size=25)) for _ in range(4)]
    threads = [threading.Thread(target=e.run_tick, kwargs={"now": T0, "tick_id": f"t{i}"}) for i, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c[0] for c in rec.calls) == [f"j{i:03d}" for i in range(500)]
    assert env.store.count_by_status()["completed"] == 500


def test_stored_jobs_that_cannot_be_decoded_are_counted_once_per_tick_and_the_rest_run(tmp_path):
    import json as _json

    from storage.jsonfile import JsonFileStore

    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    for n in range(5):
        store.add_job(make_job(f"good-{n}", due_in=-5 - n))
    doc = _json.loads(store.path.read_text())
    doc.pop("generation", None)  # a hand edit: two records no version of crontick wrote
    doc["jobs"]["bad-misfire"] = make_job("bad-misfire", due_in=-50).to_dict() | {"misfire": "bogus"}
    doc["jobs"]["no-type"] = {k: v for k, v in make_job("no-type", due_in=-60).to_dict().items() if k != "job_type"}
    store.path.write_text(_json.dumps(doc))
    registry = HandlerRegistry()
    registry.register("log", lambda job, ctx: None)
    engine = TickEngine(store, registry, Settings(environment="test", auth_mode="disabled", storage="json", claim_batch_size=2))
    metrics = engine.run_tick(now=T0, tick_id="t1").tick.metrics
    # Three batches of two met the same two unreadable records: counted once each.
    assert (metrics.jobs_succeeded, metrics.jobs_unreadable, metrics.jobs_failed) == (5, 2, 0)
    assert {job_id: store.get_job(job_id).status for job_id in (f"good-{n}" for n in range(5))} == dict.fromkeys((f"good-{n}" for n in range(5)), JobStatus.COMPLETED)


def test_job_lines_are_one_info_record_a_batch_and_a_warning_each_failure(env, caplog):
    """Each settled job still gets a log line of its own (web/logs.py writes each
    ``json_lines`` entry as a line); the successes of a batch share one record."""
    ok = [env.add({"id": f"ok-{i}", "job_type": "ok", "schedule_at": iso(T0)}) for i in range(3)]
    bad = env.add({"id": "bad", "job_type": "fail", "schedule_at": iso(T0), "max_attempts": 1})
    with caplog.at_level(logging.INFO, logger="scheduler.engine"):
        env.tick(tick_id="t-lines")
    batch = [r for r in caplog.records if getattr(r, "json_lines", None) is not None]
    assert len(batch) == 1 and batch[0].levelno == logging.INFO
    assert batch[0].json_fields == {"action": "jobs_settled", "tick_id": "t-lines"}
    assert batch[0].getMessage() == "3 job(s) settled"
    assert sorted(line["job_id"] for line in batch[0].json_lines) == [job.id for job in ok]
    assert batch[0].json_lines[0] == {
        "action": "job_settled", "tick_id": "t-lines", "job_id": batch[0].json_lines[0]["job_id"], "job_type": "ok", "attempt": 1,
        "duration_ms": batch[0].json_lines[0]["duration_ms"], "outcome": "succeeded", "error": None, "message": "Job succeeded",
    }
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING and r.json_fields.get("action") == "job_settled"]
    assert warning.getMessage() == "Job dead"
    assert (warning.json_fields["job_id"], warning.json_fields["outcome"], warning.json_fields["error"]) == (bad.id, "dead", "RuntimeError: boom")


def test_no_job_line_record_when_info_is_off(env, caplog):
    env.add({"job_type": "ok", "schedule_at": iso(T0)})
    with caplog.at_level(logging.WARNING, logger="scheduler.engine"):
        assert env.tick().jobs_succeeded == 1
    assert [r for r in caplog.records if r.name == "scheduler.engine"] == []
