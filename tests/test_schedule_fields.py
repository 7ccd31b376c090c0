"""Schedules, second round: DST policy through the engine, jitter, bounds, max_runs,
pause_on_failure, the catch-up window; and the one schema everything derives from."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.registry import HandlerRegistry
from main import create_app
from scheduler import schema
from scheduler.engine import TickEngine
from scheduler.jobspec import build_job, job_problems
from scheduler.model import Job, JobStatus
from scheduler.service import JobService
from scheduler.settings import Settings
from scheduler.timing import jitter_delay
from storage.memory import MemoryStore
from tests.support.clock import FakeClock
from web.openapi import build_openapi

UTC = timezone.utc
SETTINGS = Settings(auth_mode="disabled", retry_base_seconds=1, retry_max_seconds=1, lease_seconds=300, tick_budget_seconds=150, job_timeout_seconds=60)


class World:
    """An engine over a memory store with a fake clock; ``fired`` records ctx.fire_at."""

    def __init__(self, start: datetime) -> None:
        self.clock = FakeClock(start)
        self.store = MemoryStore(history_limit=1000)
        self.fired: list[datetime] = []
        self.fail = False
        registry = HandlerRegistry()
        registry.register("rec", self._record)
        self.engine = TickEngine(self.store, registry, SETTINGS, rng=random.Random(1), clock=self.clock)
        self.service = JobService(self.store, registry, self.clock)

    def _record(self, job, ctx) -> None:
        self.fired.append(ctx.fire_at)
        if self.fail:
            raise RuntimeError("down")

    def add(self, **fields) -> Job:
        return self.service.create({"job_type": "rec", **fields})[0]

    def tick_every(self, seconds: int, until: datetime) -> None:
        n = 0
        while self.clock() < until:
            self.engine.run_tick(now=self.clock(), tick_id=f"t{n}")
            self.clock.advance(seconds)
            n += 1


SWITCH_DAYS = [
    ("Europe/Berlin", datetime(2026, 3, 28, 22, tzinfo=UTC)),  # spring forward 03-29 01:00Z
    ("Europe/Berlin", datetime(2026, 10, 24, 22, tzinfo=UTC)),  # fall back 10-25 01:00Z
    ("America/New_York", datetime(2026, 11, 1, 3, tzinfo=UTC)),  # fall back 11-01 06:00Z
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 12, tzinfo=UTC)),  # spring forward (30 min) 10-03 15:30Z
]


@pytest.mark.parametrize("tz, start", SWITCH_DAYS)
@pytest.mark.parametrize("gap, repeat", [("shift", None), ("skip", "both"), ("shift", "second"), ("skip", "first")])
def test_the_engine_runs_what_the_preview_shows_across_a_switch_day(tz, start, gap, repeat):
    world = World(start)
    job = world.add(cron="*/20 0-4 * * *", timezone=tz, dst_gap=gap, dst_repeat=repeat, misfire="run_all")
    planned = [p.fire_at for p in world.service.planned(job, 40) if p.fire_at is not None and p.fire_at < start + timedelta(hours=12)]
    world.tick_every(60, start + timedelta(hours=12))  # minutely ticks
    assert world.fired == planned
    assert len(planned) >= 12


def test_a_daily_job_skips_the_gap_day_with_dst_gap_skip():
    world = World(datetime(2026, 3, 27, 12, tzinfo=UTC))
    world.add(cron="30 2 * * *", timezone="Europe/Berlin", dst_gap="skip")
    world.tick_every(300, datetime(2026, 3, 31, 12, tzinfo=UTC))
    assert world.fired == [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC), datetime(2026, 3, 31, 0, 30, tzinfo=UTC)]  # none on the 29th


# -- jitter -----------------------------------------------------------------------------------
def test_jitter_is_deterministic_bounded_and_shown_by_the_preview():
    world = World(datetime(2026, 1, 5, 12, tzinfo=UTC))
    job = world.add(cron="*/10 * * * *", jitter_seconds=120, id="jittery")
    delays = [jitter_delay(job, job.fire_at + timedelta(minutes=10 * i)) for i in range(200)]
    assert all(timedelta(0) <= d <= timedelta(seconds=120) for d in delays)
    assert len(set(delays)) > 150  # spread, not constant
    again = dataclasses.replace(job)  # another instance computing the same occurrence agrees
    assert [jitter_delay(again, job.fire_at + timedelta(minutes=10 * i)) for i in range(200)] == delays
    planned = world.service.planned(job, 3)
    assert [p.run_at - p.fire_at for p in planned] == delays[:3]
    assert job.next_run_at == job.fire_at + delays[0]
    end = job.fire_at + timedelta(minutes=35)
    world.tick_every(30, end)
    assert world.fired == [p.fire_at for p in world.service.planned(job, 10) if p.run_at < end]  # handlers see the nominal fire time
    assert len(world.fired) >= 3


def test_jitter_above_half_the_period_is_refused():
    world = World(datetime(2026, 1, 5, 12, tzinfo=UTC))
    with pytest.raises(Exception, match="at most half the period"):
        world.add(cron="*/10 * * * *", jitter_seconds=301)
    with pytest.raises(Exception, match="at most half the period"):
        world.add(interval_seconds=60, jitter_seconds=31)
    assert world.add(interval_seconds=60, jitter_seconds=30).jitter_seconds == 30


# -- bounds ---------------------------------------------------------------------------------------
def test_starts_at_ends_at_and_max_runs():
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    world = World(t0)
    bounded = world.add(id="bounded", interval_seconds=600, starts_at="2026-01-05T13:00:00Z", ends_at="2026-01-05T14:00:00Z")
    assert bounded.next_run_at == datetime(2026, 1, 5, 13, 0, tzinfo=UTC)
    counted = world.add(id="counted", interval_seconds=600, max_runs=3)
    assert counted.to_dict()["runs_remaining"] == 3
    world.tick_every(60, t0 + timedelta(hours=3))
    b = world.store.get_job("bounded")
    c = world.store.get_job("counted")
    assert b.status is JobStatus.COMPLETED and c.status is JobStatus.COMPLETED
    assert b.run_count == 7  # 13:00, 13:10 ... 14:00
    assert c.run_count == 3 and c.to_dict()["runs_remaining"] == 0
    by_job = {}
    for row in world.store.list_executions(limit=1000):
        by_job.setdefault(row.job_id, []).append(row.fire_at)
    assert min(by_job["bounded"]) == datetime(2026, 1, 5, 13, tzinfo=UTC) and max(by_job["bounded"]) == datetime(2026, 1, 5, 14, tzinfo=UTC)


def test_ends_at_before_starts_at_is_refused():
    world = World(datetime(2026, 1, 5, 12, tzinfo=UTC))
    with pytest.raises(Exception, match="ends_at must be after starts_at"):
        world.add(interval_seconds=60, starts_at="2026-02-01T00:00:00Z", ends_at="2026-01-01T00:00:00Z")


# -- pause on failure ------------------------------------------------------------------------------
def test_pause_on_failure_pauses_with_a_note_and_resumes():
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    world = World(t0)
    world.fail = True
    world.add(id="fragile", interval_seconds=3600, max_attempts=2, pause_on_failure=True)
    world.tick_every(30, t0 + timedelta(hours=1, minutes=2))
    job = world.store.get_job("fragile")
    assert job.status is JobStatus.PAUSED and job.next_run_at is None
    assert job.note.startswith("paused by crontick after 2 failed attempt(s): RuntimeError: down")
    assert job.audit[-1].actor == "crontick" and job.audit[-1].action == "pause"
    world.fail = False
    resumed = world.service.resume("fragile", actor="ops", note="fixed the upstream")
    assert resumed.status is JobStatus.PENDING and resumed.note == "fixed the upstream"


# -- catch-up window ---------------------------------------------------------------------------------
def test_the_catch_up_window_bounds_run_all_by_time():
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    world = World(t0)
    world.add(id="hourly-all", cron="0 * * * *", misfire="run_all", catch_up_window_seconds=3 * 3600)
    world.add(id="hourly-count", cron="0 * * * *", misfire="run_all")
    world.clock.set(t0 + timedelta(hours=10, minutes=5))  # 10 missed hours
    world.engine.run_tick(now=world.clock(), tick_id="late")
    by_job = {}
    for row in world.store.list_executions(limit=1000):
        by_job.setdefault(row.job_id, []).append(row.fire_at)
    assert len(by_job["hourly-count"]) == 10
    assert sorted(by_job["hourly-all"]) == [t0 + timedelta(hours=h) for h in (8, 9, 10)]  # 07:05 is outside the 3 h window


# -- one schema -----------------------------------------------------------------------------------------
def test_the_job_model_has_exactly_the_schema_fields_in_order():
    assert tuple(f.name for f in dataclasses.fields(Job)) == schema.FIELD_NAMES


def test_openapi_components_derive_from_the_schema():
    components = build_openapi(["rec"])["components"]["schemas"]
    assert set(components["Job"]["properties"]) == set(schema.FIELD_NAMES) | set(schema.DERIVED)
    assert set(components["JobCreate"]["properties"]) == schema.CREATE_FIELDS
    assert set(components["JobPatch"]["properties"]) == schema.PATCH_FIELDS
    for spec in schema.FIELDS:
        if spec.name not in schema.CREATE_FIELDS or spec.name == "job_type":
            continue
        prop = components["JobCreate"]["properties"][spec.name]
        assert prop.get("minimum") == spec.minimum and prop.get("maximum") == spec.maximum, spec.name
        assert prop.get("enum") == (list(spec.choices) or None), spec.name
        assert prop["description"] == spec.doc


def _bad_values(spec: schema.FieldSpec) -> list:
    if spec.kind in ("integer", "number") and spec.maximum is not None:
        return [spec.maximum + 1, "7"]
    if spec.kind == "choice":
        return ["bogus"]
    if spec.kind == "boolean":
        return ["yes"]
    if spec.kind == "string" and spec.max_length is not None:
        return ["x" * (spec.max_length + 1)]
    return []


@pytest.mark.parametrize("spec", [s for s in schema.FIELDS if _bad_values(s)], ids=lambda s: s.name)
def test_the_stored_job_check_derives_from_the_schema(spec):
    """The validator behind import and the stores' decoding refuses each field's bad values by the schema."""
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    good = build_job({"job_type": "rec", "interval_seconds": 600}, known_types=["rec"], now=t0)
    assert job_problems(good) == []
    for value in _bad_values(spec):
        problems = job_problems(dataclasses.replace(good, **{spec.name: value}))
        assert spec.name in [p.field for p in problems], (spec.name, value, problems)


def test_every_create_field_is_accepted_with_its_example_and_stored_on_every_layer(tmp_path):
    from tests.support.handlers import register

    registry = HandlerRegistry()
    registry.register("http_request", lambda job, ctx: None)
    register(registry)
    app = create_app({"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(tmp_path / "j.json")}, registry=registry, clock=FakeClock(datetime(2026, 1, 5, 12, tzinfo=UTC)))
    body = {spec.name: spec.example for spec in schema.FIELDS if spec.create and spec.example is not None and spec.name not in ("schedule_at", "interval_seconds")}
    body |= {"dst_gap": "skip", "dst_repeat": "both", "pause_on_failure": True, "misfire": "run_all", "overlap": "buffer_one", "max_attempts": 5, "misfire_grace_seconds": 30}
    response = app.test_client().post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.get_json()
    stored = response.get_json()
    for name, value in body.items():
        if name in ("starts_at", "ends_at"):
            assert stored[name].startswith(value[:19]), name
        else:
            assert stored[name] == value, name


@settings(max_examples=40, deadline=None)
@given(
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns"]),
    expr=st.sampled_from(["*/30 * * * *", "30 2 * * *", "0 3 * * *", "15 1,2 * * *", "*/20 0-4 * * *"]),
    start=st.sampled_from([datetime(2026, 3, 7, 18, tzinfo=UTC), datetime(2026, 3, 28, 20, tzinfo=UTC), datetime(2026, 4, 4, 8, tzinfo=UTC),
                           datetime(2026, 9, 26, 8, tzinfo=UTC), datetime(2026, 10, 3, 10, tzinfo=UTC), datetime(2026, 10, 24, 20, tzinfo=UTC),
                           datetime(2026, 10, 31, 22, tzinfo=UTC)]),
    gap=st.sampled_from(["shift", "skip"]),
    repeat=st.sampled_from([None, "first", "second", "both"]),
)
def test_property_the_engine_agrees_with_the_preview(tz, expr, start, gap, repeat):
    world = World(start)
    job = world.add(cron=expr, timezone=tz, dst_gap=gap, dst_repeat=repeat, misfire="run_all")
    end = start + timedelta(hours=14)
    planned = [p.fire_at for p in world.service.planned(job, 100) if p.fire_at is not None and p.fire_at < end]
    world.tick_every(300, end)
    assert world.fired == planned


def test_patching_jitter_bounds_or_dst_plans_the_next_run_again():
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    world = World(t0)
    job = world.add(id="p", cron="*/10 * * * *", jitter_seconds=200)
    assert job.next_run_at == job.fire_at + jitter_delay(job, job.fire_at)
    unjittered = world.service.patch("p", {"jitter_seconds": 0})
    assert unjittered.next_run_at == unjittered.fire_at == datetime(2026, 1, 5, 12, 10, tzinfo=UTC)
    later = world.service.patch("p", {"starts_at": "2026-01-06T00:00:00Z"})
    assert later.next_run_at == later.fire_at == datetime(2026, 1, 6, 0, 0, tzinfo=UTC)
    with pytest.raises(Exception, match="ends_at"):
        world.service.patch("p", {"ends_at": "2026-01-05T13:00:00Z"})  # before starts_at
