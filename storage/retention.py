"""Retention: finished jobs are deleted ``SCHEDULER_RETENTION_DAYS`` after they finished.

A one-off job that completed (or was cancelled) stays in the store, with its history,
for ``retention_days``; then :class:`Retention` deletes it through the store verb
:meth:`~storage.base.JobStore.delete_finished_jobs`. Failed jobs (dead letters) are
kept: someone should look at them. ``retention_days = 0`` keeps everything.

The tick engine calls :meth:`Retention.maybe_run` at the end of every tick, after
settling. It does work at most once an hour per process (hours of the tick's ``now``,
so a test's fake clock drives it as the real one does), the first time an hour after
the process's first tick (a cold start pays nothing for it, and a tick's store cost
is the same as without retention but once an hour), and at most :data:`LIMIT`
jobs a run: bounded work inside a tick, and enough for any steady load below 1,000
finished jobs an hour (a larger backlog, such as the first run over years of jobs,
drains 1,000 an hour). On the table stores a run is one locked pass over the jobs and
writes the file only when it deleted something; on Firestore it is one bounded query
per finished status and a commit per batch of jobs, and the TTL field ``expire_at`` on
finished jobs (storage/firestore_codec.py) deletes them even where no tick runs.

A store error never fails the tick: it is logged (WARNING, ``retention_failed``) and
the next run, an hour later, tries again. Tick times at the ends of the calendar (a fake
clock at 9999-12-31, a job due there) neither overflow nor run it: the window ends at
``datetime.max`` and nothing finished before year 1 exists.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from scheduler.errors import StoreError
from storage.base import JobStore

log = logging.getLogger(__name__)

INTERVAL = timedelta(hours=1)
LIMIT = 1000
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _plus(now: datetime, delta: timedelta) -> datetime:
    """``now + delta``, or the end of the calendar when that is past year 9999."""
    try:
        return now + delta
    except OverflowError:
        return _LATEST


class Retention:
    """Deletes a process's share of old finished jobs, at most once per :data:`INTERVAL`."""

    def __init__(self, store: JobStore, *, days: int, interval: timedelta = INTERVAL, limit: int = LIMIT) -> None:
        self.store = store
        self.days = days
        self.interval = interval
        self.limit = limit
        self.runs = 0  # store calls made (tests and the benchmark read them)
        self._window: tuple[datetime, datetime] | None = None  # (last run, next run) in tick time
        self._lock = threading.Lock()

    def maybe_run(self, now: datetime) -> int | None:
        """Delete finished jobs older than ``now - days`` if this process has not in the last
        :data:`INTERVAL` (of tick time; a clock that moved back runs it again), starting an
        interval after the first call. Returns how many were deleted, or None when it did
        not run (not due, disabled, another thread of this process running it, or a store
        error)."""
        if self.days <= 0 or not self._lock.acquire(blocking=False):
            return None
        try:
            if self._window is None:  # the process's first tick: the first run is an interval later
                self._window = (now, _plus(now, self.interval))
                return None
            if self._window[0] <= now < self._window[1]:
                return None
            self._window = (now, _plus(now, self.interval))
            try:
                before = now - timedelta(days=self.days)
            except OverflowError:  # within `days` of year 1: nothing can have finished before it
                return None
            self.runs += 1
            try:
                deleted = self.store.delete_finished_jobs(before=before, limit=self.limit)
            except StoreError as exc:
                log.warning("Deleting old finished jobs failed; tried again in an hour", extra={"json_fields": {"action": "retention_failed", "error": str(exc)}})
                return None
            if deleted:
                log.info(
                    "Old finished jobs deleted",
                    extra={"json_fields": {"action": "retention_deleted", "deleted": deleted, "before": before.isoformat(), "limit": self.limit}},
                )
            return deleted
        finally:
            self._lock.release()
