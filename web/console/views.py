"""The console's pages and actions (see :mod:`web.console` for the modes and the contract).

Pages (GET, read-only, complete without JavaScript):

``/``                   dashboard: status counts, due, oldest overdue, leases, last 20 ticks,
                        failures in 24 h, shadow parity (shadow mode), two 24-hour figures
``/jobs``               filter by status and type, search id / idempotency key, cursor pages
``/jobs/<id>``          every field, next 10 fire times, last 20 runs, duration strip, audit
``/new``, ``/jobs/<id>/edit``   the job form; ``/preview`` its live schedule preview (htmx)
``/executions``         history, by job, outcome and time range

Actions (POST, admins only, CSRF-checked; each answers 303 to the job's page):
``/jobs/<id>/pause|resume|run|cancel|release``, ``/new``, ``/jobs/<id>/edit``, and
``/jobs`` (pause or resume the selected jobs). ``cancel`` and a forced ``release``
need the ``confirm`` box ticked.

htmx requests (``HX-Request``) to ``/`` and ``/jobs`` get only the live part of the
page, which ``console.js`` reloads every ``CONSOLE_REFRESH_SECONDS`` unless paused.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import available_timezones

from flask import Blueprint, Flask, abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from scheduler.describe import describe_schedule
from scheduler.errors import ConflictError, JobNotFound, StoreError, ValidationError
from scheduler.jobspec import build_job
from scheduler.model import Execution, Job, JobStatus, Outcome, to_iso
from scheduler.timing import next_fire_after, zone
from web.api import Query, checked_job_id, status_report, strict_timestamp
from web.console import figures
from web.console.auth import IAP_HEADER, ConsoleAuth, ConsoleAuthError
from web.console.csrf import COOKIE, FIELD, Csrf, CsrfError
from web.console.forms import KINDS, NEW_JOB_FORM, changes, form_field, job_body, job_form, schedule_body
from web.context import crontick

log = logging.getLogger(__name__)

EXTENSION = "crontick_console"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
SEARCH_SCAN_LIMIT = 20_000  # jobs a search reads at most (stores have no text index)
DASHBOARD_EXECUTIONS = 5_000  # history rows the dashboard's 24-hour figures read at most
EXECUTIONS_PAGE = 100
FAILURES_SHOWN = 10
PREVIEW_COUNT = 5
DETAIL_FIRE_TIMES = 10
DETAIL_RUNS = 20
STRIP_RUNS = 50
ACTIONS = ("pause", "resume", "run", "cancel", "release", "backfill")
BULK_ACTIONS = ("pause", "resume")
# The vendored htmx: tests check the file against this digest (web/static/vendor/).
HTMX_FILE = "vendor/htmx-2.0.11.min.js"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# What <input type=datetime-local> sends ("2026-01-05T12:00", seconds optional): read as UTC.
_DATETIME_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")

bp = Blueprint("console", __name__, template_folder="../templates", static_folder="../static", static_url_path="/assets")


@dataclass
class ConsoleState:
    """The console's per-app setup: its auth mode, verifier, CSRF signer and zone list."""

    mode: str
    auth: ConsoleAuth
    csrf: Csrf
    zones: list[str] | None = None


def setup(app: Flask, mode: str) -> None:
    settings = app.extensions["crontick"].settings
    app.extensions[EXTENSION] = ConsoleState(mode, ConsoleAuth(settings, mode), Csrf(settings.console_secret_key))


def _state() -> ConsoleState:
    return current_app.extensions[EXTENSION]


# -- every request -------------------------------------------------------------------
@bp.before_request
def _sign_in() -> None:
    if request.endpoint == "console.static":
        return
    state = _state()
    g.console_sid, g.console_new_session = state.csrf.session_id(request)
    g.console_user = state.auth.user(request.headers.get(IAP_HEADER))
    if request.method == "POST":
        if not g.console_user.can_act:
            raise ConsoleAuthError(403, f"{g.console_user.email} may look but not change anything (CONSOLE_VIEWER_EMAILS)", email=g.console_user.email)
        state.csrf.check(request, g.console_sid, g.console_user.email)


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
        response.vary.add(IAP_HEADER)
    if getattr(g, "console_new_session", False):
        secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"
        response.set_cookie(COOKIE, g.console_sid, httponly=True, samesite="Strict", secure=secure, path="/")
    return response


@bp.app_template_global()
def csrf_token() -> str:
    return _state().csrf.token(g.console_sid, g.console_user.email)


@bp.context_processor
def _context() -> dict[str, Any]:
    ct = crontick()
    return {
        "user": getattr(g, "console_user", None),
        "now": ct.clock(),
        "refresh_seconds": ct.settings.console_refresh_seconds,
        "htmx_file": HTMX_FILE,
        "csrf_field": FIELD,
        "console_mode": _state().mode,
    }


# -- errors as pages ---------------------------------------------------------------------
@bp.errorhandler(ConsoleAuthError)
def _denied(exc: ConsoleAuthError):
    if exc.status == 503:
        log.error("Console sign-in unavailable", extra={"json_fields": {"action": "console_auth_unavailable", "error": exc.message}})
    else:
        log.warning("Console request refused", extra={"json_fields": {"action": "console_auth_refused", "status": exc.status, "email": exc.email, "reason": exc.message}})
    return render_template("console/denied.html", status=exc.status, message=exc.message, email=exc.email, user=None), exc.status


@bp.errorhandler(CsrfError)
def _csrf(exc: CsrfError):
    log.warning("Console POST refused: CSRF", extra={"json_fields": {"action": "console_csrf_refused", "reason": str(exc), "email": g.console_user.email}})
    return render_template("console/error.html", status=403, title="Refused", message=str(exc)), 403


@bp.errorhandler(ValidationError)
def _invalid(exc: ValidationError):
    return render_template("console/error.html", status=400, title="Refused", message=exc.message, field=exc.field), 400


@bp.errorhandler(JobNotFound)
def _not_found(exc: JobNotFound):
    return render_template("console/error.html", status=404, title="No such job", message=str(exc)), 404


@bp.errorhandler(StoreError)
def _store(exc: StoreError):
    log.error("Store unavailable", extra={"json_fields": {"action": "console_store_unavailable", "error": str(exc), "error_type": type(exc).__name__}})
    response = current_app.make_response((render_template("console/error.html", status=503, title="The job store is unavailable", message=str(exc)), 503))
    response.headers["Retry-After"] = "30"
    return response


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException):
    return render_template("console/error.html", status=exc.code or 500, title=exc.name, message=exc.description), exc.code or 500


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("Unhandled error in the console", extra={"json_fields": {"action": "console_error", "path": request.path}})
    return render_template("console/error.html", status=500, title="Something went wrong", message="internal error; see the service log"), 500


# -- formatting helpers for templates -------------------------------------------------
@bp.app_template_filter("local")
def local_time(when: datetime | None, tz_name: str = "UTC") -> str:
    """``Mon 2026-01-05 13:00:00 CET`` in ``tz_name`` (UTC when the zone cannot show it)."""
    if when is None:
        return "—"
    try:
        local = when.astimezone(zone(tz_name))
    except (ValueError, OverflowError):
        local = when.astimezone(timezone.utc)
    return f"{local:%a %Y-%m-%d %H:%M:%S} {local.tzname() or tz_name}"


@bp.app_template_filter("utc")
def utc_time(when: datetime | None) -> str:
    return "—" if when is None else f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


@bp.app_template_filter("relative")
def relative(when: datetime | None, now: datetime) -> str:
    """``in 5 min``, ``3 h ago``, ``now``."""
    if when is None:
        return ""
    seconds = (when - now).total_seconds()
    size = abs(seconds)
    if size < 1:
        return "now"
    if size < 60:
        text = f"{size:.0f} s"
    elif size < 7200:
        text = f"{size / 60:.0f} min"
    elif size < 48 * 3600:
        text = f"{size / 3600:.0f} h"
    else:
        text = f"{size / 86400:.0f} days"
    return f"in {text}" if seconds > 0 else f"{text} ago"


@bp.app_template_filter("duration")
def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms >= 120_000:
        return f"{ms / 60000:.1f} min"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.0f} ms"


@bp.app_template_filter("pretty")
def pretty_json(value: Any) -> str:
    """JSON for people (indented, characters as they are); the template escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@bp.app_template_filter("schedule")
def schedule_words(job: Job) -> str:
    return describe_schedule(job)


def _render(template: str, status: int = 200, **context: Any):
    return render_template(template, **context), status


def _is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _actor() -> str:
    return g.console_user.email


# -- dashboard ---------------------------------------------------------------------
@bp.get("/")
def dashboard():
    Query()
    ct = crontick()
    now = ct.clock()
    report = status_report(ct, ticks=0)  # the ticks are read below, as records
    executions = ct.store.list_executions(since=now - timedelta(hours=24), limit=DASHBOARD_EXECUTIONS)
    hours = figures.hourly_summary(executions, now)
    failures = [e for e in executions if e.outcome in (Outcome.FAILED, Outcome.DEAD)]
    shadow = None
    if ct.settings.shadow_mode:
        from scheduler.shadow import shadow_report

        shadow = shadow_report(ct.store, now=now, window=timedelta(hours=1))
    context = {
        "report": report,
        "ticks": ct.store.recent_ticks(20),
        "statuses": [s.value for s in JobStatus],
        "failures": failures[:FAILURES_SHOWN],
        "failure_count": len(failures),
        "executions_read": len(executions),
        "history_limit": ct.settings.history_limit,
        "executions_capped": len(executions) >= DASHBOARD_EXECUTIONS,
        "lag_chart": figures.lag_chart(hours),
        "runs_chart": figures.runs_chart(hours),
        "shadow": shadow,
        "overdue_since": report["oldest_overdue"] and datetime.fromisoformat(report["oldest_overdue"]["due_since"].replace("Z", "+00:00")),
    }
    if _is_htmx():
        return _render("console/_dashboard_live.html", **context)
    return _render("console/dashboard.html", **context)


# -- jobs list -------------------------------------------------------------------------
def _search(store, query: str, *, status: JobStatus | None, job_type: str | None, after: str | None, limit: int) -> tuple[list[Job], bool, int]:
    """Jobs whose id or idempotency key contains ``query`` (case-insensitive), by id after
    ``after``: up to ``limit + 1`` of them, whether the scan stopped at its cap, jobs read."""
    needle = query.lower()
    found: list[Job] = []
    read = 0
    cursor = after
    while len(found) <= limit and read < SEARCH_SCAN_LIMIT:
        page = store.list_jobs(status=status, job_type=job_type, limit=MAX_PAGE_SIZE, after_id=cursor)
        for job in page:
            read += 1
            if needle in job.id.lower() or (job.idempotency_key is not None and needle in job.idempotency_key.lower()):
                found.append(job)
        if len(page) < MAX_PAGE_SIZE:
            return found, False, read
        cursor = page[-1].id
    return found, read >= SEARCH_SCAN_LIMIT, read


def _list_context() -> dict[str, Any]:
    query = Query("status", "job_type", "q", "cursor", "limit")
    given = {name for name, value in query.args.items() if value}  # the filter form sends "" for "any"
    status = query.choice("status", tuple(s.value for s in JobStatus)) if "status" in given else None
    job_type = query.text("job_type") if "job_type" in given else None
    text = query.text("q", max_length=500) if "q" in given else None
    limit = query.integer("limit", PAGE_SIZE, minimum=1, maximum=MAX_PAGE_SIZE) if "limit" in given else PAGE_SIZE
    cursor = query.job_id("cursor") if "cursor" in given else None
    ct = crontick()
    status_filter = JobStatus(status) if status else None
    capped = False
    if text:
        jobs, capped, _ = _search(ct.store, text, status=status_filter, job_type=job_type, after=cursor, limit=limit)
    else:
        jobs = ct.store.list_jobs(status=status_filter, job_type=job_type, limit=limit + 1, after_id=cursor)
    page = jobs[:limit]
    filters = {"status": status or "", "job_type": job_type or "", "q": text or ""}
    if limit != PAGE_SIZE:
        filters["limit"] = str(limit)
    next_cursor = page[-1].id if len(jobs) > limit else None
    return {
        "jobs": page,
        "filters": filters,
        "next_url": url_for("console.jobs", **{k: v for k, v in filters.items() if v}, cursor=next_cursor) if next_cursor else None,
        "first_url": url_for("console.jobs", **{k: v for k, v in filters.items() if v}) if cursor else None,
        "search_capped": capped,
        "statuses": [s.value for s in JobStatus],
        "job_types": ct.registry.names(),
    }


@bp.get("/jobs")
def jobs():
    try:
        context = _list_context()
    except ValidationError as exc:
        return _render("console/jobs.html", 400, jobs=[], filters={}, statuses=[s.value for s in JobStatus], job_types=crontick().registry.names(), errors={exc.field: exc.message})
    if _is_htmx():
        return _render("console/_jobs_live.html", **context)
    return _render("console/jobs.html", **context)


@bp.post("/jobs")
def bulk_action():
    action = request.form.get("action", "")
    ids = request.form.getlist("ids")
    if action not in BULK_ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(BULK_ACTIONS)}", "action")
    service = crontick().service
    done: list[str] = []
    refused: list[tuple[str, str]] = []
    for job_id in ids:
        try:
            checked_job_id(job_id)
            if action == "pause":
                service.pause(job_id, actor=_actor())
            else:
                service.resume(job_id, actor=_actor())
            done.append(job_id)
        except (ConflictError, JobNotFound, ValidationError) as exc:
            refused.append((job_id, getattr(exc, "message", str(exc))))
    log.info("Console bulk action", extra={"json_fields": {"action": f"console_bulk_{action}", "actor": _actor(), "done": len(done), "refused": len(refused)}})
    return _render("console/bulk.html", 200 if ids else 400, verb=action, done=done, refused=refused, nothing=not ids)


# -- job detail and actions ---------------------------------------------------------
def _detail_context(job: Job, **extra: Any) -> dict[str, Any]:
    ct = crontick()
    fire_times: list[datetime] = []
    if not job.status.is_final:
        fire_times = ct.service.preview(job.id, DETAIL_FIRE_TIMES)
    runs = ct.store.list_executions(job_id=job.id, limit=STRIP_RUNS)
    return {
        "job": job,
        "fire_times": fire_times,
        "runs": runs[:DETAIL_RUNS],
        "strip": figures.duration_strip(runs),
        "audit": list(reversed(job.audit)),
        "done": request.args.get("done") if request.args.get("done") in (*ACTIONS, "create", "edit") else None,
        "action_errors": {},
        **extra,
    }


@bp.get("/jobs/<job_id>")
def job_detail(job_id: str):
    job = crontick().service.get(checked_job_id(job_id))
    return _render("console/job.html", **_detail_context(job))


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str):
    if action not in ACTIONS:
        abort(404, f"no action {action!r}; actions: {', '.join(ACTIONS)}")
    service = crontick().service
    checked_job_id(job_id)
    form = request.form
    note = form.get("note")
    try:
        if action == "backfill":
            window = {name: _utc_form_value(form.get(name), name) for name in ("start", "end")}
            service.backfill(job_id, window, actor=_actor())
        elif action == "pause":
            service.pause(job_id, actor=_actor(), note=note)
        elif action == "resume":
            service.resume(job_id, catch_up=form.get("catch_up") == "yes", actor=_actor(), note=note)
        elif action == "run":
            service.run_now(job_id, actor=_actor(), note=note)
        elif action == "cancel":
            if form.get("confirm") != "yes":
                raise ValidationError("tick the box to confirm: a cancelled job never runs again", "confirm")
            service.cancel(job_id, actor=_actor(), note=note)
        else:
            force = form.get("force") == "yes"
            if force and form.get("confirm") != "yes":
                raise ValidationError("tick the box to confirm taking a live lease: the running handler's result will be dropped", "confirm")
            service.release(job_id, force=force, actor=_actor(), note=note)
    except (ConflictError, ValidationError) as exc:
        status = 409 if isinstance(exc, ConflictError) else 400
        message = exc.message if isinstance(exc, ValidationError) else str(exc)
        job = service.get(job_id)
        return _render("console/job.html", status, **_detail_context(job, action_errors={action: message}))
    log.info("Console action", extra={"json_fields": {"action": f"console_{action}", "job_id": job_id, "actor": _actor()}})
    return redirect(url_for("console.job_detail", job_id=job_id, done=action), 303)


def _utc_form_value(value: str | None, name: str) -> str | None:
    """A ``datetime-local`` field (``2026-01-05T09:00``, read as UTC) as RFC 3339."""
    if not value:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?", value):
        raise ValidationError(f"{name} must be a date and time such as 2026-01-05T09:00", name)
    return value + (":00" if len(value) == 16 else "") + "Z"


# -- create and edit ------------------------------------------------------------------
def _zones() -> list[str]:
    state = _state()
    if state.zones is None:
        state.zones = sorted(available_timezones())
    return state.zones


def _type_hints() -> dict[str, str]:
    """Each registered type's payload hint: ours for the built-ins, else the first paragraph
    of the handler's docstring."""
    registry = crontick().registry
    hints = {}
    for name in registry.names():
        doc = (getattr(registry.get(name), "__doc__", None) or "").strip()
        hints[name] = BUILTIN_HINTS.get(name) or doc.split("\n\n")[0].strip()
    return hints


BUILTIN_HINTS = {
    "log": 'Logs the payload as it is, e.g. {"msg": "hello"}.',
    "http_request": 'Calls a URL: {"url": "https://example.com/hook", "method": "POST", "json": {...}, "headers": {...}, "timeout_seconds": 30, "oidc_audience": "..."}; a non-2xx answer fails the attempt.',
    "chat_message": 'Posts to Google Chat: {"text": "Stand-up in 5 minutes", "space": "spaces/AAAA"} or {"text": "...", "webhook_url": "https://chat.googleapis.com/..."}.',
}


def _form_page(template_job: Job | None, form: dict[str, str], errors: dict[str, str] | None = None, status: int = 200):
    return _render(
        "console/form.html",
        status,
        job=template_job,
        form=form,
        errors=errors or {},
        kinds=KINDS,
        zones=_zones(),
        job_types=crontick().registry.names(),
        hints=_type_hints(),
        preview=_preview(form),
        misfires=["run_once", "skip", "run_all"],
        overlaps=["skip", "buffer_one", "buffer_all", "replace"],
    )


@bp.get("/new")
def new_job():
    Query()
    form = dict(NEW_JOB_FORM, job_type=crontick().registry.names()[0] if crontick().registry.names() else "")
    return _form_page(None, form)


@bp.post("/new")
def create_job():
    form = {name: request.form.get(name, "") for name in NEW_JOB_FORM}
    try:
        body = job_body(request.form, creating=True)
        job, created = crontick().service.create(body, created_by=_actor())
    except ValidationError as exc:
        return _form_page(None, form, {form_field(exc.field): exc.message}, 400)
    log.info("Console created a job", extra={"json_fields": {"action": "console_create", "job_id": job.id, "created": created, "actor": _actor()}})
    return redirect(url_for("console.job_detail", job_id=job.id, done="create" if created else None), 303)


@bp.get("/jobs/<job_id>/edit")
def edit_job(job_id: str):
    Query()
    job = crontick().service.get(checked_job_id(job_id))
    return _form_page(job, job_form(job))


@bp.post("/jobs/<job_id>/edit")
def save_job(job_id: str):
    service = crontick().service
    job = service.get(checked_job_id(job_id))
    form = dict(job_form(job), **{name: request.form.get(name, "") for name in NEW_JOB_FORM if name not in ("job_type", "id", "idempotency_key")})
    try:
        patch = changes(job, job_body(request.form, creating=False))
        if patch:
            service.patch(job_id, patch, actor=_actor(), note=request.form.get("note"))
    except ValidationError as exc:
        return _form_page(job, form, {form_field(exc.field): exc.message}, 400)
    except ConflictError as exc:
        return _form_page(job, form, {"form": str(exc)}, 409)
    return redirect(url_for("console.job_detail", job_id=job_id, done="edit" if patch else None), 303)


# -- the schedule preview -------------------------------------------------------------------
def _preview(form: Any) -> dict[str, Any]:
    """What the schedule in ``form`` means: its description and next fire times, or the API's
    refusal. The job is built by the API's own validation (``build_job``) and never stored."""
    ct = crontick()
    names = ct.registry.names()
    try:
        body = schedule_body(form)
        job = build_job({"job_type": names[0] if names else "log", **body}, known_types=names or ["log"], now=ct.clock(), limits=ct.service.limits)
    except ValidationError as exc:
        return {"error": exc.message, "field": form_field(exc.field)}
    times = [job.next_run_at] if job.next_run_at is not None else []
    while len(times) < PREVIEW_COUNT and job.is_recurring:
        following = next_fire_after(job, times[-1])
        if following is None:
            break
        times.append(following)
    return {"description": describe_schedule(job), "times": times, "timezone": job.timezone}


@bp.get("/preview")
def preview():
    Query("kind", "cron", "interval_seconds", "schedule_at", "timezone")
    return _render("console/_preview.html", preview=_preview(request.args))


# -- executions ----------------------------------------------------------------------------
def _form_timestamp(query: Query, name: str) -> datetime | None:
    raw = query.args.get(name)
    if not raw:
        return None
    match = _DATETIME_LOCAL.match(raw)
    if match:
        raw += "Z" if match.group(1) else ":00Z"
    return strict_timestamp(raw, name)


@bp.get("/executions")
def executions():
    ct = crontick()
    filters: dict[str, str] = {}
    rows: list[Execution] = []
    errors: dict[str, str] = {}
    status = 200
    try:
        query = Query("job_id", "outcome", "since", "until")
        filters = {name: query.args.get(name, "") for name in ("job_id", "outcome", "since", "until")}
        job_id = query.job_id("job_id") if filters["job_id"] else None
        outcome = query.choice("outcome", tuple(o.value for o in Outcome)) if filters["outcome"] else None
        since = _form_timestamp(query, "since")
        until = _form_timestamp(query, "until")
        if since is not None and until is not None and since > until:
            raise ValidationError("since must not be after until", "since")
        if job_id is not None:
            ct.store.get_job(job_id)
        rows = ct.store.list_executions(job_id=job_id, outcome=outcome, since=since, until=until, limit=EXECUTIONS_PAGE + 1)
    except ValidationError as exc:
        errors, status = {exc.field or "form": exc.message}, 400
    except JobNotFound as exc:
        errors, status = {"job_id": str(exc)}, 404
    older = None
    if len(rows) > EXECUTIONS_PAGE:
        rows = rows[:EXECUTIONS_PAGE]
        older_until = rows[-1].started_at - timedelta(microseconds=1)
        older = url_for("console.executions", **{k: v for k, v in filters.items() if v and k != "until"}, until=to_iso(older_until))
    return _render("console/executions.html", status, rows=rows, filters=filters, errors=errors, outcomes=[o.value for o in Outcome], older_url=older)
