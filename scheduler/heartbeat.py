"""The lease heartbeat: keep the leases of running handlers alive, fenced.

From the moment a batch of claimed jobs starts running until every run of it has a
result (queued runs included), their leases are extended every ``lease_seconds / 3``
with one batched :meth:`~storage.base.JobStore.extend_leases` call for every run
this process holds. So a lease can be short (it bounds how long
a crashed run stays stuck) while a run can be long (up to its timeout).

When the store refuses an extension (the lease is no longer this run's: an
operator paused or cancelled the job, or another tick recovered it), the run's
``cancelled`` flag is set, so a cooperative handler stops and a queued run is not
started; its settle is refused by the fence as before.

``overlap=replace``: at each beat, a recurring job whose next fire time has come
while its handler still runs (or still waits to) hands its lease to that
occurrence: the job goes back to ``pending`` at the new fire time with
``lease_epoch + 1`` (one fenced ``update_job``), the run is cancelled, and the
next tick claims the new occurrence.

One keeper per engine; its thread runs only while it holds runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from scheduler.context import Cancellation
from scheduler.errors import JobNotFound, StoreError
from scheduler.model import Job, JobStatus, Overlap, RunRef
from scheduler.timing import next_fire_after, run_at
from storage.base import JobStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HeldRun:
    """A run whose lease the heartbeat keeps extending, and the beats it has had.

    ``finished`` is set (by the thread that ran it) once its handler has returned: the
    lease is still kept until the run is settled, but ``overlap=replace`` no longer
    hands it to the next occurrence (that would refuse the finished run's settle).
    """

    job: Job
    run: RunRef
    cancelled: Cancellation | threading.Event
    beats: int = 0
    finished: bool = False


class _Superseded(Exception):
    """The job's lease is no longer the run's: nothing to replace."""


class LeaseKeeper:
    def __init__(self, store: JobStore, *, lease_seconds: float, clock: Callable[[], datetime], interval_seconds: float | None = None) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.interval_seconds = interval_seconds if interval_seconds is not None else lease_seconds / 3
        self._held: dict[tuple[str, int], HeldRun] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.beats = 0  # extend_leases calls made (benchmarks and tests read it)

    def hold(self, runs: Sequence[tuple[Job, Cancellation | threading.Event]]) -> list[HeldRun]:
        """Keep the leases of ``runs`` (each a job as just claimed, and its run's
        cancellation) alive until :meth:`release`: one lock for a whole batch, whose
        queued runs need their leases kept as much as the running ones."""
        held = [HeldRun(job, RunRef.of(job), cancelled) for job, cancelled in runs]
        if not held:
            return held
        with self._lock:
            for h in held:
                self._held[(h.run.job_id, h.run.lease_epoch)] = h
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="crontick-heartbeat", daemon=True)
                self._thread.start()
        return held

    def release(self, held: Sequence[HeldRun]) -> None:
        """Stop keeping ``held`` (each one's ``beats`` says how many extensions it got)."""
        with self._lock:
            for h in held:
                self._held.pop((h.run.job_id, h.run.lease_epoch), None)
            if not self._held:  # the loop ends when nothing is held; waking it for less only costs the GIL
                self._wake.notify_all()

    def _loop(self) -> None:
        next_beat = time.monotonic() + self.interval_seconds
        while True:
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                # The last release wakes the loop (so it can end when nothing is held);
                # that is no reason to beat early: every extension is a store write.
                remaining = next_beat - time.monotonic()
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue
                held = list(self._held.values())
            next_beat = time.monotonic() + self.interval_seconds
            if held:
                self.beat(held)

    def beat(self, held: list[HeldRun] | None = None) -> None:
        """One heartbeat over ``held`` (default: every run held now)."""
        if held is None:
            with self._lock:
                held = list(self._held.values())
        if not held:
            return
        now = self.clock()
        try:
            result = self.store.extend_leases([h.run for h in held], now=now, lease_seconds=self.lease_seconds)
        except StoreError as exc:
            # The lease still runs out on its own; the next beat tries again.
            log.warning("Lease heartbeat failed", extra={"json_fields": {"action": "lease_heartbeat_failed", "runs": len(held), "error": str(exc)}})
            return
        self.beats += 1
        lost = set(result.lost)
        for h in held:
            if h.run.job_id in lost:
                if not h.cancelled.is_set():
                    log.warning("Lease lost while running; handler cancelled", extra={"json_fields": {"action": "lease_lost_running", "job_id": h.run.job_id, "lease_epoch": h.run.lease_epoch}})
                h.cancelled.set()
                continue
            h.beats += 1
            if h.job.overlap is Overlap.REPLACE and h.job.is_recurring and not h.finished:
                self._maybe_replace(h, now)

    def _maybe_replace(self, held: HeldRun, now: datetime) -> None:
        following = next_fire_after(held.job, held.run.fire_at)
        if following is None or following > now:
            return
        run = held.run

        def change(job: Job) -> Job:
            if job.status is not JobStatus.RUNNING or job.lease_owner != run.lease_owner or job.lease_epoch != run.lease_epoch:
                raise _Superseded()
            return job.replace(
                status=JobStatus.PENDING, next_run_at=run_at(job, following), fire_at=following, attempts=0,
                lease_owner=None, lease_until=None, lease_epoch=job.lease_epoch + 1, updated_at=now,
            )

        try:
            self.store.update_job(run.job_id, change)
        except (_Superseded, JobNotFound):
            pass
        except StoreError as exc:
            log.warning("overlap=replace could not take the lease", extra={"json_fields": {"action": "overlap_replace_failed", "job_id": run.job_id, "error": str(exc)}})
            return
        log.info("Next occurrence replaces the running one", extra={"json_fields": {"action": "overlap_replaced", "job_id": run.job_id, "fire_at": following.isoformat()}})
        held.cancelled.set()
