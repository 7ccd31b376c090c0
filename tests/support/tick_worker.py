"""A separate process that ticks one store until nothing is due: ``python -m tests.support.tick_worker``.

Configured by the environment like the service (SCHEDULER_STORAGE, SCHEDULER_JSON_PATH, ...);
with $CRONTICK_TEST_START set, it writes ``<start>.ready.<pid>`` once the app is built, then waits
for the file ``<start>`` itself, so that several workers start ticking together.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path


def start_together(start: Path, workers: int, timeout: float = 60.0) -> None:
    """Wait until ``workers`` workers have written their ready file, then touch ``start``."""
    deadline = time.monotonic() + timeout
    while len(list(start.parent.glob(f"{start.name}.ready.*"))) < workers and time.monotonic() < deadline:
        time.sleep(0.01)
    start.touch()


def main() -> int:
    from main import create_app

    app = create_app(os.environ)
    ct = app.extensions["crontick"]
    start = os.environ.get("CRONTICK_TEST_START")
    if start:
        Path(f"{start}.ready.{os.getpid()}").touch()
    while start and not Path(start).exists():
        time.sleep(0.005)
    idle = 0
    while idle < 3:
        outcome = ct.engine.run_tick(now=ct.clock(), tick_id=uuid.uuid4().hex)
        # Idle means nothing was due, not "ran nothing": a tick whose every claim lost the race
        # to another worker ran nothing with jobs still due, and must not count towards stopping.
        idle = idle + 1 if outcome.tick.metrics.jobs_due == 0 else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
