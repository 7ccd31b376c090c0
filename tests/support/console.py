"""Helpers for the console's tests: a monotonic clock handlers move, and handlers that
take a known time, so durations and lags in figures and histograms are exact.

``FakeMonotonic`` replaces ``time.monotonic`` in ``create_app(monotonic=...)``; the
``take`` handler advances it by ``payload["seconds"]`` (and ``take_fail`` does the
same, then raises), so an execution's ``duration_ms`` is exactly that many seconds
when the engine runs one handler at a time (``SCHEDULER_MAX_CONCURRENCY=1``).
"""

from __future__ import annotations

import threading
from typing import Any

from handlers import build_registry
from handlers.registry import HandlerRegistry


class FakeMonotonic:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def timed_registry(monotonic: FakeMonotonic) -> HandlerRegistry:
    """The built-in handlers plus ``take`` and ``take_fail`` (both advance ``monotonic``)."""

    def take(job: Any, ctx: Any) -> None:
        monotonic.advance(float(job.payload.get("seconds", 0)))

    def take_fail(job: Any, ctx: Any) -> None:
        monotonic.advance(float(job.payload.get("seconds", 0)))
        raise RuntimeError(job.payload.get("error", "failed on purpose"))

    registry = build_registry()
    registry.register("take", take)
    registry.register("take_fail", take_fail)
    return registry
