"""Snapshots: export every job (and optionally its history) to one checksummed file,
and import such a file into any store.

Only :class:`~storage.base.JobStore` verbs are used, so a snapshot taken from one
kind of store (JSON file, memory, Firestore) restores into any other.

File format (``version`` 1)::

    {"format": "crontick-snapshot",
     "version": 1,
     "exported_at": "<RFC 3339>",
     "store": "<kind of the source store>",
     "with_history": true | false,
     "jobs": [Job.to_dict(), ... ordered by id],
     "executions": [Execution.to_dict(), ...],      # only with history
     "checksum": "sha256:<hex>"}

``checksum`` is the SHA-256 of the canonical JSON (keys sorted, no whitespace,
UTF-8) of the whole document without the ``checksum`` key, so any edit of any
field is detected.

Import checks the *whole* file first and writes nothing if anything is wrong.
Then it hands the jobs to ``restore_jobs`` in batches of ``IMPORT_BATCH``; per
job: a job absent from the store is added; a job present and different is
overwritten with the snapshot's state with a lease epoch above the stored one,
so a tick still holding the job cannot settle over the restored state; a job
present and equal is left alone. Importing the same file twice therefore gives
the same state. Jobs in the store that are not in the file are left untouched.

Execution history in a snapshot is an archive: no store verb writes history
outside a tick's settlement, so import restores jobs only.

An export pages through ``list_jobs``; it is not one transaction, so a job a
tick changes during the export is captured either before or after that change.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scheduler.errors import CrontickError
from scheduler.jobspec import DEFAULT_LIMITS, JobLimits, job_problems
from scheduler.model import Execution, Job, JobStatus, to_iso
from storage.base import JobStore, iter_jobs

FORMAT = "crontick-snapshot"
VERSION = 1
# Executions exported per job. Stores keep a bounded history per job (SCHEDULER_HISTORY_LIMIT),
# so this is a guard, not a expected limit; a job that reaches it is listed in the summary.
MAX_EXECUTIONS_PER_JOB = 10_000


class SnapshotError(CrontickError):
    """The snapshot file is unreadable or invalid; ``problems`` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__("snapshot refused, nothing was written:\n  " + "\n  ".join(shown) + more)
        self.problems = problems


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def checksum(document: Mapping[str, Any]) -> str:
    body = {key: value for key, value in document.items() if key != "checksum"}
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


# -- export -------------------------------------------------------------------
@dataclass
class ExportSummary:
    jobs: int = 0
    executions: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    history_capped: list[str] = field(default_factory=list)


def build_snapshot(store: JobStore, *, now: datetime, with_history: bool = False) -> tuple[dict[str, Any], ExportSummary]:
    summary = ExportSummary(by_status={status.value: 0 for status in JobStatus})
    jobs: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    for job in iter_jobs(store):
        jobs.append(job.to_dict())
        summary.by_status[job.status.value] += 1
        if with_history:
            rows = store.list_executions(job_id=job.id, limit=MAX_EXECUTIONS_PER_JOB)
            if len(rows) >= MAX_EXECUTIONS_PER_JOB:
                summary.history_capped.append(job.id)
            executions.extend(row.to_dict() for row in reversed(rows))  # oldest first
    summary.jobs = len(jobs)
    summary.executions = len(executions)
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": to_iso(now),
        "store": store.kind,
        "with_history": with_history,
        "jobs": jobs,
    }
    if with_history:
        document["executions"] = executions
    document["checksum"] = checksum(document)
    return document, summary


def write_snapshot(document: Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write atomically (temporary file, fsync, rename): a crash leaves no half backup."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --force to overwrite it")
    data = json.dumps(document, indent=1, sort_keys=False, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- validation ---------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Snapshot:
    jobs: list[Job]
    executions: list[Execution]
    document: dict[str, Any]


def parse_snapshot(raw: bytes | str, *, limits: JobLimits = DEFAULT_LIMITS) -> Snapshot:
    """Parse and check everything; raise :class:`SnapshotError` listing every problem.

    Each job passes the same :func:`~scheduler.jobspec.job_problems` as the API's,
    so an import accepts nothing the API would refuse."""
    try:
        document = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise SnapshotError([f"not a JSON document: {exc}"]) from None
    if not isinstance(document, dict):
        raise SnapshotError(["the snapshot must be a JSON object"])
    if document.get("format") != FORMAT:
        raise SnapshotError([f"format is {document.get('format')!r}, expected {FORMAT!r}"])
    version = document.get("version")
    if not _is_int(version) or version != VERSION:
        raise SnapshotError([f"unsupported snapshot version {version!r}; this crontick reads version {VERSION}"])
    stated = document.get("checksum")
    actual = checksum(document)
    if stated != actual:
        raise SnapshotError([f"checksum mismatch: the file says {stated!r}, its content hashes to {actual!r}; the file was changed or truncated"])
    problems: list[str] = []
    raw_jobs = document.get("jobs")
    if not isinstance(raw_jobs, list):
        raise SnapshotError(["jobs must be a list"])
    jobs: list[Job] = []
    seen_ids: set[str] = set()
    seen_keys: dict[str, str] = {}
    for index, data in enumerate(raw_jobs):
        where = f"jobs[{index}]"
        if not isinstance(data, dict):
            problems.append(f"{where}: not an object")
            continue
        where = f"jobs[{index}] ({data.get('id')!r})"
        try:
            job = Job.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{where}: does not parse as a job: {type(exc).__name__}: {exc}")
            continue
        problems.extend(f"{where}: {problem.field}: {problem.message}" for problem in job_problems(job, limits))
        if job.id in seen_ids:
            problems.append(f"{where}: id appears twice")
        seen_ids.add(job.id)
        if job.idempotency_key is not None:
            other = seen_keys.setdefault(job.idempotency_key, job.id)
            if other != job.id:
                problems.append(f"{where}: idempotency_key is also used by job {other!r}")
        jobs.append(job)
    executions: list[Execution] = []
    raw_executions = document.get("executions", [])
    if not isinstance(raw_executions, list):
        problems.append("executions must be a list")
        raw_executions = []
    for index, data in enumerate(raw_executions):
        try:
            if not isinstance(data, dict):
                raise TypeError("not an object")
            executions.append(Execution.from_dict(data))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(f"executions[{index}]: {type(exc).__name__}: {exc}")
    if problems:
        raise SnapshotError(problems)
    return Snapshot(jobs=jobs, executions=executions, document=document)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# -- import -------------------------------------------------------------------
@dataclass
class ImportSummary:
    before: dict[str, int]
    after: dict[str, int] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    untouched: int = 0  # jobs in the store that the snapshot does not name
    unknown_types: list[str] = field(default_factory=list)
    dry_run: bool = False


IMPORT_BATCH = 1000  # jobs per restore_jobs call: one locked file rewrite each on the JSON store


def _same_state(stored: Job, wanted: Job) -> bool:
    """Equal but for a lease epoch the store has already moved past (an earlier import):
    what ``restore_jobs`` leaves "unchanged"; used to count a dry run."""
    return stored.replace(lease_epoch=wanted.lease_epoch) == wanted and stored.lease_epoch >= wanted.lease_epoch


def import_snapshot(
    store: JobStore,
    snapshot: Snapshot,
    *,
    known_types: Any = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Write ``snapshot``'s jobs into ``store`` (see the module docstring).

    Jobs go to :meth:`~storage.base.JobStore.restore_jobs` :data:`IMPORT_BATCH` at a
    time, in file order: on the JSON store one locked, fsync'd rewrite per batch
    instead of one per job. ``progress(done, total)`` is called after each batch
    written (never on a dry run). Every check runs before the first batch; a store
    failure part-way leaves the earlier batches written, and importing the same
    file again completes the import, since it is idempotent.
    """
    summary = ImportSummary(before=store.count_by_status(), dry_run=dry_run)
    existing: dict[str, Job] = {job.id: job for job in iter_jobs(store)}
    key_owner = {job.idempotency_key: job.id for job in existing.values() if job.idempotency_key is not None}
    problems = []
    for job in snapshot.jobs:
        owner = key_owner.get(job.idempotency_key) if job.idempotency_key is not None else None
        if owner is not None and owner != job.id:
            problems.append(f"job {job.id!r}: its idempotency_key is held by job {owner!r} in the store")
    if problems:
        raise SnapshotError(problems)
    if known_types is not None:
        summary.unknown_types = sorted({job.job_type for job in snapshot.jobs if job.job_type not in known_types})
    named = {job.id for job in snapshot.jobs}
    summary.untouched = sum(1 for job_id in existing if job_id not in named)
    if dry_run:
        for wanted in snapshot.jobs:
            stored = existing.get(wanted.id)
            if stored is None:
                summary.created += 1
            elif _same_state(stored, wanted):
                summary.unchanged += 1
            else:
                summary.updated += 1
        summary.after = summary.before
        return summary
    total = len(snapshot.jobs)
    for start in range(0, total, IMPORT_BATCH):
        batch = snapshot.jobs[start : start + IMPORT_BATCH]
        result = store.restore_jobs(batch)
        summary.created += len(result.created)
        summary.updated += len(result.updated)
        summary.unchanged += len(result.unchanged)
        if progress is not None:
            progress(start + len(batch), total)
    summary.after = store.count_by_status()
    return summary
