"""The Firestore store: jobs, execution history and tick records in Cloud Firestore.

Layout (collection names from the settings)::

    scheduler_jobs/<job id>                  the job (Job fields, timestamps native)
                                             + ``history``: ids of its kept executions, oldest first
                                             + ``settled_by``: "<owner>#<epoch>" of the last applied settle
    scheduler_jobs_idempotency/idem_<sha256(key)>   {job_id}: makes idempotency keys unique
    scheduler_executions/<job id>~<digest>   one attempt; ``expire_at`` = started_at + history_days (TTL)
    scheduler_ticks/<tick id>                TickRecord; ``expire_at`` likewise (TTL)
    scheduler_ticks_occurrences/occ_<sha256(occurrence key)>   {tick_id, started_at, ...}

Due jobs are found by two indexed queries only, never a scan::

    status == "pending" AND next_run_at <= now ORDER BY next_run_at LIMIT n+1
    status == "running" AND lease_until <= now ORDER BY lease_until LIMIT n+1

Every composite query this module issues is listed in :data:`QUERY_SHAPES` and
shipped in ``firestore.indexes.json`` (a test checks both against the queries
actually sent). A running job whose ``lease_until`` is null is not found by the
second query (claims always set it).

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

Settling reads the claimed jobs with one ``BatchGetDocuments`` RPC, then writes
every job (fenced: applied only if ``lease_owner``/``lease_epoch`` still match,
and preconditioned on the ``update_time`` just read), its execution records, the
deletion of executions beyond ``history_limit`` and the tick record in ONE
``BatchWrite``. A job whose precondition failed is re-read and decided again
(a concurrent claim makes it ``lost``; the execution records, keyed
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
import hashlib
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from scheduler.errors import ConflictError, JobNotFound, StoreCorrupt, StoreError, StoreUnavailable
from scheduler.model import Execution, Job, JobStatus, Outcome, RunRef, Settlement, Source, TickMetrics, TickRecord
from storage.base import ClaimResult, ExtendResult, RestoreResult, SettleResult
from storage.table import unchanged_by_restore

if TYPE_CHECKING:
    from scheduler.settings import Settings

log = logging.getLogger(__name__)

EMULATOR_PROJECT = "demo-crontick"
_DATETIME_FIELDS = ("schedule_at", "next_run_at", "fire_at", "last_run_at", "created_at", "updated_at", "lease_until")
_HIDDEN_FIELDS = ("history", "settled_by")
_OK, _NOT_FOUND, _ALREADY_EXISTS, _FAILED_PRECONDITION = 0, 5, 6, 9
_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # Firestore refuses requests over 10 MiB
_SETTLE_ROUNDS = 5
_UPDATE_ATTEMPTS = 10
_RESTORE_WRITES_PER_RPC = 500  # the documented cap of a Firestore write batch
_RPC_METHODS = (
    "batch_get_documents",
    "run_query",
    "run_aggregation_query",
    "commit",
    "batch_write",
    "begin_transaction",
    "rollback",
    "get_document",
    "list_documents",
    "create_document",
    "update_document",
    "delete_document",
    "partition_query",
    "list_collection_ids",
)


@dataclass(frozen=True)
class QueryShape:
    """One query this store issues: the collection (by settings key), its equality
    fields and its ordering (range filters are on the first ordered field)."""

    collection: str  # "jobs" | "executions" | "ticks"
    equality: tuple[str, ...]
    order: tuple[tuple[str, str], ...]  # (field, "ASCENDING" | "DESCENDING"); "__name__" allowed

    def needs_composite_index(self) -> bool:
        fields = set(self.equality) | {f for f, _ in self.order if f != "__name__"}
        return len(fields) > 1

    def index_fields(self) -> list[tuple[str, str]]:
        """The composite index serving it: equality fields, then the ordered ones."""
        return [(f, "ASCENDING") for f in sorted(self.equality)] + [(f, d) for f, d in self.order if f != "__name__"]


_ASC, _DESC = "ASCENDING", "DESCENDING"
QUERY_SHAPES: tuple[QueryShape, ...] = (
    # open: read one job
    QueryShape("jobs", (), ()),
    # claim_due_jobs / count_due
    QueryShape("jobs", ("status",), (("next_run_at", _ASC),)),
    QueryShape("jobs", ("status",), (("lease_until", _ASC),)),
    # count_by_status
    QueryShape("jobs", ("status",), ()),
    # list_jobs (ordered by id)
    QueryShape("jobs", (), (("__name__", _ASC),)),
    QueryShape("jobs", ("status",), (("__name__", _ASC),)),
    QueryShape("jobs", ("job_type",), (("__name__", _ASC),)),
    QueryShape("jobs", ("job_type", "status"), (("__name__", _ASC),)),
    # list_executions (newest first, optional started_at window)
    QueryShape("executions", (), (("started_at", _DESC),)),
    QueryShape("executions", ("job_id",), (("started_at", _DESC),)),
    QueryShape("executions", ("outcome",), (("started_at", _DESC),)),
    QueryShape("executions", ("job_id", "outcome"), (("started_at", _DESC),)),
    # recent_ticks
    QueryShape("ticks", (), (("started_at", _DESC),)),
)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """Firestore's DatetimeWithNanoseconds as a plain aware UTC datetime."""
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=timezone.utc)
    return value


def _job_fields(job: Job) -> dict[str, Any]:
    data = job.to_dict()
    for name in _DATETIME_FIELDS:
        data[name] = getattr(job, name)
    return data


def _execution_fields(execution: Execution, history_days: int) -> dict[str, Any]:
    data = execution.to_dict()
    data["fire_at"] = execution.fire_at
    data["started_at"] = execution.started_at
    data["expire_at"] = execution.started_at + timedelta(days=history_days)
    return data


def _tick_fields(tick: TickRecord, history_days: int) -> dict[str, Any]:
    data = tick.to_dict()
    data["started_at"] = tick.started_at
    data["finished_at"] = tick.finished_at
    data["expire_at"] = tick.started_at + timedelta(days=history_days)
    return data


def _holds_lease(data: dict[str, Any] | None, run: RunRef) -> bool:
    """The stored job (raw document fields) is still running under ``run``'s lease."""
    return (
        data is not None
        and data.get("status") == JobStatus.RUNNING.value
        and data.get("lease_owner") == run.lease_owner
        and data.get("lease_epoch") == run.lease_epoch
    )


def _lease_reaches(data: dict[str, Any] | None, target: datetime) -> bool:
    current = _plain((data or {}).get("lease_until"))
    return isinstance(current, datetime) and current >= target


def _as_lost(execution: Execution) -> Execution:
    return Execution(
        execution.job_id, execution.fire_at, execution.attempt, execution.tick_id, Outcome.LEASE_LOST,
        execution.started_at, execution.duration_ms, execution.error, execution.source,
    )


class _Transient(Exception):
    """Raised inside a retried step to ask for another attempt."""


class _CountingStream:
    """Wraps a streaming response: counts the documents it returns."""

    def __init__(self, stream: Any, on_doc: Callable[[], None]) -> None:
        self._stream = stream
        self._on_doc = on_doc

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


# gRPC keeps reconnecting to an unreachable server with a backoff growing to 120 s,
# and by default shares that state between every channel of the process: after an
# outage even a new client would keep failing for minutes. Reconnect within 1 s.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.use_local_subchannel_pool", 1),
]
_CLIENT_CLASS: Any = None


def _client_class() -> Any:
    """``firestore.Client`` whose gRPC channel uses :data:`_CHANNEL_OPTIONS` (built lazily so
    that importing this module does not load google-cloud-firestore)."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is not None:
        return _CLIENT_CLASS
    import grpc
    from google.cloud import firestore
    from google.cloud.firestore_v1 import base_client

    class Client(firestore.Client):
        def _firestore_api_helper(self, transport: Any, client_class: Any, client_module: Any) -> Any:
            if self._firestore_api_internal is None:
                if self._emulator_host is not None:
                    channel = self._emulator_channel(transport)
                else:
                    options = [*getattr(base_client, "_DEFAULT_CHANNEL_OPTIONS", []), *_CHANNEL_OPTIONS]
                    channel = transport.create_channel(self._target, credentials=self._credentials, options=options)
                self._transport = transport(host=self._target, channel=channel)
                self._firestore_api_internal = client_class(transport=self._transport, client_options=self._client_options)
                client_module._client_info = self._client_info
            return self._firestore_api_internal

        def _emulator_channel(self, transport: Any) -> Any:
            token = getattr(self._credentials, "id_token", None) or "owner"
            options = [("Authorization", f"Bearer {token}"), *getattr(base_client, "_GRPC_MSG_SIZE_OPTIONS", []), *_CHANNEL_OPTIONS]
            return grpc.insecure_channel(self._emulator_host, options=options)

    _CLIENT_CLASS = Client
    return Client


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
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        project = self.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
        if project is None and os.environ.get("FIRESTORE_EMULATOR_HOST"):
            project = EMULATOR_PROJECT
        try:
            client = _client_class()(project=project, database=self.database)
        except Exception as exc:  # noqa: BLE001 - credentials/project discovery failures
            raise StoreUnavailable(f"cannot create the Firestore client: {exc}") from exc
        self._instrument(client._firestore_api)
        return client

    def _instrument(self, api: Any) -> None:
        """Count every RPC the GAPIC client sends, and the documents streamed back."""
        for name in _RPC_METHODS:
            method = getattr(api, name, None)
            if method is None:
                continue

            def counted(*args: Any, _method: Callable[..., Any] = method, _name: str = name, **kwargs: Any) -> Any:
                with self._count_lock:
                    self.rpc_counts[_name] += 1
                result = _method(*args, **kwargs)
                if _name in ("run_query", "batch_get_documents"):
                    return _CountingStream(result, self._count_doc)
                return result

            setattr(api, name, counted)

    def _count_doc(self) -> None:
        with self._count_lock:
            self.docs_read += 1

    def _drop_client(self) -> None:
        """Forget the client after an outage so the next call opens a fresh channel
        (a gRPC channel in reconnect backoff would keep failing for a while). Not
        closed here: other threads may still be using it; it closes when collected."""
        with self._client_lock:
            self._client = None

    def _no_retry(self) -> Any:
        from google.api_core.retry import Retry

        return Retry(predicate=lambda exc: False, timeout=self.rpc_timeout)

    def _retrying(self, what: str, step: Callable[[int], Any]) -> Any:
        """Run ``step(attempt)``; retry transient failures with backoff until ``retry_deadline``."""
        from google.api_core import exceptions as gexc

        transient = (
            gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted,
            gexc.ResourceExhausted, gexc.Unknown, gexc.GatewayTimeout, gexc.RetryError, ConnectionError, _Transient,
        )
        try:
            from google.auth.exceptions import TransportError

            transient = (*transient, TransportError)
        except ImportError:  # pragma: no cover
            pass
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
        return self.client.collection(self.collections[key])

    def _get_all(self, refs: Sequence[Any]) -> dict[str, Any]:
        """Snapshots by document path, in one BatchGetDocuments RPC."""
        if not refs:
            return {}

        def step(_: int) -> dict[str, Any]:
            snaps = self.client.get_all(list(refs), retry=self._no_retry(), timeout=self.rpc_timeout)
            return {snap.reference._document_path: snap for snap in snaps}

        return self._retrying("read", step)

    def _get(self, ref: Any) -> Any:
        return self._get_all([ref])[ref._document_path]

    def _query(self, query: Any, what: str) -> list[Any]:
        return self._retrying(what, lambda _: list(query.stream(retry=self._no_retry(), timeout=self.rpc_timeout)))

    def _count(self, query: Any, what: str) -> int:
        def step(_: int) -> int:
            result = query.count(alias="n").get(retry=self._no_retry(), timeout=self.rpc_timeout)
            return int(result[0][0].value)

        return self._retrying(what, step)

    def _commit(self, writes: list[Any], what: str, *, on_error: Callable[[Exception, int], Any] | None = None) -> Any:
        """One atomic Commit RPC. ``on_error(exc, attempt)`` handles AlreadyExists/FailedPrecondition/NotFound."""
        from google.api_core import exceptions as gexc

        client = self.client

        def step(attempt: int) -> Any:
            try:
                return client._firestore_api.commit(
                    request={"database": client._database_string, "writes": writes},
                    metadata=client._rpc_metadata, retry=self._no_retry(), timeout=self.rpc_timeout,
                )
            except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound) as exc:
                if on_error is None:
                    raise
                return on_error(exc, attempt)

        return self._retrying(what, step)

    def _batch_write(self, writes: list[Any], what: str) -> tuple[list[int], list[Any], int]:
        """Non-atomic BatchWrite: per-write status codes and write results, and the
        attempt number that succeeded (> 1 means earlier attempts may have applied)."""
        client = self.client
        chunks: list[list[Any]] = [[]]
        size = 0
        for write in writes:
            write_size = type(write).pb(write).ByteSize() if hasattr(type(write), "pb") else 0
            if chunks[-1] and size + write_size > _MAX_REQUEST_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(write)
            size += write_size
        codes: list[int] = []
        results: list[Any] = []
        attempts = 1
        for chunk in chunks:
            if not chunk:
                continue

            def step(attempt: int, chunk: list[Any] = chunk) -> tuple[Any, int]:
                response = client._firestore_api.batch_write(
                    request={"database": client._database_string, "writes": chunk},
                    metadata=client._rpc_metadata, retry=self._no_retry(), timeout=self.rpc_timeout,
                )
                return response, attempt

            response, attempt = self._retrying(what, step)
            attempts = max(attempts, attempt)
            codes += [status.code for status in response.status]
            results += list(response.write_results)
        return codes, results, attempts

    @staticmethod
    def _pb_set(path: str, data: dict[str, Any], update_time: Any = None) -> Any:
        from google.cloud.firestore_v1 import _helpers

        (write,) = _helpers.pbs_for_set_no_merge(path, data)
        if update_time is not None:
            write.current_document.update_time = update_time
        return write

    @staticmethod
    def _pb_create(path: str, data: dict[str, Any]) -> Any:
        from google.cloud.firestore_v1 import _helpers

        (write,) = _helpers.pbs_for_create(path, data)
        return write

    @staticmethod
    def _pb_update(path: str, fields: dict[str, Any], update_time: Any) -> Any:
        from google.cloud.firestore_v1 import _helpers

        (write,) = _helpers.pbs_for_update(path, fields, None)
        write.current_document.update_time = update_time
        return write

    @staticmethod
    def _pb_delete(path: str) -> Any:
        from google.cloud.firestore_v1 import _helpers

        return _helpers.pb_for_delete(path, None)

    # -- decoding ------------------------------------------------------------
    def _job_from(self, snap: Any) -> Job:
        data = snap.to_dict() or {}
        try:
            values = {k: v for k, v in data.items() if k not in _HIDDEN_FIELDS}
            for name in _DATETIME_FIELDS:
                values[name] = _plain(values.get(name))
            return Job.from_dict(values)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupt(f"Firestore document {snap.reference._document_path} is not a valid job ({exc!r}); crontick will not overwrite it") from None

    @staticmethod
    def _execution_from(snap: Any) -> Execution:
        d = snap.to_dict() or {}
        try:
            return Execution(
                job_id=d["job_id"], fire_at=_plain(d["fire_at"]), attempt=d["attempt"], tick_id=d["tick_id"],
                outcome=Outcome(d["outcome"]), started_at=_plain(d["started_at"]), duration_ms=d["duration_ms"],
                error=d.get("error"), source=Source(d.get("source", Source.MANUAL)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupt(f"Firestore document {snap.reference._document_path} is not a valid execution ({exc!r})") from None

    @staticmethod
    def _tick_from(snap: Any) -> TickRecord:
        d = snap.to_dict() or {}
        try:
            return TickRecord(
                tick_id=d["tick_id"], started_at=_plain(d["started_at"]), source=Source(d["source"]),
                occurrence_key=d.get("occurrence_key"), finished_at=_plain(d.get("finished_at")),
                metrics=TickMetrics(**d.get("metrics", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupt(f"Firestore document {snap.reference._document_path} is not a valid tick record ({exc!r})") from None

    # -- lifecycle -----------------------------------------------------------
    def open(self) -> None:
        """Create the client and read one job to prove the collection is readable."""
        snaps = self._query(self._col("jobs").limit(1), "open")
        for snap in snaps:
            self._job_from(snap)

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- jobs ----------------------------------------------------------------
    def _idempotency_ref(self, key: str) -> Any:
        return self._col("idempotency").document(f"idem_{_sha(key)}")

    def add_job(self, job: Job) -> tuple[Job, bool]:
        ref = self._col("jobs").document(job.id)
        writes = [self._pb_create(ref._document_path, _job_fields(job) | {"history": []})]
        marker = None
        if job.idempotency_key is not None:
            marker = self._idempotency_ref(job.idempotency_key)
            writes.append(self._pb_create(marker._document_path, {"job_id": job.id, "idempotency_key": job.idempotency_key, "created_at": job.created_at}))
        outcome: dict[str, Any] = {}

        def conflict(exc: Exception, attempt: int) -> None:
            outcome["conflict"] = attempt
            return None

        self._commit(writes, "add_job", on_error=conflict)
        if "conflict" not in outcome:
            return job, True
        refs = [ref] + ([marker] if marker is not None else [])
        snaps = self._get_all(refs)
        if marker is not None and snaps[marker._document_path].exists:
            existing_id = snaps[marker._document_path].to_dict()["job_id"]
            existing = snaps[ref._document_path] if existing_id == job.id else self._get(self._col("jobs").document(existing_id))
            if existing.exists:
                stored = self._job_from(existing)
                # A retried commit may have been our own: then the job was created by this call.
                return stored, outcome["conflict"] > 1 and stored == job
        current = snaps[ref._document_path]
        if current.exists and outcome["conflict"] > 1 and self._job_from(current) == job:
            return job, True
        raise ConflictError(f"a job with id {job.id!r} already exists")

    def get_job(self, job_id: str) -> Job:
        snap = self._get(self._col("jobs").document(job_id))
        if not snap.exists:
            raise JobNotFound(job_id)
        return self._job_from(snap)

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
        return [self._job_from(snap) for snap in self._query(query, "list_jobs")]

    def update_job(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        """Read, ``change``, write back preconditioned on the version read; retried on a race."""
        ref = self._col("jobs").document(job_id)
        for _ in range(_UPDATE_ATTEMPTS):
            snap = self._get(ref)
            if not snap.exists:
                raise JobNotFound(job_id)
            new = change(self._job_from(snap))
            if new.id != job_id:
                raise ValueError("update_job's change must not alter the job id")
            data = snap.to_dict()
            hidden = {k: data[k] for k in _HIDDEN_FIELDS if k in data}
            write = self._pb_set(ref._document_path, _job_fields(new) | hidden, snap.update_time)
            raced: dict[str, bool] = {}

            def lost_race(exc: Exception, attempt: int, raced: dict[str, bool] = raced, new: Job = new) -> None:
                # A retried commit may have applied on an earlier attempt: check by re-reading.
                raced["again"] = True
                raced["check"] = attempt > 1

            self._commit([write], "update_job", on_error=lost_race)
            if not raced:
                return new
            if raced.get("check"):
                current = self._get(ref)
                if current.exists and self._job_from(current) == new:
                    return new
        raise StoreUnavailable(f"job {job_id!r} changed under {_UPDATE_ATTEMPTS} consecutive updates; try again")

    def _due_queries(self, now: datetime) -> tuple[Any, Any]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        col = self._col("jobs")
        pending = col.where(filter=FieldFilter("status", "==", "pending")).where(filter=FieldFilter("next_run_at", "<=", now)).order_by("next_run_at")
        running = col.where(filter=FieldFilter("status", "==", "running")).where(filter=FieldFilter("lease_until", "<=", now)).order_by("lease_until")
        return pending, running

    def count_due(self, now: datetime) -> int:
        pending, running = self._due_queries(now)
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

    def _occurrence_ref(self, key: str) -> Any:
        return self._col("occurrences").document(f"occ_{_sha(key)}")

    def _duplicate_from_marker(self, marker: Any, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        """The other tick holding the occurrence marker, if it still counts (finished,
        or started less than ``lease_seconds`` ago); None if it is ours or stale."""
        data = marker.to_dict() or {}
        other_id = data.get("tick_id")
        if other_id == tick.tick_id:
            return None
        record_snap = self._get(self._col("ticks").document(other_id))
        if record_snap.exists:
            record = self._tick_from(record_snap)
        else:  # the other tick took the marker but stored no record (it claimed nothing, or died)
            record = TickRecord(tick_id=other_id, started_at=_plain(data["started_at"]), source=Source(data.get("source", "manual")), occurrence_key=tick.occurrence_key)
        horizon = now - timedelta(seconds=lease_seconds)
        if record.finished_at is not None or record.started_at > horizon:
            return record
        return None

    def _check_occurrence(self, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        """Nothing is due: report a duplicate occurrence without writing anything."""
        assert tick.occurrence_key is not None
        marker = self._get(self._occurrence_ref(tick.occurrence_key))
        if not marker.exists:
            return None
        return self._duplicate_from_marker(marker, tick, now, lease_seconds)

    def _take_occurrence(self, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        """Atomically create (or take over a stale) occurrence marker; return the
        duplicate's record if another tick holds it."""
        assert tick.occurrence_key is not None
        ref = self._occurrence_ref(tick.occurrence_key)
        fields = {
            "occurrence_key": tick.occurrence_key, "tick_id": tick.tick_id, "started_at": tick.started_at,
            "source": tick.source.value, "expire_at": tick.started_at + timedelta(days=self.history_days),
        }
        write = self._pb_create(ref._document_path, fields)
        for _ in range(5):
            refused: dict[str, bool] = {}

            def taken(exc: Exception, attempt: int, refused: dict[str, bool] = refused) -> None:
                refused["yes"] = True

            self._commit([write], "claim_due_jobs", on_error=taken)
            if not refused:
                self._remember(self._held_occurrences, (tick.tick_id, tick.occurrence_key))
                return None
            marker = self._get(ref)
            if not marker.exists:
                write = self._pb_create(ref._document_path, fields)
                continue
            duplicate = self._duplicate_from_marker(marker, tick, now, lease_seconds)
            if duplicate is not None:
                return duplicate
            if (marker.to_dict() or {}).get("tick_id") == tick.tick_id:
                self._remember(self._held_occurrences, (tick.tick_id, tick.occurrence_key))
                return None
            write = self._pb_set(ref._document_path, fields, marker.update_time)  # take over a stale marker
        raise StoreUnavailable(f"occurrence {tick.occurrence_key!r} is contended; try again")

    def _due_window(self, query: Any, limit: int) -> tuple[list[tuple[Any, Job]], dict[str, str], int, bool]:
        """Up to ``limit + 1`` due jobs of ``query`` that decode, as (snapshot, job).

        A document that does not decode is skipped and reported ({id: error}), never
        fatal; since it stays due it would keep taking a place in the window, so the
        window is widened past such documents (at most twice more: extra queries only
        when unreadable documents exist). Also returns the documents read, and
        whether the window came back full (more may be due).
        """
        size = limit + 1
        for _ in range(3):
            snaps = self._query(query.limit(size), "claim_due_jobs")
            decoded: list[tuple[Any, Job]] = []
            unreadable: dict[str, str] = {}
            for snap in snaps:
                try:
                    decoded.append((snap, self._job_from(snap)))
                except StoreCorrupt as exc:
                    unreadable[snap.id] = str(exc)
            full = len(snaps) >= size
            if not unreadable or not full or len(decoded) > limit:
                break
            size = limit + 1 + len(unreadable)
        return decoded, unreadable, len(snaps), full

    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        pending_q, running_q = self._due_queries(now)
        candidates = []
        unreadable: dict[str, str] = {}
        checked = 0
        window_full = False
        for query in (pending_q, running_q):
            decoded, bad, read, full = self._due_window(query, limit)
            unreadable.update(bad)
            checked += read
            window_full = window_full or (full and bool(bad))
            for snap, job in decoded:
                if job.is_due(now):
                    candidates.append((job.next_run_at or datetime.min.replace(tzinfo=timezone.utc), job.id, job, snap))
        for job_id, error in sorted(unreadable.items()):
            log.error(
                "A stored job cannot be read; the claim skipped it",
                extra={"json_fields": {"action": "stored_job_unreadable", "job_id": job_id, "error": error}},
            )
        candidates.sort(key=lambda c: (c[0], c[1]))
        # A window still full of unreadable documents may hide further due jobs.
        more_due = len(candidates) > limit or window_full
        result = ClaimResult(checked=checked, due=len(candidates), more_due=more_due, unreadable=sorted(unreadable))
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
        for _, _, job, snap in chosen:
            fields = {
                "status": JobStatus.RUNNING.value, "lease_owner": tick.tick_id, "lease_until": lease_until,
                "lease_epoch": job.lease_epoch + 1, "attempts": job.attempts + 1, "updated_at": now,
            }
            writes.append(self._pb_update(snap.reference._document_path, fields, snap.update_time))
        tick_ref = self._col("ticks").document(tick.tick_id)
        writes.append(self._pb_set(tick_ref._document_path, _tick_fields(tick, self.history_days)))
        codes, _, attempts = self._batch_write(writes, "claim_due_jobs")

        unsure = []
        for (_, _, job, _snap), code in zip(chosen, codes):
            claimed = job.replace(
                status=JobStatus.RUNNING, lease_owner=tick.tick_id, lease_until=lease_until,
                lease_epoch=job.lease_epoch + 1, attempts=job.attempts + 1, updated_at=now,
            )
            if code == _OK:
                self._claimed(result, job, claimed)
            elif attempts > 1 and code in (_FAILED_PRECONDITION, _NOT_FOUND):
                unsure.append((job, claimed))  # maybe applied by our own earlier attempt
            else:
                result.conflicts += 1
                if code != _FAILED_PRECONDITION:
                    log.warning("Claim write failed", extra={"json_fields": {"job_id": job.id, "code": code}})
        if unsure:
            current = self._get_all([self._col("jobs").document(job.id) for job, _ in unsure])
            for job, claimed in unsure:
                snap = current.get(self._col("jobs").document(job.id)._document_path)
                data = snap.to_dict() if snap is not None and snap.exists else {}
                if data.get("lease_owner") == tick.tick_id and data.get("lease_epoch") == claimed.lease_epoch:
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
            self._batch_write([self._pb_delete(tick_ref._document_path)], "claim_due_jobs")
        result.claimed.sort(key=lambda j: (j.next_run_at or datetime.min.replace(tzinfo=timezone.utc), j.id))
        return result

    @staticmethod
    def _claimed(result: ClaimResult, before: Job, claimed: Job) -> None:
        if before.status is JobStatus.RUNNING:
            result.recovered.add(before.id)
        result.claimed.append(claimed)

    # -- settle --------------------------------------------------------------
    def _execution_ids(self, settlement: Settlement, count: int) -> list[str]:
        job_id = settlement.job.id
        base = "|".join((job_id, settlement.expected_owner, str(settlement.expected_epoch)))
        return [f"{job_id}~{_sha(f'{base}|{i}')[:24]}" for i in range(count)]

    def settle_jobs(self, settlements: Sequence[Settlement], *, tick: TickRecord | None) -> SettleResult:
        jobs_col, exec_col = self._col("jobs"), self._col("executions")
        tick_path = self._col("ticks").document(tick.tick_id)._document_path if tick is not None else None
        decided: dict[str, bool] = {}  # job id -> applied?
        todo = list(settlements)
        snaps = self._get_all([jobs_col.document(s.job.id) for s in todo])
        for _ in range(_SETTLE_ROUNDS):
            writes: list[Any] = []
            job_write_index: dict[str, int] = {}
            round_decisions: dict[str, bool] = {}
            for settlement in todo:
                job_id = settlement.job.id
                ref = jobs_col.document(job_id)
                snap = snaps.get(ref._document_path)
                data = snap.to_dict() if snap is not None and snap.exists else None
                token = f"{settlement.expected_owner}#{settlement.expected_epoch}"
                if data is not None and data.get("settled_by") == token:
                    round_decisions[job_id] = True  # a retried write of ours already applied it
                    continue
                fenced = data is not None and data.get("lease_owner") == settlement.expected_owner and data.get("lease_epoch") == settlement.expected_epoch
                round_decisions[job_id] = fenced
                executions = settlement.executions if fenced else tuple(_as_lost(e) for e in settlement.executions)
                ids = self._execution_ids(settlement, len(executions))
                history = list(data.get("history") or []) if data is not None else []
                merged = [h for h in history if h not in ids] + ids
                keep = merged[-self.history_limit :]
                kept_ids = set(keep)
                for execution, exec_id in zip(executions, ids):
                    if exec_id in kept_ids:
                        writes.append(self._pb_set(exec_col.document(exec_id)._document_path, _execution_fields(execution, self.history_days)))
                for dropped in merged[: -self.history_limit]:
                    if dropped in history:
                        writes.append(self._pb_delete(exec_col.document(dropped)._document_path))
                if fenced:
                    job_write_index[job_id] = len(writes)
                    writes.append(self._pb_set(ref._document_path, _job_fields(settlement.job) | {"history": keep, "settled_by": token}, snap.update_time))
                elif data is not None and executions:
                    job_write_index[job_id] = len(writes)
                    writes.append(self._pb_update(ref._document_path, {"history": keep}, snap.update_time))
            decided.update(round_decisions)
            if tick is not None:
                lost = sum(1 for applied in decided.values() if not applied)
                record = dataclasses.replace(tick, metrics=dataclasses.replace(tick.metrics, lease_lost=tick.metrics.lease_lost + lost))
                writes.append(self._pb_set(tick_path, _tick_fields(record, self.history_days)))
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
            snaps = self._get_all([jobs_col.document(s.job.id) for s in todo])
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
        jobs_col = self._col("jobs")
        refs = {job.id: jobs_col.document(job.id) for job in jobs}
        outcome: dict[str, str] = {}  # job id -> "created" | "updated" | "unchanged"
        todo = list(jobs)
        snaps = self._get_all(list(refs.values()))
        for _ in range(_SETTLE_ROUNDS):
            writes: list[Any] = []
            intents: list[tuple[Job, str, Job] | None] = []  # per write: (given, outcome, as written); None for a marker
            markers: dict[str, Any] = {}
            for job in todo:
                path = refs[job.id]._document_path
                snap = snaps.get(path)
                if snap is None or not snap.exists:
                    writes.append(self._pb_create(path, _job_fields(job) | {"history": []}))
                    intents.append((job, "created", job))
                    if job.idempotency_key is not None:
                        markers[job.idempotency_key] = self._marker_write(job)
                    continue
                data = snap.to_dict() or {}
                try:
                    stored: Job | None = self._job_from(snap)
                except StoreCorrupt:
                    stored = None  # an unreadable stored job is replaced by the snapshot's
                if unchanged_by_restore(stored, job):
                    outcome[job.id] = "unchanged"
                    continue
                epoch = data.get("lease_epoch")
                epoch = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0
                new = job.replace(lease_epoch=max(job.lease_epoch, epoch + 1))
                hidden = {k: data[k] for k in _HIDDEN_FIELDS if k in data}
                writes.append(self._pb_set(path, _job_fields(new) | hidden, snap.update_time))
                intents.append((job, "updated", new))
                old_key = data.get("idempotency_key")
                if old_key != job.idempotency_key:
                    if isinstance(old_key, str) and old_key not in markers:
                        markers[old_key] = self._pb_delete(self._idempotency_ref(old_key)._document_path)
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
            snaps = self._get_all([refs[job.id] for job, _, _, _ in again])
            todo = []
            for job, kind, written, retried in again:
                snap = snaps.get(refs[job.id]._document_path)
                if retried and snap is not None and snap.exists and self._job_from(snap) == written:
                    outcome[job.id] = kind  # our own earlier attempt of a retried RPC applied it
                else:
                    todo.append(job)
            if not todo:
                break
        else:
            raise StoreUnavailable(f"jobs {[job.id for job in todo]} kept changing while being restored; run the import again")
        for job in jobs:
            getattr(result, outcome[job.id]).append(job.id)

    def _marker_write(self, job: Job) -> Any:
        assert job.idempotency_key is not None
        marker = self._idempotency_ref(job.idempotency_key)
        return self._pb_set(marker._document_path, {"job_id": job.id, "idempotency_key": job.idempotency_key, "created_at": job.created_at})

    # -- heartbeat -----------------------------------------------------------
    def extend_leases(self, runs: Sequence[RunRef], *, now: datetime, lease_seconds: float) -> ExtendResult:
        """One BatchGetDocuments of the named jobs, then one BatchWrite of ``lease_until``
        updates, each preconditioned on the ``update_time`` just read: 2 RPCs whatever the
        batch size (none for an empty batch; no BatchWrite when no lease needs to move).

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
        jobs_col = self._col("jobs")
        target = now + timedelta(seconds=lease_seconds)
        refs = {run.job_id: jobs_col.document(run.job_id) for run in runs}
        snaps = self._get_all(list(refs.values()))
        holds: list[bool] = []
        writes: list[Any] = []
        write_for: dict[str, int] = {}  # job id -> index of its write (one write per document)
        for run in runs:
            snap = snaps.get(refs[run.job_id]._document_path)
            data = snap.to_dict() if snap is not None and snap.exists else None
            holds.append(_holds_lease(data, run))
            if holds[-1] and run.job_id not in write_for and not _lease_reaches(data, target):
                write_for[run.job_id] = len(writes)
                writes.append(self._pb_update(refs[run.job_id]._document_path, {"lease_until": target}, snap.update_time))
        failed: set[str] = set()
        if writes:
            codes, _, attempts = self._batch_write(writes, "extend_leases")
            failed = {job_id for job_id, index in write_for.items() if codes[index] != _OK}
            unsure = [job_id for job_id in failed if attempts > 1 and codes[write_for[job_id]] in (_FAILED_PRECONDITION, _NOT_FOUND)]
            if unsure:
                again = self._get_all([refs[job_id] for job_id in unsure])
                for job_id in unsure:
                    snap = again.get(refs[job_id]._document_path)
                    data = snap.to_dict() if snap is not None and snap.exists else None
                    mine = [run for run, held in zip(runs, holds) if held and run.job_id == job_id]
                    if all(_holds_lease(data, run) for run in mine) and _lease_reaches(data, target):
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
        return [self._execution_from(snap) for snap in self._query(query, "list_executions")]

    def recent_ticks(self, limit: int = 20) -> list[TickRecord]:
        from google.cloud.firestore_v1 import Query

        query = self._col("ticks").order_by("started_at", direction=Query.DESCENDING).limit(limit)
        return [self._tick_from(snap) for snap in self._query(query, "recent_ticks")]

