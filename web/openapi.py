"""The OpenAPI 3 document of ``/api/v1``, served at ``GET /api/v1/openapi.json``.

Built per app so that ``job_type`` lists the job types this deployment has
registered. ``tests/test_api_fuzz.py`` runs schemathesis against the real app
with this document: every response must carry a documented status and match
its schema, and requests that break the schema must be refused with a 4xx.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scheduler import schema
from scheduler.model import JobStatus, Outcome, Source
from scheduler.schema import JOB_ID_PATTERN


def _nullable(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "nullable": True}


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
    """A stored job as the API returns it: every field of scheduler.schema, plus the derived ones."""
    properties = {spec.name: schema.openapi_property(spec) for spec in schema.FIELDS}
    properties["runs_remaining"] = {"type": "integer", "nullable": True, "description": schema.DERIVED["runs_remaining"]}
    return {"type": "object", "additionalProperties": False, "required": list(properties), "properties": properties}


def _input_fields(names: frozenset[str], job_type_schema: dict[str, Any]) -> dict[str, Any]:
    """The writable fields of a create (or PATCH) body, in the schema's order."""
    out = {spec.name: schema.openapi_property(spec, for_input=True) for spec in schema.FIELDS if spec.name in names}
    if "job_type" in out:
        out["job_type"] = job_type_schema
    if "idempotency_key" in out:
        out["idempotency_key"]["minLength"] = 1
    return out


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
        "properties": _input_fields(schema.CREATE_FIELDS, job_type_schema),
    }
    patch = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "description": "Fields to change; a new schedule replaces the old one. Only pending or paused jobs can be changed.",
        "properties": _input_fields(schema.PATCH_FIELDS, job_type_schema),
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
            "fire_times": {"type": "array", "maxItems": 100, "items": _ref("PlannedTime")},
        },
    }
    planned_time = {
        "type": "object",
        "additionalProperties": False,
        "required": ["utc", "local", "fire_at", "dst", "wall_time"],
        "properties": {
            "utc": _nullable({**_TIMESTAMP, "description": "When it runs (jitter included); null when the DST policy drops it."}),
            "local": _nullable({**_TIMESTAMP, "description": "The same in the job's time zone."}),
            "fire_at": _nullable({**_TIMESTAMP, "description": "The nominal fire time (what handlers see as ctx.fire_at)."}),
            "dst": _nullable({"type": "string", "enum": ["shifted", "dropped", "first", "second"], "description": "What the job's DST policy did to it."}),
            "wall_time": _nullable({"type": "string", "description": "Cron: the local wall time the expression matched."}),
        },
    }
    job_full = {
        **_job_schema(types),
        "description": "GET /api/v1/jobs/{id}?view=full: the job, its next 10 fire times and its last 10 runs.",
    }
    job_full["properties"] = {
        **job_full["properties"],
        "next_fire_times": {"type": "array", "maxItems": 10, "items": _ref("PlannedTime")},
        "recent_runs": {"type": "array", "maxItems": 10, "items": _ref("Execution")},
    }
    job_full["required"] = list(job_full["properties"])
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

    def action(verb: str, summary: str, params: list[dict[str, Any]] | None = None, *, note: bool = False) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "operationId": f"{verb}Job",
            "summary": summary,
            "parameters": [_JOB_ID_PARAM, *(params or [])],
            "responses": _responses(job_ok, "404", "409", *(("413", "415") if note else ())),
        }
        if note:
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"note": {"type": "string", "nullable": True, "maxLength": schema.MAX_NOTE_CHARS, "description": "Why; kept on the job and in its audit."}},
                }}},
            }
        return {"post": operation}

    backfill_request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["start", "end"],
        "properties": {
            "start": {**_TIMESTAMP, "description": "Replay fire times from this instant (inclusive)."},
            "end": {**_TIMESTAMP, "description": "... up to this instant (exclusive), not in the future."},
            "max_runs": {"type": "integer", "minimum": 1, "maximum": schema.MAX_BACKFILL_RUNS, "nullable": True, "description": "Run only the oldest this many."},
        },
    }
    backfill_result = {
        "type": "object",
        "additionalProperties": False,
        "required": ["job_id", "fire_times", "created", "existing"],
        "properties": {
            "job_id": {"type": "string"},
            "fire_times": {"type": "array", "items": _TIMESTAMP},
            "created": {"type": "array", "items": {"type": "string"}, "description": "Ids of the occurrence jobs added now."},
            "existing": {"type": "array", "items": {"type": "string"}, "description": "Occurrences an earlier backfill already added (not run again)."},
        },
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
                "get": {
                    "operationId": "getJob",
                    "summary": "One job; with view=full also its next 10 fire times and its last 10 runs.",
                    "parameters": [_query("view", {"type": "string", "enum": ["basic", "full"], "default": "basic"}, "full adds next_fire_times and recent_runs.")],
                    "responses": _responses({"200": _json({"oneOf": [_ref("Job"), _ref("JobFull")]}, "The job.")}, "404"),
                },
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
            "/api/v1/jobs/{job_id}:pause": action("pause", "Pause (a running job's result is then dropped).", note=True),
            "/api/v1/jobs/{job_id}:resume": action(
                "resume",
                "Resume a paused or failed job.",
                [_query("catch_up", bool_schema, "true: run an overdue fire time instead of skipping to the next.")],
                note=True,
            ),
            "/api/v1/jobs/{job_id}:backfill": {
                "post": {
                    "operationId": "backfillJob",
                    "summary": f"Run each fire time in [start, end) once, oldest first (at most {schema.MAX_BACKFILL_RUNS}); asking twice runs nothing twice.",
                    "parameters": [_JOB_ID_PARAM],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": backfill_request, "example": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}}}},
                    "responses": _responses(
                        {"200": _json(backfill_result, "Nothing new: every occurrence was backfilled before."), "201": _json(backfill_result, "Occurrences added.")},
                        "404", "409", "413", "415",
                    ),
                }
            },
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
                "JobFull": job_full,
                "PlannedTime": planned_time,
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
