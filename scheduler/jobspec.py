"""The input boundary for jobs: turn untrusted JSON into a valid :class:`Job`.

Every refusal is a :class:`~scheduler.errors.ValidationError` whose ``field``
names the culprit. Past this module, datetimes are aware UTC and schedules are
known to parse.

One validation serves every door: :func:`build_job` and :func:`apply_patch`
(API, CLI, Chat) end in :func:`check_job`, and the snapshot import runs
:func:`job_problems` on every job it reads. The limits below are the only copy;
the README, the OpenAPI document and the Chat parser read them from here.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Collection, Mapping
from itertools import islice
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.errors import UnknownJobType, ValidationError

from scheduler.model import Job, JobStatus, Misfire, Overlap, utc
from scheduler.timing import check_cron, fire_times_after, first_fire_time, next_fire_after, run_at, zone

# The limits and field lists live in scheduler.schema (the one copy); named here for importers.
from scheduler.schema import (  # noqa: E402
    BY_NAME,
    CREATE_FIELDS,
    FIELDS,
    JOB_ID_PATTERN,
    MAX_ATTEMPTS,
    MAX_GRACE_SECONDS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_INTERVAL_SECONDS,
    MAX_JITTER_SECONDS,
    MAX_NOTE_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    MAX_PAYLOAD_KEYS,
    MAX_TIMEOUT_SECONDS_TASKS,
    MAX_YEAR,
    MIN_TIMEOUT_SECONDS,
    MIN_YEAR,
    PATCH_FIELDS,
    SCHEDULE_FIELDS,
    FieldSpec,
)

ID_RE = re.compile(JOB_ID_PATTERN)
_ID_RE = ID_RE  # older name, kept for importers
# Options read by the generic parser from their FieldSpec alone (type, bounds, choices).
_GENERIC_OPTIONS = tuple(
    spec
    for spec in (BY_NAME[name] for name in sorted(CREATE_FIELDS | PATCH_FIELDS))
    if spec.name not in (*SCHEDULE_FIELDS, "id", "job_type", "payload", "timezone", "timeout_seconds", "idempotency_key", "starts_at", "ends_at")
)
_ENUMS = {"misfire": Misfire, "overlap": Overlap}


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The limits that depend on how this deployment runs jobs.

    ``max_timeout_seconds``: inline, a job must finish within the tick that runs it,
    so its timeout must be below the tick budget; dispatched through Cloud Tasks it
    may run up to Cloud Tasks' 30-minute dispatch deadline.
    """

    dispatch: str = "inline"
    max_timeout_seconds: float = 150.0

    @classmethod
    def for_settings(cls, settings: Any) -> JobLimits:
        if settings.dispatch == "cloud_tasks":
            return cls("cloud_tasks", MAX_TIMEOUT_SECONDS_TASKS)
        return cls("inline", float(settings.tick_budget_seconds))

    def timeout_problem(self, value: float) -> str | None:
        if MIN_TIMEOUT_SECONDS <= value <= self.max_timeout_seconds and (self.dispatch != "inline" or value < self.max_timeout_seconds):
            return None
        if self.dispatch == "inline":
            return (
                f"timeout_seconds must be at least {MIN_TIMEOUT_SECONDS} and below {self.max_timeout_seconds:g} "
                f"(the tick budget, SCHEDULER_TICK_BUDGET_SECONDS) with SCHEDULER_DISPATCH=inline, got {value:g}; "
                f"SCHEDULER_DISPATCH=cloud_tasks runs jobs for up to {MAX_TIMEOUT_SECONDS_TASKS:g} s"
            )
        return f"timeout_seconds must be between {MIN_TIMEOUT_SECONDS} and {self.max_timeout_seconds:g}, got {value:g}"


DEFAULT_LIMITS = JobLimits()


# -- values ----------------------------------------------------------------------
def check_text(value: str, field: str) -> None:
    """Refuse strings that cannot be written as UTF-8 (lone surrogates such as "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field} contains a lone surrogate (an unpaired \\uD800-\\uDFFF escape); send valid Unicode", field) from None


def check_payload(payload: Any, field: str = "payload") -> None:
    """A payload is a JSON object that every store, export and log line can carry:
    at most :data:`MAX_PAYLOAD_DEPTH` levels deep and :data:`MAX_PAYLOAD_BYTES` as
    JSON, finite numbers only, valid Unicode, string keys. Iterative, so no input
    can exhaust the stack."""
    if not isinstance(payload, dict):
        raise ValidationError(f"{field} must be a JSON object, got {type(payload).__name__}", field)
    if len(payload) > MAX_PAYLOAD_KEYS:
        raise ValidationError(f"{field} has more than {MAX_PAYLOAD_KEYS} keys", field)
    stack: list[tuple[Any, int, str]] = [(payload, 1, field)]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_PAYLOAD_DEPTH:
                raise ValidationError(f"{field} is nested more than {MAX_PAYLOAD_DEPTH} levels deep (at {where[:80]})", field)
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValidationError(f"{field} keys must be strings (at {where[:80]})", field)
                check_text(key, field)
                stack.append((item, depth + 1, f"{where}.{key[:40]}"))
        elif isinstance(value, list):
            if depth > MAX_PAYLOAD_DEPTH:
                raise ValidationError(f"{field} is nested more than {MAX_PAYLOAD_DEPTH} levels deep (at {where[:80]})", field)
            stack.extend((item, depth + 1, f"{where}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str):
            check_text(value, field)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValidationError(f"{field} holds a non-finite number ({value!r} at {where[:80]}); JSON has no Infinity or NaN", field)
        elif value is not None and not isinstance(value, (bool, int)):
            raise ValidationError(f"{field} holds a {type(value).__name__} (at {where[:80]}); only JSON values are allowed", field)
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationError(f"{field} is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES}", field)


def check_timezone(name: Any) -> str:
    if not isinstance(name, str):
        raise ValidationError("timezone must be an IANA time zone name such as 'Europe/Paris'", "timezone")
    try:
        zone(name)
    except ValueError as exc:
        raise ValidationError(str(exc), "timezone") from None
    return name


def _problem(checks: list[ValidationError], message: str, field: str) -> None:
    checks.append(ValidationError(message, field))


def field_problem(spec: FieldSpec, value: Any) -> str | None:
    """Why ``value`` cannot be ``spec``'s value in a stored job (type, null, bounds,
    choices, length, pattern, Unicode, calendar range), or ``None``."""
    name = spec.name
    if value is None:
        return None if spec.nullable else f"{name} is required"
    kind = spec.kind
    if kind == "timestamp":
        if not isinstance(value, datetime):
            return f"{name} must be an RFC 3339 timestamp"
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            return f"{name} is out of range: years {MIN_YEAR} to {MAX_YEAR}"
        return None
    if kind == "integer":
        if not _is_int(value):
            return f"{name} must be an integer"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} must be a finite number"
    elif kind == "boolean":
        return None if isinstance(value, bool) else f"{name} must be true or false"
    elif kind == "choice":
        return None if value in spec.choices else f"{name} must be one of {', '.join(spec.choices)}"
    elif kind == "object":
        return None if isinstance(value, dict) else f"{name} must be a JSON object"
    elif kind == "audit":
        return None if isinstance(value, tuple) else f"{name} must be a list of entries"
    elif kind == "string":
        if not isinstance(value, str):
            return f"{name} must be a string"
        try:
            check_text(value, name)
        except ValidationError as exc:
            return exc.message
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"{name} must be at most {spec.max_length} characters"
        if spec.pattern is not None and not re.match(spec.pattern, value):
            return f"{name} {value[:140]!r} does not match {spec.pattern}"
        return None
    low = spec.minimum if spec.minimum is not None else -math.inf
    high = spec.maximum if spec.maximum is not None else math.inf
    if not low <= value <= high:
        return f"{name} must be between {_num(low)} and {_num(high)}, got {value}"
    return None


def job_problems(job: Job, limits: JobLimits = DEFAULT_LIMITS) -> list[ValidationError]:
    """Every way ``job`` breaks the rules a stored job must hold, each naming its field.

    The one check behind every door (API, CLI, Chat, import): each field against its
    :class:`~scheduler.schema.FieldSpec`, then the rules that span fields (one
    schedule, a cron that fires, a time zone that exists, a timeout the dispatch mode
    can honour, jitter within half the period, ``ends_at`` after ``starts_at``).
    """
    out: list[ValidationError] = []
    for spec in FIELDS:
        value = getattr(job, spec.name)
        problem = field_problem(spec, value) or _special_problem(job, spec.name, value, limits)
        if problem:
            out.append(ValidationError(problem, spec.name))
    bad = {problem.field for problem in out}
    schedules = [name for name in SCHEDULE_FIELDS if getattr(job, name) is not None]
    if len(schedules) != 1:
        _problem(out, f"a job needs exactly one of schedule_at, cron, interval_seconds; has {', '.join(schedules) or 'none'}", "schedule")
    elif job.cron is not None and not bad & {"cron", "timezone", "updated_at", "starts_at", "ends_at"} and _never_fires(job):
        _problem(out, f"cron expression {job.cron!r} never fires" + (" within starts_at..ends_at" if job.starts_at or job.ends_at else ""), "cron")
    if job.starts_at is not None and job.ends_at is not None and not bad & {"starts_at", "ends_at"} and job.ends_at <= job.starts_at:
        _problem(out, "ends_at must be after starts_at", "ends_at")
    if job.jitter_seconds and "jitter_seconds" not in bad and len(schedules) == 1 and job.is_recurring:
        period = _shortest_period(job)
        if period is not None and job.jitter_seconds > period / 2:
            _problem(out, f"jitter_seconds ({job.jitter_seconds}) must be at most half the period ({period / 2:g} s)", "jitter_seconds")
    if job.status is JobStatus.PENDING and job.next_run_at is None:
        _problem(out, "a pending job needs next_run_at", "next_run_at")
    return out


def _special_problem(job: Job, name: str, value: Any, limits: JobLimits) -> str | None:
    """The per-field rules a FieldSpec cannot say."""
    try:
        if name == "payload":
            check_payload(value)
        elif name == "timezone":
            check_timezone(value)
        elif name == "cron" and value is not None:
            return check_cron(value)
        elif name == "timeout_seconds" and value is not None:
            return limits.timeout_problem(float(value))
    except ValidationError as exc:
        return exc.message
    return None


def _shortest_period(job: Job) -> float | None:
    """The smallest gap between the schedule's next fire times (at most 20 looked at)."""
    if job.interval_seconds is not None:
        return float(job.interval_seconds)
    try:
        times = list(islice(fire_times_after(job, job.updated_at), 20))
    except (OverflowError, ValueError):  # ValueError: timing.CronError too
        return None
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    return min(gaps) if gaps else None


def check_job(job: Job, limits: JobLimits = DEFAULT_LIMITS) -> Job:
    """Raise the first of :func:`job_problems`, or return ``job``."""
    problems = job_problems(job, limits)
    if problems:
        raise problems[0]
    return job


def _never_fires_error(job: Job) -> ValidationError:
    """Why a new or rescheduled job has no first fire time, naming the field to change."""
    if job.starts_at is not None and job.ends_at is not None and job.ends_at <= job.starts_at:
        return ValidationError("ends_at must be after starts_at", "ends_at")
    if job.ends_at is not None:
        return ValidationError(f"the schedule has no fire time before ends_at ({job.ends_at.isoformat()})", "ends_at")
    return ValidationError(f"cron expression {job.cron!r} never fires", "cron")


def _never_fires(job: Job) -> bool:
    try:
        return next_fire_after(job, job.updated_at) is None
    except (OverflowError, ValueError):  # near year 9999
        return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_timestamp(value: Any, field: str) -> datetime:
    """RFC 3339 with an explicit offset, returned in UTC."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be an RFC 3339 timestamp string", field)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(f"{field} {value!r} is not an RFC 3339 timestamp", field) from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{field} {value!r} has no UTC offset; add 'Z' or '+hh:mm'", field)
    try:
        parsed = utc(parsed)
    except OverflowError:
        parsed = None
    if parsed is None or not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValidationError(f"{field} {value[:60]!r} is out of range: years {MIN_YEAR} to {MAX_YEAR}", field)
    return parsed


def _int(data: Mapping[str, Any], name: str, *, minimum: int, maximum: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer", name)
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}, got {value}", name)
    return value


def _number(data: Mapping[str, Any], name: str, *, minimum: float, maximum: float) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number", name)
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}, got {value}", name)
    return float(value)


def _schedule(data: Mapping[str, Any]) -> dict[str, Any]:
    given = [name for name in SCHEDULE_FIELDS if data.get(name) is not None]
    if not given:
        raise ValidationError("a job needs exactly one schedule: schedule_at, cron or interval_seconds", "schedule")
    if len(given) > 1:
        raise ValidationError(f"a job needs exactly one schedule, got {' and '.join(given)}", given[1])
    tz_name = check_timezone(data.get("timezone", "UTC"))
    out: dict[str, Any] = {"schedule_at": None, "cron": None, "interval_seconds": None, "timezone": tz_name}
    kind = given[0]
    if kind == "schedule_at":
        out["schedule_at"] = parse_timestamp(data["schedule_at"], "schedule_at")
    elif kind == "cron":
        expr = data["cron"]
        if not isinstance(expr, str):
            raise ValidationError("cron must be a string such as '*/5 * * * *'", "cron")
        problem = check_cron(expr)
        if problem:
            raise ValidationError(problem, "cron")
        out["cron"] = " ".join(expr.split())
    else:
        out["interval_seconds"] = _int(data, "interval_seconds", minimum=1, maximum=MAX_INTERVAL_SECONDS)
    return out


def parse_option(spec: FieldSpec, value: Any) -> Any:
    """``value`` checked against ``spec`` (type, bounds, choices); ValidationError naming it."""
    name = spec.name
    if spec.kind == "boolean":
        if not isinstance(value, bool):
            raise ValidationError(f"{name} must be true or false", name)
        return value
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ValidationError(f"{name} must be one of {', '.join(spec.choices)}", name)
        return _ENUMS[name](value) if name in _ENUMS else value
    if spec.kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{name} must be an integer", name)
    elif spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(f"{name} must be a finite number", name)
        value = float(value)
    elif spec.kind == "string":
        if not isinstance(value, str):
            raise ValidationError(f"{name} must be a string", name)
        check_text(value, name)
        if spec.max_length is not None and len(value) > spec.max_length:
            raise ValidationError(f"{name} must be at most {spec.max_length} characters", name)
        return value
    if spec.minimum is not None and spec.maximum is not None and not spec.minimum <= value <= spec.maximum:
        raise ValidationError(f"{name} must be between {_num(spec.minimum)} and {_num(spec.maximum)}, got {value}", name)
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _options(data: Mapping[str, Any], limits: JobLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "payload" in data:
        check_payload(data["payload"])
        out["payload"] = data["payload"]
    for spec in _GENERIC_OPTIONS:
        if data.get(spec.name) is not None:
            out[spec.name] = parse_option(spec, data[spec.name])
    for name in ("starts_at", "ends_at"):
        if data.get(name) is not None:
            out[name] = parse_timestamp(data[name], name)
    if data.get("timeout_seconds") is not None:
        timeout = _number(data, "timeout_seconds", minimum=-math.inf, maximum=math.inf)
        problem = limits.timeout_problem(timeout)
        if problem:
            raise ValidationError(problem, "timeout_seconds")
        out["timeout_seconds"] = timeout
    return out


def _reject_unknown(data: Mapping[str, Any], allowed: Collection[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}", unknown[0])


def build_job(
    data: Any,
    *,
    known_types: Collection[str],
    now: datetime,
    created_by: str | None = None,
    limits: JobLimits = DEFAULT_LIMITS,
) -> Job:
    """Validate a create request and return the new ``pending`` job."""
    if not isinstance(data, Mapping):
        raise ValidationError("the job must be a JSON object", None)
    _reject_unknown(data, CREATE_FIELDS)
    job_type = data.get("job_type")
    if not isinstance(job_type, str) or not job_type:
        raise ValidationError("job_type is required and must be a string", "job_type")
    if job_type not in known_types:
        raise UnknownJobType(job_type, list(known_types))
    job_id = data.get("id")
    if job_id is None:
        job_id = uuid.uuid4().hex
    elif not isinstance(job_id, str) or not ID_RE.match(job_id):
        raise ValidationError("id must be 1-128 characters of letters, digits, '.', '_' or '-'", "id")
    key = data.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS):
        raise ValidationError(f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters", "idempotency_key")
    if key is not None:
        check_text(key, "idempotency_key")
    fields: dict[str, Any] = {"payload": {}} | _schedule(data) | _options(data, limits)
    job = Job(
        id=job_id,
        job_type=job_type,
        status=JobStatus.PENDING,
        next_run_at=None,
        fire_at=None,
        created_at=now,
        updated_at=now,
        created_by=created_by,
        idempotency_key=key,
        **fields,
    )
    first = first_fire_time(job, now)
    if first is None:
        raise _never_fires_error(job)
    return check_job(job.replace(next_run_at=run_at(job, first), fire_at=first), limits)


def apply_patch(job: Job, data: Any, *, now: datetime, limits: JobLimits = DEFAULT_LIMITS) -> Job:
    """Validate a PATCH body and return the changed job (schedule changes restart it).

    Checked like a new job whatever the job's status: a paused job cannot be given
    a schedule that never fires (it could then never be resumed)."""
    if not isinstance(data, Mapping) or not data:
        raise ValidationError("the patch must be a non-empty JSON object", None)
    _reject_unknown(data, PATCH_FIELDS)
    changes = _options(data, limits)
    if any(data.get(name) is not None for name in SCHEDULE_FIELDS) or "timezone" in data:
        current = {name: getattr(job, name) for name in (*SCHEDULE_FIELDS, "timezone")}
        if any(data.get(name) is not None for name in SCHEDULE_FIELDS):
            current = {name: None for name in SCHEDULE_FIELDS} | {"timezone": current["timezone"]}
        current["schedule_at"] = None if current["schedule_at"] is None else current["schedule_at"].isoformat()
        changes.update(_schedule(current | dict(data)))
        rescheduled = job.replace(**changes, fire_at=None)
        if job.status in (JobStatus.PENDING, JobStatus.PAUSED):
            first = first_fire_time(rescheduled, now)
            if first is None:
                raise _never_fires_error(rescheduled)
            changes.update(next_run_at=run_at(rescheduled, first), fire_at=first)
    elif job.status in (JobStatus.PENDING, JobStatus.PAUSED) and any(name in changes for name in _TIMING_FIELDS):
        # Not a new schedule, but when it fires or how it is delayed changes: plan the next run again.
        rescheduled = job.replace(**changes)
        if job.is_recurring and any(name in changes for name in _TIMING_FIELDS[:-1]):
            first = first_fire_time(rescheduled, now)
            if first is None:
                raise _never_fires_error(rescheduled)
        else:
            first = job.fire_at
        if first is not None:
            changes.update(next_run_at=run_at(rescheduled, first), fire_at=first)
    return check_job(job.replace(**changes, updated_at=now), limits)


# PATCH fields that move the next run without changing the schedule (jitter last: it only delays).
_TIMING_FIELDS = ("dst_gap", "dst_repeat", "starts_at", "ends_at", "jitter_seconds")
