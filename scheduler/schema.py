"""A job's fields, defined once: type, limits, default and a one-line doc each.

Everything else derives from :data:`FIELDS`:

* request validation for API create and PATCH, the CLI and Chat
  (:mod:`scheduler.jobspec`: which fields each accepts, their types and bounds);
* the checks every stored or imported job must pass (``jobspec.job_problems``);
* the OpenAPI components (``web/openapi.py`` keeps only the routes);
* the stores' field lists (:class:`~scheduler.model.Job` has exactly these fields,
  in this order; a test keeps them equal).

Adding a field is one entry here plus its dataclass field on ``Job`` (and its
meaning in the engine). Plain data, no library: importing it costs nothing at
cold start (pydantic v2 measured 174 ms to import and build one model here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- limits: the only copy ---------------------------------------------------------
MAX_PAYLOAD_DEPTH = 32  # nesting levels of objects and arrays, the payload object itself being 1
MAX_PAYLOAD_BYTES = 64 * 1024  # the payload as compact UTF-8 JSON; Firestore's document limit is 1 MiB
MAX_PAYLOAD_KEYS = 1000  # keys of the payload object itself
MAX_ATTEMPTS = 100
MAX_INTERVAL_SECONDS = 366 * 86400
MAX_GRACE_SECONDS = 366 * 86400
MAX_IDEMPOTENCY_KEY_CHARS = 500
MAX_TIMEOUT_SECONDS_TASKS = 1800.0  # Cloud Tasks' longest dispatch deadline for an HTTP task
MIN_TIMEOUT_SECONDS = 0.001
MAX_JITTER_SECONDS = 3600
MAX_RUNS = 1_000_000_000
MAX_NOTE_CHARS = 500
MAX_ZONE_CHARS = 64
MIN_YEAR, MAX_YEAR = 1970, 9999
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_BACKFILL_RUNS = 1000  # occurrences one backfill request may add

STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
MISFIRES = ("run_once", "skip", "run_all")
OVERLAPS = ("skip", "buffer_one", "buffer_all", "replace")
DST_GAPS = ("shift", "skip")
DST_REPEATS = ("first", "second", "both")
SCHEDULE_FIELDS = ("schedule_at", "cron", "interval_seconds")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One job field. ``kind``: string, integer, number, boolean, object, timestamp,
    choice or audit. ``create``/``patch``: accepted by those requests; a field that is
    neither is read-only (set by crontick). ``nullable``: ``null`` is a value of it."""

    name: str
    kind: str
    doc: str
    default: Any = None
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    create: bool = False
    patch: bool = False
    example: Any = None


def _in(name: str, kind: str, doc: str, **options: Any) -> FieldSpec:
    """An input field: accepted on create and PATCH unless told otherwise."""
    return FieldSpec(name, kind, doc, create=options.pop("create", True), patch=options.pop("patch", True), **options)


def _out(name: str, kind: str, doc: str, **options: Any) -> FieldSpec:
    return FieldSpec(name, kind, doc, **options)


FIELDS: tuple[FieldSpec, ...] = (
    _in("id", "string", "The job's id; default: generated.", pattern=JOB_ID_PATTERN, max_length=128, patch=False, example="nightly-report"),
    _in("job_type", "string", "A registered job type (its handler).", max_length=200, patch=False, example="http_request"),
    _in(
        "payload", "object",
        f"JSON object passed to the handler: at most {MAX_PAYLOAD_DEPTH} levels deep and {MAX_PAYLOAD_BYTES} bytes as compact "
        "UTF-8 JSON, finite numbers, valid Unicode.",
        default={}, example={"url": "https://example.com/report", "method": "POST"},
    ),
    _out("status", "choice", "pending, running, paused, completed, failed (dead letter) or cancelled.", choices=STATUSES),
    _out("next_run_at", "timestamp", "When the job is next due (jitter included); null once final.", nullable=True),
    _out("fire_at", "timestamp", "The nominal fire time of the occurrence it waits to run (handlers see ctx.fire_at).", nullable=True),
    _out("created_at", "timestamp", "When the job was created."),
    _out("updated_at", "timestamp", "When the job last changed."),
    _in("schedule_at", "timestamp", f"One-off: RFC 3339 time with an offset, years {MIN_YEAR} to {MAX_YEAR}.", nullable=True, example="2026-12-01T09:00:00+01:00"),
    _in("cron", "string", "Recurring: 5-field cron expression (or @daily, @hourly ...), read in `timezone`.", nullable=True, max_length=200, example="0 9 * * 1-5"),
    _in("interval_seconds", "integer", "Recurring: every N seconds, on a grid anchored at creation.", nullable=True, minimum=1, maximum=MAX_INTERVAL_SECONDS, example=900),
    _in("timezone", "string", "IANA zone the cron expression is read in.", default="UTC", max_length=MAX_ZONE_CHARS, example="Europe/Paris"),
    _in("misfire", "choice", "An overdue recurring job: run_once (once now), skip (not when later than the grace), run_all (every missed time).", default="run_once", choices=MISFIRES),
    _in("misfire_grace_seconds", "integer", "How late a misfire=skip job may still run.", default=60, minimum=0, maximum=MAX_GRACE_SECONDS),
    _in(
        "overlap", "choice",
        "Fire times that pass while the previous run still goes: skip (each recorded as skipped_overlap), buffer_one (one run "
        "right after), buffer_all (each, oldest first), replace (the new occurrence cancels the running one).",
        default="skip", choices=OVERLAPS,
    ),
    _in("max_attempts", "integer", "Attempts per occurrence before the dead letter (or pause_on_failure).", default=3, minimum=1, maximum=MAX_ATTEMPTS),
    _in(
        "timeout_seconds", "number",
        "Seconds before a run counts as failed; default SCHEDULER_JOB_TIMEOUT_SECONDS. Inline it must be below the tick budget "
        f"(SCHEDULER_TICK_BUDGET_SECONDS); with SCHEDULER_DISPATCH=cloud_tasks up to {MAX_TIMEOUT_SECONDS_TASKS:g}.",
        nullable=True, minimum=MIN_TIMEOUT_SECONDS, maximum=MAX_TIMEOUT_SECONDS_TASKS, example=30,
    ),
    _in(
        "dst_gap", "choice",
        "Cron: a wall time that spring-forward skips fires at the first instant after the gap (shift) or not that day (skip).",
        default="shift", choices=DST_GAPS,
    ),
    _in(
        "dst_repeat", "choice",
        "Cron: which copy of a wall time that fall-back repeats fires: first, second or both; null: first when the hour field "
        "is fixed, both when it is a wildcard (Vixie cron's rule).",
        nullable=True, choices=DST_REPEATS,
    ),
    _in(
        "jitter_seconds", "integer",
        f"Delay each run by up to this many seconds (0 to the smaller of half the period and {MAX_JITTER_SECONDS}), derived "
        "from (job id, fire time), so every instance and every retry agrees.",
        default=0, minimum=0, maximum=MAX_JITTER_SECONDS, example=30,
    ),
    _in("starts_at", "timestamp", "No fire time before this instant.", nullable=True, example="2026-12-01T00:00:00Z"),
    _in("ends_at", "timestamp", "No fire time after this instant; the job completes when it has none left.", nullable=True, example="2027-06-30T00:00:00Z"),
    _in("max_runs", "integer", "Occurrences to run (succeeded or dead-lettered) before the job completes; null: no limit.", nullable=True, minimum=1, maximum=MAX_RUNS, example=10),
    _in("pause_on_failure", "boolean", "A dead letter pauses the job instead (with a note saying why), to resume after a fix.", default=False),
    _in(
        "catch_up_window_seconds", "integer",
        "misfire=run_all (and overlap=buffer_all) replay only fire times younger than this; null: bounded by count alone (100).",
        nullable=True, minimum=1, maximum=MAX_INTERVAL_SECONDS, example=3600,
    ),
    _out("run_count", "integer", "Occurrences run so far (succeeded or dead-lettered): max_runs counts these.", default=0, minimum=0),
    _out("note", "string", "The latest operator note (pause, resume) or why crontick paused the job.", nullable=True, max_length=MAX_NOTE_CHARS),
    _out("backfill_of", "string", "A backfilled occurrence: the id of the job it was backfilled from.", nullable=True),
    _out("attempts", "integer", "Attempts made at the current occurrence (a claim counts one).", default=0, minimum=0),
    _out("last_run_at", "timestamp", "When the last run started.", nullable=True),
    _out("last_outcome", "string", "succeeded, failed, dead, misfired ... of the last run.", nullable=True),
    _out("last_error", "string", "The last failure's error text.", nullable=True),
    _out("created_by", "string", "Who created the job.", nullable=True),
    _in(
        "idempotency_key", "string", "A repeated create with this key returns the existing job (200).",
        nullable=True, max_length=MAX_IDEMPOTENCY_KEY_CHARS, patch=False, example="report-2026-12",
    ),
    _out("lease_owner", "string", "The tick (or task) holding the job while it runs.", nullable=True),
    _out("lease_until", "timestamp", "When that lease expires (the heartbeat extends it).", nullable=True),
    _out("lease_epoch", "integer", "Raised by every claim and takeover: the fence of a settle.", default=0, minimum=0),
    _out("audit", "audit", "The latest changes made to the job (who, when, what, note), oldest first."),
)

BY_NAME: dict[str, FieldSpec] = {spec.name: spec for spec in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(spec.name for spec in FIELDS)
CREATE_FIELDS: frozenset[str] = frozenset(spec.name for spec in FIELDS if spec.create)
PATCH_FIELDS: frozenset[str] = frozenset(spec.name for spec in FIELDS if spec.patch)
# Output-only keys a job's JSON carries besides its fields.
DERIVED = {"runs_remaining": "max_runs minus run_count; null without max_runs."}


def openapi_property(spec: FieldSpec, *, for_input: bool = False) -> dict[str, Any]:
    """The field as an OpenAPI 3.0 schema property."""
    kinds = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "object": "object", "choice": "string"}
    if spec.kind == "timestamp":
        out: dict[str, Any] = {"type": "string", "format": "date-time"}
    elif spec.kind == "audit":
        out = {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["at", "actor", "action", "detail", "note"],
                "properties": {
                    "at": {"type": "string", "format": "date-time"},
                    "actor": {"type": "string", "nullable": True},
                    "action": {"type": "string"},
                    "detail": {"type": "string", "nullable": True},
                    "note": {"type": "string", "nullable": True},
                },
            },
        }
    else:
        out = {"type": kinds[spec.kind]}
    if spec.choices:
        out["enum"] = list(spec.choices)
    if for_input:
        if spec.minimum is not None:
            out["minimum"] = spec.minimum
        if spec.maximum is not None:
            out["maximum"] = spec.maximum
        if spec.max_length is not None and spec.kind == "string":
            out["maxLength"] = spec.max_length
        if spec.pattern is not None:
            out["pattern"] = spec.pattern
        if spec.name == "payload":
            out["maxProperties"] = MAX_PAYLOAD_KEYS
    elif spec.minimum is not None and spec.kind == "integer" and spec.minimum == 0:
        out["minimum"] = 0
    out["description"] = spec.doc
    if spec.example is not None:
        out["example"] = spec.example
    # In a request, null means "the default" for every option (jobspec reads `data.get(name) is not None`).
    if spec.nullable or (for_input and spec.name not in ("job_type", "payload", "timezone")):
        out["nullable"] = True
    return out
