"""The input boundary for jobs: turn untrusted JSON into a valid :class:`Job`.

Every refusal is a :class:`~scheduler.errors.ValidationError` whose ``field``
names the culprit. Past this module, datetimes are aware UTC and schedules are
known to parse.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from scheduler.errors import UnknownJobType, ValidationError
from scheduler.model import Job, JobStatus, Misfire, utc
from scheduler.timing import check_cron, first_fire_time, zone

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
        "max_attempts",
        "timeout_seconds",
        "idempotency_key",
    }
)
PATCH_FIELDS = frozenset({"payload", *SCHEDULE_FIELDS, "timezone", "misfire", "misfire_grace_seconds", "max_attempts", "timeout_seconds"})
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_PAYLOAD_KEYS = 1000


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
    return utc(parsed)


def _int(data: Mapping[str, Any], name: str, *, minimum: int, maximum: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer", name)
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}, got {value}", name)
    return value


def _number(data: Mapping[str, Any], name: str, *, minimum: float, maximum: float) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number", name)
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}, got {value}", name)
    return float(value)


def _schedule(data: Mapping[str, Any]) -> dict[str, Any]:
    given = [name for name in SCHEDULE_FIELDS if data.get(name) is not None]
    if not given:
        raise ValidationError("a job needs exactly one schedule: schedule_at, cron or interval_seconds", "schedule")
    if len(given) > 1:
        raise ValidationError(f"a job needs exactly one schedule, got {' and '.join(given)}", given[1])
    tz_name = data.get("timezone", "UTC")
    if not isinstance(tz_name, str):
        raise ValidationError("timezone must be an IANA time zone name such as 'Europe/Paris'", "timezone")
    try:
        zone(tz_name)
    except ValueError as exc:
        raise ValidationError(str(exc), "timezone") from None
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
        out["interval_seconds"] = _int(data, "interval_seconds", minimum=1, maximum=366 * 86400)
    return out


def _options(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "payload" in data:
        payload = data["payload"]
        if not isinstance(payload, dict):
            raise ValidationError(f"payload must be a JSON object, got {type(payload).__name__}", "payload")
        if len(payload) > MAX_PAYLOAD_KEYS:
            raise ValidationError(f"payload has more than {MAX_PAYLOAD_KEYS} keys", "payload")
        out["payload"] = payload
    if data.get("misfire") is not None:
        try:
            out["misfire"] = Misfire(data["misfire"])
        except (ValueError, TypeError):
            choices = ", ".join(m.value for m in Misfire)
            raise ValidationError(f"misfire must be one of {choices}", "misfire") from None
    if data.get("misfire_grace_seconds") is not None:
        out["misfire_grace_seconds"] = _int(data, "misfire_grace_seconds", minimum=0, maximum=366 * 86400)
    if data.get("max_attempts") is not None:
        out["max_attempts"] = _int(data, "max_attempts", minimum=1, maximum=100)
    if data.get("timeout_seconds") is not None:
        out["timeout_seconds"] = _number(data, "timeout_seconds", minimum=0.001, maximum=3600)
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
    elif not isinstance(job_id, str) or not _ID_RE.match(job_id):
        raise ValidationError("id must be 1-128 characters of letters, digits, '.', '_' or '-'", "id")
    key = data.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 500):
        raise ValidationError("idempotency_key must be a string of 1 to 500 characters", "idempotency_key")
    fields: dict[str, Any] = {"payload": {}} | _schedule(data) | _options(data)
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
    return job.replace(next_run_at=first, fire_at=first)


def apply_patch(job: Job, data: Any, *, now: datetime) -> Job:
    """Validate a PATCH body and return the changed job (schedule changes restart it)."""
    if not isinstance(data, Mapping) or not data:
        raise ValidationError("the patch must be a non-empty JSON object", None)
    _reject_unknown(data, PATCH_FIELDS)
    changes = _options(data)
    if any(data.get(name) is not None for name in SCHEDULE_FIELDS) or "timezone" in data:
        current = {name: getattr(job, name) for name in (*SCHEDULE_FIELDS, "timezone")}
        if any(data.get(name) is not None for name in SCHEDULE_FIELDS):
            current = {name: None for name in SCHEDULE_FIELDS} | {"timezone": current["timezone"]}
        current["schedule_at"] = None if current["schedule_at"] is None else current["schedule_at"].isoformat()
        changes.update(_schedule(current | dict(data)))
        rescheduled = job.replace(**changes, fire_at=None)
        if job.status in (JobStatus.PENDING, JobStatus.PAUSED):
            first = first_fire_time(rescheduled, now)
            changes.update(next_run_at=first, fire_at=first)
    return job.replace(**changes, updated_at=now)
