"""The store interface every crontick store implements.

Each method is one atomic unit against the store: it either applies all of what
its docstring says it writes, or raises and writes nothing. Every store passes
the same contract suite (``tests/contract/``).

Errors: any method may raise :class:`~scheduler.errors.StoreUnavailable`
(transient; retry later) or :class:`~scheduler.errors.StoreCorrupt` (stored
data unreadable; nothing is overwritten). Methods that take a job id raise
:class:`~scheduler.errors.JobNotFound` for an unknown id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from scheduler.model import Execution, Job, JobStatus, RunRef, Settlement, TickRecord

LIST_PAGE_SIZE = 500  # iter_jobs' default page


@dataclass(slots=True)
class ClaimResult:
    """What :meth:`JobStore.claim_due_jobs` did.

    ``claimed`` holds the jobs as they are now stored (status ``running``, the new
    lease). ``recovered`` are the ids among them whose previous lease had expired.
    ``checked`` counts the job records the store examined to find due ones;
    ``due`` the due jobs it saw; ``conflicts`` the due jobs another claimer took
    between read and write; ``more_due`` is true when due jobs beyond ``limit``
    remain. ``duplicate_of`` is set (and nothing claimed) when the tick's
    occurrence was already handled by another tick. ``unreadable`` lists, sorted,
    the ids of stored jobs the claim met but could not decode (a hand edit, an
    older or newer format): each is skipped, written to nothing and logged as an
    ERROR (action ``stored_job_unreadable``), and the other due jobs are claimed
    as if it were not there.
    """

    claimed: list[Job] = field(default_factory=list)
    recovered: set[str] = field(default_factory=set)
    checked: int = 0
    due: int = 0
    conflicts: int = 0
    more_due: bool = False
    duplicate_of: TickRecord | None = None
    unreadable: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SettleResult:
    """Ids whose settlement was written (``applied``) or refused by the fence (``lost``)."""

    applied: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ExtendResult:
    """Ids whose lease was extended, and ids whose lease is no longer the caller's."""

    extended: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RestoreResult:
    """What :meth:`JobStore.restore_jobs` did, by job id."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


@runtime_checkable
class JobStore(Protocol):
    """Durable home of jobs, their execution history and recent tick records."""

    kind: str  # "memory", "json", "firestore": shown on status pages

    def open(self) -> None:
        """Check the store is usable; called once at start.

        Reads: whatever proves the stored data is readable (the JSON store parses
        its file). Writes: nothing but empty structures for a brand-new store.
        Raises StoreCorrupt (naming the file or collection) so the service refuses to start.
        """

    def close(self) -> None:
        """Release clients and handles. Writes nothing."""

    # -- jobs -------------------------------------------------------------
    def add_job(self, job: Job) -> tuple[Job, bool]:
        """Insert ``job``; return ``(stored_job, created)``.

        Reads: the job with ``job.idempotency_key`` (if set), and ``job.id``.
        Writes: the whole new job, unless a job with the same idempotency key
        exists, in which case nothing is written and ``(existing, False)`` is
        returned. Raises ConflictError if ``job.id`` is already taken.
        """

    def add_jobs(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """:meth:`add_job` for each of ``jobs``, in order: ``(stored_job, created)`` each.

        A job whose idempotency key or id is already taken is not written and comes back
        as the stored one with ``created=False`` (never ConflictError), so adding the
        same batch twice writes nothing the second time. Atomic per job; table stores
        write the whole batch in one locked write.
        """

    def get_job(self, job_id: str) -> Job:
        """Return the job. Reads one job. Raises JobNotFound."""

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[Job]:
        """Jobs ordered by id, filtered by ``status``/``job_type``, with id > ``after_id``.

        Reads at most ``limit`` matching jobs (more on stores that scan). Writes nothing.
        """

    def update_job(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        """Atomically replace the job with ``change(job)`` and return the new job.

        ``change`` must be pure: a store may call it more than once (transaction
        retries). Any exception it raises propagates and nothing is written.
        Reads and writes exactly that one job, including its lease fields as
        ``change`` returns them. Raises JobNotFound.
        """

    def count_due(self, now: datetime) -> int:
        """Number of jobs claimable at ``now`` (see :meth:`Job.is_due`). Writes nothing."""

    def count_by_status(self) -> dict[str, int]:
        """Number of jobs per status value (every status present, zeros included)."""

    # -- the tick ---------------------------------------------------------
    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        """Lease up to ``limit`` jobs that are due at ``now`` to ``tick.tick_id``.

        Due means ``pending`` with ``next_run_at <= now``, or ``running`` with
        ``lease_until <= now`` (a recovered lease); earliest ``next_run_at`` first.
        Each claim is atomic per job and re-checks at write time that the job is
        still due, so two claimers never both get one job; a job lost to another
        claimer counts in ``conflicts``.

        Writes, on each claimed job only: ``status=running``,
        ``lease_owner=tick.tick_id``, ``lease_until=now+lease_seconds``,
        ``lease_epoch+1``, ``attempts+1``, ``updated_at=now``.

        When ``tick.occurrence_key`` is set and a *different* tick with that key
        is stored, finished or started less than ``lease_seconds`` ago, nothing
        is claimed and ``duplicate_of`` is that record. Otherwise, if any job was
        claimed, ``tick`` is stored (as started) in the same unit.
        """

    def settle_jobs(self, settlements: Sequence[Settlement], *, tick: TickRecord | None) -> SettleResult:
        """Write back the outcome of claimed jobs, fenced, plus history and the tick record.

        For each settlement: if the stored job's ``lease_owner`` and
        ``lease_epoch`` equal ``expected_owner``/``expected_epoch``, replace the
        job with ``settlement.job`` and append its executions; otherwise write
        nothing to the job, append its executions with outcome ``lease_lost``,
        and list its id in ``lost``. Then, when ``tick`` is given, store a copy of
        it whose ``metrics.lease_lost`` is raised by ``len(lost)`` (replacing the
        record with the same ``tick_id``); ``tick`` itself is not changed: the
        caller counts from the result. ``/tasks/run`` passes ``None``: a
        dispatched run writes no tick record. Executions beyond the store's
        history limit are dropped, oldest first.
        """

    def extend_leases(self, runs: Sequence[RunRef], *, now: datetime, lease_seconds: float) -> ExtendResult:
        """The heartbeat of running handlers: push their leases forward, fenced.

        For each run: if the stored job is ``running`` with ``lease_owner`` and
        ``lease_epoch`` equal to the run's, set ``lease_until`` to
        ``max(lease_until, now + lease_seconds)`` and list the id in ``extended``;
        otherwise write nothing to it and list the id in ``lost`` (taken over,
        paused, cancelled, settled or deleted). Writes ``lease_until`` only.
        Atomic per job; one batch is one round trip where the store allows it.
        """

    def delete_finished_jobs(self, *, before: datetime, limit: int) -> int:
        """Retention: delete up to ``limit`` jobs whose status is ``completed`` or
        ``cancelled`` and whose ``updated_at`` < ``before``, oldest ``updated_at`` first,
        with their execution history; return how many were deleted.

        Reads: the finished jobs older than ``before`` (a bounded query where the store
        has one). Writes: the deletion of each such job, of its execution records and of
        its idempotency marker (where the store keeps one), so its key can be used again.
        Atomic per job: a job is deleted with its history or not at all, and a job that
        changed between the read and the delete (resumed, edited) is left alone. Table
        stores delete the whole batch in one locked write, and write nothing when nothing
        is old enough. Failed jobs (dead letters) are never deleted here.
        """

    def restore_jobs(self, jobs: Sequence[Job]) -> RestoreResult:
        """Write ``jobs`` as given (snapshot import): the import's unit of work.

        Per job: absent (by id) -> stored as given (``created``); present and equal
        but for a lease epoch the store has already moved past -> nothing written
        (``unchanged``); otherwise replaced by the given job with
        ``lease_epoch = max(given, stored + 1)`` so a tick still holding the job has
        its settle refused (``updated``). Atomic per job at least; table stores apply
        the whole batch in one locked write. Callers check idempotency keys first.
        """

    # -- history ----------------------------------------------------------
    def list_executions(
        self,
        *,
        job_id: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Execution records, newest ``started_at`` first, filtered. Writes nothing."""

    def recent_ticks(self, limit: int = 20) -> list[TickRecord]:
        """The most recently started tick records, newest first. Writes nothing."""


def iter_jobs(store: JobStore, *, status: JobStatus | None = None, page_size: int = LIST_PAGE_SIZE) -> Iterator[Job]:
    """Every job (with ``status``, if given), ordered by id, read ``page_size`` at a time
    through ``list_jobs``: the walk of a snapshot export and of the status report."""
    after: str | None = None
    while True:
        page = store.list_jobs(status=status, limit=page_size, after_id=after)
        yield from page
        if len(page) < page_size:
            return
        after = page[-1].id


def split_at_repeated_ids(jobs: Sequence[Job]) -> Iterator[list[Job]]:
    """``jobs`` in order, in runs without a repeated id: a new run starts before an id seen
    in the current one (a request may write a document or row only once, and an id given
    twice is applied in order)."""
    chunk: list[Job] = []
    ids: set[str] = set()
    for job in jobs:
        if job.id in ids:
            yield chunk
            chunk, ids = [], set()
        chunk.append(job)
        ids.add(job.id)
    if chunk:
        yield chunk


def add_each(store: JobStore, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
    """``add_jobs`` for stores whose unit is one job: ``add_job`` each, a taken id read back."""
    from scheduler.errors import ConflictError

    out: list[tuple[Job, bool]] = []
    for job in jobs:
        try:
            out.append(store.add_job(job))
        except ConflictError:
            out.append((store.get_job(job.id), False))
    return out
