"""The OpenAPI 3 document of ``/api/v1``, served at ``GET /api/v1/openapi.json``.

Built per app so that ``job_type`` lists the job types this deployment has
registered. ``tests/test_api_fuzz.py`` runs schemathesis against the real app
with this document: every response must carry a documented status and match
its schema, and requests that break the schema must be refused with a 4xx.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scheduler import jobspec
from scheduler.jobspec import JOB_ID_PATTERN
from scheduler.model import JobStatus, Misfire, Outcome, Overlap, Source

MAX_INTERVAL = jobspec.MAX_INTERVAL_SECONDS


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_TIMESTAMP = {"type": "string", "format": "date-time"}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    out = dict(ok)
    for code in ("400", "401", "403", *errors, "503"):
        out[code] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[code][0]}"}
    return out


_ERROR_RESPONSES = {
    "400": ("BadRequest", "Invalid input; `error.field` names the culprit."),
    "401": ("Unauthenticated", "Missing or invalid bearer token."),
    "403": ("Forbidden", "The token's email is not in ADMIN_EMAILS."),
    "404": ("NotFound", "No job with that id (or no such action)."),
    "409": ("Conflict", "The job's current state forbids this operation."),
    "413": ("TooLarge", "The body is over 1 MiB."),
    "415": ("UnsupportedMediaType", "The body is not sent as application/json."),
    "503": ("StoreUnavailable", "The job store is unavailable; retry later."),
}

_JOB_ID_PARAM = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The job's id.",
    "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _job_schema(job_types: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "id", "job_type", "payload", "status", "next_run_at", "fire_at", "created_at", "updated_at",
            "schedule_at", "cron", "interval_seconds", "timezone", "misfire", "overlap", "misfire_grace_seconds",
            "max_attempts", "timeout_seconds", "attempts", "last_run_at", "last_outcome", "last_error",
            "created_by", "idempotency_key", "lease_owner", "lease_until", "lease_epoch", "audit",
        ],
        "properties": {
            "id": {"type": "string"},
            "job_type": {"type": "string"},
            "payload": {"type": "object"},
            "status": {"type": "string", "enum": [s.value for s in JobStatus]},
            "next_run_at": _nullable(_TIMESTAMP),
            "fire_at": _nullable(_TIMESTAMP),
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "schedule_at": _nullable(_TIMESTAMP),
            "cron": _nullable({"type": "string"}),
            "interval_seconds": _nullable({"type": "integer"}),
            "timezone": {"type": "string"},
            "misfire": {"type": "string", "enum": [m.value for m in Misfire]},
            "overlap": {"type": "string", "enum": [o.value for o in Overlap]},
            "misfire_grace_seconds": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "timeout_seconds": _nullable({"type": "number"}),
            "attempts": {"type": "integer", "minimum": 0},
            "last_run_at": _nullable(_TIMESTAMP),
            "last_outcome": _nullable({"type": "string"}),
            "last_error": _nullable({"type": "string"}),
            "created_by": _nullable({"type": "string"}),
            "idempotency_key": _nullable({"type": "string"}),
            "lease_owner": _nullable({"type": "string"}),
            "lease_until": _nullable(_TIMESTAMP),
            "lease_epoch": {"type": "integer", "minimum": 0},
            "audit": {
                "type": "array",
                "description": "The latest changes made to the job (create, edit, pause, resume, run_now, cancel, release), oldest first.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["at", "actor", "action", "detail", "note"],
                    "properties": {
                        "at": _TIMESTAMP,
                        "actor": _nullable({"type": "string"}),
                        "action": {"type": "string"},
                        "detail": _nullable({"type": "string"}),
                        "note": _nullable({"type": "string"}),
                    },
                },
            },
        },
    }


def _writable_fields(job_types: list[str]) -> dict[str, Any]:
    return {
        "payload": {
            "type": "object",
            "maxProperties": jobspec.MAX_PAYLOAD_KEYS,
            "description": (
                f"JSON object passed to the handler: at most {jobspec.MAX_PAYLOAD_DEPTH} levels deep and "
                f"{jobspec.MAX_PAYLOAD_BYTES} bytes as compact UTF-8 JSON, finite numbers, valid Unicode."
            ),
        },
        "schedule_at": _nullable({**_TIMESTAMP, "description": "One-off: RFC 3339 time with an offset, years 1970 to 9999."}),
        "cron": _nullable({"type": "string", "description": "Recurring: 5-field cron expression (or @daily, @hourly ...)."}),
        "interval_seconds": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_INTERVAL, "description": "Recurring: every N seconds from creation."}),
        "timezone": {"type": "string", "maxLength": 64, "description": "IANA zone the cron expression is read in (default UTC)."},
        "misfire": _nullable({"type": "string", "enum": [m.value for m in Misfire]}),
        "overlap": _nullable(
            {
                "type": "string",
                "enum": [o.value for o in Overlap],
                "description": (
                    "Fire times that pass while the previous run still goes: skip (default; each recorded as skipped_overlap), "
                    "buffer_one (one run right after), buffer_all (each, oldest first), replace (the new occurrence cancels the running one)."
                ),
            }
        ),
        "misfire_grace_seconds": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_INTERVAL}),
        "max_attempts": _nullable({"type": "integer", "minimum": 1, "maximum": jobspec.MAX_ATTEMPTS}),
        "timeout_seconds": _nullable(
            {
                "type": "number",
                "minimum": jobspec.MIN_TIMEOUT_SECONDS,
                "maximum": jobspec.MAX_TIMEOUT_SECONDS_TASKS,
                "description": (
                    "Seconds before a run counts as failed. With SCHEDULER_DISPATCH=inline it must be below the tick "
                    f"budget (SCHEDULER_TICK_BUDGET_SECONDS); with cloud_tasks up to {jobspec.MAX_TIMEOUT_SECONDS_TASKS:g}."
                ),
            }
        ),
    }


def build_openapi(job_types: Iterable[str], *, auth_required: bool = True) -> dict[str, Any]:
    """The document; ``auth_required=False`` (``AUTH_MODE=disabled``) documents no security
    requirement, since that deployment admits requests without a token."""
    types = sorted(job_types)
    job_type_schema: dict[str, Any] = {"type": "string", "minLength": 1, "description": "A registered job type."}
    if types:
        job_type_schema["enum"] = types
    create = {
        "type": "object",
        "additionalProperties": False,
        "required": ["job_type"],
        "description": "Exactly one of schedule_at, cron, interval_seconds is required.",
        "properties": {
            "id": _nullable({"type": "string", "pattern": JOB_ID_PATTERN, "description": "Default: generated."}),
            "job_type": job_type_schema,
            **_writable_fields(types),
            "idempotency_key": _nullable({"type": "string", "minLength": 1, "maxLength": 500, "description": "A repeated create with this key returns the existing job (200)."}),
        },
    }
    patch = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "description": "Fields to change; a new schedule replaces the old one. Only pending or paused jobs can be changed.",
        "properties": _writable_fields(types),
    }
    execution = {
        "type": "object",
        "additionalProperties": False,
        "required": ["job_id", "fire_at", "attempt", "tick_id", "outcome", "started_at", "duration_ms", "error", "source"],
        "properties": {
            "job_id": {"type": "string"},
            "fire_at": _TIMESTAMP,
            "attempt": {"type": "integer"},
            "tick_id": {"type": "string"},
            "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
            "started_at": _TIMESTAMP,
            "duration_ms": {"type": "number"},
            "error": _nullable({"type": "string"}),
            "source": {"type": "string", "enum": [s.value for s in Source]},
            "task": {
                "type": "object",
                "description": "Dispatched runs: Cloud Tasks' X-CloudTasks-TaskName, -TaskRetryCount and -TaskExecutionCount.",
                "properties": {"name": {"type": "string"}, "retry_count": _nullable({"type": "integer"}), "execution_count": _nullable({"type": "integer"})},
            },
        },
    }
    metric_names = [
        "jobs_checked", "jobs_due", "jobs_executed", "jobs_succeeded", "jobs_failed", "jobs_skipped",
        "jobs_recovered", "jobs_deferred", "jobs_misfired", "lease_lost", "jobs_dispatched", "jobs_dispatch_failed", "runs_abandoned",
    ]
    tick = {
        "type": "object",
        "additionalProperties": False,
        "required": ["tick_id", "started_at", "source", "occurrence_key", "finished_at", "metrics"],
        "properties": {
            "tick_id": {"type": "string"},
            "started_at": _TIMESTAMP,
            "source": {"type": "string", "enum": [s.value for s in Source]},
            "occurrence_key": _nullable({"type": "string"}),
            "finished_at": _nullable(_TIMESTAMP),
            "metrics": {
                "type": "object",
                "additionalProperties": False,
                "required": [*metric_names, "duration_ms"],
                "properties": {**{name: {"type": "integer", "minimum": 0} for name in metric_names}, "duration_ms": {"type": "number"}},
            },
        },
    }
    counts = {
        "type": "object",
        "additionalProperties": False,
        "required": [s.value for s in JobStatus],
        "properties": {s.value: {"type": "integer", "minimum": 0} for s in JobStatus},
    }
    status = {
        "type": "object",
        "additionalProperties": False,
        "required": ["store", "now", "jobs", "leases", "oldest_overdue", "recent_ticks"],
        "properties": {
            "store": {"type": "string", "description": "memory, json or firestore"},
            "now": _TIMESTAMP,
            "jobs": {
                "type": "object",
                "additionalProperties": False,
                "required": ["total", "by_status", "due"],
                "properties": {"total": {"type": "integer", "minimum": 0}, "by_status": counts, "due": {"type": "integer", "minimum": 0}},
            },
            "leases": {
                "type": "object",
                "additionalProperties": False,
                "required": ["held", "expired", "expired_job_ids"],
                "properties": {
                    "held": {"type": "integer", "minimum": 0, "description": "Running jobs whose lease is live."},
                    "expired": {"type": "integer", "minimum": 0, "description": "Running jobs whose lease has expired (the next tick recovers them)."},
                    "expired_job_ids": {"type": "array", "maxItems": 20, "items": {"type": "string"}},
                },
            },
            "oldest_overdue": _nullable(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id", "job_type", "status", "due_since", "lag_seconds"],
                    "description": "The due job waiting longest (null when none is due).",
                    "properties": {
                        "id": {"type": "string"},
                        "job_type": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "running"]},
                        "due_since": _TIMESTAMP,
                        "lag_seconds": {"type": "number", "minimum": 0},
                    },
                }
            ),
            "recent_ticks": {"type": "array", "items": _ref("TickRecord")},
        },
    }
    preview = {
        "type": "object",
        "additionalProperties": False,
        "required": ["job_id", "status", "timezone", "schedule", "description", "fire_times"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in JobStatus]},
            "timezone": {"type": "string"},
            "schedule": {
                "type": "object",
                "additionalProperties": False,
                "required": ["cron", "interval_seconds", "schedule_at"],
                "properties": {"cron": _nullable({"type": "string"}), "interval_seconds": _nullable({"type": "integer"}), "schedule_at": _nullable(_TIMESTAMP)},
            },
            "description": {"type": "string", "description": "The schedule in plain English, e.g. 'At 09:00, Monday through Friday'."},
            "fire_times": {
                "type": "array",
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["utc", "local"],
                    "properties": {"utc": _TIMESTAMP, "local": _nullable({**_TIMESTAMP, "description": "In the job's time zone."})},
                },
            },
        },
    }
    error = {
        "type": "object",
        "additionalProperties": False,
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "additionalProperties": False,
                "required": ["code", "message", "field"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": _nullable({"type": "string"})},
            }
        },
    }
    job_ref = _ref("Job")
    job_ok = {"200": _json(job_ref, "The job as it is now.")}
    body = lambda name, text: {"required": True, "content": {"application/json": {"schema": _ref(name)}}, "description": text}  # noqa: E731

    def action(verb: str, summary: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "post": {
                "operationId": f"{verb}Job",
                "summary": summary,
                "parameters": [_JOB_ID_PARAM, *(params or [])],
                "responses": _responses(job_ok, "404", "409"),
            }
        }

    bool_schema = {"type": "string", "enum": ["true", "false"]}
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "crontick operator API",
            "version": "1",
            "description": "Manage crontick's scheduled jobs. Every call needs `Authorization: Bearer <Google ID token>` "
            "of an email in ADMIN_EMAILS. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`.",
        },
        "security": [{"googleIdToken": []}] if auth_required else [],
        "paths": {
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document.",
                    "responses": _responses({"200": _json({"type": "object"}, "The OpenAPI document.")}),
                }
            },
            "/api/v1/jobs": {
                "post": {
                    "operationId": "createJob",
                    "summary": "Create a job (200 with the existing job for a repeated idempotency_key).",
                    "requestBody": body("JobCreate", "The new job."),
                    "responses": _responses(
                        {
                            "201": {
                                **_json(job_ref, "Created."),
                                "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}},
                            },
                            "200": _json(job_ref, "A job with this idempotency_key exists; it is returned unchanged."),
                        },
                        "409", "413", "415",
                    ),
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "List jobs ordered by id, one page at a time.",
                    "parameters": [
                        _query("status", {"type": "string", "enum": [s.value for s in JobStatus]}, "Only jobs with this status."),
                        _query("job_type", {"type": "string", "minLength": 1, "maxLength": 200}, "Only jobs of this type."),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size."),
                        _query("cursor", {"type": "string", "pattern": JOB_ID_PATTERN}, "next_cursor of the previous page."),
                    ],
                    "responses": _responses(
                        {
                            "200": _json(
                                {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["jobs", "next_cursor"],
                                    "properties": {
                                        "jobs": {"type": "array", "maxItems": 1000, "items": job_ref},
                                        "next_cursor": _nullable({"type": "string", "description": "Pass as cursor for the next page; null on the last page."}),
                                    },
                                },
                                "One page of jobs.",
                            )
                        }
                    ),
                },
            },
            "/api/v1/jobs/{job_id}": {
                "parameters": [_JOB_ID_PARAM],
                "get": {"operationId": "getJob", "summary": "One job.", "responses": _responses(job_ok, "404")},
                "patch": {
                    "operationId": "patchJob",
                    "summary": "Change a pending or paused job.",
                    "requestBody": body("JobPatch", "The fields to change."),
                    "responses": _responses(job_ok, "404", "409", "413", "415"),
                },
                "delete": {
                    "operationId": "cancelJob",
                    "summary": "Cancel the job; the record stays for audit.",
                    "responses": _responses(job_ok, "404", "409"),
                },
            },
            "/api/v1/jobs/{job_id}:pause": action("pause", "Pause (a running job's result is then dropped)."),
            "/api/v1/jobs/{job_id}:resume": action(
                "resume",
                "Resume a paused or failed job.",
                [_query("catch_up", bool_schema, "true: run an overdue fire time instead of skipping to the next.")],
            ),
            "/api/v1/jobs/{job_id}:run": action("run", "Make the job due now; its schedule is unchanged."),
            "/api/v1/jobs/{job_id}:release": action(
                "release",
                "Free a running job's lease: it becomes pending and due.",
                [_query("force", bool_schema, "true: take a lease that is still live.")],
            ),
            "/api/v1/jobs/{job_id}/preview": {
                "get": {
                    "operationId": "previewJob",
                    "summary": "Next fire times, in UTC and in the job's zone, and the schedule in words.",
                    "parameters": [_JOB_ID_PARAM, _query("count", {"type": "integer", "minimum": 1, "maximum": 100, "default": 5}, "How many fire times.")],
                    "responses": _responses({"200": _json(_ref("Preview"), "The preview.")}, "404"),
                }
            },
            "/api/v1/executions": {
                "get": {
                    "operationId": "listExecutions",
                    "summary": "Execution history, newest first.",
                    "parameters": [
                        _query("job_id", {"type": "string", "pattern": JOB_ID_PATTERN}, "Only this job's executions."),
                        _query("outcome", {"type": "string", "enum": [o.value for o in Outcome]}, "Only this outcome."),
                        _query("since", _TIMESTAMP, "started_at >= since (RFC 3339; send '+' as %2B)."),
                        _query("until", _TIMESTAMP, "started_at < until."),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "At most this many."),
                    ],
                    "responses": _responses(
                        {
                            "200": _json(
                                {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["executions"],
                                    "properties": {"executions": {"type": "array", "maxItems": 1000, "items": _ref("Execution")}},
                                },
                                "The executions.",
                            )
                        },
                        "404",
                    ),
                }
            },
            "/api/v1/status": {
                "get": {
                    "operationId": "getStatus",
                    "summary": "Counts, leases, the oldest overdue job and the last ticks.",
                    "parameters": [_query("ticks", {"type": "integer", "minimum": 0, "maximum": 200, "default": 10}, "How many recent ticks.")],
                    "responses": _responses({"200": _json(_ref("Status"), "The status.")}),
                }
            },
            "/api/v1/shadow-report": {
                "get": {
                    "operationId": "getShadowReport",
                    "summary": "Shadow mode: what Cloud Scheduler and the legacy loop each ran over a window.",
                    "parameters": [_query("window_minutes", {"type": "integer", "minimum": 1, "maximum": 10080, "default": 60}, "The window, in minutes.")],
                    "responses": _responses({"200": _json(_ref("ShadowReport"), "The report.")}),
                }
            },
        },
        "components": {
            "securitySchemes": {
                "googleIdToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Google-signed ID token (`gcloud auth print-identity-token`).",
                }
            },
            "schemas": {
                "Job": _job_schema(types),
                "JobCreate": create,
                "JobPatch": patch,
                "Execution": execution,
                "TickRecord": tick,
                "Status": status,
                "Preview": preview,
                "ShadowReport": _shadow_report_schema(),
                "Error": error,
            },
            "responses": {name: _json(_ERROR_REF, text) for name, text in _ERROR_RESPONSES.values()},
        },
    }
    if not auth_required:
        document["info"]["description"] += " This deployment runs with AUTH_MODE=disabled: no token is needed."
    return document


def _shadow_report_schema() -> dict[str, Any]:
    lag = {"type": ["number", "null"]}
    source = {
        "type": "object",
        "required": ["ticks", "occurrences", "executions", "lease_lost", "duplicates_prevented", "lag_seconds"],
        "properties": {
            "ticks": {"type": "integer"},
            "occurrences": {"type": "integer"},
            "executions": {"type": "integer"},
            "lease_lost": {"type": "integer"},
            "duplicates_prevented": {"type": "integer"},
            "lag_seconds": {"type": "object", "properties": {"p50": lag, "p95": lag, "max": lag}},
        },
    }
    return {
        "type": "object",
        "required": ["window_seconds", "since", "sources", "duplicate_occurrences", "executions_read", "shadow_mode"],
        "properties": {
            "window_seconds": {"type": "number"},
            "since": {"type": "string"},
            "sources": {"type": "object", "additionalProperties": source},
            "duplicate_occurrences": {"type": "integer"},
            "executions_read": {"type": "integer"},
            "shadow_mode": {"type": "boolean"},
        },
    }
