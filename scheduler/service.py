"""Operator verbs on jobs, shared by the HTTP API, the CLI and the chat webhook.

Each verb is one atomic store update whose change function is pure (stores may
retry it). Verbs that act on a job a tick currently holds (``pause``,
``cancel``) take the lease from that tick: they clear ``lease_owner`` and bump
``lease_epoch``, so the tick's late settle is refused and the operator's
decision stands.

**Audit.** Every verb that changes a job takes ``actor`` (who asked: the API or
console identity, the Chat sender) and an optional ``note``, and appends an
:class:`~scheduler.model.AuditEntry` to ``job.audit`` inside the same update (the
latest :data:`~scheduler.model.AUDIT_LIMIT` are kept). A verb that changes nothing
(pausing a paused job, an idempotent create) records nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scheduler.errors import ConflictError, ValidationError
from scheduler.jobspec import DEFAULT_LIMITS, JobLimits, apply_patch, build_job, check_text, parse_timestamp
from scheduler.model import AUDIT_LIMIT, AuditEntry, Job, JobStatus, to_iso
from scheduler.schema import MAX_BACKFILL_RUNS
from scheduler.timing import PlannedTime, fire_times_after, first_fire_time, next_fire_after, planned_times, run_at

_INSTANT = timedelta(microseconds=1)
from storage.base import JobStore


class JobService:
    def __init__(self, store: JobStore, registry: Any, clock: Callable[[], datetime], limits: JobLimits = DEFAULT_LIMITS) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.limits = limits

    def create(self, data: Any, *, created_by: str | None = None) -> tuple[Job, bool]:
        """Validate and store a job; ``(job, False)`` when its idempotency key exists."""
        now = self.clock()
        job = build_job(data, known_types=self.registry.names(), now=now, created_by=created_by, limits=self.limits)
        self.registry.validate_payload(job.job_type, job.payload)
        return self.store.add_job(_audited(job, now, created_by, "create"))

    def get(self, job_id: str) -> Job:
        return self.store.get_job(job_id)

    def list(self, **filters: Any) -> list[Job]:
        return self.store.list_jobs(**filters)

    def patch(self, job_id: str, data: Any, *, actor: str | None = None, note: str | None = None) -> Job:
        now = self.clock()
        note = check_note(note)
        detail = ", ".join(sorted(str(name) for name in data)) if isinstance(data, dict) else None

        def change(job: Job) -> Job:
            if job.status.is_final or job.status is JobStatus.RUNNING:
                raise ConflictError(f"job {job.id} is {job.status.value}; only pending or paused jobs can be changed")
            new = apply_patch(job, data, now=now, limits=self.limits)
            self.registry.validate_payload(new.job_type, new.payload)
            return _audited(new, now, actor, "edit", detail, note)

        return self.store.update_job(job_id, change)

    def pause(self, job_id: str, *, actor: str | None = None, note: str | None = None) -> Job:
        now = self.clock()
        note = check_note(note)

        def change(job: Job) -> Job:
            if job.status is JobStatus.PAUSED:
                return job
            if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
                raise ConflictError(f"job {job.id} is {job.status.value}; only pending or running jobs can be paused")
            return _audited(_unleased(job, status=JobStatus.PAUSED, note=note, updated_at=now), now, actor, "pause", None, note)

        return self.store.update_job(job_id, change)

    def resume(self, job_id: str, *, catch_up: bool = False, actor: str | None = None, note: str | None = None) -> Job:
        """Paused (or dead-lettered) -> pending. A recurring job moves to its next future
        fire time unless ``catch_up``, which keeps the overdue time so the next tick runs it."""
        now = self.clock()
        note = check_note(note)

        def change(job: Job) -> Job:
            if job.status not in (JobStatus.PAUSED, JobStatus.FAILED):
                raise ConflictError(f"job {job.id} is {job.status.value}; only paused or failed jobs can be resumed")
            fire, due = job.fire_at, job.next_run_at
            try:
                if job.status is JobStatus.FAILED or due is None:
                    fire = now if not job.is_recurring else next_fire_after(job, now)
                    due = fire if not job.is_recurring else run_at(job, fire)
                elif job.is_recurring and not catch_up and due <= now:
                    fire = next_fire_after(job, now)
                    due = run_at(job, fire)
            except OverflowError:  # the next fire time is past year 9999
                due = None
            if due is None:
                raise ConflictError(f"job {job.id} has no future fire time")
            resumed = job.replace(status=JobStatus.PENDING, next_run_at=due, fire_at=fire or due, attempts=0, note=note, updated_at=now)
            return _audited(resumed, now, actor, "resume", "catch_up" if catch_up else None, note)

        return self.store.update_job(job_id, change)

    def run_now(self, job_id: str, *, actor: str | None = None, note: str | None = None) -> Job:
        """Make the job due at once; its schedule is unchanged (a recurring job's next
        fire time after this run is computed as usual)."""
        now = self.clock()
        note = check_note(note)

        def change(job: Job) -> Job:
            if job.status not in (JobStatus.PENDING, JobStatus.FAILED):
                raise ConflictError(f"job {job.id} is {job.status.value}; only pending or failed jobs can be run now")
            ran = job.replace(status=JobStatus.PENDING, next_run_at=now, fire_at=now, attempts=0, updated_at=now)
            return _audited(ran, now, actor, "run_now", None, note)

        return self.store.update_job(job_id, change)

    def backfill(self, job_id: str, data: Any, *, actor: str | None = None) -> BackfillResult:
        """Run each fire time of the job's schedule in ``[start, end)`` once, oldest first.

        Each occurrence becomes a one-off job of its own (``backfill_of`` = this job, id
        ``<job id>.bf-<fire time>``, idempotency key ``backfill:<job id>@<fire time>``), due
        now, with the job's type, payload, timeout and attempts; so it is claimed, fenced,
        retried, dead-lettered and dispatched like any run, and its history carries
        ``source=backfill``. An occurrence's identity is (job id, fire time): the same
        backfill asked twice, or at once from two places, adds nothing the second time.
        At most :data:`~scheduler.schema.MAX_BACKFILL_RUNS` occurrences per request, and no
        fire time after now.
        """
        now = self.clock()
        request = parse_backfill(data, now=now)
        job = self.store.get_job(job_id)
        if not job.is_recurring:
            raise ConflictError(f"job {job.id} is a one-off job; only recurring jobs can be backfilled (use run now)")
        if job.backfill_of is not None:
            raise ConflictError(f"job {job.id} is itself a backfilled occurrence of {job.backfill_of}")
        limit = request.max_runs or MAX_BACKFILL_RUNS
        fires: list[datetime] = []
        try:
            for fire in fire_times_after(job, request.start - _INSTANT):
                if fire >= request.end:
                    break
                if len(fires) == limit:
                    if request.max_runs is None:
                        raise ValidationError(
                            f"[start, end) holds more than {MAX_BACKFILL_RUNS} fire times; narrow it, or pass max_runs to run the oldest ones", "end"
                        )
                    break
                fires.append(fire)
        except OverflowError:
            pass
        children = [_backfill_child(job, fire, now - _INSTANT * (len(fires) - index), now, actor) for index, fire in enumerate(fires)]
        added = self.store.add_jobs(children)
        return BackfillResult(
            job_id=job.id,
            fire_times=fires,
            created=[stored.id for stored, created in added if created],
            existing=[stored.id for stored, created in added if not created],
        )

    def cancel(self, job_id: str, *, actor: str | None = None, note: str | None = None) -> Job:
        now = self.clock()
        note = check_note(note)

        def change(job: Job) -> Job:
            if job.status is JobStatus.CANCELLED:
                return job
            if job.status.is_final:
                raise ConflictError(f"job {job.id} is {job.status.value} and cannot be cancelled")
            return _audited(_unleased(job, status=JobStatus.CANCELLED, next_run_at=None, updated_at=now), now, actor, "cancel", None, note)

        return self.store.update_job(job_id, change)

    def release(self, job_id: str, *, force: bool = False, actor: str | None = None, note: str | None = None) -> Job:
        """Free a stuck lease: the job becomes pending and due at its current time."""
        now = self.clock()
        note = check_note(note)

        def change(job: Job) -> Job:
            if job.status is not JobStatus.RUNNING:
                raise ConflictError(f"job {job.id} is {job.status.value}; it holds no lease")
            if job.lease_until is not None and job.lease_until > now and not force:
                raise ConflictError(f"job {job.id}'s lease is live until {job.lease_until.isoformat()}; take it anyway with --force (CLI) or force=true (API)")
            released = _unleased(job, status=JobStatus.PENDING, attempts=max(job.attempts - 1, 0), updated_at=now)
            return _audited(released, now, actor, "release", "force" if force else None, note)

        return self.store.update_job(job_id, change)

    def preview(self, job_id: str, count: int) -> list[datetime]:
        """When the job's next ``count`` runs are due (jitter included; times the DST
        policy drops are left out)."""
        return [p.run_at for p in self.planned(self.get(job_id), count) if p.run_at is not None]

    def planned(self, job: Job, count: int) -> list[PlannedTime]:
        """The job's next ``count`` occurrences, marked where its DST policy moved or
        dropped one (see :func:`scheduler.timing.planned_times`)."""
        if job.next_run_at is not None:
            return planned_times(job, job.fire_at or job.next_run_at, count, due=job.next_run_at)
        first = first_fire_time(job, self.clock())
        return [] if first is None else planned_times(job, first, count)


MAX_NOTE_CHARS = 500


def check_note(note: Any) -> str | None:
    """An operator's note for the audit: ``None`` or text of at most :data:`MAX_NOTE_CHARS`
    (surrounding blanks dropped; blank means none). Refusals name the field ``note``."""
    if note is None:
        return None
    if not isinstance(note, str):
        raise ValidationError("note must be a string", "note")
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationError(f"note must be at most {MAX_NOTE_CHARS} characters, got {len(note)}", "note")
    check_text(note, "note")
    return note or None


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """Run each fire time of ``[start, end]`` once, at most ``max_runs`` of them."""

    start: datetime
    end: datetime
    max_runs: int | None = None


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill found and added: the fire times, and the occurrence jobs by id."""

    job_id: str
    fire_times: list[datetime]
    created: list[str]  # occurrence jobs added now
    existing: list[str]  # occurrences an earlier backfill already added

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "fire_times": [to_iso(t) for t in self.fire_times], "created": self.created, "existing": self.existing}


def parse_backfill(data: Any, *, now: datetime) -> BackfillRequest:
    """``{"start": ..., "end": ..., "max_runs": ...}``; ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError("the backfill must be a JSON object with start and end", None)
    unknown = sorted(set(data) - {"start", "end", "max_runs"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}; allowed: end, max_runs, start", unknown[0])
    for name in ("start", "end"):
        if data.get(name) is None:
            raise ValidationError(f"{name} is required (RFC 3339 with an offset)", name)
    start, end = parse_timestamp(data["start"], "start"), parse_timestamp(data["end"], "end")
    if end <= start:
        raise ValidationError("end must be after start", "end")
    if end > now + timedelta(seconds=1):
        raise ValidationError(f"end must not be in the future (now is {to_iso(now)}); a backfill replays fire times that passed", "end")
    max_runs = data.get("max_runs")
    if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or not 1 <= max_runs <= MAX_BACKFILL_RUNS):
        raise ValidationError(f"max_runs must be an integer from 1 to {MAX_BACKFILL_RUNS}", "max_runs")
    return BackfillRequest(start, end, max_runs)


def _backfill_child(job: Job, fire: datetime, due: datetime, now: datetime, actor: str | None) -> Job:
    stem = job.id if len(job.id) <= 100 else job.id[:91] + "." + hashlib.sha256(job.id.encode()).hexdigest()[:8]
    child = Job(
        id=f"{stem}.bf-{fire:%Y%m%dT%H%M%S}",
        job_type=job.job_type,
        payload=job.payload,
        status=JobStatus.PENDING,
        next_run_at=due,  # due now; a microsecond apart, so the claim takes them oldest first
        fire_at=fire,
        created_at=now,
        updated_at=now,
        schedule_at=fire,
        timezone=job.timezone,
        max_attempts=job.max_attempts,
        timeout_seconds=job.timeout_seconds,
        backfill_of=job.id,
        created_by=actor,
        idempotency_key=f"backfill:{job.id}@{to_iso(fire)}",
    )
    return _audited(child, now, actor, "backfill", f"of {job.id} at {to_iso(fire)}")


def _audited(job: Job, now: datetime, actor: str | None, action: str, detail: str | None = None, note: str | None = None) -> Job:
    entry = AuditEntry(at=now, actor=actor, action=action, detail=detail, note=note)
    return job.replace(audit=(*job.audit, entry)[-AUDIT_LIMIT:])


def _unleased(job: Job, **changes: Any) -> Job:
    return job.replace(lease_owner=None, lease_until=None, lease_epoch=job.lease_epoch + 1, **changes)
