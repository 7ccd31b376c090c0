"""Dispatch: hand claimed runs to another process instead of running them in the tick.

With ``SCHEDULER_DISPATCH=cloud_tasks`` a tick claims due jobs as usual, then
creates one Cloud Tasks HTTP task per claimed run; Cloud Tasks delivers it to
``POST /tasks/run`` on whichever instance autoscaling gives, which runs and
settles it through the same run path as an inline tick.

A task carries only the run's identity (:class:`~scheduler.model.RunRef`),
never the payload: the instance that runs it reads the job from the store and
runs it only if the lease is still the one the task names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.errors import ValidationError
from scheduler.model import RunRef, from_iso, to_iso

MIN_DISPATCH_DEADLINE_SECONDS = 15.0  # Cloud Tasks' bounds for an HTTP task's dispatch_deadline
MAX_DISPATCH_DEADLINE_SECONDS = 1800.0
_BODY_KEYS = ("job_id", "lease_owner", "lease_epoch", "fire_at")


def task_id(run: RunRef) -> str:
    """A deterministic task id for ``run``: a CreateTask retried after a timeout
    names the same task, which Cloud Tasks deduplicates (``ALREADY_EXISTS``)."""
    text = f"{run.job_id}\x1f{to_iso(run.fire_at)}\x1f{run.lease_epoch}"
    return "run-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def task_body(run: RunRef) -> bytes:
    return json.dumps(
        {"job_id": run.job_id, "lease_owner": run.lease_owner, "lease_epoch": run.lease_epoch, "fire_at": to_iso(run.fire_at)},
        separators=(",", ":"),
    ).encode()


def parse_task_body(data: Any) -> RunRef:
    """The :class:`RunRef` a ``/tasks/run`` body names; ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError("the task body must be a JSON object with job_id, lease_owner, lease_epoch and fire_at", "body")
    for key in _BODY_KEYS:
        if key not in data:
            raise ValidationError(f"the task body has no {key!r}", key)
    job_id, owner, epoch, fire_at = (data[key] for key in _BODY_KEYS)
    if not isinstance(job_id, str) or not job_id or len(job_id) > 128:
        raise ValidationError("job_id must be a job id", "job_id")
    if not isinstance(owner, str) or not owner or len(owner) > 200:
        raise ValidationError("lease_owner must be a non-empty string", "lease_owner")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValidationError("lease_epoch must be a non-negative integer", "lease_epoch")
    try:
        when = from_iso(fire_at) if isinstance(fire_at, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ValidationError("fire_at must be an RFC 3339 timestamp", "fire_at")
    return RunRef(job_id, owner, epoch, when)


def clamp_deadline(seconds: float) -> float:
    return min(max(seconds, MIN_DISPATCH_DEADLINE_SECONDS), MAX_DISPATCH_DEADLINE_SECONDS)


@dataclass(frozen=True, slots=True)
class DispatchRequest:
    """One claimed run to hand to a Cloud Tasks HTTP task."""

    run: RunRef
    deadline_seconds: float  # the job's timeout: Cloud Tasks' dispatch_deadline


@dataclass(slots=True)
class DispatchResult:
    """Job ids whose task exists now (created, or already there), and those whose
    task could not be created with the error text; those stay leased and are
    recovered after their lease, like a crashed run."""

    dispatched: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class Dispatcher(Protocol):
    def dispatch(self, requests: Sequence[DispatchRequest]) -> DispatchResult:
        """Create one task per request, concurrently; never raises for one task's failure."""

    def close(self) -> None: ...
