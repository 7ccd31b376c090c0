"""``POST /cron/tick`` (Cloud Scheduler's target) and ``GET /health``."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from scheduler.model import Source
from web.context import crontick
from web.metrics import observe_tick

bp = Blueprint("tick", __name__)

SOURCE_HEADER = "X-Crontick-Source"


def occurrence_key() -> str | None:
    """Cloud Scheduler names each occurrence by job name and schedule time; its
    retries of one occurrence repeat both headers."""
    job_name = request.headers.get("X-CloudScheduler-JobName")
    schedule_time = request.headers.get("X-CloudScheduler-ScheduleTime")
    if job_name and schedule_time:
        return f"{job_name}@{schedule_time}"
    return None


def tick_source() -> Source:
    if request.headers.get("X-CloudScheduler-JobName"):
        return Source.CLOUD_SCHEDULER
    try:
        return Source(request.headers.get(SOURCE_HEADER, Source.MANUAL.value))
    except ValueError:
        return Source.MANUAL


@bp.post("/cron/tick")
def tick():
    app = crontick()
    app.tick_verifier.verify(request.headers.get("Authorization"))
    outcome = app.engine.run_tick(
        now=app.clock(),
        tick_id=uuid.uuid4().hex,
        source=tick_source(),
        occurrence_key=occurrence_key(),
    )
    observe_tick(outcome)
    return jsonify(outcome.to_dict())


@bp.get("/health")
def health():
    # Deliberately touches no store: Cloud Run uses it to decide an instance is up.
    return jsonify({"status": "ok"})
