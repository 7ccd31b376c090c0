"""The OpenAPI components of ``/api/v1``: the job's (derived from the one job schema,
:mod:`scheduler.schema`) and the shapes of the other answers. ``web/openapi.py``
keeps the routes."""

from __future__ import annotations

import dataclasses
from typing import Any

from scheduler import schema
from scheduler.model import JobStatus, Outcome, Source, TickMetrics

TIMESTAMP = {"type": "string", "format": "date-time"}


def nullable(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "nullable": True}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _job_schema() -> dict[str, Any]:
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


def components(types: list[str]) -> dict[str, Any]:
    """Every schema the routes name, built for this deployment's job types."""
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
            "fire_at": TIMESTAMP,
            "attempt": {"type": "integer"},
            "tick_id": {"type": "string"},
            "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
            "started_at": TIMESTAMP,
            "duration_ms": {"type": "number"},
            "error": nullable({"type": "string"}),
            "source": {"type": "string", "enum": [s.value for s in Source]},
            "task": {
                "type": "object",
                "description": "Dispatched runs: Cloud Tasks' X-CloudTasks-TaskName, -TaskRetryCount and -TaskExecutionCount.",
                "properties": {"name": {"type": "string"}, "retry_count": nullable({"type": "integer"}), "execution_count": nullable({"type": "integer"})},
            },
        },
    }
    metric_names = [f.name for f in dataclasses.fields(TickMetrics) if f.name != "duration_ms"]  # the counts
    tick = {
        "type": "object",
        "additionalProperties": False,
        "required": ["tick_id", "started_at", "source", "occurrence_key", "finished_at", "metrics"],
        "properties": {
            "tick_id": {"type": "string"},
            "started_at": TIMESTAMP,
            "source": {"type": "string", "enum": [s.value for s in Source]},
            "occurrence_key": nullable({"type": "string"}),
            "finished_at": nullable(TIMESTAMP),
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
            "now": TIMESTAMP,
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
            "oldest_overdue": nullable(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id", "job_type", "status", "due_since", "lag_seconds"],
                    "description": "The due job waiting longest (null when none is due).",
                    "properties": {
                        "id": {"type": "string"},
                        "job_type": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "running"]},
                        "due_since": TIMESTAMP,
                        "lag_seconds": {"type": "number", "minimum": 0},
                    },
                }
            ),
            "recent_ticks": {"type": "array", "items": ref("TickRecord")},
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
                "properties": {"cron": nullable({"type": "string"}), "interval_seconds": nullable({"type": "integer"}), "schedule_at": nullable(TIMESTAMP)},
            },
            "description": {"type": "string", "description": "The schedule in plain English, e.g. 'At 09:00, Monday through Friday'."},
            "fire_times": {"type": "array", "maxItems": 100, "items": ref("PlannedTime")},
        },
    }
    planned_time = {
        "type": "object",
        "additionalProperties": False,
        "required": ["utc", "local", "fire_at", "dst", "wall_time"],
        "properties": {
            "utc": nullable({**TIMESTAMP, "description": "When it runs (jitter included); null when the DST policy drops it."}),
            "local": nullable({**TIMESTAMP, "description": "The same in the job's time zone."}),
            "fire_at": nullable({**TIMESTAMP, "description": "The nominal fire time (what handlers see as ctx.fire_at)."}),
            "dst": nullable({"type": "string", "enum": ["shifted", "dropped", "first", "second"], "description": "What the job's DST policy did to it."}),
            "wall_time": nullable({"type": "string", "description": "Cron: the local wall time the expression matched."}),
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
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": nullable({"type": "string"})},
            }
        },
    }
    backfill_request = {
        "type": "object",
        "additionalProperties": False,
        "required": ["start", "end"],
        "properties": {
            "start": {**TIMESTAMP, "description": "Replay fire times from this instant (inclusive)."},
            "end": {**TIMESTAMP, "description": "... up to this instant (exclusive), not in the future."},
            "max_runs": {"type": "integer", "minimum": 1, "maximum": schema.MAX_BACKFILL_RUNS, "nullable": True, "description": "Run only the oldest this many."},
        },
    }
    backfill_result = {
        "type": "object",
        "additionalProperties": False,
        "required": ["job_id", "fire_times", "created", "existing"],
        "properties": {
            "job_id": {"type": "string"},
            "fire_times": {"type": "array", "items": TIMESTAMP},
            "created": {"type": "array", "items": {"type": "string"}, "description": "Ids of the occurrence jobs added now."},
            "existing": {"type": "array", "items": {"type": "string"}, "description": "Occurrences an earlier backfill already added (not run again)."},
        },
    }

    job = _job_schema()
    job_full = {**job, "description": "GET /api/v1/jobs/{id}?view=full: the job, its next 10 fire times and its last 10 runs."}
    job_full["properties"] = {
        **job["properties"],
        "next_fire_times": {"type": "array", "maxItems": 10, "items": ref("PlannedTime")},
        "recent_runs": {"type": "array", "maxItems": 10, "items": ref("Execution")},
    }
    job_full["required"] = list(job_full["properties"])
    return {
        "Job": job,
        "JobFull": job_full,
        "PlannedTime": planned_time,
        "JobCreate": create,
        "JobPatch": patch,
        "Execution": execution,
        "JobList": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobs", "next_cursor"],
            "properties": {
                "jobs": {"type": "array", "maxItems": 1000, "items": ref("Job")},
                "next_cursor": nullable({"type": "string", "description": "Pass as cursor for the next page; null on the last page."}),
            },
        },
        "ExecutionList": {
            "type": "object",
            "additionalProperties": False,
            "required": ["executions"],
            "properties": {"executions": {"type": "array", "maxItems": 1000, "items": ref("Execution")}},
        },
        "TickRecord": tick,
        "Status": status,
        "Preview": preview,
        "ShadowReport": _shadow_report_schema(),
        "BackfillRequest": backfill_request,
        "BackfillResult": backfill_result,
        "Error": error,
    }


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
