"""Building jobs for store and engine tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from scheduler.model import Job, JobStatus, Misfire

from tests.support.clock import T0


def make_job(job_id: str, *, due_in: float = -1.0, now: datetime = T0, **fields: Any) -> Job:
    """A pending one-off ``log`` job due ``due_in`` seconds from ``now`` (past by default)."""
    when = now + timedelta(seconds=due_in)
    values: dict[str, Any] = {
        "id": job_id,
        "job_type": "log",
        "payload": {"n": job_id},
        "status": JobStatus.PENDING,
        "next_run_at": when,
        "fire_at": when,
        "created_at": now - timedelta(hours=1),
        "updated_at": now - timedelta(hours=1),
        "schedule_at": when,
        "misfire": Misfire.RUN_ONCE,
    }
    values.update(fields)
    return Job(**values)
