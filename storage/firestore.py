"""The Firestore store: jobs, execution history and tick records in Cloud Firestore.

Layout (collection names from the settings)::

    scheduler_jobs/<job id>                  the job (Job fields, timestamps native)
                                             + ``history``: ids of its kept executions, oldest first
                                             + ``settled_by``: "<owner>#<epoch>" of the last applied settle
                                             + ``expire_at`` when completed/cancelled: updated_at +
                                               retention_days (TTL; ``delete_finished_jobs`` too)
    scheduler_jobs_idempotency/idem_<sha256(key)>   {job_id}: makes idempotency keys unique
    scheduler_executions/<job id>~<digest>   one attempt; ``expire_at`` = started_at + history_days (TTL)
    scheduler_ticks/<tick id>                TickRecord; ``expire_at`` likewise (TTL)
    scheduler_ticks_occurrences/occ_<sha256(occurrence key)>   {tick_id, started_at, ...}

The store is split by responsibility; this module holds the tick's verbs (claim,
settle, heartbeat), the ones a newcomer reads first:

* :mod:`storage.firestore_client`: the client, the raw RPCs on its channel, and every
  private part of google-cloud-firestore crontick uses (listed, pinned, tested);
* :mod:`storage.firestore_codec`: the job model to and from raw protobuf messages;
* :mod:`storage.firestore_indexes`: the queries sent and the indexes serving them;
* :mod:`storage.firestore_rpc`: counters, retries, raw reads and writes;
* :mod:`storage.firestore_jobs`: the operator verbs (add, list, update, import, history).

The hot path sends raw protobuf requests and decodes raw responses straight to the
model; the operator verbs use the library's public queries where they search.

Why claims are optimistic, not transactional
--------------------------------------------
Measured with ``bench/firestore_claim_probe.py`` on the emulator (2 cores):
concurrent claimers, each with its own client, claim seeded due jobs in batches
until none is left (runs capped at 60 s)::

    jobs claimers batch | transaction              | batch_write | bulk_writer | this store
      30      3      10 | 6.4-9.1 s                | 0.3-0.5 s   | 0.3-0.4 s   | 0.4-0.5 s
      30      8      10 | >60 s, 46 failed tx      | 0.40 s      | 0.38 s      | 0.60 s
     300      8      50 | 50 claimed in 60 s       | 2.28 s      | 2.21 s      | 3.78 s
    1000      4     500 | 500 claimed in 60 s      | 4.35 s      | 3.64 s      | 8.44 s

No strategy ever claimed a job twice. ("this store" also reads expired leases,
decodes every job and writes the tick record.)

The emulator (like Firestore in its pessimistic mode) locks what a transaction
reads; racing claim transactions wait up to 2 s on each other's locks, abort
(``Transaction lock timeout``) and retry in 2-second rounds, and with 8
claimers they exhaust their attempts. The optimistic claim never waits: it runs
the due queries outside any transaction, then sends ONE ``BatchWrite`` RPC (not
atomic; a status per write) in which each job's claim carries a precondition on
the ``update_time`` the query saw. A write whose precondition fails lost the job
to another claimer (``conflicts``), never an error; each job is claimed by at
most one writer because Firestore applies a preconditioned write only to the
exact version that was read. ``client.bulk_writer()`` was not used: it sends
batches of 20 (one RPC each), rate-limits, and by default retries every failed
write, FAILED_PRECONDITION included, up to 15 times.

Settling reads the claimed jobs' fence fields with one ``BatchGetDocuments`` RPC
(a field mask: ``lease_owner``, ``lease_epoch``, ``settled_by``, ``history``), then
writes every job (fenced: applied only if ``lease_owner``/``lease_epoch`` still
match, and preconditioned on the ``update_time`` just read), its execution
records, the deletion of executions beyond ``history_limit`` and the tick record
in ONE ``BatchWrite``. A job whose precondition failed is re-read and decided
again (a concurrent claim makes it ``lost``; the execution records, keyed
deterministically, are rewritten with outcome ``lease_lost``). A tick thus costs
a constant number of RPCs whatever the number of due jobs up to the batch
limit: 2 queries + 1 BatchWrite to claim (+1 commit to take the occurrence
marker when the tick carries an occurrence key), 1 read + 1 BatchWrite to settle.
The lease heartbeat (``extend_leases``) is 1 read + 1 BatchWrite of ``lease_until``
updates for any number of runs; an import batch (``restore_jobs``) is 1 read + one
BatchWrite per 500 writes.

A job document that does not decode is skipped by the claim (``ClaimResult.unreadable``,
an ERROR log line), never fatal to the tick; every other verb that reads it raises
:class:`~scheduler.errors.StoreCorrupt` naming the document.

Failures: transient errors (unavailable, deadline exceeded, internal, aborted,
resource exhausted, connection errors) are retried with backoff for at most
``retry_deadline`` seconds (each RPC times out after ``rpc_timeout``), then
raised as :class:`~scheduler.errors.StoreUnavailable`; other API errors as
:class:`~scheduler.errors.StoreError`. Nothing partial loses a job: a claim
whose RPC failed after applying leaves the job leased to a tick that does not
run it, and it is recovered when the lease expires; a retried BatchWrite
recognises its own earlier writes (``lease_owner``/``settled_by``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from scheduler.errors import StoreCorrupt, StoreUnavailable
from scheduler.model import Execution, Job, Outcome, RunRef, Settlement, Source, TickRecord
from storage import firestore_codec as codec
from storage.base import ClaimResult, ExtendResult, SettleResult
from storage.firestore_client import EMULATOR_PROJECT
from storage.firestore_indexes import QUERY_SHAPES, QueryShape
from storage.firestore_jobs import FirestoreJobs
from storage.firestore_rpc import _FAILED_PRECONDITION, _NOT_FOUND, _OK, _Doc, _Paths

if TYPE_CHECKING:
    from scheduler.settings import Settings

__all__ = ["EMULATOR_PROJECT", "QUERY_SHAPES", "FirestoreStore", "QueryShape"]

log = logging.getLogger(__name__)

_job_fields = codec.job_fields  # document data of a job (tests and seeding plant documents with it)
_SETTLE_ROUNDS = 5
_SETTLE_MASK = ("lease_owner", "lease_epoch", "settled_by", "history")
_LEASE_MASK = ("status", "lease_owner", "lease_epoch", "lease_until")
_MIN_TIME = datetime.min.replace(tzinfo=timezone.utc)


def _holds_lease(doc: _Doc | None, run: RunRef) -> bool:
    """The stored job is still running under ``run``'s lease."""
    return doc is not None and doc.exists and doc.get("status") == "running" and doc.get("lease_owner") == run.lease_owner and doc.get("lease_epoch") == run.lease_epoch


def _lease_reaches(doc: _Doc | None, target: datetime) -> bool:
    current = doc.get("lease_until") if doc is not None else None
    return isinstance(current, datetime) and current >= target


def _as_lost(execution: Execution) -> Execution:
    return dataclasses.replace(execution, outcome=Outcome.LEASE_LOST)


class FirestoreStore(FirestoreJobs):
    """:class:`~storage.base.JobStore` on Cloud Firestore (see the module docstring)."""

    kind = "firestore"
    query_shapes = QUERY_SHAPES

    def __init__(
        self,
        *,
        project: str | None = None,
        database: str = "(default)",
        jobs_collection: str = "scheduler_jobs",
        executions_collection: str = "scheduler_executions",
        ticks_collection: str = "scheduler_ticks",
        history_limit: int = 50,
        history_days: int = 30,
        rpc_timeout: float = 5.0,
        retry_deadline: float = 2.5,
        retention_days: int = 30,
    ) -> None:
        collections = {
            "jobs": jobs_collection,
            "executions": executions_collection,
            "ticks": ticks_collection,
            "idempotency": f"{jobs_collection}_idempotency",
            "occurrences": f"{ticks_collection}_occurrences",
        }
        super().__init__(project=project, database=database, collections=collections, rpc_timeout=rpc_timeout, retry_deadline=retry_deadline)
        self.history_limit = history_limit
        self.history_days = history_days
        self.retention_days = retention_days
        self._state_lock = threading.Lock()
        self._held_occurrences: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._ticks_stored: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        return cls(
            project=settings.google_cloud_project,
            database=settings.firestore_database,
            jobs_collection=settings.firestore_jobs_collection,
            executions_collection=settings.firestore_executions_collection,
            ticks_collection=settings.firestore_ticks_collection,
            history_limit=settings.history_limit,
            history_days=settings.history_days,
            retention_days=settings.retention_days,
        )

    # -- the tick ------------------------------------------------------------
    def _remember(self, cache: OrderedDict[Any, None], key: Any) -> None:
        with self._state_lock:
            cache[key] = None
            cache.move_to_end(key)
            while len(cache) > 256:
                cache.popitem(last=False)

    def _knows(self, cache: OrderedDict[Any, None], key: Any) -> bool:
        with self._state_lock:
            return key in cache

    def _occurrence_path(self, key: str) -> str:
        return self._path("occurrences", f"occ_{codec.sha(key)}")

    def _duplicate_from_marker(self, marker: _Doc, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        """The other tick holding the occurrence marker, if it still counts (finished,
        or started less than ``lease_seconds`` ago); None if it is ours or stale."""
        other_id = marker.get("tick_id")
        if other_id == tick.tick_id:
            return None
        record_doc = self._get(self._path("ticks", other_id))
        if record_doc.exists:
            record = codec.tick_from_data(record_doc.to_dict() or {}, record_doc.path)
        else:  # the other tick took the marker but stored no record (it claimed nothing, or died)
            record = TickRecord(tick_id=other_id, started_at=marker.get("started_at"), source=Source(marker.get("source") or "manual"), occurrence_key=tick.occurrence_key)
        horizon = now - timedelta(seconds=lease_seconds)
        if record.finished_at is not None or record.started_at > horizon:
            return record
        return None

    def _check_occurrence(self, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        """Nothing is due: report a duplicate occurrence without writing anything."""
        assert tick.occurrence_key is not None
        marker = self._get(self._occurrence_path(tick.occurrence_key))
        return self._duplicate_from_marker(marker, tick, now, lease_seconds) if marker.exists else None

    def _take_occurrence(self, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        """Atomically create (or take over a stale) occurrence marker; return the
        duplicate's record if another tick holds it."""
        assert tick.occurrence_key is not None
        path = self._occurrence_path(tick.occurrence_key)
        fields = {
            "occurrence_key": tick.occurrence_key, "tick_id": tick.tick_id, "started_at": tick.started_at,
            "source": tick.source.value, "expire_at": tick.started_at + timedelta(days=self.history_days),
        }
        write = codec.create_write(path, fields)
        for _ in range(5):
            refused: dict[str, bool] = {}

            def taken(exc: Exception, attempt: int, refused: dict[str, bool] = refused) -> None:
                refused["yes"] = True

            self._commit([write], "claim_due_jobs", on_error=taken)
            if not refused:
                self._remember(self._held_occurrences, (tick.tick_id, tick.occurrence_key))
                return None
            marker = self._get(path)
            if not marker.exists:
                write = codec.create_write(path, fields)
                continue
            duplicate = self._duplicate_from_marker(marker, tick, now, lease_seconds)
            if duplicate is not None:
                return duplicate
            if marker.get("tick_id") == tick.tick_id:
                self._remember(self._held_occurrences, (tick.tick_id, tick.occurrence_key))
                return None
            write = codec.set_write(path, fields, marker.update_time)  # take over a stale marker
        raise StoreUnavailable(f"occurrence {tick.occurrence_key!r} is contended; try again")

    def _due_windows(self, now: datetime, limit: int, owner: str, lease_until: datetime) -> tuple[list[tuple[_Doc, str, Job]], dict[str, str], int, bool]:
        """Up to ``limit + 1`` due jobs of each due query that decode, as (document, stored
        status, the job as claiming it makes it); the two queries run side by side (two
        RPCs, one round trip of waiting).

        A document that does not decode is skipped and reported ({id: error}), never
        fatal; since it stays due it would keep taking a place in the window, so the
        window is widened past such documents (at most twice more: extra queries only
        when unreadable documents exist). Also returns the documents read, and
        whether a window still full of unreadable documents may hide more due jobs.
        """
        todo = {"pending": ("next_run_at", limit + 1), "running": ("lease_until", limit + 1)}
        decoded: dict[str, list[tuple[_Doc, str, Job]]] = {}
        unreadable: dict[str, dict[str, str]] = {}
        read: dict[str, int] = {}
        hidden = False
        for _ in range(3):
            queries = [codec.structured_query(self.collections["jobs"], (("status", "==", status), (field, "<=", now)), ((field, "ASCENDING"),), size) for status, (field, size) in todo.items()]
            again = {}
            for (status, (field, size)), docs in zip(todo.items(), self._run_queries(queries, "claim_due_jobs")):
                decoded[status], unreadable[status], read[status] = [], {}, len(docs)
                for doc in docs:
                    try:
                        claim = codec.claimed_job(doc.fields, doc.path, now, owner, lease_until)
                    except StoreCorrupt as exc:
                        unreadable[status][doc.id] = str(exc)
                        continue
                    if claim is not None:
                        decoded[status].append((doc, *claim))
                full = len(docs) >= size
                hidden = hidden or (full and bool(unreadable[status]))
                if unreadable[status] and full and len(docs) - len(unreadable[status]) <= limit:
                    again[status] = (field, limit + 1 + len(unreadable[status]))
            if not again:
                break
            todo = again
        return [item for items in decoded.values() for item in items], {k: v for bad in unreadable.values() for k, v in bad.items()}, sum(read.values()), hidden

    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        lease_until = now + timedelta(seconds=lease_seconds)
        decoded, unreadable, checked, window_full = self._due_windows(now, limit, tick.tick_id, lease_until)
        candidates = [(claimed.next_run_at or _MIN_TIME, claimed.id, status, claimed, doc) for doc, status, claimed in decoded]
        for job_id, error in sorted(unreadable.items()):
            log.error("A stored job cannot be read; the claim skipped it", extra={"json_fields": {"action": "stored_job_unreadable", "job_id": job_id, "error": error}})
        candidates.sort(key=lambda c: (c[0], c[1]))
        # A window still full of unreadable documents may hide further due jobs.
        result = ClaimResult(checked=checked, due=len(candidates), more_due=len(candidates) > limit or window_full, unreadable=sorted(unreadable))
        key = tick.occurrence_key
        held = key is None or self._knows(self._held_occurrences, (tick.tick_id, key))
        if not candidates:
            if not held:
                duplicate = self._check_occurrence(tick, now, lease_seconds)
                if duplicate is not None:
                    return ClaimResult(duplicate_of=duplicate)
            return result
        if not held:
            duplicate = self._take_occurrence(tick, now, lease_seconds)
            if duplicate is not None:
                return ClaimResult(duplicate_of=duplicate)

        chosen = candidates[:limit]
        writes = []
        for _, _, _, claimed, doc in chosen:
            fields = {
                "status": "running", "lease_owner": tick.tick_id, "lease_until": lease_until,
                "lease_epoch": claimed.lease_epoch, "attempts": claimed.attempts, "updated_at": now,
            }
            writes.append(codec.update_write(doc.path, fields, doc.update_time))
        tick_path = self._path("ticks", tick.tick_id)
        writes.append(codec.set_write(tick_path, codec.tick_fields(tick, self.history_days)))
        codes, _, attempts = self._batch_write(writes, "claim_due_jobs")

        unsure = []
        for (_, _, status, claimed, doc), code in zip(chosen, codes):
            if code == _OK:
                self._claimed(result, status, claimed)
            elif attempts > 1 and code in (_FAILED_PRECONDITION, _NOT_FOUND):
                unsure.append((status, claimed, doc.path))  # maybe applied by our own earlier attempt
            else:
                result.conflicts += 1
                if code != _FAILED_PRECONDITION:
                    log.warning("Claim write failed", extra={"json_fields": {"job_id": claimed.id, "code": code}})
        if unsure:
            current = self._get_all(_Paths((path for _, _, path in unsure), ("lease_owner", "lease_epoch")))
            for status, claimed, path in unsure:
                doc = current.get(path)
                if doc is not None and doc.get("lease_owner") == tick.tick_id and doc.get("lease_epoch") == claimed.lease_epoch:
                    self._claimed(result, status, claimed)
                else:
                    result.conflicts += 1
        tick_code = codes[-1]
        if result.claimed:
            self._remember(self._ticks_stored, tick.tick_id)
            if tick_code != _OK:
                log.warning("Tick record not stored with its claim", extra={"json_fields": {"tick_id": tick.tick_id, "code": tick_code}})
        elif tick_code == _OK and not self._knows(self._ticks_stored, tick.tick_id):
            # Every claim lost its race: the contract stores the tick only when it claimed something.
            self._batch_write([codec.delete_write(tick_path)], "claim_due_jobs")
        result.claimed.sort(key=lambda j: (j.next_run_at or _MIN_TIME, j.id))
        return result

    @staticmethod
    def _claimed(result: ClaimResult, stored_status: str, claimed: Job) -> None:
        if stored_status == "running":
            result.recovered.add(claimed.id)
        result.claimed.append(claimed)

    # -- settle --------------------------------------------------------------
    @staticmethod
    def _execution_ids(settlement: Settlement, count: int) -> list[str]:
        job_id = settlement.job.id
        base = "|".join((job_id, settlement.expected_owner, str(settlement.expected_epoch)))
        return [f"{job_id}~{codec.sha(f'{base}|{i}')[:24]}" for i in range(count)]

    def settle_jobs(self, settlements: Sequence[Settlement], *, tick: TickRecord | None) -> SettleResult:
        jobs_prefix, exec_prefix = self._prefix("jobs"), self._prefix("executions")
        tick_path = self._path("ticks", tick.tick_id) if tick is not None else None
        decided: dict[str, bool] = {}  # job id -> applied?
        todo = list(settlements)
        docs = self._get_all(_Paths((jobs_prefix + s.job.id for s in todo), _SETTLE_MASK))
        for _ in range(_SETTLE_ROUNDS):
            writes: list[Any] = []
            job_write_index: dict[str, int] = {}
            round_decisions: dict[str, bool] = {}
            for settlement in todo:
                job_id = settlement.job.id
                path = jobs_prefix + job_id
                doc = docs.get(path)
                exists = doc is not None and doc.exists
                token = f"{settlement.expected_owner}#{settlement.expected_epoch}"
                if exists and doc.get("settled_by") == token:
                    round_decisions[job_id] = True  # a retried write of ours already applied it
                    continue
                fenced = exists and doc.get("lease_owner") == settlement.expected_owner and doc.get("lease_epoch") == settlement.expected_epoch
                round_decisions[job_id] = fenced
                executions = settlement.executions if fenced else tuple(_as_lost(e) for e in settlement.executions)
                ids = self._execution_ids(settlement, len(executions))
                history = list(doc.get("history") or []) if exists else []
                merged = [h for h in history if h not in ids] + ids
                keep = merged[-self.history_limit :]
                kept_ids = set(keep)
                for execution, exec_id in zip(executions, ids):
                    if exec_id in kept_ids:
                        write = codec.set_write(exec_prefix + exec_id)
                        codec.put_execution(write.update.fields, execution, self.history_days)
                        writes.append(write)
                for dropped in merged[: -self.history_limit]:
                    if dropped in history:
                        writes.append(codec.delete_write(exec_prefix + dropped))
                if fenced:
                    job_write_index[job_id] = len(writes)
                    writes.append(self._job_write(path, settlement.job, {"history": keep, "settled_by": token}, doc.update_time))
                elif exists and executions:
                    job_write_index[job_id] = len(writes)
                    writes.append(codec.update_write(path, {"history": keep}, doc.update_time))
            decided.update(round_decisions)
            if tick is not None:
                lost = sum(1 for applied in decided.values() if not applied)
                record = dataclasses.replace(tick, metrics=dataclasses.replace(tick.metrics, lease_lost=tick.metrics.lease_lost + lost))
                writes.append(codec.set_write(tick_path, codec.tick_fields(record, self.history_days)))
            if not writes:
                break
            codes, _, _ = self._batch_write(writes, "settle_jobs")
            if tick is not None and codes[-1] != _OK:
                raise StoreUnavailable(f"the tick record {tick.tick_id} was not stored (code {codes[-1]})")
            retry = [s for s in todo if s.job.id in job_write_index and codes[job_write_index[s.job.id]] != _OK]
            if not retry:
                break
            # Someone wrote these jobs between our read and our write: read them again and decide again.
            todo = retry
            docs = self._get_all(_Paths((jobs_prefix + s.job.id for s in todo), _SETTLE_MASK))
        else:
            raise StoreUnavailable(f"jobs {[s.job.id for s in todo]} kept changing while settling; their leases will expire and they will run again")
        result = SettleResult()
        for settlement in settlements:
            (result.applied if decided[settlement.job.id] else result.lost).append(settlement.job.id)
        return result

    # -- heartbeat -----------------------------------------------------------
    def extend_leases(self, runs: Sequence[RunRef], *, now: datetime, lease_seconds: float) -> ExtendResult:
        """One BatchGetDocuments of the named jobs (their lease fields), then one BatchWrite
        of ``lease_until`` updates, each preconditioned on the ``update_time`` just read: 2
        RPCs whatever the batch size (none for an empty batch; no BatchWrite when no lease
        needs to move).

        A write whose precondition failed means the job changed between the read and the
        write (a claim, a settle, an operator's update): it counts as ``lost`` without a
        second look, so the handler is told to stop (its settle still re-checks the fence
        itself). The exception is a BatchWrite that had to be retried: a failed
        precondition may then be our own earlier attempt, so those jobs are read again
        and decided on what is stored.
        """
        result = ExtendResult()
        if not runs:
            return result
        prefix = self._prefix("jobs")
        target = now + timedelta(seconds=lease_seconds)
        docs = self._get_all(_Paths((prefix + run.job_id for run in runs), _LEASE_MASK))
        holds: list[bool] = []
        writes: list[Any] = []
        write_for: dict[str, int] = {}  # job id -> index of its write (one write per document)
        for run in runs:
            doc = docs.get(prefix + run.job_id)
            holds.append(_holds_lease(doc, run))
            if holds[-1] and run.job_id not in write_for and not _lease_reaches(doc, target):
                write_for[run.job_id] = len(writes)
                writes.append(codec.update_write(doc.path, {"lease_until": target}, doc.update_time))
        failed: set[str] = set()
        if writes:
            codes, _, attempts = self._batch_write(writes, "extend_leases")
            failed = {job_id for job_id, index in write_for.items() if codes[index] != _OK}
            unsure = [job_id for job_id in failed if attempts > 1 and codes[write_for[job_id]] in (_FAILED_PRECONDITION, _NOT_FOUND)]
            if unsure:
                again = self._get_all(_Paths((prefix + job_id for job_id in unsure), _LEASE_MASK))
                for job_id in unsure:
                    doc = again.get(prefix + job_id)
                    mine = [run for run, held in zip(runs, holds) if held and run.job_id == job_id]
                    if all(_holds_lease(doc, run) for run in mine) and _lease_reaches(doc, target):
                        failed.discard(job_id)
            for job_id in failed:
                code = codes[write_for[job_id]]
                if code not in (_FAILED_PRECONDITION, _NOT_FOUND):
                    log.warning("Lease extension write failed", extra={"json_fields": {"action": "lease_extend_failed", "job_id": job_id, "code": code}})
        for run, held in zip(runs, holds):
            (result.extended if held and run.job_id not in failed else result.lost).append(run.job_id)
        return result
