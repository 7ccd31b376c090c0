"""What a handler is given besides its job: :class:`HandlerContext`.

It lives in ``scheduler/`` because the engine builds it; ``handlers.registry``
re-exports it for handler authors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.model import Job, positional_constructor


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """One attempt of one occurrence.

    ``cancelled`` is set when the engine stops wanting this run: its timeout passed,
    its lease was taken (an operator paused or cancelled the job, another tick
    recovered it, or ``overlap=replace`` started the next occurrence), or the process
    is shutting down. Python cannot stop a thread, so a long handler should check
    ``ctx.cancelled.is_set()`` (or wait on it instead of sleeping) and return early;
    anything it does after that may be repeated by a later attempt, which is why side
    effects should carry ``ctx.idempotency_key(job)``.
    """

    tick_id: str
    attempt: int
    fire_at: datetime
    deadline: float  # time.monotonic() value after which the engine stops waiting
    cancelled: threading.Event = field(default_factory=threading.Event)

    def idempotency_key(self, job: Job) -> str:
        """Stable across retries of one occurrence: ``<job id>@<fire time>``."""
        return f"{job.id}@{self.fire_at.isoformat()}"


# HandlerContext(tick_id, attempt, fire_at, deadline, cancelled), every field given: one per run.
context_from_values = positional_constructor(HandlerContext)

Handler = Callable[[Job, HandlerContext], Any]
