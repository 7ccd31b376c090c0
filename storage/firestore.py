"""The Firestore store: jobs, execution history and tick records in Cloud Firestore.

Layout (collection names from the settings)::

    scheduler_jobs/<job id>                  the job (Job fields, timestamps native)
                                             + ``history``: ids of its kept executions, oldest first
                                             + ``settled_by``: "<owner>#<epoch>" of the last applied settle
    scheduler_jobs_idempotency/idem_<sha256(key)>   {job_id}: makes idempotency keys unique
    scheduler_executions/<job id>~<digest>   one attempt; ``expire_at`` = started_at + history_days (TTL)
    scheduler_ticks/<tick id>                TickRecord; ``expire_at`` likewise (TTL)
    scheduler_ticks_occurrences/occ_<sha256(occurrence key)>   {tick_id, started_at, ...}

The module is split by responsibility: :mod:`storage.firestore_client` (the client,
the raw RPCs on its channel, every private part of google-cloud-firestore used),
:mod:`storage.firestore_codec` (model <-> raw protobuf), :mod:`storage.firestore_indexes`
(the queries sent and their indexes) and this module, the store verbs.

The hot path (``claim_due_jobs``, ``settle_jobs``, ``extend_leases``) sends raw
protobuf requests and decodes raw responses; the other verbs use the library's
queries (public API) where that is simpler and not hot.

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
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from scheduler.errors import ConflictError, JobNotFound, StoreCorrupt, StoreError, StoreUnavailable
from scheduler.model import Execution, Job, JobStatus, Outcome, RunRef, Settlement, Source, TickRecord
from storage import firestore_codec as codec
from storage.base import ClaimResult, ExtendResult, RestoreResult, SettleResult, add_each
from storage.firestore_client import EMULATOR_PROJECT, Connection, gapic_api, make_client
from storage.firestore_indexes import QUERY_SHAPES, QueryShape
from storage.table import unchanged_by_restore

if TYPE_CHECKING:
    from scheduler.settings import Settings

__all__ = ["EMULATOR_PROJECT", "QUERY_SHAPES", "FirestoreStore", "QueryShape"]

log = logging.getLogger(__name__)

_job_fields = codec.job_fields  # document data of a job (tests and seeding plant documents with it)
_OK, _NOT_FOUND, _ALREADY_EXISTS, _FAILED_PRECONDITION = 0, 5, 6, 9
_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # Firestore refuses requests over 10 MiB
_SETTLE_ROUNDS = 5
_UPDATE_ATTEMPTS = 10
_RESTORE_WRITES_PER_RPC = 500  # the documented cap of a Firestore write batch
_SETTLE_MASK = ("lease_owner", "lease_epoch", "settled_by", "history")
_LEASE_MASK = ("status", "lease_owner", "lease_epoch", "lease_until")
_MIN_TIME = datetime.min.replace(tzinfo=timezone.utc)
_GAPIC_METHODS = ("batch_get_documents", "run_query", "run_aggregation_query", "commit", "batch_write", "begin_transaction", "rollback", "get_document", "list_documents", "create_document", "update_document", "delete_document", "partition_query", "list_collection_ids")


class _Paths(list):
    """Document paths for one BatchGetDocuments, and the fields to read (None: all)."""

    __slots__ = ("mask",)

    def __init__(self, paths: Iterable[str], mask: tuple[str, ...] | None = None) -> None:
        super().__init__(paths)
        self.mask = mask


class _Doc:
    """One document as read: raw ``fields`` and ``update_time``; ``fields`` is None when absent."""

    __slots__ = ("path", "fields", "update_time")

    def __init__(self, path: str, fields: Any = None, update_time: Any = None) -> None:
        self.path, self.fields, self.update_time = path, fields, update_time

    @property
    def exists(self) -> bool:
        return self.fields is not None

    @property
    def id(self) -> str:
        return self.path.rpartition("/")[2]

    def get(self, name: str) -> Any:
        value = self.fields.get(name) if self.fields is not None else None
        return None if value is None else codec.decode_value(value)

    def to_dict(self) -> dict[str, Any] | None:
        return codec.decode_fields(self.fields) if self.fields is not None else None


def _holds_lease(doc: _Doc | None, run: RunRef) -> bool:
    """The stored job is still running under ``run``'s lease."""
    return doc is not None and doc.exists and doc.get("status") == "running" and doc.get("lease_owner") == run.lease_owner and doc.get("lease_epoch") == run.lease_epoch


def _lease_reaches(doc: _Doc | None, target: datetime) -> bool:
    current = doc.get("lease_until") if doc is not None else None
    return isinstance(current, datetime) and current >= target


def _as_lost(execution: Execution) -> Execution:
    return dataclasses.replace(execution, outcome=Outcome.LEASE_LOST)


class _Transient(Exception):
    """Raised inside a retried step to ask for another attempt."""


class _CountingStream:
    """Wraps a streaming response of the library's calls: counts the documents it returns."""

    def __init__(self, stream: Any, on_doc: Callable[[], None]) -> None:
        self._stream, self._on_doc = stream, on_doc

    def __iter__(self) -> _CountingStream:
        return self

    def __next__(self) -> Any:
        response = next(self._stream)
        pb = getattr(response, "_pb", None)
        if pb is not None and ((pb.DESCRIPTOR.fields_by_name.get("document") and pb.HasField("document")) or (pb.DESCRIPTOR.fields_by_name.get("found") and pb.HasField("found"))):
            self._on_doc()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class FirestoreStore:
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
    ) -> None:
        self.project = project
        self.database = database
        self.collections = {
            "jobs": jobs_collection,
            "executions": executions_collection,
            "ticks": ticks_collection,
            "idempotency": f"{jobs_collection}_idempotency",
            "occurrences": f"{ticks_collection}_occurrences",
        }
        self.history_limit = history_limit
        self.history_days = history_days
        self.rpc_timeout = rpc_timeout
        self.retry_deadline = retry_deadline
        self._client: Any = None
        self._conn: Connection | None = None
        self._client_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.rpc_counts: Counter[str] = Counter()
        self.docs_read = 0
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
        )

    # -- client, counters, retries ------------------------------------------
    @property
    def rpc_count(self) -> int:
        """RPCs sent by this store (every attempt, failed ones included)."""
        with self._count_lock:
            return sum(self.rpc_counts.values())

    def reset_counters(self) -> None:
        with self._count_lock:
            self.rpc_counts.clear()
            self.docs_read = 0

    @property
    def client(self) -> Any:
        """The google-cloud-firestore client, created on first use."""
        return self._connect()[0]

    @property
    def _connection(self) -> Connection:
        return self._connect()[1]

    def _connect(self) -> tuple[Any, Connection]:
        with self._client_lock:
            if self._client is None:
                try:
                    client = make_client(self.project, self.database)
                except Exception as exc:  # noqa: BLE001 - credentials/project discovery failures
                    raise StoreUnavailable(f"cannot create the Firestore client: {exc}") from exc
                self._instrument(gapic_api(client))
                self._client, self._conn = client, None
            if self._conn is None:
                self._conn = Connection(self._client, self.database, self._count_rpc)
            return self._client, self._conn

    def _count_rpc(self, name: str) -> None:
        with self._count_lock:
            self.rpc_counts[name] += 1

    def _count_docs(self, n: int = 1) -> None:
        with self._count_lock:
            self.docs_read += n

    def _instrument(self, api: Any) -> None:
        """Count every RPC the library's GAPIC client sends (the verbs that use its queries)."""
        for name in _GAPIC_METHODS:
            method = getattr(api, name, None)
            if method is None:
                continue

            def counted(*args: Any, _method: Callable[..., Any] = method, _name: str = name, **kwargs: Any) -> Any:
                self._count_rpc(_name)
                result = _method(*args, **kwargs)
                return _CountingStream(result, self._count_docs) if _name in ("run_query", "batch_get_documents") else result

            setattr(api, name, counted)

    def _drop_client(self) -> None:
        """Forget the client after an outage so the next call opens a fresh channel
        (a gRPC channel in reconnect backoff would keep failing for a while). Not
        closed here: other threads may still be using it; it closes when collected."""
        with self._client_lock:
            self._client, self._conn = None, None

    def _no_retry(self) -> Any:
        from google.api_core.retry import Retry

        return Retry(predicate=lambda exc: False, timeout=self.rpc_timeout)

    def _retrying(self, what: str, step: Callable[[int], Any]) -> Any:
        """Run ``step(attempt)``; retry transient failures with backoff until ``retry_deadline``."""
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import TransportError

        transient = (
            gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted, gexc.ResourceExhausted,
            gexc.Unknown, gexc.GatewayTimeout, gexc.RetryError, ConnectionError, TransportError, _Transient,
        )
        deadline = time.monotonic() + self.retry_deadline
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                return step(attempt)
            except transient as exc:
                if time.monotonic() + delay > deadline:
                    self._drop_client()
                    raise StoreUnavailable(f"Firestore {what} failed after {attempt} attempt(s): {exc}") from exc
                log.debug("Transient Firestore error; retrying", extra={"json_fields": {"what": what, "attempt": attempt, "error": str(exc)}})
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except gexc.GoogleAPICallError as exc:
                raise StoreError(f"Firestore {what} failed: {exc}") from exc

    # -- low-level helpers ---------------------------------------------------
    def _col(self, key: str) -> Any:
        """The library's CollectionReference (the verbs that use its queries; tests plant documents with it)."""
        return self.client.collection(self.collections[key])

    def _path(self, key: str, doc_id: str) -> str:
        return self._connection.document_path(self.collections[key], doc_id)

    def _paths(self, key: str, ids: Iterable[str], mask: tuple[str, ...] | None = None) -> _Paths:
        conn = self._connection
        name = self.collections[key]
        return _Paths((conn.document_path(name, doc_id) for doc_id in ids), mask)

    def _get_all(self, paths: Sequence[str]) -> dict[str, _Doc]:
        """Documents by path, in one BatchGetDocuments RPC (only ``paths.mask``'s fields, if set)."""
        if not paths:
            return {}
        mask = getattr(paths, "mask", None)

        def step(_: int) -> dict[str, _Doc]:
            conn = self._connection
            request = codec.BatchGetDocumentsRequest(database=conn.database_path, documents=list(dict.fromkeys(paths)))
            if mask is not None:
                request.mask.field_paths.extend(mask)
            docs: dict[str, _Doc] = {}
            found = 0
            for response in conn.batch_get(request, self.rpc_timeout):
                if response.HasField("found"):
                    doc = response.found
                    docs[doc.name] = _Doc(doc.name, doc.fields, doc.update_time)
                    found += 1
                else:
                    docs[response.missing] = _Doc(response.missing)
            self._count_docs(found)
            return docs

        return self._retrying("read", step)

    def _get(self, path: str) -> _Doc:
        return self._get_all(_Paths([path]))[path]

    def _run_queries(self, queries: Sequence[Any], what: str) -> list[list[_Doc]]:
        """Raw RunQuery RPCs of ``queries`` (StructuredQuery messages), all started before any is read."""

        def step(_: int) -> list[list[_Doc]]:
            conn = self._connection
            streams = [conn.run_query(codec.RunQueryRequest(parent=conn.documents_path, structured_query=query), self.rpc_timeout) for query in queries]
            out = [[_Doc(r.document.name, r.document.fields, r.document.update_time) for r in stream if r.HasField("document")] for stream in streams]
            self._count_docs(sum(map(len, out)))
            return out

        return self._retrying(what, step)

    def _query(self, query: Any, what: str) -> list[tuple[str, dict[str, Any]]]:
        """A library query's documents as (path, fields)."""
        prefix = self._connection.documents_path

        def step(_: int) -> list[tuple[str, dict[str, Any]]]:
            snaps = query.stream(retry=self._no_retry(), timeout=self.rpc_timeout)
            return [(f"{prefix}/{snap.reference.path}", snap.to_dict() or {}) for snap in snaps]

        return self._retrying(what, step)

    def _count(self, query: Any, what: str) -> int:
        def step(_: int) -> int:
            result = query.count(alias="n").get(retry=self._no_retry(), timeout=self.rpc_timeout)
            return int(result[0][0].value)

        return self._retrying(what, step)

    def _commit(self, writes: list[Any], what: str, *, on_error: Callable[[Exception, int], Any] | None = None) -> Any:
        """One atomic Commit RPC. ``on_error(exc, attempt)`` handles AlreadyExists/FailedPrecondition/NotFound."""
        from google.api_core import exceptions as gexc

        def step(attempt: int) -> Any:
            conn = self._connection
            request = codec.CommitRequest(database=conn.database_path, writes=[codec.as_raw(w) for w in writes])
            try:
                return conn.commit(request, self.rpc_timeout)
            except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound) as exc:
                if on_error is None:
                    raise
                return on_error(exc, attempt)

        return self._retrying(what, step)

    def _batch_write(self, writes: list[Any], what: str) -> tuple[list[int], list[Any], int]:
        """Non-atomic BatchWrite: per-write status codes and write results, and the
        attempt number that succeeded (> 1 means earlier attempts may have applied).
        Split into several RPCs only when one request would pass :data:`_MAX_REQUEST_BYTES`."""
        conn = self._connection
        request = codec.BatchWriteRequest(database=conn.database_path)
        request.writes.extend(codec.as_raw(w) for w in writes)
        payloads = self._sized(request)
        codes: list[int] = []
        results: list[Any] = []
        attempts = 1
        for payload in payloads:

            def step(attempt: int, payload: bytes = payload) -> tuple[Any, int]:
                return self._connection.batch_write(payload, self.rpc_timeout), attempt

            response, attempt = self._retrying(what, step)
            attempts = max(attempts, attempt)
            codes += [status.code for status in response.status]
            results += list(response.write_results)
        return codes, results, attempts

    def _sized(self, request: Any) -> list[bytes]:
        """``request`` serialized, halved until each part fits :data:`_MAX_REQUEST_BYTES`."""
        payload = request.SerializeToString()
        if len(payload) <= _MAX_REQUEST_BYTES or len(request.writes) < 2:
            return [payload]
        half = len(request.writes) // 2
        parts = []
        for chunk in (request.writes[:half], request.writes[half:]):
            part = codec.BatchWriteRequest(database=request.database)
            part.writes.extend(chunk)
            parts += self._sized(part)
        return parts

    # Write builders under their old names (seeding and drills build documents with them).
    _pb_set = staticmethod(codec.set_write)
    _pb_create = staticmethod(codec.create_write)
    _pb_update = staticmethod(codec.update_write)
    _pb_delete = staticmethod(codec.delete_write)

    def _job_from(self, doc: _Doc) -> Job:
        return codec.job_from_fields(doc.fields, doc.path)

    def _job_write(self, path: str, job: Job, hidden: dict[str, Any], update_time: Any = None, *, create: bool = False) -> Any:
        write = codec.set_write(path, None, update_time)
        codec.put_job(write.update.fields, job)
        codec.put_fields(write.update.fields, hidden)
        if create:
            write.current_document.exists = False
        return write

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        """Create the client and read one job to prove the collection is readable."""
        for path, data in self._query(self._col("jobs").limit(1), "open"):
            codec.job_from_data(data, path)

    def close(self) -> None:
        with self._client_lock:
            client, conn, self._client, self._conn = self._client, self._conn, None, None
        if conn is not None:
            conn.close()
        if client is not None:
            client.close()

    # -- jobs ----------------------------------------------------------------
    def _prefix(self, key: str) -> str:
        """``projects/…/documents/<collection>/``: a document's path is this plus its id."""
        return f"{self._connection.documents_path}/{self.collections[key]}/"

    def _idempotency_path(self, key: str) -> str:
        return self._path("idempotency", f"idem_{codec.sha(key)}")

    def _marker_write(self, job: Job) -> Any:
        assert job.idempotency_key is not None
        data = {"job_id": job.id, "idempotency_key": job.idempotency_key, "created_at": job.created_at}
        return codec.set_write(self._idempotency_path(job.idempotency_key), data)

    def add_job(self, job: Job) -> tuple[Job, bool]:
        path = self._path("jobs", job.id)
        writes = [self._job_write(path, job, {"history": []}, create=True)]
        marker = None
        if job.idempotency_key is not None:
            marker = self._idempotency_path(job.idempotency_key)
            writes.append(codec.create_write(marker, {"job_id": job.id, "idempotency_key": job.idempotency_key, "created_at": job.created_at}))
        outcome: dict[str, int] = {}

        def conflict(exc: Exception, attempt: int) -> None:
            outcome["conflict"] = attempt

        self._commit(writes, "add_job", on_error=conflict)
        if "conflict" not in outcome:
            return job, True
        docs = self._get_all(_Paths([path] + ([marker] if marker is not None else [])))
        if marker is not None and docs[marker].exists:
            existing_id = docs[marker].get("job_id")
            existing = docs[path] if existing_id == job.id else self._get(self._path("jobs", existing_id))
            if existing.exists:
                stored = self._job_from(existing)
                # A retried commit may have been our own: then the job was created by this call.
                return stored, outcome["conflict"] > 1 and stored == job
        current = docs[path]
        if current.exists and outcome["conflict"] > 1 and self._job_from(current) == job:
            return job, True
        raise ConflictError(f"a job with id {job.id!r} already exists")

    def add_jobs(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """:meth:`add_job` per job (one transaction each); a taken id returns the stored job."""
        return add_each(self, jobs)

    def get_job(self, job_id: str) -> Job:
        doc = self._get(self._path("jobs", job_id))
        if not doc.exists:
            raise JobNotFound(job_id)
        return self._job_from(doc)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[Job]:
        from google.cloud.firestore_v1.base_query import FieldFilter
        from google.cloud.firestore_v1.field_path import FieldPath

        col = self._col("jobs")
        query = col
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", JobStatus(status).value))
        if job_type is not None:
            query = query.where(filter=FieldFilter("job_type", "==", job_type))
        if after_id is not None:
            query = query.where(filter=FieldFilter(FieldPath.document_id(), ">", col.document(after_id)))
        query = query.order_by(FieldPath.document_id()).limit(limit)
        return [codec.job_from_data(data, path) for path, data in self._query(query, "list_jobs")]

    def update_job(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        """Read, ``change``, write back preconditioned on the version read; retried on a race."""
        path = self._path("jobs", job_id)
        for _ in range(_UPDATE_ATTEMPTS):
            doc = self._get(path)
            if not doc.exists:
                raise JobNotFound(job_id)
            new = change(self._job_from(doc))
            if new.id != job_id:
                raise ValueError("update_job's change must not alter the job id")
            hidden = {k: doc.get(k) for k in codec.HIDDEN_FIELDS if k in doc.fields}
            raced: dict[str, bool] = {}

            def lost_race(exc: Exception, attempt: int, raced: dict[str, bool] = raced) -> None:
                # A retried commit may have applied on an earlier attempt: check by re-reading.
                raced["again"] = True
                raced["check"] = attempt > 1

            self._commit([self._job_write(path, new, hidden, doc.update_time)], "update_job", on_error=lost_race)
            if not raced:
                return new
            if raced.get("check"):
                current = self._get(path)
                if current.exists and self._job_from(current) == new:
                    return new
        raise StoreUnavailable(f"job {job_id!r} changed under {_UPDATE_ATTEMPTS} consecutive updates; try again")

    def count_due(self, now: datetime) -> int:
        from google.cloud.firestore_v1.base_query import FieldFilter

        col = self._col("jobs")
        pending = col.where(filter=FieldFilter("status", "==", "pending")).where(filter=FieldFilter("next_run_at", "<=", now)).order_by("next_run_at")
        running = col.where(filter=FieldFilter("status", "==", "running")).where(filter=FieldFilter("lease_until", "<=", now)).order_by("lease_until")
        return self._count(pending, "count_due") + self._count(running, "count_due")

    def count_by_status(self) -> dict[str, int]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        col = self._col("jobs")
        return {s.value: self._count(col.where(filter=FieldFilter("status", "==", s.value)), "count_by_status") for s in JobStatus}

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

    def _due_windows(self, now: datetime, limit: int) -> tuple[list[tuple[_Doc, Job]], dict[str, str], int, bool]:
        """Up to ``limit + 1`` due jobs of each due query that decode, as (document, job);
        the two queries run side by side (two RPCs, one round trip of waiting).

        A document that does not decode is skipped and reported ({id: error}), never
        fatal; since it stays due it would keep taking a place in the window, so the
        window is widened past such documents (at most twice more: extra queries only
        when unreadable documents exist). Also returns the documents read, and
        whether a window still full of unreadable documents may hide more due jobs.
        """
        todo = {"pending": ("next_run_at", limit + 1), "running": ("lease_until", limit + 1)}
        decoded: dict[str, list[tuple[_Doc, Job]]] = {}
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
                        decoded[status].append((doc, self._job_from(doc)))
                    except StoreCorrupt as exc:
                        unreadable[status][doc.id] = str(exc)
                full = len(docs) >= size
                hidden = hidden or (full and bool(unreadable[status]))
                if unreadable[status] and full and len(decoded[status]) <= limit:
                    again[status] = (field, limit + 1 + len(unreadable[status]))
            if not again:
                break
            todo = again
        return [pair for pairs in decoded.values() for pair in pairs], {k: v for bad in unreadable.values() for k, v in bad.items()}, sum(read.values()), hidden

    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        decoded, unreadable, checked, window_full = self._due_windows(now, limit)
        candidates = [(job.next_run_at or _MIN_TIME, job.id, job, doc) for doc, job in decoded if job.is_due(now)]
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

        lease_until = now + timedelta(seconds=lease_seconds)
        chosen = candidates[:limit]
        writes = []
        for _, _, job, doc in chosen:
            fields = {
                "status": "running", "lease_owner": tick.tick_id, "lease_until": lease_until,
                "lease_epoch": job.lease_epoch + 1, "attempts": job.attempts + 1, "updated_at": now,
            }
            writes.append(codec.update_write(doc.path, fields, doc.update_time))
        tick_path = self._path("ticks", tick.tick_id)
        writes.append(codec.set_write(tick_path, codec.tick_fields(tick, self.history_days)))
        codes, _, attempts = self._batch_write(writes, "claim_due_jobs")

        unsure = []
        for (_, _, job, doc), code in zip(chosen, codes):
            claimed = job.replace(
                status=JobStatus.RUNNING, lease_owner=tick.tick_id, lease_until=lease_until,
                lease_epoch=job.lease_epoch + 1, attempts=job.attempts + 1, updated_at=now,
            )
            if code == _OK:
                self._claimed(result, job, claimed)
            elif attempts > 1 and code in (_FAILED_PRECONDITION, _NOT_FOUND):
                unsure.append((job, claimed, doc.path))  # maybe applied by our own earlier attempt
            else:
                result.conflicts += 1
                if code != _FAILED_PRECONDITION:
                    log.warning("Claim write failed", extra={"json_fields": {"job_id": job.id, "code": code}})
        if unsure:
            current = self._get_all(_Paths((path for _, _, path in unsure), ("lease_owner", "lease_epoch")))
            for job, claimed, path in unsure:
                doc = current.get(path)
                if doc is not None and doc.get("lease_owner") == tick.tick_id and doc.get("lease_epoch") == claimed.lease_epoch:
                    self._claimed(result, job, claimed)
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
    def _claimed(result: ClaimResult, before: Job, claimed: Job) -> None:
        if before.status is JobStatus.RUNNING:
            result.recovered.add(before.id)
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

    # -- import --------------------------------------------------------------
    def restore_jobs(self, jobs: Sequence[Job]) -> RestoreResult:
        """Atomic per job, by batched writes with preconditions (not transactions).

        One BatchGetDocuments of the jobs, then BatchWrite RPCs of at most
        :data:`_RESTORE_WRITES_PER_RPC` writes: an absent job is a create (refused if
        the document appeared meanwhile); a replaced job is a set preconditioned on
        the ``update_time`` just read, keeping its ``history`` and ``settled_by``. Its
        idempotency marker is written (and a replaced key's marker deleted) in the
        same RPC. A write refused by its precondition (a tick or an operator changed
        the job between read and write) is read again and decided again, for at most
        :data:`_SETTLE_ROUNDS` rounds. An id given twice is applied in order (the
        batch is split before the repeat: a request may write a document only once).
        """
        result = RestoreResult()
        chunk: list[Job] = []
        ids: set[str] = set()
        for job in jobs:
            if job.id in ids:
                self._restore_chunk(chunk, result)
                chunk, ids = [], set()
            chunk.append(job)
            ids.add(job.id)
        if chunk:
            self._restore_chunk(chunk, result)
        return result

    def _restore_chunk(self, jobs: list[Job], result: RestoreResult) -> None:
        prefix = self._prefix("jobs")
        paths = {job.id: prefix + job.id for job in jobs}
        outcome: dict[str, str] = {}  # job id -> "created" | "updated" | "unchanged"
        todo = list(jobs)
        docs = self._get_all(_Paths(paths.values()))
        for _ in range(_SETTLE_ROUNDS):
            writes: list[Any] = []
            intents: list[tuple[Job, str, Job] | None] = []  # per write: (given, outcome, as written); None for a marker
            markers: dict[str, Any] = {}
            for job in todo:
                path = paths[job.id]
                doc = docs.get(path)
                if doc is None or not doc.exists:
                    writes.append(self._job_write(path, job, {"history": []}, create=True))
                    intents.append((job, "created", job))
                    if job.idempotency_key is not None:
                        markers[job.idempotency_key] = self._marker_write(job)
                    continue
                try:
                    stored: Job | None = self._job_from(doc)
                except StoreCorrupt:
                    stored = None  # an unreadable stored job is replaced by the snapshot's
                if unchanged_by_restore(stored, job):
                    outcome[job.id] = "unchanged"
                    continue
                epoch = doc.get("lease_epoch")
                epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0
                new = job.replace(lease_epoch=max(job.lease_epoch, epoch + 1))
                hidden = {k: doc.get(k) for k in codec.HIDDEN_FIELDS if k in doc.fields}
                writes.append(self._job_write(path, new, hidden, doc.update_time))
                intents.append((job, "updated", new))
                old_key = doc.get("idempotency_key")
                if old_key != job.idempotency_key:
                    if isinstance(old_key, str) and old_key not in markers:
                        markers[old_key] = codec.delete_write(self._idempotency_path(old_key))
                    if job.idempotency_key is not None:
                        markers[job.idempotency_key] = self._marker_write(job)
            writes += markers.values()
            intents += [None] * len(markers)
            again: list[tuple[Job, str, Job, bool]] = []
            for start in range(0, len(writes), _RESTORE_WRITES_PER_RPC):
                codes, _, attempts = self._batch_write(writes[start : start + _RESTORE_WRITES_PER_RPC], "restore_jobs")
                for intent, code in zip(intents[start : start + _RESTORE_WRITES_PER_RPC], codes):
                    if code == _OK:
                        if intent is not None:
                            outcome[intent[0].id] = intent[1]
                    elif intent is not None and code in (_ALREADY_EXISTS, _FAILED_PRECONDITION, _NOT_FOUND):
                        again.append((*intent, attempts > 1))
                    else:
                        what = f"job {intent[0].id!r}" if intent is not None else "an idempotency marker"
                        raise StoreError(f"Firestore refused to restore {what} (code {code})")
            if not again:
                break
            docs = self._get_all(_Paths(paths[job.id] for job, _, _, _ in again))
            todo = []
            for job, kind, written, retried in again:
                doc = docs.get(paths[job.id])
                if retried and doc is not None and doc.exists and self._job_from(doc) == written:
                    outcome[job.id] = kind  # our own earlier attempt of a retried RPC applied it
                else:
                    todo.append(job)
            if not todo:
                break
        else:
            raise StoreUnavailable(f"jobs {[job.id for job in todo]} kept changing while being restored; run the import again")
        for job in jobs:
            getattr(result, outcome[job.id]).append(job.id)

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

    # -- history -------------------------------------------------------------
    def list_executions(
        self,
        *,
        job_id: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        from google.cloud.firestore_v1 import Query
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._col("executions")
        if job_id is not None:
            query = query.where(filter=FieldFilter("job_id", "==", job_id))
        if outcome is not None:
            query = query.where(filter=FieldFilter("outcome", "==", str(outcome)))
        if since is not None:
            query = query.where(filter=FieldFilter("started_at", ">=", since))
        if until is not None:
            query = query.where(filter=FieldFilter("started_at", "<", until))
        query = query.order_by("started_at", direction=Query.DESCENDING).limit(limit)
        return [codec.execution_from_data(data, path) for path, data in self._query(query, "list_executions")]

    def recent_ticks(self, limit: int = 20) -> list[TickRecord]:
        from google.cloud.firestore_v1 import Query

        query = self._col("ticks").order_by("started_at", direction=Query.DESCENDING).limit(limit)
        return [codec.tick_from_data(data, path) for path, data in self._query(query, "recent_ticks")]
