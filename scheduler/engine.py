"""The tick engine: claim due jobs, run their handlers, settle them, report.

One call to :meth:`TickEngine.run_tick` is one tick. The caller reads the clock
once and passes ``now``; every fire-time decision in the tick uses it. Elapsed
time (per-job timeouts, the tick budget) is measured on an injected monotonic
clock.

The engine knows nothing of HTTP or of any particular store: it talks to a
:class:`~storage.base.JobStore` and a registry with ``get(job_type)``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from handlers.registry import Handler, HandlerContext
from scheduler.model import Execution, Job, JobStatus, Misfire, Outcome, Settlement, Source, TickRecord
from scheduler.settings import Settings
from scheduler.timing import backoff_delay, catch_up_occurrences, next_fire_after
from storage.base import JobStore

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
_MAX_ERROR_CHARS = 2000


class HandlerLookup(Protocol):
    def get(self, name: str) -> Handler | None: ...


@dataclass(slots=True)
class RunResult:
    """What running one claimed job produced, before it is turned into a Settlement."""

    outcome: Outcome
    error: str | None = None
    started_at: datetime | None = None
    duration_ms: float = 0.0
    failed_fire_at: datetime | None = None  # run_all: the occurrence that failed
    executions: list[Execution] = field(default_factory=list)


@dataclass(slots=True)
class TickOutcome:
    tick: TickRecord
    duplicate_of: TickRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.duplicate_of is not None:
            first = self.duplicate_of
            return {"tick_id": first.tick_id, "duplicate": True, "status": "finished" if first.finished_at else "in_progress", **first.metrics.to_dict()}
        return {"tick_id": self.tick.tick_id, "duplicate": False, **self.tick.metrics.to_dict()}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]


def plan_settlement(job: Job, result: RunResult, *, now: datetime, settings: Settings, rng: random.Random) -> Settlement:
    """Pure: the state ``job`` (as claimed) moves to after ``result``."""
    base = {"lease_owner": None, "lease_until": None, "updated_at": now}
    if result.outcome is Outcome.DEFERRED:
        new = job.replace(status=JobStatus.PENDING, attempts=max(job.attempts - 1, 0), **base)
    elif result.outcome in (Outcome.SUCCEEDED, Outcome.MISFIRED):
        next_run = next_fire_after(job, now) if job.is_recurring else None
        new = job.replace(
            status=JobStatus.PENDING if next_run else JobStatus.COMPLETED,
            next_run_at=next_run,
            fire_at=next_run,
            attempts=0,
            last_run_at=result.started_at or job.last_run_at,
            last_outcome=result.outcome.value,
            last_error=None,
            **base,
        )
    elif result.outcome is Outcome.FAILED and job.attempts < job.max_attempts:
        delay = backoff_delay(job.attempts, settings.retry_base_seconds, settings.retry_max_seconds, rng)
        new = job.replace(
            status=JobStatus.PENDING,
            next_run_at=now + timedelta(seconds=delay),
            fire_at=result.failed_fire_at or job.fire_at,
            last_run_at=result.started_at or job.last_run_at,
            last_outcome=Outcome.FAILED.value,
            last_error=result.error,
            **base,
        )
    else:  # failed on its last attempt, or recovered with no attempts left: dead letter
        new = job.replace(
            status=JobStatus.FAILED,
            next_run_at=None,
            fire_at=result.failed_fire_at or job.fire_at,
            last_run_at=result.started_at or job.last_run_at,
            last_outcome=Outcome.DEAD.value,
            last_error=result.error,
            **base,
        )
    return Settlement(job=new, expected_owner=job.lease_owner or "", expected_epoch=job.lease_epoch, executions=tuple(result.executions))


class TickEngine:
    def __init__(
        self,
        store: JobStore,
        handlers: HandlerLookup,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.settings = settings
        self.rng = rng or random.Random()
        self.monotonic = monotonic

    def run_tick(self, *, now: datetime, tick_id: str, source: Source = Source.MANUAL, occurrence_key: str | None = None) -> TickOutcome:
        """Run one tick at ``now``. Raises StoreError if the store fails (claimed jobs then
        stay leased until ``lease_until`` and are recovered by a later tick)."""
        settings = self.settings
        started = self.monotonic()
        deadline = started + settings.tick_budget_seconds
        tick = TickRecord(tick_id=tick_id, started_at=now, source=source, occurrence_key=occurrence_key)
        metrics = tick.metrics
        more_due = True
        while more_due:
            if self.monotonic() + settings.job_timeout_seconds > deadline and metrics.jobs_due:
                break  # no time left to run another batch to completion
            claim = self.store.claim_due_jobs(now=now, tick=tick, lease_seconds=settings.lease_seconds, limit=settings.claim_batch_size)
            if claim.duplicate_of is not None:
                log.info("Duplicate tick request ignored", extra={"json_fields": {"tick_id": tick_id, "duplicate_of": claim.duplicate_of.tick_id, "occurrence_key": occurrence_key}})
                return TickOutcome(tick=tick, duplicate_of=claim.duplicate_of)
            metrics.jobs_checked += claim.checked
            metrics.jobs_due += len(claim.claimed) + claim.conflicts
            metrics.jobs_skipped += claim.conflicts
            metrics.jobs_recovered += len(claim.recovered)
            more_due = claim.more_due and len(claim.claimed) > 0
            if not claim.claimed:
                break
            settlements = self._run_batch(claim.claimed, now=now, tick=tick, deadline=deadline)
            tick.finished_at = now + timedelta(seconds=self.monotonic() - started)
            metrics.duration_ms = round((self.monotonic() - started) * 1000, 3)
            self.store.settle_jobs(settlements, tick=tick)
        if more_due and metrics.jobs_due:
            left = self.store.count_due(now)
            metrics.jobs_deferred += left
            metrics.jobs_due += left
        metrics.duration_ms = round((self.monotonic() - started) * 1000, 3)
        log.info("Scheduler tick completed", extra={"json_fields": {"tick_id": tick_id, "source": source.value, **metrics.to_dict()}})
        return TickOutcome(tick=tick)

    # -- one batch --------------------------------------------------------
    def _run_batch(self, jobs: list[Job], *, now: datetime, tick: TickRecord, deadline: float) -> list[Settlement]:
        metrics = tick.metrics
        results: dict[str, RunResult] = {}
        runnable: list[Job] = []
        for job in jobs:
            early = self._precheck(job, now=now, tick=tick)
            if early is None:
                runnable.append(job)
            else:
                results[job.id] = early
        results.update(self._execute(runnable, now=now, tick=tick, deadline=deadline))
        settlements = []
        for job in jobs:
            result = results[job.id]
            if result.outcome is Outcome.DEFERRED:
                metrics.jobs_deferred += 1
            elif result.outcome is Outcome.MISFIRED:
                metrics.jobs_misfired += 1
            elif result.executions:
                metrics.jobs_executed += 1
                if result.outcome is Outcome.SUCCEEDED:
                    metrics.jobs_succeeded += 1
                else:
                    metrics.jobs_failed += 1
            elif result.outcome is Outcome.DEAD:
                metrics.jobs_failed += 1
            settlement = plan_settlement(job, result, now=now, settings=self.settings, rng=self.rng)
            if result.outcome is not Outcome.DEFERRED:
                log.log(
                    logging.INFO if result.outcome in (Outcome.SUCCEEDED, Outcome.MISFIRED) else logging.WARNING,
                    "Job %s", settlement.job.last_outcome,
                    extra={"json_fields": {"tick_id": tick.tick_id, "job_id": job.id, "job_type": job.job_type, "attempt": job.attempts, "duration_ms": result.duration_ms, "outcome": settlement.job.last_outcome, "error": result.error}},
                )
            settlements.append(settlement)
        return settlements

    def _precheck(self, job: Job, *, now: datetime, tick: TickRecord) -> RunResult | None:
        """Outcomes decided without running the handler, or None to run it."""
        if job.attempts > job.max_attempts:
            error = f"lease expired during attempt {job.attempts - 1} of {job.max_attempts} (process died or ran past its lease)"
            return RunResult(Outcome.DEAD, error=error)
        fire_at = job.fire_at or now
        if job.is_recurring and job.misfire is Misfire.SKIP and job.attempts == 1 and (now - fire_at).total_seconds() > job.misfire_grace_seconds:
            execution = Execution(job.id, fire_at, job.attempts, tick.tick_id, Outcome.MISFIRED, now, 0.0, f"late by {(now - fire_at).total_seconds():.0f} s", tick.source)
            return RunResult(Outcome.MISFIRED, started_at=None, executions=[execution])
        return None

    def _execute(self, jobs: list[Job], *, now: datetime, tick: TickRecord, deadline: float) -> dict[str, RunResult]:
        if not jobs:
            return {}
        starts: dict[str, float] = {}
        timeouts = {job.id: job.timeout_seconds or self.settings.job_timeout_seconds for job in jobs}
        pool = ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(jobs)), thread_name_prefix=f"tick-{tick.tick_id[:8]}")
        futures: dict[str, Future[RunResult]] = {}
        try:
            for job in jobs:
                futures[job.id] = pool.submit(self._run_one, job, now, tick, deadline, timeouts[job.id], starts)
            results: dict[str, RunResult] = {}
            pending = set(futures)
            while pending:
                wait([futures[j] for j in pending], timeout=self._wait_seconds(pending, starts, timeouts), return_when=ALL_COMPLETED)
                clock = self.monotonic()
                for job_id in list(pending):
                    future = futures[job_id]
                    if future.done():
                        results[job_id] = future.result()
                    elif job_id not in starts and clock >= deadline and future.cancel():
                        results[job_id] = RunResult(Outcome.DEFERRED)
                    elif job_id in starts and clock - starts[job_id] >= timeouts[job_id]:
                        results[job_id] = self._timed_out(next(j for j in jobs if j.id == job_id), now, tick, timeouts[job_id], clock - starts[job_id])
                    else:
                        continue
                    pending.discard(job_id)
            return results
        finally:
            # A handler that overran its timeout keeps its thread; we stop waiting for it.
            pool.shutdown(wait=False, cancel_futures=True)

    def _wait_seconds(self, pending: set[str], starts: dict[str, float], timeouts: dict[str, float]) -> float:
        clock = self.monotonic()
        ends = [starts[j] + timeouts[j] - clock for j in pending if j in starts]
        return max(min(ends, default=_POLL_SECONDS), 0.001) if ends else _POLL_SECONDS

    def _timed_out(self, job: Job, now: datetime, tick: TickRecord, timeout: float, elapsed: float) -> RunResult:
        error = f"timed out after {timeout:g} s"
        fire_at = job.fire_at or now
        execution = Execution(job.id, fire_at, job.attempts, tick.tick_id, Outcome.FAILED, now, round(elapsed * 1000, 3), error, tick.source)
        return RunResult(Outcome.FAILED, error=error, started_at=now, duration_ms=round(elapsed * 1000, 3), executions=[execution])

    def _run_one(self, job: Job, now: datetime, tick: TickRecord, deadline: float, timeout: float, starts: dict[str, float]) -> RunResult:
        begin = self.monotonic()
        if begin + timeout > deadline:
            return RunResult(Outcome.DEFERRED)
        starts[job.id] = begin
        handler = self.handlers.get(job.job_type)
        fire_at = job.fire_at or now
        occurrences = [fire_at]
        if job.misfire is Misfire.RUN_ALL and job.is_recurring:
            occurrences, dropped = catch_up_occurrences(job, fire_at, now)
            if dropped:
                log.warning("run_all catch-up bounded", extra={"json_fields": {"job_id": job.id, "dropped": dropped, "ran": len(occurrences)}})
        executions: list[Execution] = []
        for occurrence in occurrences:
            t0 = self.monotonic()
            ctx = HandlerContext(tick_id=tick.tick_id, attempt=job.attempts, fire_at=occurrence, deadline=begin + timeout)
            try:
                if handler is None:
                    raise LookupError(f"no handler registered for job_type {job.job_type!r}")
                handler(job, ctx)
            except Exception as exc:  # a handler's failure is data, not a crash
                error = _error_text(exc)
                executions.append(Execution(job.id, occurrence, job.attempts, tick.tick_id, Outcome.FAILED, now, _ms(t0, self.monotonic()), error, tick.source))
                return RunResult(Outcome.FAILED, error=error, started_at=now, duration_ms=_ms(begin, self.monotonic()), failed_fire_at=occurrence, executions=executions)
            executions.append(Execution(job.id, occurrence, job.attempts, tick.tick_id, Outcome.SUCCEEDED, now, _ms(t0, self.monotonic()), None, tick.source))
        return RunResult(Outcome.SUCCEEDED, started_at=now, duration_ms=_ms(begin, self.monotonic()), executions=executions)


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 3)
