"""The table stores' fast codec (storage/table.py) is exactly the model's to_dict/from_dict.

The memory and JSON stores convert every claimed and settled job with ``job_data`` /
``job_from_data`` instead of ``Job.to_dict`` / ``Job.from_dict``; a field added to the
model that the fast path gets wrong fails here, field by field.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.model import AuditEntry, Execution, Job, JobStatus, Misfire, Outcome, Overlap, Source, to_iso
from storage import table
from storage.table import _iso, execution_data, job_data, job_from_data
from tests.support.clock import T0
from tests.support.jobs import make_job


def every_field_set() -> Job:
    """A job whose every field differs from its default (so that no field is skipped unseen;
    the codec does not care that it has three schedules)."""
    job = make_job(
        "full", status=JobStatus.RUNNING, cron="*/5 * * * *", schedule_at=T0 - timedelta(days=1), interval_seconds=60, timezone="Europe/Paris",
        misfire=Misfire.RUN_ALL, misfire_grace_seconds=7, overlap=Overlap.BUFFER_ALL, max_attempts=9, timeout_seconds=2.5,
        dst_gap="skip", dst_repeat="both", jitter_seconds=3, starts_at=T0 - timedelta(days=2), ends_at=T0 + timedelta(days=2),
        max_runs=12, pause_on_failure=True, catch_up_window_seconds=600, run_count=4, note="n", backfill_of="parent",
        attempts=2, last_run_at=T0 - timedelta(minutes=5), last_outcome="failed", last_error="boom", created_by="ops@x",
        idempotency_key="key", lease_owner="tick-1", lease_until=T0 + timedelta(seconds=300), lease_epoch=5,
        audit=(AuditEntry(T0, "ops@x", "edit", "cron", "why"), AuditEntry(T0 + timedelta(seconds=1), None, "pause")),
        payload={"deep": [1, {"x": None}], "f": 1.5},
    )
    defaults = Job("d", "log", {}, JobStatus.PENDING, None, None, T0, T0)
    same = [f.name for f in dataclasses.fields(Job) if getattr(job, f.name) == getattr(defaults, f.name) and f.name not in ("id", "job_type", "created_at")]
    assert same == [], f"every_field_set() leaves these at their default: {same}"
    return job


def test_job_data_is_to_dict_field_for_field():
    job = every_field_set()
    assert job_data(job) == job.to_dict()
    assert list(job_data(job)) == list(job.to_dict())  # the same key order in the file
    plain = make_job("plain")
    assert job_data(plain) == plain.to_dict()


def test_job_from_data_is_from_dict():
    for job in (every_field_set(), make_job("plain")):
        data = job.to_dict()
        decoded = job_from_data(data)
        assert decoded == Job.from_dict(data) == job
        assert decoded.next_run_at.tzinfo is timezone.utc


@settings(max_examples=500, database=None)
@given(st.datetimes(timezones=st.just(timezone.utc)) | st.datetimes(timezones=st.timezones()))
def test_the_fast_timestamp_is_to_iso(value):
    """orjson writes the UTC ones (and leaves out a zero fraction): fixed width all the same."""
    try:
        expected = to_iso(value)
    except OverflowError:  # a local time that is outside the calendar in UTC
        return
    table._ISO_MEMO.clear()
    assert _iso(value) == expected and len(expected) == 27  # formatted
    assert _iso(value) == expected  # remembered (UTC) or formatted again


@pytest.mark.parametrize("value", [datetime(1, 1, 1, tzinfo=timezone.utc), datetime(3, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), T0, T0 + timedelta(microseconds=1)])
def test_the_fast_timestamp_at_the_ends_of_the_calendar(value):
    assert _iso(value) == to_iso(value)


def test_the_timestamp_memo_is_bounded_and_keeps_utc_only():
    table._ISO_MEMO.clear()
    paris = ZoneInfo("Europe/Paris")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=paris)  # the hour Paris lives twice
    second = first.replace(fold=1)
    assert first == second and hash(first) == hash(second)  # why zoned datetimes are not remembered
    assert (_iso(first), _iso(second)) == ("2026-10-25T00:30:00.000000Z", "2026-10-25T01:30:00.000000Z")
    assert table._ISO_MEMO == {}
    for i in range(table._ISO_MEMO_SIZE + 10):
        value = T0 + timedelta(microseconds=i)
        assert _iso(value) == to_iso(value)
    assert 0 < len(table._ISO_MEMO) <= table._ISO_MEMO_SIZE


def test_a_non_utc_datetime_is_written_as_to_dict_writes_it():
    job = make_job("paris", next_run_at=T0.astimezone(ZoneInfo("Europe/Paris")))
    assert job_data(job)["next_run_at"] == job.to_dict()["next_run_at"] == "2026-01-05T12:00:00.000000Z"


def test_an_older_record_without_some_fields_takes_from_dicts_defaults():
    data = make_job("old").to_dict()
    for name in ("misfire", "overlap", "audit", "dst_gap", "run_count"):
        del data[name]
    assert job_from_data(data) == Job.from_dict(data)


@pytest.mark.parametrize(
    ("change", "error"),
    [({"status": "bogus"}, ValueError), ({"misfire": "nope"}, ValueError), ({"next_run_at": "not a time"}, ValueError), ({"next_run_at": "2026-01-01T00:00:00"}, ValueError)],
    ids=["status", "misfire", "time", "naive"],
)
def test_a_bad_record_raises_what_from_dict_raises(change, error):
    data = make_job("bad").to_dict() | change
    with pytest.raises(error):
        Job.from_dict(data)
    with pytest.raises(error):
        job_from_data(data)


def test_execution_data_is_to_dict():
    execution = Execution("a1", T0, 2, "tick-1", Outcome.FAILED, T0 + timedelta(seconds=1), 12.5, "boom", Source.CLOUD_TASKS, {"name": "t"})
    assert execution_data(execution) == execution.to_dict()
    bare = dataclasses.replace(execution, task=None, error=None)
    assert execution_data(bare) == bare.to_dict()


def test_job_replace_is_dataclasses_replace():
    """Job.replace reads the fields in one call (scheduler/model.py); same result, same refusal."""
    job = every_field_set()
    changes = {"status": JobStatus.PENDING, "lease_owner": None, "attempts": 0, "audit": ()}
    assert job.replace(**changes) == dataclasses.replace(job, **changes)
    assert job.replace() == job and job.replace() is not job
    with pytest.raises(TypeError, match="'colour'"):
        job.replace(colour="red")
    with pytest.raises(TypeError, match="'colour'"):
        job.replace(status=JobStatus.PENDING, colour="red")
    # Every field on its own, and the same set of names in another order (its own function).
    for name, value in dataclasses.asdict(make_job("other")).items():
        value = tuple(value) if name == "audit" else value
        assert job.replace(**{name: value}) == dataclasses.replace(job, **{name: value}), name
    reordered = dict(reversed(list(changes.items())))
    assert job.replace(**reordered) == job.replace(**changes) == dataclasses.replace(job, **changes)


def test_job_from_values_is_the_dataclass_constructor():
    """The fast positional constructor (scheduler/model.py) builds the same frozen job from
    the same arguments, and refuses what the generated __init__ refuses."""
    from scheduler.model import positional_constructor, _job_values, job_from_values

    for job in (every_field_set(), make_job("plain")):
        values = _job_values(job)
        built = job_from_values(*values)
        assert built == Job(*values) == job and built is not job and type(built) is Job
        assert [getattr(built, f.name) for f in dataclasses.fields(Job)] == list(values)
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.status = JobStatus.PAUSED
    with pytest.raises(TypeError):
        job_from_values(*_job_values(make_job("short"))[:-1])
    with pytest.raises(TypeError, match="not a frozen slots dataclass"):
        positional_constructor(dataclasses.make_dataclass("Loose", ["a"]))


def test_the_run_path_constructors_are_the_dataclass_constructors():
    """The engine builds each run's Execution and HandlerContext with positional constructors."""
    import threading

    from scheduler.context import HandlerContext, context_from_values
    from scheduler.model import execution_from_values

    values = ("j1", T0, 2, "tick", Outcome.SUCCEEDED, T0 + timedelta(seconds=1), 1.5, None, Source.CLOUD_TASKS, {"name": "t"})
    built = execution_from_values(*values)
    assert built == Execution(*values) and type(built) is Execution
    cancelled = threading.Event()
    ctx = context_from_values("tick", 2, T0, 12.5, cancelled)
    assert ctx == HandlerContext(tick_id="tick", attempt=2, fire_at=T0, deadline=12.5, cancelled=cancelled) and ctx.cancelled is cancelled
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.attempt = 3
    with pytest.raises(TypeError):
        context_from_values("tick", 2, T0, 12.5)  # every field is required, the default factory's too
