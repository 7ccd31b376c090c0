"""The job model: what a stored job is, and the records a tick produces.

A :class:`Job` is immutable; every change makes a new one with
:func:`dataclasses.replace`. All datetimes are timezone-aware UTC; naive values
are refused at the input boundary (:mod:`scheduler.jobspec`) and never reach
this module.

Lifecycle::

    pending ──claim──▶ running ──settle──▶ pending    (recurring, or retry with backoff)
       ▲  │                │      └──────▶ completed  (one-off succeeded)
       │  │                │      └──────▶ failed     (attempts exhausted: dead letter)
       │  └─pause──▶ paused│
       └────resume─────┘   └─lease expires─▶ claimable again ("recovered")
    any non-final ──cancel──▶ cancelled

Fields that drive the engine:

``next_run_at``
    When the job is next due. ``None`` once it is final.
``fire_at``
    The nominal fire time of the occurrence the job is waiting to run. Equal to
    ``next_run_at`` except while a failed occurrence backs off before a retry,
    when ``next_run_at`` is later. Handlers see it as ``ctx.fire_at``.
``attempts``
    Attempts made at the current occurrence. A claim increments it (so an
    attempt whose process died still counts); a success resets it to 0.
``lease_owner`` / ``lease_until`` / ``lease_epoch``
    The fence. A claim sets owner and expiry and increments the epoch; a settle
    is applied only if owner and epoch still match what the claim set.
``audit``
    The latest :data:`AUDIT_LIMIT` operator changes (create, edit, pause, resume,
    run now, cancel, release), oldest first, each with its actor and time. Written
    by :class:`~scheduler.service.JobService` inside the same atomic update as the
    change itself; ticks carry it through unchanged.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class Misfire(StrEnum):
    """What a recurring job does when a tick finds it overdue by more than a period."""

    RUN_ONCE = "run_once"  # run once now, then move to the next future fire time
    SKIP = "skip"  # later than misfire_grace_seconds: do not run, move on
    RUN_ALL = "run_all"  # run every missed fire time (at most MAX_CATCH_UP), in order


class Overlap(StrEnum):
    """What a recurring job does with fire times that come while its previous run is still going.

    ``misfire`` decides fire times missed while *no* run was going (the service was
    down, a tick came late); ``overlap`` decides those that pass *during* a run.
    """

    SKIP = "skip"  # drop them, each recorded in history as skipped_overlap
    BUFFER_ONE = "buffer_one"  # one catch-up run right after the current one settles
    BUFFER_ALL = "buffer_all"  # each, oldest first, one run per occurrence (at most MAX_CATCH_UP)
    REPLACE = "replace"  # the new occurrence takes the lease; the running handler is cancelled


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # handler raised or timed out; retried while attempts remain
    DEAD = "dead"  # failed and out of attempts: the job is now ``failed``
    MISFIRED = "misfired"  # skipped by the ``skip`` misfire policy, not run
    DEFERRED = "deferred"  # claimed but not started before the tick budget ran out
    LEASE_LOST = "lease_lost"  # ran, but another tick took the lease meanwhile
    SKIPPED_OVERLAP = "skipped_overlap"  # fired while the previous run was still going (overlap=skip)


class Source(StrEnum):
    """Which path ran a tick (shadow mode compares them)."""

    CLOUD_SCHEDULER = "cloud_scheduler"
    LEGACY_LOOP = "legacy_loop"
    MANUAL = "manual"
    CLOUD_TASKS = "cloud_tasks"  # a dispatched run, delivered to /tasks/run
    BACKFILL = "backfill"  # a backfilled occurrence (a job with backfill_of), whichever path ran it


MAX_CATCH_UP = 100
AUDIT_LIMIT = 20  # audit entries kept on a job, newest last


def utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; refuse naive datetimes (a programming error here)."""
    if value.tzinfo is timezone.utc:  # the common case, on every store read and write
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}; crontick only handles aware datetimes")
    return value.astimezone(timezone.utc)


def to_iso(value: datetime | None) -> str | None:
    """Fixed-width RFC 3339 in UTC, so that stored timestamps also sort as strings."""
    # isoformat pads the year to 4 digits, where strftime("%Y") gives "3" for year 3.
    return None if value is None else utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else utc(datetime.fromisoformat(value))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change an operator made to a job: when, who (``actor``: the API or console
    identity, the Chat sender; ``None`` when the caller named nobody), what (``action``:
    ``create``, ``edit``, ``pause``, ``resume``, ``run_now``, ``cancel``, ``release``),
    the verb's own detail (fields edited, ``catch_up``, ``force``) and the operator's ``note``."""

    at: datetime
    actor: str | None
    action: str
    detail: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"at": to_iso(self.at), "actor": self.actor, "action": self.action, "detail": self.detail, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        return cls(at=from_iso(data["at"]), actor=data.get("actor"), action=str(data["action"]), detail=data.get("detail"), note=data.get("note"))


_DATETIME_FIELDS = (
    "schedule_at",
    "next_run_at",
    "fire_at",
    "last_run_at",
    "created_at",
    "updated_at",
    "lease_until",
    "starts_at",
    "ends_at",
)


@dataclass(frozen=True, slots=True)
class Job:
    """A stored job: its schedule, its handler and payload, its limits, and the fields that drive
    the engine (the lifecycle and the lease fence: see the module docstring). Immutable."""

    id: str
    job_type: str
    payload: dict[str, Any]
    status: JobStatus
    next_run_at: datetime | None
    fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # Exactly one of the three schedules is set.
    schedule_at: datetime | None = None
    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace_seconds: int = 60
    overlap: Overlap = Overlap.SKIP
    max_attempts: int = 3
    timeout_seconds: float | None = None  # None: SCHEDULER_JOB_TIMEOUT_SECONDS
    dst_gap: str = "shift"
    dst_repeat: str | None = None  # None: Vixie cron's rule (first for a fixed hour, both for a wildcard)
    jitter_seconds: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    max_runs: int | None = None
    pause_on_failure: bool = False
    catch_up_window_seconds: int | None = None
    run_count: int = 0
    note: str | None = None
    backfill_of: str | None = None
    attempts: int = 0
    last_run_at: datetime | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    created_by: str | None = None
    idempotency_key: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    lease_epoch: int = 0
    audit: tuple[AuditEntry, ...] = ()

    @property
    def is_recurring(self) -> bool:
        return self.cron is not None or self.interval_seconds is not None

    @property
    def runs_remaining(self) -> int | None:
        return None if self.max_runs is None else max(self.max_runs - self.run_count, 0)

    def is_due(self, now: datetime) -> bool:
        """Claimable at ``now``: pending and due, or running with an expired lease."""
        if self.status is JobStatus.PENDING:
            return self.next_run_at is not None and self.next_run_at <= now
        if self.status is JobStatus.RUNNING:
            return self.lease_until is None or self.lease_until <= now
        return False

    def replace(self, **changes: Any) -> Job:
        """``dataclasses.replace(self, **changes)``, faster: a tick replaces every job it
        settles. Each set of changed names gets a function made once that passes the
        changed values and the other fields positionally (:func:`_job_replacer`): 11
        fields replaced in 4.0 us, where a loop over the changes took 6.8 and
        ``dataclasses.replace`` 11 (measured)."""
        names = tuple(changes)
        replacer = _JOB_REPLACERS.get(names)
        if replacer is None:
            replacer = _job_replacer(names)
        return replacer(self, *changes.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; datetimes as RFC 3339 strings in UTC ('Z')."""
        out: dict[str, Any] = {}
        for name in _JOB_FIELDS:
            value = getattr(self, name)
            if name in _DATETIME_FIELDS:
                value = to_iso(value)
            elif isinstance(value, StrEnum):
                value = value.value
            out[name] = value
        out["audit"] = [entry.to_dict() for entry in self.audit]
        out["runs_remaining"] = None if self.max_runs is None else max(self.max_runs - self.run_count, 0)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Inverse of :meth:`to_dict`. Unknown keys are ignored (forward compatible)."""
        values = {k: v for k, v in data.items() if k in _JOB_FIELD_SET}
        for name in _DATETIME_FIELDS:
            if isinstance(values.get(name), str):
                values[name] = from_iso(values[name])
        values["status"] = JobStatus(values["status"])
        values["misfire"] = Misfire(values.get("misfire", Misfire.RUN_ONCE))
        values["overlap"] = Overlap(values.get("overlap", Overlap.SKIP))
        values["audit"] = tuple(AuditEntry.from_dict(entry) for entry in values.get("audit") or ())
        return cls(**values)


# Computed once: dataclasses.fields() is measurable when a tick converts 1,000 jobs.
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_JOB_FIELD_SET = frozenset(_JOB_FIELDS)
_JOB_FIELD_INDEX = {name: i for i, name in enumerate(_JOB_FIELDS)}
_job_values = operator.attrgetter(*_JOB_FIELDS)
_DATETIME_FIELDS = frozenset(_DATETIME_FIELDS)


def positional_constructor(cls: type) -> Callable[..., Any]:
    """``cls(*values)`` (every field, in order) for a frozen slots dataclass without
    ``__post_init__``: each slot set through its own descriptor, where the generated
    ``__init__`` calls ``object.__setattr__`` by name for each field (a Job: 10.6 against
    4.9 us here, and a tick builds two per job). The same arguments are required and the
    same object results (tests/test_table_codec.py)."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not (params.frozen and hasattr(cls, "__slots__")) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not a frozen slots dataclass without __post_init__")
    names = [f.name for f in dataclasses.fields(cls)]
    args = ", ".join(names)
    body = "".join(f"    _set_{name}(obj, {name})\n" for name in names)
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls} | {f"_set_{name}": vars(cls)[name].__set__ for name in names}
    exec(f"def build({args}):\n    obj = _new(_cls)\n{body}    return obj\n", namespace)  # noqa: S102 - code built from field names, as dataclasses does
    build = namespace["build"]
    build.__qualname__ = build.__name__ = f"{cls.__name__.lower()}_from_values"
    return build


job_from_values = positional_constructor(Job)

# Job.replace's functions, by the tuple of names replaced (a handful of sets in practice).
_JOB_REPLACERS: dict[tuple[str, ...], Callable[..., Job]] = {}


def _job_replacer(names: tuple[str, ...]) -> Callable[..., Job]:
    """``f(job, *values)``: ``job`` with the fields ``names`` set to ``values``, built
    positionally (one ``attrgetter`` call for the rest). Raises TypeError naming an unknown
    field, as ``dataclasses.replace`` does."""
    for name in names:
        if name not in _JOB_FIELD_INDEX:
            raise TypeError(f"Job has no field {name!r}")
    params = [f"new_{i}" for i in range(len(names))]
    by_field = {name: param for name, param in zip(names, params)}
    args = ", ".join(by_field.get(name, f"old[{i}]") for i, name in enumerate(_JOB_FIELDS))
    namespace: dict[str, Any] = {"_values": _job_values, "_build": job_from_values}
    source = f"def replace({', '.join(['job', *params])}):\n    old = _values(job)\n    return _build({args})\n"
    exec(source, namespace)  # noqa: S102 - code built from field names, as dataclasses does
    replacer = namespace["replace"]
    if len(_JOB_REPLACERS) < 256:  # bounded: the engine and the API use a few dozen sets
        _JOB_REPLACERS[names] = replacer
    return replacer


@dataclass(frozen=True, slots=True)
class Execution:
    """One attempt (or misfire skip) of one occurrence of a job: the history record."""

    job_id: str
    fire_at: datetime
    attempt: int
    tick_id: str
    outcome: Outcome
    started_at: datetime
    duration_ms: float
    error: str | None = None
    source: Source = Source.MANUAL
    task: dict[str, Any] | None = None  # dispatched runs: Cloud Tasks' task name, retry and execution counts

    def to_dict(self) -> dict[str, Any]:
        out = {
            "job_id": self.job_id,
            "fire_at": to_iso(self.fire_at),
            "attempt": self.attempt,
            "tick_id": self.tick_id,
            "outcome": self.outcome.value,
            "started_at": to_iso(self.started_at),
            "duration_ms": self.duration_ms,
            "error": self.error,
            "source": self.source.value,
        }
        if self.task is not None:
            out["task"] = self.task
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Execution:
        return cls(
            job_id=data["job_id"],
            fire_at=from_iso(data["fire_at"]),
            attempt=data["attempt"],
            tick_id=data["tick_id"],
            outcome=Outcome(data["outcome"]),
            started_at=from_iso(data["started_at"]),
            duration_ms=data["duration_ms"],
            error=data.get("error"),
            source=Source(data.get("source", Source.MANUAL)),
            task=data.get("task"),
        )


# Every field, in order: the engine records each run with it (a tick builds one per job).
execution_from_values = positional_constructor(Execution)


@dataclass(frozen=True, slots=True)
class Settlement:
    """The state a tick wants to write back for one job it claimed.

    ``expected_owner``/``expected_epoch`` are the fence: a store applies the
    settlement only if the stored job still carries them. ``job`` is the full new
    state (lease fields already cleared).
    """

    job: Job
    expected_owner: str
    expected_epoch: int
    executions: tuple[Execution, ...] = ()


@dataclass(frozen=True, slots=True)
class RunRef:
    """The identity of one claimed run: which job, under which lease, for which occurrence.

    It is all a dispatched task carries (never the payload), what a lease heartbeat
    names, and what fences a settle: a run is current only while the stored job still
    has ``lease_owner`` and ``lease_epoch``.
    """

    job_id: str
    lease_owner: str
    lease_epoch: int
    fire_at: datetime

    @classmethod
    def of(cls, job: Job) -> RunRef:
        """The run a just-claimed ``job`` stands for."""
        return cls(job.id, job.lease_owner or "", job.lease_epoch, job.fire_at or job.next_run_at or job.updated_at)


@dataclass(slots=True)
class TickMetrics:
    """The counts of one tick, logged as its metrics line and stored with its record."""

    jobs_checked: int = 0
    jobs_due: int = 0
    jobs_executed: int = 0
    jobs_succeeded: int = 0
    jobs_failed: int = 0
    jobs_skipped: int = 0
    jobs_recovered: int = 0
    jobs_deferred: int = 0
    jobs_misfired: int = 0
    lease_lost: int = 0
    jobs_dispatched: int = 0
    jobs_dispatch_failed: int = 0
    runs_abandoned: int = 0  # handlers of this process still running past their timeout, at the tick's end
    jobs_unreadable: int = 0  # stored jobs the claim met but could not decode (skipped, each logged as an ERROR)
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class TickRecord:
    """One tick as stored: dedupes Cloud Scheduler retries and feeds status pages.

    ``occurrence_key`` is ``"<X-CloudScheduler-JobName>@<X-CloudScheduler-ScheduleTime>"``
    when the request carried both headers, else ``None`` (never deduplicated).
    """

    tick_id: str
    started_at: datetime
    source: Source
    occurrence_key: str | None = None
    finished_at: datetime | None = None
    metrics: TickMetrics = field(default_factory=TickMetrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tick_id": self.tick_id,
            "started_at": to_iso(self.started_at),
            "source": self.source.value,
            "occurrence_key": self.occurrence_key,
            "finished_at": to_iso(self.finished_at),
            "metrics": self.metrics.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TickRecord:
        return cls(
            tick_id=data["tick_id"],
            started_at=from_iso(data["started_at"]),
            source=Source(data["source"]),
            occurrence_key=data.get("occurrence_key"),
            finished_at=from_iso(data.get("finished_at")),
            metrics=TickMetrics(**{k: v for k, v in data.get("metrics", {}).items() if k in _METRIC_FIELDS}),
        )


_METRIC_FIELDS = frozenset(f.name for f in dataclasses.fields(TickMetrics))
