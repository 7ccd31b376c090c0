"""The tick engine: claim due jobs, run (or dispatch) them, settle them, report.

One call to :meth:`TickEngine.run_tick` is one tick. The caller reads the clock
once and passes ``now``; every fire-time decision in the tick uses it. Elapsed
time (per-job timeouts, the tick budget) is measured on an injected monotonic
clock.

One run path serves both modes. :meth:`TickEngine.run_claimed` takes claimed
jobs and returns their settlements: precheck (dead letter, misfire skip), run
each handler in a thread with its timeout while the lease heartbeat
(:mod:`scheduler.heartbeat`) keeps the lease alive, then plan the settlement.
The inline tick calls it on each claimed batch; ``POST /tasks/run`` calls it
(through :meth:`TickEngine.run_dispatched`) on the one run a Cloud Tasks task
names. In ``cloud_tasks`` mode the tick dispatches instead of running.

Isolation: anything that goes wrong with one job (its handler, its catch-up,
its next fire time, its settlement planning) fails that job's attempt with the
error recorded; the rest of the batch settles normally.

Data flows one way: stores return what they did (``ClaimResult``,
``SettleResult``) and the engine, alone, updates the tick's metrics.

The engine knows nothing of HTTP or of any particular store: it talks to a
:class:`~storage.base.JobStore`, a registry with ``get(job_type)`` and, when
dispatching, a :class:`~scheduler.dispatch.Dispatcher`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from scheduler.clock import utc_now
from scheduler.context import Cancellation, Handler, context_from_values
from scheduler.dispatch import DispatchRequest, Dispatcher
from scheduler.errors import JobNotFound
from scheduler.heartbeat import HeldRun, LeaseKeeper
from scheduler.model import (
    AUDIT_LIMIT,
    MAX_CATCH_UP,
    AuditEntry,
    Execution,
    Job,
    JobStatus,
    Misfire,
    Outcome,
    Overlap,
    RunRef,
    Settlement,
    Source,
    TickRecord,
    execution_from_values,
)
from scheduler.settings import Settings
from scheduler.schema import MAX_NOTE_CHARS
from scheduler.timing import backoff_delay, catch_up_occurrences, fire_times_after, next_fire_after, run_at
from storage.base import JobStore
from storage.retention import Retention

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05
# How often _execute checks whether its threads are all held up in handlers and more would help.
_RAMP_SECONDS = 0.002
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


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One claimed job after the run path: what happened, and what to write back."""

    result: RunResult
    settlement: Settlement


@dataclass(frozen=True, slots=True)
class RunScope:
    """Who runs a set of claimed jobs, and when: the same shape for the tick and /tasks/run.

    ``now`` is the clock reading for fire-time decisions; ``deadline`` (monotonic)
    is when the engine stops starting handlers; ``task`` holds Cloud Tasks' headers
    for the execution record of a dispatched run.
    """

    tick_id: str
    source: Source
    now: datetime
    deadline: float
    task: dict[str, Any] | None = None


@dataclass(slots=True)
class TickOutcome:
    """What one tick did. ``runs`` holds every claimed job's :class:`PlannedRun` (its result
    and the settlement handed to the store), for observers such as ``/metrics``; it is not
    part of :meth:`to_dict`."""

    tick: TickRecord
    duplicate_of: TickRecord | None = None
    runs: list[PlannedRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        if self.duplicate_of is not None:
            first = self.duplicate_of
            return {"tick_id": first.tick_id, "duplicate": True, "status": "finished" if first.finished_at else "in_progress", **first.metrics.to_dict()}
        return {"tick_id": self.tick.tick_id, "duplicate": False, **self.tick.metrics.to_dict()}


@dataclass(frozen=True, slots=True)
class TaskRunOutcome:
    """What ``POST /tasks/run`` did with one delivered task."""

    job_id: str
    result: str  # "settled", "lease_lost" or "duplicate_delivery"
    outcome: str | None = None  # the run's outcome when it ran
    detail: str | None = None
    run: PlannedRun | None = None  # what ran and was written back (metrics read it; not in to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "result": self.result, "outcome": self.outcome, "detail": self.detail}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]


def _overlapped(job: Job, started_at: datetime | None, now: datetime) -> list[datetime]:
    """Fire times that passed while the run was going: in (max(fire_at, started_at), now]."""
    if started_at is None or started_at >= now or not job.is_recurring:
        return []
    after = max(started_at, job.fire_at or started_at)
    times: list[datetime] = []
    for fire in fire_times_after(job, after):
        if fire > now or len(times) > MAX_CATCH_UP:
            break
        times.append(fire)
    return times


def _next_after_success(job: Job, result: RunResult, now: datetime) -> tuple[datetime | None, list[Execution]]:
    """Where a recurring job goes after a run that did not fail, by its ``overlap`` policy,
    and the ``skipped_overlap`` records it leaves."""
    ran = result.executions[-1].fire_at if result.executions else job.fire_at
    if job.overlap is Overlap.BUFFER_ALL and ran is not None:
        # The same bounds as run_all's catch-up (count and catch_up_window_seconds), one run each.
        pending = [fire for fire in catch_up_occurrences(job, ran, now)[0] if fire > ran]
        return (pending[0] if pending else next_fire_after(job, now)), []
    overlapped = _overlapped(job, result.started_at, now)
    if job.overlap is Overlap.BUFFER_ONE and overlapped:
        return overlapped[-1], []
    if job.overlap is Overlap.REPLACE:  # the heartbeat handed those to the next occurrence: nothing was skipped
        return next_fire_after(job, now), []
    last = result.executions[-1] if result.executions else None
    skipped = [
        Execution(job.id, fire, job.attempts, last.tick_id if last else "", Outcome.SKIPPED_OVERLAP, now, 0.0, "fired while the previous run was still going", last.source if last else Source.MANUAL)
        for fire in overlapped[:MAX_CATCH_UP]
    ]
    return next_fire_after(job, now), skipped


def plan_settlement(job: Job, result: RunResult, *, now: datetime, settings: Settings, rng: random.Random) -> Settlement:
    """Pure: the state ``job`` (as claimed) moves to after ``result``, at ``now`` (the settle time)."""
    base = {"lease_owner": None, "lease_until": None, "updated_at": now}
    executions = list(result.executions)
    if result.outcome is Outcome.DEFERRED:
        new = job.replace(status=JobStatus.PENDING, attempts=max(job.attempts - 1, 0), **base)
    elif result.outcome in (Outcome.SUCCEEDED, Outcome.MISFIRED):
        run_count = job.run_count + sum(1 for e in result.executions if e.outcome is Outcome.SUCCEEDED)
        next_run, skipped = _next_after_success(job, result, now) if job.is_recurring else (None, [])
        if job.max_runs is not None and run_count >= job.max_runs:
            next_run, skipped = None, []  # out of runs: the job completes
        executions += skipped
        new = job.replace(
            status=JobStatus.PENDING if next_run else JobStatus.COMPLETED,
            next_run_at=run_at(job, next_run),
            fire_at=next_run,
            run_count=run_count,
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
        new = _dead_letter(job, result, now)
    return Settlement(job=new, expected_owner=job.lease_owner or "", expected_epoch=job.lease_epoch, executions=tuple(executions))


def _dead_letter(job: Job, result: RunResult, now: datetime) -> Job:
    """Out of attempts: ``failed`` (the dead letter), or ``paused`` with a note saying why
    when the job asks for ``pause_on_failure``. Either way the occurrence counts as run."""
    dead = job.replace(
        status=JobStatus.FAILED,
        next_run_at=None,
        fire_at=result.failed_fire_at or job.fire_at,
        last_run_at=result.started_at or job.last_run_at,
        last_outcome=Outcome.DEAD.value,
        last_error=result.error,
        run_count=job.run_count + 1,
        lease_owner=None,
        lease_until=None,
        updated_at=now,
    )
    if not job.pause_on_failure:
        return dead
    note = f"paused by crontick after {job.attempts} failed attempt(s): {result.error or 'no error text'}"[:MAX_NOTE_CHARS]
    entry = AuditEntry(at=now, actor="crontick", action="pause", detail="pause_on_failure", note=note)
    return dead.replace(status=JobStatus.PAUSED, note=note, audit=(*job.audit, entry)[-AUDIT_LIMIT:])


class TickEngine:
    def __init__(
        self,
        store: JobStore,
        handlers: HandlerLookup,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = utc_now,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.settings = settings
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self.clock = clock
        self.dispatcher = dispatcher
        self.lease_seconds = (settings.dispatch_lease_seconds or settings.lease_seconds) if dispatcher is not None else settings.lease_seconds
        self.keeper = LeaseKeeper(store, lease_seconds=self.lease_seconds, clock=clock)
        self.retention = Retention(store, days=settings.retention_days)  # old finished jobs: at most hourly
        # Handlers still running past their timeout, by job type (Python cannot stop a thread).
        self._abandoned: Counter[str] = Counter()
        self._abandoned_lock = threading.Lock()

    # -- the tick -------------------------------------------------------------
    def run_tick(self, *, now: datetime, tick_id: str, source: Source = Source.MANUAL, occurrence_key: str | None = None) -> TickOutcome:
        """Run one tick at ``now``. Raises StoreError if the store fails (claimed jobs then
        stay leased until ``lease_until`` and are recovered by a later tick)."""
        settings = self.settings
        started = self.monotonic()
        deadline = started + settings.tick_budget_seconds
        tick = TickRecord(tick_id=tick_id, started_at=now, source=source, occurrence_key=occurrence_key)
        metrics = tick.metrics
        scope = RunScope(tick_id=tick_id, source=source, now=now, deadline=deadline)
        runs: list[PlannedRun] = []
        unreadable: set[str] = set()  # every batch's claim meets them again: count each once
        more_due = True
        while more_due:
            if self.dispatcher is None and self.monotonic() + settings.job_timeout_seconds > deadline and metrics.jobs_due:
                break  # no time left to run another batch to completion
            claim = self.store.claim_due_jobs(now=now, tick=tick, lease_seconds=self.lease_seconds, limit=settings.claim_batch_size)
            if claim.duplicate_of is not None:
                log.info("Duplicate tick request ignored", extra={"json_fields": {"action": "tick_duplicate", "tick_id": tick_id, "duplicate_of": claim.duplicate_of.tick_id, "occurrence_key": occurrence_key}})
                return TickOutcome(tick=tick, duplicate_of=claim.duplicate_of)
            metrics.jobs_checked += claim.checked
            unreadable.update(claim.unreadable)
            metrics.jobs_unreadable = len(unreadable)
            metrics.jobs_due += len(claim.claimed) + claim.conflicts
            metrics.jobs_skipped += claim.conflicts
            metrics.jobs_recovered += len(claim.recovered)
            more_due = claim.more_due and len(claim.claimed) > 0
            if not claim.claimed:
                break
            if self.dispatcher is not None:
                planned = self._dispatch(claim.claimed, scope, metrics)
            else:
                planned = self._run_guarded(claim.claimed, scope)
            self._count(planned, metrics)
            runs.extend(planned)
            tick.finished_at = now + timedelta(seconds=self.monotonic() - started)
            metrics.duration_ms = round((self.monotonic() - started) * 1000, 3)
            if planned:
                # The store gets a copy: it records the tick with its lease_lost, we count ours from its answer.
                settled = self.store.settle_jobs([run.settlement for run in planned], tick=dataclasses.replace(tick, metrics=dataclasses.replace(metrics)))
                metrics.lease_lost += len(settled.lost)
        if more_due and metrics.jobs_due and self.dispatcher is None:
            left = self.store.count_due(now)
            metrics.jobs_deferred += left
            metrics.jobs_due += left
        self.retention.maybe_run(now)
        metrics.runs_abandoned = self.abandoned_runs()
        if metrics.runs_abandoned:
            log.warning(
                "Handlers still running past their timeout",
                extra={"json_fields": {"action": "runs_abandoned", "tick_id": tick_id, "runs_abandoned": metrics.runs_abandoned, "by_job_type": self.abandoned_by_type()}},
            )
        metrics.duration_ms = round((self.monotonic() - started) * 1000, 3)
        log.info("Scheduler tick completed", extra={"json_fields": {"action": "tick_completed", "tick_id": tick_id, "source": source.value, **metrics.to_dict()}})
        return TickOutcome(tick=tick, runs=runs)

    @staticmethod
    def _count(planned: Sequence[PlannedRun], metrics: Any) -> None:
        for run in planned:
            result = run.result
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
            elif result.outcome in (Outcome.DEAD, Outcome.FAILED):
                metrics.jobs_failed += 1

    # -- dispatch (cloud_tasks mode) ------------------------------------------
    def _dispatch(self, jobs: list[Job], scope: RunScope, metrics: Any) -> list[PlannedRun]:
        """Settle what the tick can decide alone (dead letters, misfire skips); create a
        task for every other run, which stays leased until /tasks/run settles it."""
        assert self.dispatcher is not None
        settlements: list[PlannedRun] = []
        requests: list[DispatchRequest] = []
        for job in jobs:
            early = self._guarded_precheck(job, scope)
            if early is not None:
                settlements.append(PlannedRun(early, self._plan(job, early, scope.now)))
            else:
                requests.append(DispatchRequest(RunRef.of(job), self._timeout(job)))
        if requests:
            result = self.dispatcher.dispatch(requests)
            metrics.jobs_dispatched += len(result.dispatched)
            metrics.jobs_dispatch_failed += len(result.failed)
            for job_id, error in result.failed.items():
                log.warning("Task not created; the run stays leased and is recovered after its lease", extra={"json_fields": {"action": "dispatch_failed", "tick_id": scope.tick_id, "job_id": job_id, "error": error}})
        return settlements

    # -- /tasks/run -------------------------------------------------------------
    def run_dispatched(self, run: RunRef, *, task: dict[str, Any] | None = None) -> TaskRunOutcome:
        """Run the one run a Cloud Tasks task names, through the same run path as the tick.

        Runs nothing (``duplicate_delivery``) unless the stored job still holds the lease
        the task names: a redelivered task, or one whose run was settled, taken over or
        paused meanwhile. Otherwise it first takes the run with one fenced ``update_job``
        (``lease_owner`` gains ``/task``, ``lease_epoch + 1``), so two deliveries of the
        same task arriving at once cannot both run it; the heartbeat and the settle are
        fenced on that new lease. Raises StoreError when the store is unavailable (the
        caller answers 503 so Cloud Tasks retries).
        """
        now = self.clock()
        try:
            # Take the run: fenced on the task's lease, and moving the epoch on, so that of two
            # deliveries of one task arriving together exactly one runs it.
            job = self.store.update_job(run.job_id, _take_run(run, now, self.lease_seconds))
        except JobNotFound:
            return TaskRunOutcome(run.job_id, "duplicate_delivery", detail="no such job")
        except _StaleRun as stale:
            log.info("Stale or duplicate task delivery; nothing run", extra={"json_fields": {"action": "duplicate_delivery", "job_id": run.job_id, "lease_epoch": run.lease_epoch, "detail": str(stale), "task": task}})
            return TaskRunOutcome(run.job_id, "duplicate_delivery", detail=str(stale))
        scope = RunScope(tick_id=run.lease_owner, source=Source.CLOUD_TASKS, now=now, deadline=self.monotonic() + self._timeout(job) + 1.0, task=task)
        [planned] = self._run_guarded([job], scope, settle_clock=self.clock)
        settled = self.store.settle_jobs([planned.settlement], tick=None)
        outcome = planned.result.outcome.value
        if settled.lost:
            return TaskRunOutcome(run.job_id, "lease_lost", outcome=outcome, detail="the lease was taken while the handler ran; its result was not applied", run=planned)
        return TaskRunOutcome(run.job_id, "settled", outcome=outcome, run=planned)

    # -- the run path ---------------------------------------------------------------
    def run_claimed(self, jobs: list[Job], scope: RunScope, *, settle_clock: Callable[[], datetime] | None = None) -> list[PlannedRun]:
        """Precheck, run with timeout and heartbeat, and plan the settlement of each of
        ``jobs`` (as claimed). Never raises for one job's failure."""
        results: dict[str, RunResult] = {}
        runnable: list[Job] = []
        for job in jobs:
            early = self._guarded_precheck(job, scope)
            if early is None:
                runnable.append(job)
            else:
                results[job.id] = early
        results.update(self._execute(runnable, scope))
        settle_now = settle_clock() if settle_clock is not None else scope.now
        planned = []
        quiet_lines: list[dict[str, Any]] | None = [] if log.isEnabledFor(logging.INFO) else None
        for job in jobs:
            result = results[job.id]
            if job.backfill_of is not None:  # history says which runs were backfilled
                result.executions = [dataclasses.replace(e, source=Source.BACKFILL) for e in result.executions]
            settlement = self._plan(job, result, settle_now)
            failed = result.outcome not in (Outcome.SUCCEEDED, Outcome.MISFIRED, Outcome.DEFERRED)
            if failed or (quiet_lines is not None and result.outcome is not Outcome.DEFERRED):
                outcome = settlement.job.last_outcome
                line = {
                    "action": "job_settled", "tick_id": scope.tick_id, "job_id": job.id, "job_type": job.job_type,
                    "attempt": job.attempts, "duration_ms": result.duration_ms, "outcome": outcome, "error": result.error, "message": f"Job {outcome}",
                }
                if failed:
                    log.warning(line.pop("message"), extra={"json_fields": line})
                elif quiet_lines is not None:
                    quiet_lines.append(line)
            planned.append(PlannedRun(result, settlement))
        if quiet_lines:
            # One record, one line per job (web/logs.py writes each ``json_lines`` entry
            # as a line of its own): the logging module's per-record work, paid once a
            # batch instead of once a job, was a sixth of a tick of 1,000 no-op jobs.
            log.info("%d job(s) settled", len(quiet_lines), extra={"json_fields": {"action": "jobs_settled", "tick_id": scope.tick_id}, "json_lines": quiet_lines})
        return planned

    def _run_guarded(self, jobs: list[Job], scope: RunScope, *, settle_clock: Callable[[], datetime] | None = None) -> list[PlannedRun]:
        """:meth:`run_claimed`, and should the engine itself fail, a failed attempt for
        every job rather than a batch left leased until its lease runs out."""
        try:
            return self.run_claimed(jobs, scope, settle_clock=settle_clock)
        except Exception as exc:
            log.exception("Tick engine error; the batch is settled as failed attempts", extra={"json_fields": {"action": "engine_error", "tick_id": scope.tick_id}})
            failed = RunResult(Outcome.FAILED, error=f"internal error in the tick: {_error_text(exc)}")
            return [PlannedRun(failed, self._plan(job, failed, scope.now)) for job in jobs]

    def _plan(self, job: Job, result: RunResult, now: datetime) -> Settlement:
        try:
            return plan_settlement(job, result, now=now, settings=self.settings, rng=self.rng)
        except Exception as exc:  # e.g. a schedule whose next fire time overflows the calendar
            error = f"cannot plan the next run: {_error_text(exc)}"
            log.error("Job dead-lettered: its settlement cannot be planned", extra={"json_fields": {"action": "settlement_unplannable", "job_id": job.id, "error": error}})
            executions = tuple(result.executions) or (Execution(job.id, job.fire_at or now, job.attempts, job.lease_owner or "", Outcome.DEAD, now, 0.0, error),)
            failed = RunResult(Outcome.DEAD, error=error, started_at=result.started_at)
            return Settlement(_dead_letter(job, failed, now), job.lease_owner or "", job.lease_epoch, executions)

    def _guarded_precheck(self, job: Job, scope: RunScope) -> RunResult | None:
        try:
            return self._precheck(job, scope)
        except Exception as exc:
            error = f"cannot prepare the run: {_error_text(exc)}"
            return RunResult(Outcome.FAILED, error=error, executions=[Execution(job.id, job.fire_at or scope.now, job.attempts, scope.tick_id, Outcome.FAILED, scope.now, 0.0, error, scope.source, scope.task)])

    def _precheck(self, job: Job, scope: RunScope) -> RunResult | None:
        """Outcomes decided without running the handler, or None to run it."""
        now = scope.now
        if job.attempts > job.max_attempts:
            error = f"lease expired during attempt {job.attempts - 1} of {job.max_attempts} (process died or ran past its lease)"
            return RunResult(Outcome.DEAD, error=error)
        fire_at = job.fire_at or now
        if job.is_recurring and job.misfire is Misfire.SKIP and job.attempts == 1 and (now - fire_at).total_seconds() > job.misfire_grace_seconds:
            execution = Execution(job.id, fire_at, job.attempts, scope.tick_id, Outcome.MISFIRED, now, 0.0, f"late by {(now - fire_at).total_seconds():.0f} s", scope.source, scope.task)
            return RunResult(Outcome.MISFIRED, started_at=None, executions=[execution])
        return None

    def _timeout(self, job: Job) -> float:
        return job.timeout_seconds or self.settings.job_timeout_seconds

    # -- running handlers ---------------------------------------------------------------
    def abandoned_runs(self) -> int:
        with self._abandoned_lock:
            return sum(self._abandoned.values())

    def abandoned_by_type(self) -> dict[str, int]:
        with self._abandoned_lock:
            return {name: count for name, count in self._abandoned.items() if count}

    def _abandon(self, job: Job) -> None:
        with self._abandoned_lock:
            self._abandoned[job.job_type] += 1

    def _abandoned_finished(self, job: Job) -> None:
        with self._abandoned_lock:
            self._abandoned[job.job_type] -= 1
        log.info("An abandoned handler finished", extra={"json_fields": {"action": "abandoned_run_finished", "job_id": job.id, "job_type": job.job_type}})

    def _refuse_abandoned(self, job: Job) -> bool:
        limit = self.settings.max_abandoned_runs
        with self._abandoned_lock:
            held = self._abandoned[job.job_type]
        if held < limit:
            return False
        log.warning(
            "Run refused: too many runs of this job type are still running past their timeout",
            extra={"json_fields": {"action": "run_refused_abandoned", "job_id": job.id, "job_type": job.job_type, "abandoned": held, "limit": limit}},
        )
        return True

    def _execute(self, jobs: list[Job], scope: RunScope) -> dict[str, RunResult]:
        """Run ``jobs`` on up to ``max_concurrency`` threads of their own and return each
        one's result: the handler's, a timeout (the handler is abandoned: its thread goes on,
        counted in ``_abandoned`` until it ends), or DEFERRED for a job not started by the
        tick's deadline.

        The threads take jobs from one queue rather than a future per job: for a batch of
        short handlers the per-job handoff (a Future, its condition, a waiter on each of
        1,000 futures) cost more than the handlers (bench figure 5). And they are started
        as the handlers need them: one at first, then every 2 ms, while jobs wait in the
        queue and the threads running finished fewer jobs than there are of them, as many
        again (1, 2, 4, 8: all 8 within about 6 ms of handlers that block). A batch of
        handlers that return at once stays on one thread, where 8 threads only fought
        over the GIL (1,000 no-op jobs: 38 ms on one thread, 56-65 ms on eight)."""
        if not jobs:
            return {}
        starts: dict[str, float] = {}  # set by _run_one when a handler starts
        timeouts = {job.id: self._timeout(job) for job in jobs}
        # Every lease of the batch is kept from now until the batch is done: queued runs too.
        # Each held run carries its run's cancellation.
        held = self.keeper.hold([(job, Cancellation()) for job in jobs])
        try:
            return self._run_batch(jobs, scope, starts, timeouts, {h.run.job_id: h for h in held})
        finally:
            self.keeper.release(held)

    def _run_batch(
        self, jobs: list[Job], scope: RunScope, starts: dict[str, float], timeouts: dict[str, float], held: dict[str, HeldRun]
    ) -> dict[str, RunResult]:
        """:meth:`_execute`'s threads and its wait for them, with the batch's leases held."""
        queue = deque(jobs)
        results: dict[str, RunResult] = {}
        abandoned: set[str] = set()  # timed out here; their threads may still be running them
        lock = threading.Lock()
        settled = threading.Condition(lock)  # notified when the last result is in

        def work() -> None:
            while True:
                try:
                    job = queue.popleft()  # atomic on a deque: no lock for the handoff
                except IndexError:
                    return
                try:
                    result = self._run_one(job, scope, timeouts[job.id], starts, held[job.id].cancelled)
                except BaseException as exc:  # _run_one catches every Exception; sys.exit() in a handler lands here
                    result = RunResult(Outcome.FAILED, error=f"the handler did not return: {_error_text(exc)}", started_at=scope.now)
                held[job.id].finished = True  # its lease stays kept until the batch is done, but is no longer replaced
                with lock:
                    late = job.id in abandoned
                    if not late:
                        results[job.id] = result
                        if len(results) == len(jobs):
                            settled.notify_all()
                if late:
                    self._abandoned_finished(job)

        wanted = min(self.settings.max_concurrency, len(jobs))
        threads = 0

        def start_threads(n: int) -> None:
            nonlocal threads
            for _ in range(n):
                threading.Thread(target=work, name=f"run-{scope.tick_id[:8]}-{threads}", daemon=True).start()
                threads += 1

        start_threads(1)
        with lock:
            finished_at_check = 0
            while len(results) < len(jobs):
                pending = [job for job in jobs if job.id not in results]
                wait = self._wait_seconds([job.id for job in pending], starts, timeouts)
                ramping = threads < wanted and bool(queue)
                settled.wait(min(wait, _RAMP_SECONDS) if ramping else wait)
                if ramping and queue and len(results) - finished_at_check < threads:
                    start_threads(min(threads, wanted - threads))
                finished_at_check = len(results)
                clock = self.monotonic()
                for job in pending:
                    if job.id in results or job.id not in starts or clock - starts[job.id] < timeouts[job.id]:
                        continue
                    held[job.id].cancelled.set()
                    abandoned.add(job.id)
                    self._abandon(job)
                    results[job.id] = self._timed_out(job, scope, timeouts[job.id], clock - starts[job.id])
                if clock >= scope.deadline:
                    while queue:  # never started: the next tick runs them
                        results[queue.popleft().id] = RunResult(Outcome.DEFERRED)
            return results

    def _wait_seconds(self, pending: Sequence[str], starts: dict[str, float], timeouts: dict[str, float]) -> float:
        clock = self.monotonic()
        ends = [starts[j] + timeouts[j] - clock for j in pending if j in starts]
        return max(min(ends, default=_POLL_SECONDS), 0.001) if ends else _POLL_SECONDS

    def _timed_out(self, job: Job, scope: RunScope, timeout: float, elapsed: float) -> RunResult:
        error = f"timed out after {timeout:g} s"  # ctx.cancelled is set; the thread may still finish (README: Handlers)
        fire_at = job.fire_at or scope.now
        execution = Execution(job.id, fire_at, job.attempts, scope.tick_id, Outcome.FAILED, scope.now, round(elapsed * 1000, 3), error, scope.source, scope.task)
        return RunResult(Outcome.FAILED, error=error, started_at=scope.now, duration_ms=round(elapsed * 1000, 3), executions=[execution])

    def _run_one(self, job: Job, scope: RunScope, timeout: float, starts: dict[str, float], cancelled: Cancellation | threading.Event) -> RunResult:
        begin = self.monotonic()
        # Not started: past the deadline, too many abandoned runs of its type, or its lease
        # was lost while it waited (paused, cancelled, replaced: the settle is refused anyway).
        if begin + timeout > scope.deadline or cancelled.is_set() or self._refuse_abandoned(job):
            return RunResult(Outcome.DEFERRED)
        starts[job.id] = begin
        return self._call_handler(job, scope, begin, timeout, cancelled)

    def _call_handler(self, job: Job, scope: RunScope, begin: float, timeout: float, cancelled: Cancellation | threading.Event) -> RunResult:
        now = scope.now
        fire_at = job.fire_at or now
        executions: list[Execution] = []
        occurrence = fire_at
        t0 = begin
        try:
            handler = self.handlers.get(job.job_type)
            occurrences = [fire_at]
            if job.misfire is Misfire.RUN_ALL and job.is_recurring:
                occurrences, dropped = catch_up_occurrences(job, fire_at, now)
                if dropped:
                    log.warning("run_all catch-up bounded", extra={"json_fields": {"action": "catch_up_bounded", "job_id": job.id, "dropped": dropped, "ran": len(occurrences)}})
            for occurrence in occurrences:
                t0 = self.monotonic()
                ctx = context_from_values(scope.tick_id, job.attempts, occurrence, begin + timeout, cancelled)
                if handler is None:
                    raise LookupError(f"no handler registered for job_type {job.job_type!r}")
                handler(job, ctx)
                executions.append(execution_from_values(job.id, occurrence, job.attempts, scope.tick_id, Outcome.SUCCEEDED, now, _ms(t0, self.monotonic()), None, scope.source, scope.task))
                if cancelled.is_set():
                    break
        except Exception as exc:  # a handler's failure (or its catch-up's) is data, not a crash
            error = _error_text(exc)
            executions.append(Execution(job.id, occurrence, job.attempts, scope.tick_id, Outcome.FAILED, now, _ms(t0, self.monotonic()), error, scope.source, scope.task))
            return RunResult(Outcome.FAILED, error=error, started_at=now, duration_ms=_ms(begin, self.monotonic()), failed_fire_at=occurrence, executions=executions)
        return RunResult(Outcome.SUCCEEDED, started_at=now, duration_ms=_ms(begin, self.monotonic()), executions=executions)


class _StaleRun(Exception):
    """The stored job no longer holds the lease a task names."""


def _take_run(run: RunRef, now: datetime, lease_seconds: float) -> Callable[[Job], Job]:
    def change(job: Job) -> Job:
        if job.status is not JobStatus.RUNNING or job.lease_owner != run.lease_owner or job.lease_epoch != run.lease_epoch:
            raise _StaleRun(f"the job is {job.status.value} with lease epoch {job.lease_epoch}; the task names epoch {run.lease_epoch}")
        return job.replace(lease_owner=f"{run.lease_owner}/task", lease_epoch=job.lease_epoch + 1, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)

    return change


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 3)
