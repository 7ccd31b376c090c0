"""Bounded storage: finished jobs go ``SCHEDULER_RETENTION_DAYS`` after they finished.

The engine's hourly housekeeping (storage/retention.py), 60 days of minutely ticks on
the JSON store (bench/retention_sim.py, which ``make bench`` figure 13 runs too), the
setting, and the Firestore TTL on finished jobs as setup-scheduler.sh applies it,
against the recording gcloud. The store verb itself, ``delete_finished_jobs``, is in
the contract suite (tests/contract) on every store.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from bench.retention_sim import simulate
from handlers.registry import HandlerRegistry
from scheduler.engine import TickEngine
from scheduler.errors import ConfigError, JobNotFound, StoreUnavailable
from scheduler.model import JobStatus
from scheduler.settings import Settings
from storage.jsonfile import JsonFileStore
from storage.memory import MemoryStore
from storage.retention import INTERVAL, LIMIT, Retention
from tests.deploy.conftest import PROJECT, Cloud
from tests.support.clock import T0
from tests.support.jobs import make_job

DAY = timedelta(days=1)


class SpyStore(MemoryStore):
    """A memory store recording delete_finished_jobs calls (and failing them on demand)."""

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list[tuple] = []
        self.fail = False

    def delete_finished_jobs(self, *, before, limit):
        self.deletes.append((before, limit))
        if self.fail:
            raise StoreUnavailable("store down (injected)")
        return super().delete_finished_jobs(before=before, limit=limit)


def engine_for(store, **settings) -> TickEngine:
    registry = HandlerRegistry()
    registry.register("log", lambda job, ctx: None)
    return TickEngine(store, registry, Settings(environment="test", auth_mode="disabled", storage="memory", **settings))


# -- the setting -------------------------------------------------------------------


def test_the_setting_defaults_to_30_days_and_refuses_what_is_not_a_whole_number_of_days():
    base = {"ENVIRONMENT": "test", "AUTH_MODE": "disabled"}
    assert Settings.from_env(base).retention_days == 30
    assert Settings.from_env(base | {"SCHEDULER_RETENTION_DAYS": "7"}).retention_days == 7
    assert Settings.from_env(base | {"SCHEDULER_RETENTION_DAYS": "0"}).retention_days == 0
    with pytest.raises(ConfigError, match=r"^SCHEDULER_RETENTION_DAYS='-1': must be at least 0$"):
        Settings.from_env(base | {"SCHEDULER_RETENTION_DAYS": "-1"})
    with pytest.raises(ConfigError, match=r"^SCHEDULER_RETENTION_DAYS='1.5': must be an integer$"):
        Settings.from_env(base | {"SCHEDULER_RETENTION_DAYS": "1.5"})


# -- the housekeeping -----------------------------------------------------------------


def test_it_runs_an_hour_after_the_first_tick_then_at_most_hourly_by_tick_time():
    store = SpyStore()
    retention = Retention(store, days=30)
    assert retention.maybe_run(T0) is None  # the first tick only starts the clock
    assert retention.maybe_run(T0 + timedelta(minutes=59)) is None
    assert store.deletes == []
    assert retention.maybe_run(T0 + INTERVAL) == 0
    assert store.deletes == [(T0 + INTERVAL - 30 * DAY, LIMIT)]
    assert retention.maybe_run(T0 + INTERVAL + timedelta(minutes=59)) is None
    assert retention.maybe_run(T0 + 2 * INTERVAL) == 0
    assert retention.maybe_run(T0 + timedelta(minutes=30)) == 0  # the clock moved back: run, and start again from there
    assert retention.maybe_run(T0 + timedelta(minutes=31)) is None
    assert [before for before, _ in store.deletes] == [T0 + n * INTERVAL - 30 * DAY for n in (1, 2)] + [T0 + timedelta(minutes=30) - 30 * DAY]
    assert retention.runs == 3


def test_tick_times_at_the_ends_of_the_calendar_neither_overflow_nor_delete_anything_impossible():
    store = SpyStore()
    last_minute = datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc)
    retention = Retention(store, days=30)
    assert retention.maybe_run(last_minute - timedelta(minutes=30)) is None  # its window would end past year 9999
    assert retention.maybe_run(last_minute) is None  # inside that window, which ends at the calendar's end
    assert store.deletes == []
    assert retention.maybe_run(T0) == 0  # the clock moved back: a normal run
    assert store.deletes == [(T0 - 30 * DAY, LIMIT)]
    first_day = datetime(1, 1, 2, tzinfo=timezone.utc)
    early = Retention(store, days=30)
    assert early.maybe_run(first_day) is None
    assert early.maybe_run(first_day + INTERVAL) is None  # 30 days before it is before year 1: nothing to delete
    assert store.deletes == [(T0 - 30 * DAY, LIMIT)] and early.runs == 0


def test_the_engine_ticks_at_the_last_minute_of_the_calendar(tmp_path):
    engine = engine_for(JsonFileStore(tmp_path / "jobs.json"))
    last_minute = datetime(9999, 12, 31, 23, 50, tzinfo=timezone.utc)
    engine.store.open()
    engine.store.add_job(make_job("last-call", due_in=0, now=last_minute))
    assert engine.run_tick(now=last_minute - INTERVAL, tick_id="t1").tick.metrics.jobs_due == 0
    assert engine.run_tick(now=last_minute, tick_id="t2").tick.metrics.jobs_succeeded == 1


def test_zero_days_keeps_everything():
    store = SpyStore()
    retention = Retention(store, days=0)
    for hours in range(5):
        assert retention.maybe_run(T0 + hours * INTERVAL) is None
    assert store.deletes == [] and retention.runs == 0


def test_the_engine_deletes_old_finished_jobs_an_hour_into_its_life_and_keeps_the_rest():
    store = SpyStore()
    old = T0 - 31 * DAY
    store.restore_jobs([
        make_job("done-old", status=JobStatus.COMPLETED, next_run_at=None, updated_at=old),
        make_job("cancelled-old", status=JobStatus.CANCELLED, next_run_at=None, updated_at=old),
        make_job("failed-old", status=JobStatus.FAILED, next_run_at=None, updated_at=old),  # a dead letter: kept
        make_job("done-recent", status=JobStatus.COMPLETED, next_run_at=None, updated_at=T0 - 29 * DAY),
    ])
    engine = engine_for(store)  # SCHEDULER_RETENTION_DAYS' default: 30
    engine.run_tick(now=T0, tick_id="t0")
    assert len(store.list_jobs()) == 4 and store.deletes == []
    engine.run_tick(now=T0 + INTERVAL, tick_id="t1")
    assert sorted(j.id for j in store.list_jobs()) == ["done-recent", "failed-old"]
    assert store.deletes == [(T0 + INTERVAL - 30 * DAY, LIMIT)]
    for job_id in ("done-old", "cancelled-old"):
        with pytest.raises(JobNotFound):
            store.get_job(job_id)


def test_a_store_error_is_logged_and_the_tick_goes_on(caplog):
    store = SpyStore()
    store.add_job(make_job("a1", due_in=3600 * 2 - 1))
    store.fail = True
    engine = engine_for(store)
    engine.run_tick(now=T0, tick_id="t0")
    with caplog.at_level(logging.WARNING, logger="storage.retention"):
        outcome = engine.run_tick(now=T0 + INTERVAL, tick_id="t1")
    assert outcome.tick.metrics.jobs_due == 0 and len(store.deletes) == 1
    failures = [r for r in caplog.records if getattr(r, "json_fields", {}).get("action") == "retention_failed"]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert failures[0].json_fields["error"] == "store down (injected)"
    store.fail = False
    assert engine.run_tick(now=T0 + 2 * INTERVAL, tick_id="t2").tick.metrics.jobs_succeeded == 1  # an hour later: both again
    assert len(store.deletes) == 2


def test_on_the_json_store_a_run_with_nothing_old_enough_writes_nothing(tmp_path):
    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    store.restore_jobs([make_job("done-recent", status=JobStatus.COMPLETED, next_run_at=None, updated_at=T0)])
    writes = store.fsynced_writes
    assert store.delete_finished_jobs(before=T0, limit=LIMIT) == 0
    assert store.fsynced_writes == writes
    assert store.delete_finished_jobs(before=T0 + timedelta(microseconds=1), limit=LIMIT) == 1
    assert store.fsynced_writes == writes + 1


# -- 60 days on the JSON store ----------------------------------------------------------


@pytest.mark.parametrize("days", [3, pytest.param(60, marks=pytest.mark.slow)], ids=["3-days", "60-days"])
def test_days_of_minutely_ticks_keep_the_json_file_bounded(tmp_path, days):
    """``days`` x 1,440 ticks, one new one-off job each (added an hour at a time, due at the
    hour's last tick: bench/retention_sim.py says why), retention of one day so that the run
    reaches its steady state on day 2: the file then holds one day of finished jobs plus the
    hour not yet deleted; idle ticks write nothing. 60 days take about a minute on 2 cores
    (marked slow: ``make test`` runs it, ``make check`` runs the 3-day one)."""
    sim = simulate(tmp_path / "jobs.json", days=days, retention_days=1)
    hours, ticks = 24 * days, 1_440 * days
    assert (sim.ticks, sim.jobs_added, sim.jobs_run) == (ticks, ticks, ticks)
    # Retention first runs an hour after the first tick, then hourly; from hour 25 on each run
    # finds the hour of jobs finished just over a day before (60 jobs).
    assert sim.retention_runs == hours - 1
    assert sim.deleting_runs == hours - 25 and sim.jobs_deleted == 60 * (hours - 25)
    # Writes: each hour's add, its due tick's claim and settle, each deleting run; nothing else:
    # every other tick found nothing due and nothing to delete, and wrote nothing.
    assert sim.unexpected_writes == []
    assert sim.writes == hours + 2 * hours + sim.deleting_runs
    assert sim.idle_ticks == ticks - hours - sim.deleting_runs
    # Bounded: from day 2 on, 24 hours of finished jobs + the one deleted at the next hour.
    assert sim.jobs_by_day[0] == 1_440 and set(sim.jobs_by_day[1:]) == {1_500}
    assert max(sim.size_by_day) < 2_000_000, sim.size_by_day  # about 1.1 KB a job (job + execution record)
    if days >= 20:
        # Flat once the tick records (200 kept, one per hour that ran jobs) have filled up, on day 9.
        steady = sim.size_by_day[9:]
        assert max(steady) - min(steady) <= 0.001 * max(steady), steady


# -- Firestore's TTL on finished jobs, as setup-scheduler.sh applies it ------------------


def _ttl(group: str) -> list[str]:
    return ["firestore", "fields", "ttls", "update", "expire_at", f"--collection-group={group}", "--database=(default)", "--enable-ttl", f"--project={PROJECT}"]


def _retention_index(group: str) -> list[str]:
    return [
        "firestore", "indexes", "composite", "create", f"--collection-group={group}", "--database=(default)", "--query-scope=collection",
        "--field-config=field-path=status,order=ascending", "--field-config=field-path=updated_at,order=ascending", f"--project={PROJECT}",
    ]


@pytest.mark.parametrize(("collection", "env"), [("scheduler_jobs", {}), ("qa_jobs", {"FIRESTORE_JOBS_COLLECTION": "qa_jobs"})], ids=["default", "configured"])
def test_setup_scheduler_turns_on_the_ttl_of_finished_jobs_and_their_retention_index(tmp_path, collection, env):
    cloud = Cloud(tmp_path)
    result = cloud.run("setup-scheduler.sh", "setup", env={"SCHEDULER_STORAGE": "firestore", **env})
    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    assert calls.count(_ttl(collection)) == 1
    assert calls.count(_retention_index(collection)) == 1
    assert ["expire_at", collection] in cloud.load()["ttls"]
    again = cloud.run("setup-scheduler.sh", "setup", env={"SCHEDULER_STORAGE": "firestore", **env})  # idempotent
    assert again.returncode == 0, again.stderr
    assert cloud.load()["ttls"].count(["expire_at", collection]) == 1
