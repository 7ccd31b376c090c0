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
from scheduler.model import JobStatus, Outcome
from scheduler.schema import JOB_ID_PATTERN
from web.openapi_components import TIMESTAMP as _TIMESTAMP
from web.openapi_components import components
from web.openapi_components import ref as _ref


_ERROR_REF = {"$ref": "#/components/schemas/Error"}


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


def build_openapi(job_types: Iterable[str], *, auth_required: bool = True) -> dict[str, Any]:
    """The document; ``auth_required=False`` (``AUTH_MODE=disabled``) documents no security
    requirement, since that deployment admits requests without a token."""
    types = sorted(job_types)
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
                    "responses": _responses({"200": _json(_ref("JobList"), "One page of jobs.")}),
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
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("BackfillRequest"), "example": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}}}},
                    "responses": _responses(
                        {"200": _json(_ref("BackfillResult"), "Nothing new: every occurrence was backfilled before."), "201": _json(_ref("BackfillResult"), "Occurrences added.")},
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
                    "responses": _responses({"200": _json(_ref("ExecutionList"), "The executions.")}, "404"),
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
            "schemas": components(types),
            "responses": {name: _json(_ERROR_REF, text) for name, text in _ERROR_RESPONSES.values()},
        },
    }
    if not auth_required:
        document["info"]["description"] += " This deployment runs with AUTH_MODE=disabled: no token is needed."
    return document

