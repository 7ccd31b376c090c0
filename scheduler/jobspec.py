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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.errors import UnknownJobType, ValidationError
from scheduler.model import _DATETIME_FIELDS, Job, JobStatus, Misfire, Overlap, utc
from scheduler.timing import check_cron, first_fire_time, next_fire_after, zone

# -- limits (documented in README "Limits" and in the OpenAPI document) ---------
MAX_PAYLOAD_DEPTH = 32  # nesting levels of objects and arrays, the payload object itself being 1
MAX_PAYLOAD_BYTES = 64 * 1024  # the payload as compact UTF-8 JSON; Firestore's document limit is 1 MiB
MAX_PAYLOAD_KEYS = 1000  # keys of the payload object itself
MAX_ATTEMPTS = 100
MAX_INTERVAL_SECONDS = 366 * 86400
MAX_GRACE_SECONDS = 366 * 86400
MAX_IDEMPOTENCY_KEY_CHARS = 500
MAX_TIMEOUT_SECONDS_TASKS = 1800.0  # Cloud Tasks' longest dispatch deadline for an HTTP task
MIN_TIMEOUT_SECONDS = 0.001
MIN_YEAR, MAX_YEAR = 1970, 9999
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ID_RE = re.compile(JOB_ID_PATTERN)
_ID_RE = ID_RE  # older name, kept for importers

SCHEDULE_FIELDS = ("schedule_at", "cron", "interval_seconds")
CREATE_FIELDS = frozenset(
    {
        "id",
        "job_type",
        "payload",
        *SCHEDULE_FIELDS,
        "timezone",
        "misfire",
        "misfire_grace_seconds",
        "overlap",
        "max_attempts",
        "timeout_seconds",
        "idempotency_key",
    }
)
PATCH_FIELDS = frozenset({"payload", *SCHEDULE_FIELDS, "timezone", "misfire", "misfire_grace_seconds", "overlap", "max_attempts", "timeout_seconds"})


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


def job_problems(job: Job, limits: JobLimits = DEFAULT_LIMITS) -> list[ValidationError]:
    """Every way ``job`` breaks the rules a stored job must hold, each naming its field.

    The one check behind every door (API, CLI, Chat, import): types, limits, payload,
    time zone, and that a recurring schedule fires at least once more.
    """
    out: list[ValidationError] = []
    if not isinstance(job.id, str) or not ID_RE.match(job.id):
        _problem(out, f"id {str(job.id)[:140]!r} is not a job id (1-128 letters, digits, '.', '_' or '-')", "id")
    if not isinstance(job.job_type, str) or not job.job_type or len(job.job_type) > 200:
        _problem(out, "job_type must be a string of 1 to 200 characters", "job_type")
    try:
        check_payload(job.payload)
    except ValidationError as exc:
        out.append(exc)
    schedules = [name for name in SCHEDULE_FIELDS if getattr(job, name) is not None]
    if len(schedules) != 1:
        _problem(out, f"a job needs exactly one of schedule_at, cron, interval_seconds; has {', '.join(schedules) or 'none'}", "schedule")
    zone_ok = True
    try:
        check_timezone(job.timezone)
    except ValidationError as exc:
        out.append(exc)
        zone_ok = False
    if job.cron is not None:
        problem = check_cron(job.cron) if isinstance(job.cron, str) else "cron must be a string"
        if problem:
            _problem(out, problem, "cron")
        elif zone_ok and len(schedules) == 1 and isinstance(job.updated_at, datetime) and _never_fires(job):
            _problem(out, f"cron expression {job.cron!r} never fires", "cron")
    if job.interval_seconds is not None and (not _is_int(job.interval_seconds) or not 1 <= job.interval_seconds <= MAX_INTERVAL_SECONDS):
        _problem(out, f"interval_seconds must be an integer from 1 to {MAX_INTERVAL_SECONDS}", "interval_seconds")
    for name, minimum, maximum in (
        ("max_attempts", 1, MAX_ATTEMPTS),
        ("attempts", 0, MAX_ATTEMPTS + 1),
        ("lease_epoch", 0, 2**53),
        ("misfire_grace_seconds", 0, MAX_GRACE_SECONDS),
    ):
        value = getattr(job, name)
        if not _is_int(value) or not minimum <= value <= maximum:
            _problem(out, f"{name} must be an integer from {minimum} to {maximum}", name)
    timeout = job.timeout_seconds
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
            _problem(out, "timeout_seconds must be a number or null", "timeout_seconds")
        else:
            problem = limits.timeout_problem(float(timeout))
            if problem:
                _problem(out, problem, "timeout_seconds")
    if job.idempotency_key is not None and (not isinstance(job.idempotency_key, str) or not 1 <= len(job.idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS):
        _problem(out, f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters", "idempotency_key")
    for name in ("idempotency_key", "created_by", "last_outcome", "last_error", "lease_owner"):
        value = getattr(job, name)
        if value is None:
            continue
        if not isinstance(value, str):
            _problem(out, f"{name} must be a string or null", name)
            continue
        try:
            check_text(value, name)
        except ValidationError as exc:
            out.append(exc)
    for name in _DATETIME_FIELDS:
        value = getattr(job, name)
        if value is None and name in ("created_at", "updated_at"):
            _problem(out, f"{name} is required", name)
        elif value is not None and not isinstance(value, datetime):
            _problem(out, f"{name} must be an RFC 3339 timestamp or null", name)
        elif value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
            _problem(out, f"{name} is out of range: years {MIN_YEAR} to {MAX_YEAR}", name)
    if job.status is JobStatus.PENDING and job.next_run_at is None:
        _problem(out, "a pending job needs next_run_at", "next_run_at")
    return out


def check_job(job: Job, limits: JobLimits = DEFAULT_LIMITS) -> Job:
    """Raise the first of :func:`job_problems`, or return ``job``."""
    problems = job_problems(job, limits)
    if problems:
        raise problems[0]
    return job


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


def _options(data: Mapping[str, Any], limits: JobLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "payload" in data:
        check_payload(data["payload"])
        out["payload"] = data["payload"]
    if data.get("misfire") is not None:
        try:
            out["misfire"] = Misfire(data["misfire"])
        except (ValueError, TypeError):
            choices = ", ".join(m.value for m in Misfire)
            raise ValidationError(f"misfire must be one of {choices}", "misfire") from None
    if data.get("overlap") is not None:
        try:
            out["overlap"] = Overlap(data["overlap"])
        except (ValueError, TypeError):
            choices = ", ".join(o.value for o in Overlap)
            raise ValidationError(f"overlap must be one of {choices}", "overlap") from None
    if data.get("misfire_grace_seconds") is not None:
        out["misfire_grace_seconds"] = _int(data, "misfire_grace_seconds", minimum=0, maximum=MAX_GRACE_SECONDS)
    if data.get("max_attempts") is not None:
        out["max_attempts"] = _int(data, "max_attempts", minimum=1, maximum=MAX_ATTEMPTS)
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
        raise ValidationError(f"cron expression {job.cron!r} never fires", "cron")
    return check_job(job.replace(next_run_at=first, fire_at=first), limits)


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
                raise ValidationError(f"cron expression {rescheduled.cron!r} never fires", "cron")
            changes.update(next_run_at=first, fire_at=first)
    return check_job(job.replace(**changes, updated_at=now), limits)
