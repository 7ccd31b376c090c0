"""The ``noop`` job type for benchmarks: ``SCHEDULER_HANDLER_MODULES=bench.noop_handlers``.

The same :func:`noop` function is scheduled by APScheduler in the side-by-side
figure (``bench.noop_handlers:noop``), so both schedulers run identical work.
"""

from __future__ import annotations

from typing import Any


def noop(*args: Any, **kwargs: Any) -> None:
    """Does nothing: the cost measured is the scheduler's own."""
    return None


def register(registry: Any) -> None:
    registry.register("noop", noop)
