"""The store verbs over one in-memory document, shared by the memory and JSON stores.

The document is plain JSON data (what the JSON store writes to disk)::

    {"schema_version": 1,
     "jobs": {job_id: Job.to_dict(), ...},
     "executions": {job_id: [Execution.to_dict(), ...oldest first], ...},
     "ticks": [TickRecord.to_dict(), ...oldest first]}

:class:`JobTable` does no locking and no I/O: the calling store holds its lock
around each call and persists the document when the call reports ``dirty``.
Inner dicts are replaced, never mutated, so a failed write cannot leave a
half-changed job behind in a shared reference.

A stored job that does not decode (a hand edit; a status, timestamp or field that
is not what a job has) never takes a tick down: ``claim_due_jobs`` skips it, logs
it (ERROR, action ``stored_job_unreadable``) and lists it in
``ClaimResult.unreadable``, and claims the other due jobs. ``get_job``,
``list_jobs`` and ``update_job`` raise :class:`~scheduler.errors.StoreCorrupt`
naming it (a 503 that says which job to fix, where a KeyError was a 500);
``count_by_status`` leaves out unknown statuses; ``restore_jobs`` replaces it.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import operator
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import orjson

from scheduler import model
from scheduler.errors import ConflictError, JobNotFound, StoreCorrupt
from scheduler.model import AuditEntry, Execution, Job, JobStatus, Outcome, RunRef, Settlement, TickRecord, job_from_values, to_iso, utc
from storage.base import ClaimResult, ExtendResult, RestoreResult, SettleResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TICKS_KEPT = 200
_STATUSES = frozenset(status.value for status in JobStatus)
_FINISHED = frozenset((JobStatus.COMPLETED.value, JobStatus.CANCELLED.value))  # what retention deletes
_NEVER = "~"  # sorts after every RFC 3339 time: "no job will fall due"
# What Job.from_dict (and the claim's arithmetic) raise for a stored job that is not one.
_DECODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)

# -- the codec: Job <-> its stored dict ----------------------------------------------------
# Exactly Job.to_dict / Job.from_dict (tests/test_table_codec.py checks both ways), without
# their per-field type checks: every field read with one attrgetter/itemgetter call, the
# datetime and enum fields by position. A tick converts each of its jobs twice (claim,
# settle), so this is most of a JSON tick's CPU after the handlers.
_UTC = timezone.utc
_dumps, _UTC_Z = orjson.dumps, orjson.OPT_UTC_Z
_FIELDS = tuple(Job.__dataclass_fields__)
_get_fields = operator.attrgetter(*_FIELDS)
_get_items = operator.itemgetter(*_FIELDS)
_DATETIME_AT = tuple(i for i, name in enumerate(_FIELDS) if "datetime" in str(Job.__dataclass_fields__[name].type))
_ENUMS_AT = tuple(
    (i, cls, {member.value: member for member in cls})
    for i, name in enumerate(_FIELDS)
    if isinstance(cls := getattr(model, str(Job.__dataclass_fields__[name].type), None), type) and issubclass(cls, StrEnum)
)
_AUDIT_AT = _FIELDS.index("audit")
# Enum member -> its value: Enum.value is a Python-level descriptor, a dict lookup is not.
_VALUE_OF: dict[Any, str] = {member: member.value for enum in (*(cls for _, cls, _ in _ENUMS_AT), Outcome, model.Source) for member in enum}


# UTC instants written lately, and their text: a tick writes the same few for every job
# (its clock reading as updated_at, last_run_at and started_at; a shared fire time), and a
# dict hit costs 0.13 us where formatting costs 1.0. UTC only: two datetimes of one other
# zone that differ only in ``fold`` compare (and hash) equal but are different instants.
_ISO_MEMO: dict[datetime, str] = {}
_ISO_MEMO_SIZE = 4096


def _iso(value: datetime) -> str:
    """``to_iso(value)``. For a UTC datetime (what every stored one is) orjson writes it in
    0.4 us where ``isoformat`` takes 2.6 (a tick writes six per job); orjson leaves out a
    zero fraction, which the fixed width puts back."""
    if value.tzinfo is not _UTC:
        return to_iso(value)  # type: ignore[return-value]
    text = _ISO_MEMO.get(value)
    if text is None:
        text = _dumps(value, option=_UTC_Z)[1:-2].decode()  # without the quotes and the Z
        text = f"{text}Z" if value.microsecond else f"{text}.000000Z"
        if len(_ISO_MEMO) >= _ISO_MEMO_SIZE:
            _ISO_MEMO.clear()  # the next tick's instants are new ones anyway
        _ISO_MEMO[value] = text
    return text


def job_data(job: Job) -> dict[str, Any]:
    """``job.to_dict()``, faster."""
    values = list(_get_fields(job))
    for i in _DATETIME_AT:
        if values[i] is not None:
            values[i] = _iso(values[i])
    for i, _, _ in _ENUMS_AT:
        values[i] = _VALUE_OF.get(values[i], values[i])
    values[_AUDIT_AT] = [entry.to_dict() for entry in values[_AUDIT_AT]]
    data = dict(zip(_FIELDS, values))
    data["runs_remaining"] = job.runs_remaining
    return data


def job_from_data(data: dict[str, Any]) -> Job:
    """``Job.from_dict(data)``, faster when every field is present (a record this version
    wrote); anything else goes through ``from_dict`` itself. Raises what it raises."""
    try:
        values = list(_get_items(data))
    except (KeyError, TypeError):
        return Job.from_dict(data)
    for i in _DATETIME_AT:
        value = values[i]
        if value.__class__ is str:
            value = datetime.fromisoformat(value)
            values[i] = value if value.tzinfo is _UTC else utc(value)
    for i, cls, members in _ENUMS_AT:
        values[i] = members.get(values[i]) or cls(values[i])
    audit = values[_AUDIT_AT]
    values[_AUDIT_AT] = tuple(AuditEntry.from_dict(entry) for entry in audit) if audit else ()
    return job_from_values(*values)


def execution_data(execution: Execution) -> dict[str, Any]:
    """``execution.to_dict()``, faster."""
    out = {
        "job_id": execution.job_id, "fire_at": _iso(execution.fire_at), "attempt": execution.attempt, "tick_id": execution.tick_id,
        "outcome": _VALUE_OF[execution.outcome], "started_at": _iso(execution.started_at), "duration_ms": execution.duration_ms,
        "error": execution.error, "source": _VALUE_OF[execution.source],
    }
    if execution.task is not None:
        out["task"] = execution.task
    return out


def empty_document() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "jobs": {}, "executions": {}, "ticks": []}


class JobTable:
    """Store semantics (see :class:`storage.base.JobStore`) over ``doc``.

    Every mutating method sets ``self.dirty`` when it changed ``doc``.
    """

    def __init__(self, doc: dict[str, Any], *, history_limit: int) -> None:
        self.doc = doc
        self.history_limit = history_limit
        self.dirty = False
        # The claim's idle shortcut (the JSON store sets ``quiet_until`` from an earlier claim
        # over this very document): before that time nothing is due, so a claim scans nothing.
        self.quiet_until: str | None = None
        self.soonest: str | None = None  # set by a claim that scanned: when the next job falls due

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.doc["jobs"]

    def _get(self, job_id: str) -> dict[str, Any]:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    # -- jobs -------------------------------------------------------------
    def add_job(self, job: Job) -> tuple[Job, bool]:
        if job.idempotency_key is not None:
            for data in self.jobs.values():
                if data.get("idempotency_key") == job.idempotency_key:
                    return job_from_data(data), False
        if job.id in self.jobs:
            raise ConflictError(f"a job with id {job.id!r} already exists")
        self.jobs[job.id] = job_data(job)
        self.dirty = True
        return job, True

    def add_jobs(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        keys = {data.get("idempotency_key"): job_id for job_id, data in self.jobs.items() if data.get("idempotency_key") is not None}
        out: list[tuple[Job, bool]] = []
        for job in jobs:
            held = keys.get(job.idempotency_key) if job.idempotency_key is not None else None
            if held is not None or job.id in self.jobs:
                existing = held or job.id
                out.append((_decode(existing, self.jobs[existing]), False))
                continue
            self.jobs[job.id] = job_data(job)
            if job.idempotency_key is not None:
                keys[job.idempotency_key] = job.id
            self.dirty = True
            out.append((job, True))
        return out

    def get_job(self, job_id: str) -> Job:
        return _decode(job_id, self._get(job_id))

    def list_jobs(self, *, status: JobStatus | None, job_type: str | None, limit: int, after_id: str | None) -> list[Job]:
        out = []
        for job_id in sorted(self.jobs):
            if after_id is not None and job_id <= after_id:
                continue
            data = self.jobs[job_id]
            if status is not None and _field(data, "status") != status.value:
                continue
            if job_type is not None and _field(data, "job_type") != job_type:
                continue
            out.append(_decode(job_id, data))
            if len(out) >= limit:
                break
        return out

    def update_job(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        new = change(_decode(job_id, self._get(job_id)))
        if new.id != job_id:
            raise ValueError("update_job's change must not alter the job id")
        self.jobs[job_id] = job_data(new)
        self.dirty = True
        return new

    def _due_ids(self, now_iso: str, unreadable: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """(sort key, id) of the due jobs, earliest first. Only the fields that decide
        dueness are looked at (decoding every job each tick would cost); a job whose
        status or schedule fields are not what a stored job has goes to ``unreadable``.
        Sets :attr:`soonest`: the earliest time a job not due yet becomes due ("~" for never)."""
        due = []
        soonest = _NEVER
        for job_id, data in self.jobs.items():
            status = data.get("status") if data.__class__ is dict else None
            if status == "pending":
                when = data.get("next_run_at")
                if when.__class__ is str:
                    if when <= now_iso:
                        due.append((when, job_id))
                    elif when < soonest:
                        soonest = when
                elif when is not None and unreadable is not None:
                    unreadable[job_id] = f"next_run_at is {when!r}, not a timestamp"
            elif status == "running":
                until, when = data.get("lease_until"), data.get("next_run_at")
                if (until is not None and not isinstance(until, str)) or (when is not None and not isinstance(when, str)):
                    if unreadable is not None:
                        unreadable[job_id] = f"lease_until {until!r} or next_run_at {when!r} is not a timestamp"
                elif until is None or until <= now_iso:
                    due.append((when or "", job_id))
                elif until < soonest:
                    soonest = until
            elif status not in _STATUSES and unreadable is not None:
                unreadable[job_id] = f"status is {status!r}" if isinstance(data, dict) else f"not an object but a {type(data).__name__}"
        due.sort()
        self.soonest = soonest
        return due

    def count_due(self, now: datetime) -> int:
        return len(self._due_ids(to_iso(now)))

    def count_by_status(self) -> dict[str, int]:
        """Jobs whose status is not a known value are not counted (claims report them)."""
        counts = {status.value: 0 for status in JobStatus}
        for data in self.jobs.values():
            status = _field(data, "status")
            if status in counts:
                counts[status] += 1
        return counts

    # -- the tick ---------------------------------------------------------
    def _find_duplicate(self, tick: TickRecord, now: datetime, lease_seconds: float) -> TickRecord | None:
        if tick.occurrence_key is None:
            return None
        horizon = to_iso(now - timedelta(seconds=lease_seconds))
        for data in reversed(self.doc["ticks"]):
            if data["occurrence_key"] != tick.occurrence_key or data["tick_id"] == tick.tick_id:
                continue
            if data["finished_at"] is not None or data["started_at"] > horizon:
                return TickRecord.from_dict(data)
        return None

    def _put_tick(self, tick: TickRecord) -> None:
        ticks = [t for t in self.doc["ticks"] if t["tick_id"] != tick.tick_id]
        ticks.append(tick.to_dict())
        self.doc["ticks"] = ticks[-TICKS_KEPT:]
        self.dirty = True

    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        duplicate = self._find_duplicate(tick, now, lease_seconds)
        if duplicate is not None:
            return ClaimResult(duplicate_of=duplicate)
        now_iso = to_iso(now)
        if self.quiet_until is not None and now_iso < self.quiet_until:
            self.soonest = self.quiet_until
            return ClaimResult()  # nothing can be due yet: no job examined
        unreadable: dict[str, str] = {}  # job id -> what is wrong with it
        due = self._due_ids(now_iso, unreadable)
        if unreadable:
            self.soonest = None  # an unreadable job is met (and reported) by every claim
        result = ClaimResult(checked=len(self.jobs), due=len(due))
        lease_until = to_iso(now + timedelta(seconds=lease_seconds))
        for _, job_id in due:
            if len(result.claimed) >= limit:
                result.more_due = True
                break
            data = self.jobs[job_id]
            try:
                # Decoded before anything is written: a job that is not one is skipped, not fatal.
                claimed = data | {
                    "status": "running",
                    "lease_owner": tick.tick_id,
                    "lease_until": lease_until,
                    "lease_epoch": data["lease_epoch"] + 1,
                    "attempts": data["attempts"] + 1,
                    "updated_at": now_iso,
                }
                job = job_from_data(claimed)
            except _DECODE_ERRORS as exc:
                unreadable[job_id] = f"{type(exc).__name__}: {exc}"
                result.due -= 1
                continue
            if data["status"] == "running":
                result.recovered.add(job_id)
            self.jobs[job_id] = claimed
            result.claimed.append(job)
        for job_id, problem in unreadable.items():
            _log_unreadable(job_id, problem)
        result.unreadable = sorted(unreadable)
        if result.claimed:
            self._put_tick(tick)
        return result

    def settle_jobs(self, settlements: Sequence[Settlement], *, tick: TickRecord | None) -> SettleResult:
        result = SettleResult()
        for settlement in settlements:
            job_id = settlement.job.id
            current = self.jobs.get(job_id)
            fenced = (
                current is not None
                and current["lease_owner"] == settlement.expected_owner
                and current["lease_epoch"] == settlement.expected_epoch
            )
            executions = settlement.executions
            if fenced:
                self.jobs[job_id] = job_data(settlement.job)
                result.applied.append(job_id)
            else:
                executions = tuple(_as_lost(e) for e in executions)
                result.lost.append(job_id)
            self._append_executions(job_id, executions)
        if tick is not None:
            self._put_tick(dataclasses.replace(tick, metrics=dataclasses.replace(tick.metrics, lease_lost=tick.metrics.lease_lost + len(result.lost))))
        return result

    def extend_leases(self, runs: Sequence[RunRef], *, now: datetime, lease_seconds: float) -> ExtendResult:
        """Fenced on status, owner and epoch; dirties the document only when a
        ``lease_until`` actually moves (a heartbeat that changes nothing writes nothing)."""
        result = ExtendResult()
        # to_iso is fixed-width, so ISO strings compare as the instants they name.
        target = to_iso(now + timedelta(seconds=lease_seconds))
        for run in runs:
            data = self.jobs.get(run.job_id)
            if (
                data is None
                or data.get("status") != JobStatus.RUNNING.value
                or data.get("lease_owner") != run.lease_owner
                or data.get("lease_epoch") != run.lease_epoch
            ):
                result.lost.append(run.job_id)
                continue
            current = data.get("lease_until")
            if not isinstance(current, str) or current < target:  # never moves a lease backwards
                self.jobs[run.job_id] = data | {"lease_until": target}
                self.dirty = True
            result.extended.append(run.job_id)
        return result

    # -- import -----------------------------------------------------------
    def restore_jobs(self, jobs: Sequence[Job]) -> RestoreResult:
        """The whole batch in this one call, so one locked write (one file replacement
        on the JSON store) per batch. A stored job that does not decode is replaced."""
        result = RestoreResult()
        for job in jobs:
            current = self.jobs.get(job.id)
            if current is None:
                self.jobs[job.id] = job_data(job)
                self.dirty = True  # at once: the JSON store drops its cache if a later job raises
                result.created.append(job.id)
                continue
            if unchanged_by_restore(_decoded_or_none(current), job):
                result.unchanged.append(job.id)
                continue
            stored_epoch = current.get("lease_epoch")
            if not isinstance(stored_epoch, int) or isinstance(stored_epoch, bool):
                stored_epoch = 0
            # Above the stored epoch: a tick still holding the job has its settle refused.
            self.jobs[job.id] = job_data(job.replace(lease_epoch=max(job.lease_epoch, stored_epoch + 1)))
            self.dirty = True
            result.updated.append(job.id)
        return result

    # -- retention --------------------------------------------------------
    def delete_finished_jobs(self, *, before: datetime, limit: int) -> int:
        """One pass over the jobs (the stores' hourly housekeeping); dirties the document
        only when something is deleted."""
        before_iso = to_iso(before)
        old = [
            (updated, job_id)
            for job_id, data in self.jobs.items()
            if data.__class__ is dict and data.get("status") in _FINISHED and (updated := data.get("updated_at")).__class__ is str and updated < before_iso
        ]
        for _, job_id in heapq.nsmallest(limit, old):
            del self.jobs[job_id]
            self.doc["executions"].pop(job_id, None)
            self.dirty = True
        return min(limit, len(old)) if limit > 0 else 0

    def _append_executions(self, job_id: str, executions: Sequence[Execution]) -> None:
        if not executions:
            return
        history = self.doc["executions"].get(job_id, []) + [execution_data(e) for e in executions]
        self.doc["executions"][job_id] = history[-self.history_limit :]
        self.dirty = True

    # -- history ----------------------------------------------------------
    def list_executions(
        self,
        *,
        job_id: str | None,
        outcome: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[Execution]:
        if job_id is not None:
            pools = [self.doc["executions"].get(job_id, [])]
        else:
            pools = list(self.doc["executions"].values())
        since_iso, until_iso = to_iso(since), to_iso(until)
        rows = [
            row
            for pool in pools
            for row in pool
            if (outcome is None or row["outcome"] == outcome)
            and (since_iso is None or row["started_at"] >= since_iso)
            and (until_iso is None or row["started_at"] < until_iso)
        ]
        rows.sort(key=lambda row: row["started_at"], reverse=True)
        return [Execution.from_dict(row) for row in rows[:limit]]

    def recent_ticks(self, limit: int) -> list[TickRecord]:
        ticks = sorted(self.doc["ticks"], key=lambda t: t["started_at"], reverse=True)
        return [TickRecord.from_dict(t) for t in ticks[:limit]]


def _as_lost(execution: Execution) -> Execution:
    return dataclasses.replace(execution, outcome=Outcome.LEASE_LOST)


def _field(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, dict) else None


def _decode(job_id: str, data: Any) -> Job:
    """The stored job, or StoreCorrupt naming it (a clean 503 naming the job to fix,
    where a bare KeyError would be a 500)."""
    try:
        return job_from_data(data)
    except _DECODE_ERRORS as exc:
        raise StoreCorrupt(f"stored job {job_id!r} cannot be read ({type(exc).__name__}: {exc}); fix or remove it in the store") from None


def _log_unreadable(job_id: str, problem: str) -> None:
    log.error(
        "A stored job cannot be read; the claim skipped it",
        extra={"json_fields": {"action": "stored_job_unreadable", "job_id": job_id, "error": problem}},
    )


def _decoded_or_none(data: dict[str, Any]) -> Job | None:
    try:
        return job_from_data(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def unchanged_by_restore(stored: Job | None, wanted: Job) -> bool:
    """``restore_jobs``' "unchanged": equal but for a lease epoch the store has already
    moved past (the mark an earlier import of the same job leaves)."""
    return stored is not None and stored.lease_epoch >= wanted.lease_epoch and stored.replace(lease_epoch=wanted.lease_epoch) == wanted


class TableStore:
    """The :class:`~storage.base.JobStore` verbs for stores built on a :class:`JobTable`.

    Subclasses provide :meth:`_call`, which runs one table verb atomically (holding
    whatever locks they need) and persists the document when the verb dirtied it.
    """

    kind = "table"

    def _call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def add_job(self, job: Job) -> tuple[Job, bool]:
        return self._call("add_job", job)

    def add_jobs(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        return self._call("add_jobs", jobs)

    def get_job(self, job_id: str) -> Job:
        return self._call("get_job", job_id)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[Job]:
        return self._call("list_jobs", status=status, job_type=job_type, limit=limit, after_id=after_id)

    def update_job(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        return self._call("update_job", job_id, change)

    def count_due(self, now: datetime) -> int:
        return self._call("count_due", now)

    def count_by_status(self) -> dict[str, int]:
        return self._call("count_by_status")

    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        return self._call("claim_due_jobs", now=now, tick=tick, lease_seconds=lease_seconds, limit=limit)

    def settle_jobs(self, settlements: Sequence[Settlement], *, tick: TickRecord | None) -> SettleResult:
        return self._call("settle_jobs", settlements, tick=tick)

    def extend_leases(self, runs: Sequence[RunRef], *, now: datetime, lease_seconds: float) -> ExtendResult:
        if not runs:
            return ExtendResult()  # no lock, no read
        return self._call("extend_leases", runs, now=now, lease_seconds=lease_seconds)

    def restore_jobs(self, jobs: Sequence[Job]) -> RestoreResult:
        if not jobs:
            return RestoreResult()
        return self._call("restore_jobs", jobs)

    def delete_finished_jobs(self, *, before: datetime, limit: int) -> int:
        return self._call("delete_finished_jobs", before=before, limit=limit)

    def list_executions(
        self,
        *,
        job_id: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        return self._call("list_executions", job_id=job_id, outcome=outcome, since=since, until=until, limit=limit)

    def recent_ticks(self, limit: int = 20) -> list[TickRecord]:
        return self._call("recent_ticks", limit)
