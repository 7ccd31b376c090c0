"""The legacy in-process loop, kept for shadow mode during a migration.

With ``SCHEDULER_SHADOW_MODE=true`` every instance also ticks on its own every
``SCHEDULER_LEGACY_INTERVAL_SECONDS``, the way the in-process scheduler it
replaces did, but through the same claim path as ``/cron/tick``: both paths
lease jobs from one store, so side by side they never run a job twice. Each
tick and execution says which path ran it (``source``), which is what the
shadow report compares. With shadow mode off no loop is started.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from scheduler.engine import TickEngine
from scheduler.errors import StoreError
from scheduler.model import Source

log = logging.getLogger(__name__)


class LegacyLoop:
    def __init__(self, engine: TickEngine, clock: Callable[[], datetime], interval_seconds: float) -> None:
        self.engine = engine
        self.clock = clock
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="crontick-legacy-loop", daemon=True)
            self._thread.start()
            log.info("Legacy loop started (shadow mode)", extra={"json_fields": {"interval_seconds": self.interval_seconds}})

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def tick_once(self) -> None:
        try:
            self.engine.run_tick(now=self.clock(), tick_id=uuid.uuid4().hex, source=Source.LEGACY_LOOP)
        except StoreError as exc:
            log.error("Legacy loop tick failed: store unavailable", extra={"json_fields": {"error": str(exc)}})
        except Exception:  # noqa: BLE001 - the loop must outlive any one tick
            log.exception("Legacy loop tick failed")
        self.ticks += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.tick_once()
