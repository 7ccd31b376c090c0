"""The Firestore store's operator verbs: add, read, list, update, count, import, history.

Not on the tick's hot path: reads and writes go through the raw layer of
:class:`~storage.firestore_rpc.FirestoreRpc` where a verb already knows its documents,
and through google-cloud-firestore's public queries where it searches (list, count,
history). Every write is atomic per job: a Commit with preconditions (add, update)
or preconditioned writes in a BatchWrite (import).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from scheduler.errors import ConflictError, JobNotFound, StoreCorrupt, StoreError, StoreUnavailable
from scheduler.model import Execution, Job, JobStatus, TickRecord
from storage import firestore_codec as codec
from storage.base import RestoreResult, add_each, split_at_repeated_ids
from storage.firestore_rpc import _ALREADY_EXISTS, _FAILED_PRECONDITION, _NOT_FOUND, _OK, FirestoreRpc, _Paths
from storage.table import unchanged_by_restore

_UPDATE_ATTEMPTS = 10
_RESTORE_ROUNDS = 5
_RESTORE_WRITES_PER_RPC = 500  # the documented cap of a Firestore write batch
_COMMIT_WRITES = 500
_FINISHED = ("completed", "cancelled")  # what retention deletes


class FirestoreJobs(FirestoreRpc):
    """The verbs of :class:`~storage.base.JobStore` that are not the tick's."""

    # -- jobs ----------------------------------------------------------------
    def _idempotency_path(self, key: str) -> str:
        return self._path("idempotency", f"idem_{codec.sha(key)}")

    def _marker_write(self, job: Job) -> Any:
        assert job.idempotency_key is not None
        data = {"job_id": job.id, "idempotency_key": job.idempotency_key, "created_at": job.created_at}
        return codec.set_write(self._idempotency_path(job.idempotency_key), data)

    def add_job(self, job: Job) -> tuple[Job, bool]:
        """One Commit creating the job and its idempotency marker. A marker whose job is gone
        (deleted by retention, or by Firestore's TTL on finished jobs, which leaves markers
        behind) is taken over, preconditioned on the version read."""
        path = self._path("jobs", job.id)
        marker = self._idempotency_path(job.idempotency_key) if job.idempotency_key is not None else None
        marker_data = {"job_id": job.id, "idempotency_key": job.idempotency_key, "created_at": job.created_at}
        marker_write = codec.create_write(marker, marker_data) if marker is not None else None
        for _ in range(_UPDATE_ATTEMPTS):
            writes = [self._job_write(path, job, {"history": []}, create=True)] + ([marker_write] if marker_write is not None else [])
            outcome: dict[str, int] = {}

            def conflict(exc: Exception, attempt: int, outcome: dict[str, int] = outcome) -> None:
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
                if not docs[path].exists:
                    marker_write = codec.set_write(marker, marker_data, docs[marker].update_time)  # a stale marker: take it over
                    continue
            current = docs[path]
            if current.exists and outcome["conflict"] > 1 and self._job_from(current) == job:
                return job, True
            raise ConflictError(f"a job with id {job.id!r} already exists")
        raise StoreUnavailable(f"job {job.id!r}: its idempotency key kept changing while it was added; try again")

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

    # -- retention ---------------------------------------------------------
    def delete_finished_jobs(self, *, before: datetime, limit: int) -> int:
        """Two bounded library queries (``status == s AND updated_at < before ORDER BY
        updated_at LIMIT limit`` for ``completed`` and ``cancelled``, reading only
        ``history`` and ``idempotency_key``), the ``limit`` oldest of both; then Commits of
        whole jobs, at most :data:`_COMMIT_WRITES` writes each: a job's delete
        (preconditioned on the version read), its execution records' and its idempotency
        marker's. A Commit refused because one of its jobs changed meanwhile is redone job by
        job, so each job goes with its history, or stays with it."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        if limit <= 0:
            return 0
        col = self._col("jobs")
        prefix = self._prefix("jobs")

        def step(_: int) -> list[tuple[datetime, str, dict[str, Any], Any]]:
            found = []
            for status in _FINISHED:
                query = col.where(filter=FieldFilter("status", "==", status)).where(filter=FieldFilter("updated_at", "<", before))
                for snap in query.order_by("updated_at").limit(limit).select(["history", "idempotency_key", "updated_at"]).stream(retry=self._no_retry(), timeout=self.rpc_timeout):
                    data = snap.to_dict() or {}
                    found.append((data.get("updated_at") or before, snap.id, data, snap.update_time.timestamp_pb()))
            return found

        old = sorted(self._retrying("delete_finished_jobs", step), key=lambda item: (item[0], item[1]))[:limit]
        exec_prefix = self._prefix("executions")
        units: list[list[Any]] = []  # one job's writes each
        for _, job_id, data, update_time in old:
            delete = codec.delete_write(prefix + job_id)
            delete.current_document.update_time.CopyFrom(update_time)
            unit = [delete] + [codec.delete_write(exec_prefix + h) for h in data.get("history") or [] if isinstance(h, str)]
            if isinstance(data.get("idempotency_key"), str):
                unit.append(codec.delete_write(self._idempotency_path(data["idempotency_key"])))
            units.append(unit)
        deleted = 0
        batch: list[list[Any]] = []
        for unit in [*units, []]:  # the empty unit flushes the last batch
            if batch and (not unit or sum(map(len, batch)) + len(unit) > _COMMIT_WRITES):
                deleted += self._delete_units(batch)
                batch = []
            if unit:
                batch.append(unit)
        return deleted

    def _delete_units(self, units: list[list[Any]]) -> int:
        """Commit ``units`` (each a job's delete writes) together; if one of their jobs changed
        (the commit is refused as a whole), each alone. Returns the jobs deleted."""
        refused: dict[str, int] = {}

        def changed(exc: Exception, attempt: int) -> None:
            refused["attempt"] = attempt

        self._commit([w for unit in units for w in unit], "delete_finished_jobs", on_error=changed)
        if not refused:
            return len(units)
        if len(units) > 1:
            return sum(self._delete_units([unit]) for unit in units)
        # One job, refused: changed since the read (left alone), or gone by our own earlier attempt.
        return int(refused["attempt"] > 1 and not self._get(units[0][0].delete).exists)

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
        :data:`_RESTORE_ROUNDS` rounds. An id given twice is applied in order (the
        batch is split before the repeat: a request may write a document only once).
        """
        result = RestoreResult()
        for chunk in split_at_repeated_ids(jobs):
            self._restore_chunk(chunk, result)
        return result

    def _restore_chunk(self, jobs: list[Job], result: RestoreResult) -> None:
        prefix = self._prefix("jobs")
        paths = {job.id: prefix + job.id for job in jobs}
        outcome: dict[str, str] = {}  # job id -> "created" | "updated" | "unchanged"
        todo = list(jobs)
        docs = self._get_all(_Paths(paths.values()))
        for _ in range(_RESTORE_ROUNDS):
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
