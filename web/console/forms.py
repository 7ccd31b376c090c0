"""The create/edit form <-> the API's JSON job body.

The console validates nothing itself: a form becomes the body the API takes
(``POST /api/v1/jobs``, ``PATCH /api/v1/jobs/<id>``) and goes to the same
:class:`~scheduler.service.JobService` verb, so a refusal is the API's own message
with the API's ``field``. The only work here is what a browser form cannot say:
numbers arrive as text (a number-looking text becomes a number, anything else is
passed on as is for the API to refuse), the payload is JSON text, and a one-off
time is a wall time in the chosen zone (``datetime-local``), turned into RFC 3339.
"""

from __future__ import annotations

import json
import re
from datetime import date, time
from typing import Any

from scheduler.errors import ValidationError
from scheduler.model import Job, to_iso
from scheduler.timing import zone
from scheduler.when import local_to_utc

KINDS = ("cron", "interval", "once")
_INT = re.compile(r"^-?[0-9]{1,12}$")
_NUMBER = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,9})?$")
_LOCAL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$")
# Where a refusal's field is shown on the form (payload.url and the like go to the payload).
FIELD_ALIASES = {"schedule": "kind", "body": "payload"}


def form_field(field: str | None) -> str:
    if not field:
        return "form"
    if field.startswith("payload."):
        return "payload"
    return FIELD_ALIASES.get(field, field)


def _int(raw: str) -> Any:
    raw = raw.strip()
    return int(raw) if _INT.match(raw) else raw


def _number(raw: str) -> Any:
    raw = raw.strip()
    if _INT.match(raw):
        return int(raw)
    return float(raw) if _NUMBER.match(raw) else raw


def local_time(raw: str, tz_name: str) -> str:
    """``2026-12-01T09:00`` on the wall clock of ``tz_name`` as RFC 3339 in UTC (a time in a
    DST gap moves to the first instant after it; a repeated time takes its first occurrence)."""
    m = _LOCAL.match(raw.strip())
    if not m:
        raise ValidationError(f"schedule_at must be a date and time such as 2026-12-01T09:00, got {raw[:40]!r}", "schedule_at")
    year, month, day, hour, minute, second = (int(g or 0) for g in m.groups())
    try:
        tz = zone(tz_name)
    except ValueError as exc:
        raise ValidationError(str(exc), "timezone") from None
    try:
        when = local_to_utc(date(year, month, day), time(hour, minute, second), tz)
    except (ValueError, OverflowError):
        raise ValidationError(f"schedule_at {raw[:40]!r} is not a valid date and time", "schedule_at") from None
    return to_iso(when) or ""


def parse_payload(raw: str) -> Any:
    text = raw.strip() or "{}"
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValidationError("payload is nested too deeply", "payload") from None
    except ValueError as exc:
        raise ValidationError(f"payload is not valid JSON: {exc}", "payload") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def schedule_body(form: Any) -> dict[str, Any]:
    """The schedule part of the body: exactly one of cron / interval_seconds / schedule_at, and timezone."""
    kind = form.get("kind", "")
    tz_name = (form.get("timezone") or "UTC").strip()
    body: dict[str, Any] = {"timezone": tz_name}
    if kind == "cron":
        body["cron"] = form.get("cron", "")
    elif kind == "interval":
        body["interval_seconds"] = _int(form.get("interval_seconds", ""))
    elif kind == "once":
        body["schedule_at"] = local_time(form.get("schedule_at", ""), tz_name)
    else:
        raise ValidationError("choose a schedule: cron, interval or one-off", "kind")
    return body


def job_body(form: Any, *, creating: bool) -> dict[str, Any]:
    """The API's body for this form; ``creating`` adds job_type, id and idempotency_key."""
    body: dict[str, Any] = {}
    if creating:
        body["job_type"] = form.get("job_type", "")
        for name in ("id", "idempotency_key"):
            value = form.get(name, "").strip()
            if value:
                body[name] = value
    body.update(schedule_body(form))
    body["payload"] = parse_payload(form.get("payload", ""))
    for name in ("misfire", "overlap"):
        if form.get(name):
            body[name] = form[name]
    for name in ("misfire_grace_seconds", "max_attempts"):
        if form.get(name, "").strip():
            body[name] = _int(form[name])
    if form.get("timeout_seconds", "").strip():
        body["timeout_seconds"] = _number(form["timeout_seconds"])
    return body


def changes(job: Job, body: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body: what ``body`` changes on ``job`` (a schedule field only when the schedule
    itself changed, since any schedule field restarts the job's timing)."""
    patch: dict[str, Any] = {}
    current_kind = "cron" if job.cron else "interval_seconds" if job.interval_seconds else "schedule_at"
    current = {"cron": job.cron, "interval_seconds": job.interval_seconds, "schedule_at": to_iso(job.schedule_at)}
    for name in ("cron", "interval_seconds", "schedule_at"):
        wanted = " ".join(body[name].split()) if name == "cron" and isinstance(body.get(name), str) else body.get(name)
        if name in body and (name != current_kind or wanted != current[name]):
            patch[name] = body[name]
    if body.get("timezone") != job.timezone:
        patch["timezone"] = body.get("timezone")
    if body.get("payload") != job.payload:
        patch["payload"] = body.get("payload")
    for name in ("misfire", "overlap"):
        if name in body and body[name] != getattr(job, name).value:
            patch[name] = body[name]
    for name in ("misfire_grace_seconds", "max_attempts", "timeout_seconds"):
        if name in body and body[name] != getattr(job, name):
            patch[name] = body[name]
    return patch


def job_form(job: Job) -> dict[str, str]:
    """A stored job as the form's fields (strings)."""
    kind = "cron" if job.cron else "interval" if job.interval_seconds else "once"
    local = ""
    if job.schedule_at is not None:
        try:
            local = job.schedule_at.astimezone(zone(job.timezone)).strftime("%Y-%m-%dT%H:%M")
        except (ValueError, OverflowError):
            local = job.schedule_at.strftime("%Y-%m-%dT%H:%M")
    return {
        "job_type": job.job_type,
        "id": job.id,
        "idempotency_key": job.idempotency_key or "",
        "kind": kind,
        "cron": job.cron or "",
        "interval_seconds": str(job.interval_seconds or ""),
        "schedule_at": local,
        "timezone": job.timezone,
        "payload": json.dumps(job.payload, indent=2, ensure_ascii=False),
        "misfire": job.misfire.value,
        "misfire_grace_seconds": str(job.misfire_grace_seconds),
        "overlap": job.overlap.value,
        "max_attempts": str(job.max_attempts),
        "timeout_seconds": "" if job.timeout_seconds is None else f"{job.timeout_seconds:g}",
    }


NEW_JOB_FORM = {
    "job_type": "",
    "id": "",
    "idempotency_key": "",
    "kind": "cron",
    "cron": "*/5 * * * *",
    "interval_seconds": "900",
    "schedule_at": "",
    "timezone": "UTC",
    "payload": "{}",
    "misfire": "run_once",
    "misfire_grace_seconds": "60",
    "overlap": "skip",
    "max_attempts": "3",
    "timeout_seconds": "",
}
