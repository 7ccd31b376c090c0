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


# Guards the lazy creation of every Cancellation's Event (held for a few instructions).
_EVENT_MADE = threading.Lock()


class Cancellation:
    """One run's "stop now" flag, with the part of ``threading.Event``'s interface a run
    needs: :meth:`is_set`, :meth:`wait` and :meth:`set`.

    The engine makes one per run, and most handlers never wait on theirs: a
    ``threading.Event`` (a Condition and its lock) cost 3.8 us to make here, 1,000 of
    them 4% of a tick of 1,000 short jobs; this costs 0.3 us and makes its Event on the
    first :meth:`wait` only. :meth:`set` and :meth:`wait` may race from any threads: the
    Event is made, or the flag read, under one lock, so a wait never misses a set.
    """

    __slots__ = ("_flag", "_event")

    def __init__(self) -> None:
        self._flag = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with _EVENT_MADE:
            self._flag = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`set` or ``timeout`` seconds; True when set (as ``Event.wait``)."""
        with _EVENT_MADE:
            if self._flag:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def __repr__(self) -> str:
        return f"<Cancellation {'set' if self._flag else 'unset'}>"


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """One attempt of one occurrence.

    ``cancelled`` is set when the engine stops wanting this run: its timeout passed,
    its lease was taken (an operator paused or cancelled the job, another tick
    recovered it, or ``overlap=replace`` started the next occurrence), or the process
    is shutting down. Python cannot stop a thread, so a long handler should check
    ``ctx.cancelled.is_set()`` (or wait on it instead of sleeping) and return early;
    anything it does after that may be repeated by a later attempt, which is why side
    effects should carry ``ctx.idempotency_key(job)``. ``cancelled`` is a
    :class:`Cancellation`: ``is_set()``, ``wait(timeout)`` and ``set()`` as on a
    ``threading.Event``.
    """

    tick_id: str
    attempt: int
    fire_at: datetime
    deadline: float  # time.monotonic() value after which the engine stops waiting
    cancelled: Cancellation | threading.Event = field(default_factory=Cancellation)

    def idempotency_key(self, job: Job) -> str:
        """Stable across retries of one occurrence: ``<job id>@<fire time>``."""
        return f"{job.id}@{self.fire_at.isoformat()}"


# HandlerContext(tick_id, attempt, fire_at, deadline, cancelled), every field given: one per run.
context_from_values = positional_constructor(HandlerContext)

Handler = Callable[[Job, HandlerContext], Any]
