"""The Firestore store's RPC layer: its client and connection, counters, retries, and
raw document reads and writes (:class:`FirestoreRpc`, the base of
:class:`~storage.firestore.FirestoreStore`).

Reads come back as :class:`_Doc` (raw ``fields`` and ``update_time``, decoded on
demand by :mod:`storage.firestore_codec`); writes go out as raw ``Write`` messages.
Every RPC is counted (``rpc_counts``, ``docs_read``: the tests and ``make bench``
assert the cost of a tick with them), whether sent raw on the connection
(:mod:`storage.firestore_client`) or through the library's queries (its GAPIC
client's methods are wrapped to count). Transient errors are retried with backoff
for at most ``retry_deadline`` seconds, then raised as StoreUnavailable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from scheduler.errors import StoreError, StoreUnavailable
from scheduler.model import Job, JobStatus
from storage import firestore_codec as codec
from storage.firestore_client import Connection, gapic_api, make_client

log = logging.getLogger(__name__)

_OK, _NOT_FOUND, _ALREADY_EXISTS, _FAILED_PRECONDITION = 0, 5, 6, 9
_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # Firestore refuses requests over 10 MiB
_FINISHED = (JobStatus.COMPLETED, JobStatus.CANCELLED)
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


class FirestoreRpc:
    """Connection, counters, retries and raw reads/writes, for the store verbs built on it."""

    retention_days = 0  # finished jobs' expire_at = updated_at + this (0: no expire_at); the store sets it

    def __init__(self, *, project: str | None, database: str, collections: dict[str, str], rpc_timeout: float, retry_deadline: float) -> None:
        self.project = project
        self.database = database
        self.collections = collections
        self.rpc_timeout = rpc_timeout
        self.retry_deadline = retry_deadline
        self._client: Any = None
        self._conn: Connection | None = None
        self._client_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.rpc_counts: Counter[str] = Counter()
        self.docs_read = 0

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

    def _prefix(self, key: str) -> str:
        """``projects/…/documents/<collection>/``: a document's path is this plus its id."""
        return f"{self._connection.documents_path}/{self.collections[key]}/"

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
        """The whole job document; a finished (completed, cancelled) job gets ``expire_at``,
        ``updated_at`` + ``retention_days``: Firestore's TTL policy on it deletes the job."""
        write = codec.set_write(path, None, update_time)
        codec.put_job(write.update.fields, job)
        codec.put_fields(write.update.fields, hidden)
        if self.retention_days > 0 and job.status in _FINISHED:
            codec.set_timestamp(write.update.fields["expire_at"].timestamp_value, job.updated_at + timedelta(days=self.retention_days))
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
