"""The operator REST API under ``/api/v1`` (documented by ``web/openapi.py``).

Every route requires an admin identity (``ADMIN_EMAILS``; with ``AUTH_MODE=disabled``
everyone is ``local``). The verbs are :class:`~scheduler.service.JobService`'s;
this module only parses requests strictly and shapes responses:

* a body that is not a JSON object, a wrong type, an unknown field or query
  parameter, a bad value (``status=bogus``, ``limit=0``), a bad timestamp -> 400
  with ``error.field`` naming the culprit;
* an unknown job id (or one that cannot be an id) -> 404; an unknown action
  (``POST /jobs/<id>:bogus``) -> 404;
* a valid request the job's state forbids -> 409; the store down -> 503.

Actions use the custom-method style ``POST /api/v1/jobs/<id>:pause``. Job ids
cannot contain ``:``, so the action is what follows the last colon.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, tzinfo
from typing import Any

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import NotFound, UnsupportedMediaType

from scheduler.errors import JobNotFound, ValidationError
from scheduler.jobspec import ID_RE as JOB_ID_RE
from scheduler.jobspec import MAX_YEAR, MIN_YEAR, parse_timestamp
from scheduler.describe import describe_schedule
from scheduler.model import Job, JobStatus, Outcome, to_iso
from scheduler.timing import PlannedTime, zone
from storage.base import iter_jobs
from web.context import Crontick, crontick
from web.errors import read_body
from web.openapi import build_openapi

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_BODY_BYTES = 1 << 20
MAX_LIST_LIMIT = 1000
MAX_PREVIEW_COUNT = 100
FULL_VIEW_COUNT = 10  # GET /jobs/<id>?view=full: the next fire times and the last runs
MAX_TICKS_SHOWN = 200
ACTIONS = ("pause", "resume", "run", "release", "backfill")
_INT_RE = re.compile(r"^[0-9]{1,9}$")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
# Strict RFC 3339 (the jobspec parser would also take other ISO 8601 spellings).
_RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


# -- request parsing ------------------------------------------------------------
class Query:
    """The query string, refusing unknown and repeated parameters."""

    def __init__(self, *allowed: str) -> None:
        args = request.args
        for name in args:
            if name not in allowed:
                hint = f"; allowed: {', '.join(allowed)}" if allowed else "; this endpoint takes none"
                raise ValidationError(f"unknown query parameter {name!r}{hint}", name)
            if len(args.getlist(name)) > 1:
                raise ValidationError(f"query parameter {name!r} is given more than once", name)
        self.args = args

    def text(self, name: str, *, max_length: int = 200) -> str | None:
        value = self.args.get(name)
        if value is not None and not 1 <= len(value) <= max_length:
            raise ValidationError(f"{name} must be 1 to {max_length} characters", name)
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self.args.get(name)
        if raw is None:
            return default
        if not _INT_RE.match(raw) or not minimum <= int(raw) <= maximum:
            raise ValidationError(f"{name} must be an integer from {minimum} to {maximum}, got {raw[:40]!r}", name)
        return int(raw)

    def boolean(self, name: str) -> bool:
        raw = self.args.get(name)
        if raw is None:
            return False
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValidationError(f"{name} must be true or false, got {raw[:40]!r}", name)

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.args.get(name)
        if raw is not None and raw not in choices:
            raise ValidationError(f"{name} must be one of {', '.join(choices)}, got {raw[:40]!r}", name)
        return raw

    def job_id(self, name: str) -> str | None:
        raw = self.args.get(name)
        if raw is not None and not JOB_ID_RE.match(raw):
            raise ValidationError(f"{name} must be a job id (1-128 letters, digits, '.', '_' or '-')", name)
        return raw

    def timestamp(self, name: str) -> datetime | None:
        raw = self.args.get(name)
        if raw is None:
            return None
        return strict_timestamp(raw, name)


def strict_timestamp(raw: Any, name: str) -> datetime:
    if isinstance(raw, str) and not _RFC3339_RE.match(raw):
        hint = " (a '+' in a query string must be sent as %2B, or use 'Z')" if " " in raw else ""
        raise ValidationError(f"{name} must be an RFC 3339 timestamp with an offset, e.g. 2026-01-05T12:00:00Z; got {raw[:60]!r}{hint}", name)
    try:
        parsed = parse_timestamp(raw, name)
    except (OverflowError, ValueError):
        parsed = None
    if parsed is None or not MIN_YEAR <= parsed.year <= MAX_YEAR:
        # Years below 1000 would also be stored unpadded ("3-06-01T...") and unreadable.
        raise ValidationError(f"{name} {str(raw)[:60]!r} is out of range: years {MIN_YEAR} to {MAX_YEAR}", name)
    return parsed


def json_body() -> Any:
    """The request body as JSON; 400 naming ``body`` when it is absent or not JSON."""
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as JSON with 'Content-Type: application/json', not {mimetype!r}")
    raw = read_body(MAX_BODY_BYTES)
    if not raw.strip():
        raise ValidationError("the request body must be a JSON object", "body")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise ValidationError("the request body is nested too deeply", "body") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise ValidationError(f"the request body is not valid JSON: {exc}", "body") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def checked_job_id(job_id: str) -> str:
    """A string that cannot be an id names no job: 404 without asking the store."""
    if not JOB_ID_RE.match(job_id):
        raise JobNotFound(job_id)
    return job_id


def _job(job: Job, status: int = 200):
    return jsonify(job.to_dict()), status


# -- schedule description ------------------------------------------------------
# -- status ------------------------------------------------------------------------
STATUS_PAGE = 500
EXPIRED_IDS_SHOWN = 20


def status_report(ct: Crontick, *, ticks: int = 10) -> dict[str, Any]:
    """Store-wide figures for operators.

    Cost: ``count_by_status`` and ``count_due``, plus a scan of every running job
    (leases) and every pending job (the oldest due one), ``STATUS_PAGE`` per read.
    """
    store = ct.store
    now = ct.clock()
    counts = store.count_by_status()
    due = store.count_due(now)
    held = 0
    expired: list[Job] = []
    oldest: tuple[datetime, Job] | None = None
    for job in iter_jobs(store, status=JobStatus.RUNNING, page_size=STATUS_PAGE):
        if job.lease_until is not None and job.lease_until > now:
            held += 1
            continue
        expired.append(job)
        since = job.lease_until or job.updated_at
        if oldest is None or since < oldest[0]:
            oldest = (since, job)
    for job in iter_jobs(store, status=JobStatus.PENDING, page_size=STATUS_PAGE):
        if job.next_run_at is not None and job.next_run_at <= now and (oldest is None or job.next_run_at < oldest[0]):
            oldest = (job.next_run_at, job)
    overdue = None
    if oldest is not None:
        since, job = oldest
        overdue = {
            "id": job.id,
            "job_type": job.job_type,
            "status": job.status.value,
            "due_since": to_iso(since),
            "lag_seconds": round((now - since).total_seconds(), 3),
        }
    return {
        "store": store.kind,
        "now": to_iso(now),
        "jobs": {"total": sum(counts.values()), "by_status": counts, "due": due},
        "leases": {
            "held": held,
            "expired": len(expired),
            "expired_job_ids": [job.id for job in expired[:EXPIRED_IDS_SHOWN]],
        },
        "oldest_overdue": overdue,
        "recent_ticks": [tick.to_dict() for tick in store.recent_ticks(ticks)] if ticks else [],
    }


# -- routes ------------------------------------------------------------------------
@bp.before_request
def _authenticate() -> None:
    g.crontick_identity = crontick().admin_verifier.verify(request.headers.get("Authorization"))


@bp.get("/openapi.json")
def openapi_document():
    Query()
    ct = crontick()
    return jsonify(build_openapi(ct.registry.names(), auth_required=ct.settings.auth_mode != "disabled"))


@bp.post("/jobs")
def create_job():
    Query()
    body = json_body()
    if isinstance(body, dict) and isinstance(body.get("schedule_at"), str):
        strict_timestamp(body["schedule_at"], "schedule_at")
    job, created = crontick().service.create(body, created_by=g.crontick_identity.email)
    response = jsonify(job.to_dict())
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"{bp.url_prefix}/jobs/{job.id}"
    return response


@bp.get("/jobs")
def list_jobs():
    query = Query("status", "job_type", "limit", "cursor")
    status = query.choice("status", tuple(s.value for s in JobStatus))
    job_type = query.text("job_type")
    limit = query.integer("limit", 100, minimum=1, maximum=MAX_LIST_LIMIT)
    cursor = query.job_id("cursor")
    jobs = crontick().store.list_jobs(status=JobStatus(status) if status else None, job_type=job_type, limit=limit + 1, after_id=cursor)
    page = jobs[:limit]
    next_cursor = page[-1].id if len(jobs) > limit else None
    return jsonify({"jobs": [job.to_dict() for job in page], "next_cursor": next_cursor})


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    view = Query("view").choice("view", ("basic", "full"))
    ct = crontick()
    job = ct.service.get(checked_job_id(job_id))
    if view != "full":
        return _job(job)
    body = job.to_dict()
    body["next_fire_times"] = _fire_times(job, ct.service.planned(job, FULL_VIEW_COUNT)) if not job.status.is_final else []
    body["recent_runs"] = [row.to_dict() for row in ct.store.list_executions(job_id=job.id, limit=FULL_VIEW_COUNT)]
    return jsonify(body)


@bp.patch("/jobs/<job_id>")
def patch_job(job_id: str):
    Query()
    checked_job_id(job_id)
    body = json_body()
    if isinstance(body, dict) and isinstance(body.get("schedule_at"), str):
        strict_timestamp(body["schedule_at"], "schedule_at")
    return _job(crontick().service.patch(job_id, body, actor=g.crontick_identity.email))


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str):
    Query()
    return _job(crontick().service.cancel(checked_job_id(job_id), actor=g.crontick_identity.email))


@bp.post("/jobs/<target>")
def job_action(target: str):
    job_id, colon, action = target.rpartition(":")
    if not colon or action not in ACTIONS:
        raise NotFound(f"no action {action!r}; POST /api/v1/jobs/<id>:{{{'|'.join(ACTIONS)}}}" if colon else "POST a job action as /api/v1/jobs/<id>:<action>")
    checked_job_id(job_id)
    service = crontick().service
    actor = g.crontick_identity.email
    if action == "backfill":
        Query()
        result = service.backfill(job_id, json_body(), actor=actor)
        return jsonify(result.to_dict()), 201 if result.created else 200
    if action == "pause":
        Query()
        job = service.pause(job_id, actor=actor, note=_optional_note())
    elif action == "resume":
        catch_up = Query("catch_up").boolean("catch_up")
        job = service.resume(job_id, catch_up=catch_up, actor=actor, note=_optional_note())
    elif action == "run":
        Query()
        job = service.run_now(job_id, actor=actor)
    else:
        job = service.release(job_id, force=Query("force").boolean("force"), actor=actor)
    return _job(job)


def _optional_note() -> str | None:
    """Pause and resume take an optional body ``{"note": "..."}``, kept on the job and in its audit."""
    if not request.get_data(cache=True).strip():
        return None
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"note"}:
        raise ValidationError('the body must be {"note": "..."} or empty', "note" if isinstance(body, dict) else "body")
    return body.get("note")


@bp.get("/jobs/<job_id>/preview")
def preview_job(job_id: str):
    count = Query("count").integer("count", 5, minimum=1, maximum=MAX_PREVIEW_COUNT)
    service = crontick().service
    job = service.get(checked_job_id(job_id))
    return jsonify(
        {
            "job_id": job.id,
            "status": job.status.value,
            "timezone": job.timezone,
            "schedule": {"cron": job.cron, "interval_seconds": job.interval_seconds, "schedule_at": to_iso(job.schedule_at)},
            "description": describe_schedule(job),
            "fire_times": _fire_times(job, service.planned(job, count)),
        }
    )


def _fire_times(job: Job, planned: list[PlannedTime]) -> list[dict[str, Any]]:
    """Each planned occurrence: ``utc``/``local`` when it runs (jitter included), the
    nominal ``fire_at``, and ``dst`` where the job's DST policy moved or dropped it."""
    tz = zone(job.timezone)
    out = []
    for p in planned:
        if p.note == "beyond_calendar":
            break
        out.append(
            {
                "utc": to_iso(p.run_at),
                "local": None if p.run_at is None else _local(p.run_at, tz),
                "fire_at": to_iso(p.fire_at),
                "dst": p.note,
                "wall_time": None if p.wall is None else p.wall.isoformat(),
            }
        )
    return out


def _local(when: datetime, tz: tzinfo) -> str | None:
    try:
        return when.astimezone(tz).isoformat()
    except OverflowError:  # within hours of year 1 or 9999
        return None


@bp.get("/executions")
def list_executions():
    query = Query("job_id", "outcome", "since", "until", "limit")
    job_id = query.job_id("job_id")
    outcome = query.choice("outcome", tuple(o.value for o in Outcome))
    since = query.timestamp("since")
    until = query.timestamp("until")
    limit = query.integer("limit", 100, minimum=1, maximum=MAX_LIST_LIMIT)
    if since is not None and until is not None and since > until:
        raise ValidationError("since must not be after until", "since")
    ct = crontick()
    if job_id is not None:
        ct.store.get_job(job_id)  # 404 for a job that does not exist
    rows = ct.store.list_executions(job_id=job_id, outcome=outcome, since=since, until=until, limit=limit)
    return jsonify({"executions": [row.to_dict() for row in rows]})


@bp.get("/status")
def status():
    ticks = Query("ticks").integer("ticks", 10, minimum=0, maximum=MAX_TICKS_SHOWN)
    return jsonify(status_report(crontick(), ticks=ticks))

