"""The PostgreSQL store: jobs, execution history and tick records in four tables.

For teams whose data already lives in Cloud SQL for PostgreSQL. ``psycopg`` 3 and
``psycopg_pool`` are imported inside this module's functions only, so a service on
the JSON or Firestore store never loads them.

Schema
------
Versioned SQL files in ``storage/postgres_migrations/`` (``0001_init.sql``, ...),
applied in order by :func:`apply_migrations`: it holds ``pg_advisory_lock`` for the
whole run (two instances starting together apply each migration once), applies each
pending file in its own transaction together with its row in ``schema_migrations``
(version, file name, SHA-256, applied_at), and refuses to go on when an applied file
was edited since (its checksum changed). ``flask --app main db upgrade`` runs it;
``SCHEDULER_POSTGRES_MIGRATE_AT_START`` (default true in local/test/development, false
in staging/production) runs it from :meth:`PostgresStore.open`. A migration never
rewrites a table in place without a documented backfill.

Tables: ``crontick_jobs`` (one typed column per :class:`~scheduler.model.Job` field,
``idempotency_key`` UNIQUE; fields without a column, today ``audit``, in the ``extra``
JSON column as ``Job.to_dict`` writes them), ``crontick_executions`` (one row per attempt, ``seq``
orders a job's history), ``crontick_ticks`` (tick records) and
``crontick_tick_occurrences`` (one row per Cloud Scheduler occurrence key, the key
the primary key).

The tick: one statement to claim, one to settle
-----------------------------------------------
Claim (:data:`CLAIM_SQL`): ONE statement, ``WITH due AS (SELECT ... WHERE
(status='pending' AND next_run_at <= now) OR (status='running' AND lease_until <=
now) ORDER BY next_run_at LIMIT n+1 FOR UPDATE SKIP LOCKED) UPDATE ... RETURNING``,
read through the two partial indexes of 0001 (``status='pending'`` on
``next_run_at``, ``status='running'`` on ``lease_until``). Two claimers never take one
job: a row locked by one is skipped by the other, and a row changed since the
statement's snapshot is re-checked against the WHERE clause when locked. The same
statement checks the tick's occurrence key (duplicate detection, below), takes it
(``INSERT ... ON CONFLICT``), and stores the tick record when it claimed anything.
Only a tick that lost the race for an occurrence key to a concurrent tick runs it
again (and then finds the duplicate), and a claim that met a row failing to decode.

Settle (:data:`SETTLE_SQL`): ONE statement per batch: ``UPDATE crontick_jobs ... FROM
unnest(arrays) WHERE lease_owner = expected AND lease_epoch = expected``, the
executions inserted (``lease_lost`` for the refused ones), the executions beyond
``history_limit`` of those jobs deleted, and the tick record written with its
``lease_lost`` raised. Extend (the heartbeat): one statement per batch, fenced the same
way, locking the held rows and moving ``lease_until`` only forward. So an inline tick
costs 2 statements (1 when nothing is due) whatever the number of due jobs up to
``SCHEDULER_CLAIM_BATCH_SIZE``; :attr:`PostgresStore.statements` counts them.

Duplicate ticks (``occurrence_key``, see :meth:`storage.base.JobStore.claim_due_jobs`):
the occurrence row names the tick holding it. Another tick with the key is a duplicate
when the holder finished, or started less than ``lease_seconds`` ago; a stale holder's
row is taken over. The row is taken only when a job is due, so idle ticks write nothing.

Failures
--------
Connection errors, pool timeouts (``SCHEDULER_POSTGRES_CONNECT_TIMEOUT_SECONDS``) and
statement timeouts (``SCHEDULER_POSTGRES_STATEMENT_TIMEOUT_SECONDS``) raise
:class:`~scheduler.errors.StoreUnavailable` (HTTP 503); every statement is atomic, so
nothing is half written (a claim whose answer was lost leaves its jobs leased until
the lease expires, then they are recovered). A pooled connection is checked before
use, so the first call after a server restart does not fail on a dead connection.
A row that does not decode as a job (a value this version does not know, written by a
newer one or by hand) never fails a batch and is written nothing: the claim's SQL leaves
out rows whose ``misfire``, ``overlap``, ``payload`` or ``extra`` this version cannot read
(:data:`_DECODABLE`); a claimed row that still fails ``Job.from_dict`` is put back as it was
(:data:`UNCLAIM_SQL`, fenced) and the batch filled without it. Either way the job is logged
(ERROR ``stored_job_unreadable``) and listed in ``ClaimResult.unreadable``; reads of that
job raise :class:`~scheduler.errors.StoreCorrupt` naming it.

Retention
---------
Settles keep at most ``history_limit`` executions per settled job. Every
``SCHEDULER_POSTGRES_PRUNE_SECONDS`` a settle also runs :meth:`PostgresStore.prune`
after its own statement: tick records, occurrence rows and executions older than
``SCHEDULER_HISTORY_DAYS``, and executions beyond the history limit, are deleted in
batches of :data:`PRUNE_BATCH` rows (at most :data:`PRUNE_ROUNDS` batches per table),
so no statement holds locks for long.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduler.errors import ConflictError, JobNotFound, StoreCorrupt, StoreError, StoreUnavailable
from scheduler.model import Execution, Job, JobStatus, Misfire, Outcome, Overlap, RunRef, Settlement, Source, TickMetrics, TickRecord, to_iso
from storage.base import ClaimResult, ExtendResult, RestoreResult, SettleResult, add_each, split_at_repeated_ids
from storage.table import job_from_data, unchanged_by_restore

if TYPE_CHECKING:
    from scheduler.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("postgres_migrations")
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
ADVISORY_LOCK_KEY = 0x63726F6E7469636B  # "crontick": the key of the migration lock
PRUNE_BATCH = 1000
# Retention (delete_finished_jobs): one DELETE ... WHERE id IN (SELECT ... LIMIT), its jobs'
# executions deleted by the same statement.
DELETE_FINISHED_SQL = """
WITH gone AS (
    DELETE FROM crontick_jobs
    WHERE id IN (
        SELECT id FROM crontick_jobs
        WHERE status IN ('completed', 'cancelled') AND updated_at < %(before)s
        ORDER BY updated_at, id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    AND status IN ('completed', 'cancelled') AND updated_at < %(before)s
    RETURNING id
), history AS (
    DELETE FROM crontick_executions WHERE job_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone
"""
PRUNE_ROUNDS = 10
_CLAIM_ATTEMPTS = 3
_RESTORE_ATTEMPTS = 3

# The jobs table's columns, in Job field order: (column, element type of its array parameter, cast from it).
_JOB_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "text", ""),
    ("job_type", "text", ""),
    ("payload", "text", "::json"),
    ("status", "text", ""),
    ("next_run_at", "timestamptz", ""),
    ("fire_at", "timestamptz", ""),
    ("created_at", "timestamptz", ""),
    ("updated_at", "timestamptz", ""),
    ("schedule_at", "timestamptz", ""),
    ("cron", "text", ""),
    ("interval_seconds", "bigint", ""),
    ("timezone", "text", ""),
    ("misfire", "text", ""),
    ("misfire_grace_seconds", "bigint", ""),
    ("overlap", "text", ""),
    ("max_attempts", "bigint", ""),
    ("timeout_seconds", "float8", ""),
    ("attempts", "bigint", ""),
    ("last_run_at", "timestamptz", ""),
    ("last_outcome", "text", ""),
    ("last_error", "text", ""),
    ("created_by", "text", ""),
    ("idempotency_key", "text", ""),
    ("lease_owner", "text", ""),
    ("lease_until", "timestamptz", ""),
    ("lease_epoch", "bigint", ""),
    ("extra", "text", "::json"),
)
_NAMES = tuple(name for name, _, _ in _JOB_COLUMNS)
# Job fields kept in ``extra`` (as Job.to_dict writes them), and the typed ones.
_EXTRA_FIELDS = tuple(f.name for f in dataclasses.fields(Job) if f.name not in _NAMES)
# What a row must hold for this version to decode it; checked in SQL so that the claim writes
# nothing to a row it could not run (a value written by a newer version, or by hand).
_DECODABLE = (
    f"j.misfire IN ({', '.join(repr(m.value) for m in Misfire)}) AND j.overlap IN ({', '.join(repr(o.value) for o in Overlap)}) "
    "AND json_typeof(j.payload) = 'object' AND json_typeof(j.extra) = 'object'"
)


def _select_list(alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{name}::text" if name in ("payload", "extra") else f"{prefix}{name}" for name in _NAMES)


JOB_SELECT = _select_list()
_DUE = "((status = 'pending' AND next_run_at <= %(now)s) OR (status = 'running' AND (lease_until IS NULL OR lease_until <= %(now)s)))"
_DUE_J = _DUE.replace("status", "j.status").replace("next_run_at", "j.next_run_at").replace("lease_until", "j.lease_until")
_TICK_COLUMNS = "tick_id, started_at, source, occurrence_key, finished_at, metrics"
_TICK_UPSERT = (
    "ON CONFLICT (tick_id) DO UPDATE SET started_at = EXCLUDED.started_at, source = EXCLUDED.source, "
    "occurrence_key = EXCLUDED.occurrence_key, finished_at = EXCLUDED.finished_at, metrics = EXCLUDED.metrics"
)

CLAIM_SQL = f"""
WITH holder AS (
    SELECT o.tick_id, o.started_at AS marked_at, t.started_at, t.source, t.finished_at, t.metrics
    FROM crontick_tick_occurrences o LEFT JOIN crontick_ticks t ON t.tick_id = o.tick_id
    WHERE %(key)s::text IS NOT NULL AND o.occurrence_key = %(key)s AND o.tick_id <> %(tick_id)s
),
dup AS (
    SELECT * FROM holder WHERE finished_at IS NOT NULL OR coalesce(started_at, marked_at) > %(horizon)s
),
any_due AS (
    SELECT 1 FROM crontick_jobs WHERE {_DUE} LIMIT 1
),
occ AS (
    INSERT INTO crontick_tick_occurrences AS o (occurrence_key, tick_id, started_at)
    SELECT %(key)s, %(tick_id)s, %(started_at)s
    WHERE %(key)s::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dup) AND EXISTS (SELECT 1 FROM any_due)
    ON CONFLICT (occurrence_key) DO UPDATE SET tick_id = EXCLUDED.tick_id, started_at = EXCLUDED.started_at
    WHERE o.tick_id = EXCLUDED.tick_id
       OR (o.started_at <= %(horizon)s AND NOT EXISTS (
              SELECT 1 FROM crontick_ticks t WHERE t.tick_id = o.tick_id AND (t.finished_at IS NOT NULL OR t.started_at > %(horizon)s)))
    RETURNING 1
),
due AS (
    SELECT j.id, j.status, j.next_run_at, j.lease_owner, j.lease_until, j.attempts, j.updated_at FROM crontick_jobs j
    WHERE {_DUE_J} AND {_DECODABLE}
      AND j.id <> ALL(%(skip)b::text[])
      AND NOT EXISTS (SELECT 1 FROM dup)
      AND (%(key)s::text IS NULL OR EXISTS (SELECT 1 FROM occ))
    ORDER BY j.next_run_at NULLS FIRST, j.id
    LIMIT %(probe)s
    FOR UPDATE OF j SKIP LOCKED
),
chosen AS (
    SELECT * FROM due ORDER BY next_run_at NULLS FIRST, id LIMIT %(limit)s
),
bad AS (
    SELECT j.id FROM crontick_jobs j
    WHERE {_DUE_J} AND NOT ({_DECODABLE}) AND NOT EXISTS (SELECT 1 FROM dup)
    ORDER BY j.next_run_at NULLS FIRST, j.id LIMIT %(probe)s
),
claimed AS (
    UPDATE crontick_jobs j
    SET status = 'running', lease_owner = %(tick_id)s, lease_until = %(lease_until)s,
        lease_epoch = j.lease_epoch + 1, attempts = j.attempts + 1, updated_at = %(now)s
    FROM chosen c WHERE j.id = c.id
    RETURNING c.status, c.lease_owner, c.lease_until, c.attempts, c.updated_at, {_select_list("j")}
),
tick AS (
    INSERT INTO crontick_ticks ({_TICK_COLUMNS})
    SELECT %(tick_id)s, %(started_at)s, %(source)s, %(key)s, %(finished_at)s, %(metrics)s::jsonb
    WHERE EXISTS (SELECT 1 FROM claimed)
    {_TICK_UPSERT}
    RETURNING 1
)
SELECT (SELECT count(*) FROM due) AS due_count,
       (SELECT count(*) FROM any_due) AS any_due,
       (SELECT count(*) FROM occ) AS occ_taken,
       (SELECT count(*) FROM tick) AS tick_stored,
       (SELECT row_to_json(d)::text FROM dup d LIMIT 1) AS duplicate,
       (SELECT array_agg(id ORDER BY id) FROM bad) AS unreadable,
       c.*
FROM (SELECT 1) AS one LEFT JOIN claimed c ON true
"""

_SETTLE_INPUT = ", ".join(f"%({name})b::{kind}[]" for name, kind, _ in _JOB_COLUMNS)
SETTLE_SQL = f"""
WITH s AS (
    SELECT * FROM unnest(%(exp_owner)b::text[], %(exp_epoch)b::bigint[], {_SETTLE_INPUT})
        AS s(exp_owner, exp_epoch, {", ".join(_NAMES)})
),
applied AS (
    UPDATE crontick_jobs j SET {", ".join(f"{name} = s.{name}{cast}" for name, _, cast in _JOB_COLUMNS if name != "id")}
    FROM s WHERE j.id = s.id AND j.lease_owner = s.exp_owner AND j.lease_epoch = s.exp_epoch
    RETURNING j.id
),
e AS (
    SELECT * FROM unnest(%(e_job_id)b::text[], %(e_fire_at)b::timestamptz[], %(e_attempt)b::bigint[], %(e_tick_id)b::text[],
                         %(e_outcome)b::text[], %(e_started_at)b::timestamptz[], %(e_duration_ms)b::float8[],
                         %(e_error)b::text[], %(e_source)b::text[], %(e_task)b::text[])
        WITH ORDINALITY AS e(job_id, fire_at, attempt, tick_id, outcome, started_at, duration_ms, error, source, task, ord)
),
ranked AS (
    SELECT e.*, row_number() OVER (PARTITION BY e.job_id ORDER BY e.ord DESC) AS newer,
           count(*) OVER (PARTITION BY e.job_id) AS n
    FROM e
),
inserted AS (
    INSERT INTO crontick_executions (job_id, fire_at, attempt, tick_id, outcome, started_at, duration_ms, error, source, task)
    SELECT r.job_id, r.fire_at, r.attempt, r.tick_id,
           CASE WHEN r.job_id IN (SELECT id FROM applied) THEN r.outcome ELSE 'lease_lost' END,
           r.started_at, r.duration_ms, r.error, r.source, r.task::json
    FROM ranked r WHERE r.newer <= %(history_limit)s ORDER BY r.ord
    RETURNING 1
),
trimmed AS (
    DELETE FROM crontick_executions x USING (
        SELECT old.seq FROM (
            SELECT seq, job_id, row_number() OVER (PARTITION BY job_id ORDER BY seq DESC) AS rn
            FROM crontick_executions WHERE job_id IN (SELECT DISTINCT job_id FROM e)
        ) old
        JOIN (SELECT job_id, least(max(n), %(history_limit)s) AS n FROM ranked GROUP BY job_id) k ON k.job_id = old.job_id
        WHERE old.rn > %(history_limit)s - k.n
    ) d WHERE x.seq = d.seq
    RETURNING 1
),
tick AS (
    INSERT INTO crontick_ticks ({_TICK_COLUMNS})
    SELECT %(tick_id)s, %(t_started_at)s, %(t_source)s, %(t_key)s, %(t_finished_at)s,
           %(t_metrics)s::jsonb || jsonb_build_object('lease_lost', %(t_lease_lost)s::bigint + %(settled)s::bigint - (SELECT count(*) FROM applied))
    WHERE %(tick_id)s::text IS NOT NULL
    {_TICK_UPSERT}
    RETURNING 1
)
SELECT id, (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM trimmed) AS trimmed, (SELECT count(*) FROM tick) AS tick_stored
FROM (SELECT 1) AS one LEFT JOIN applied ON true
"""

EXTEND_SQL = """
WITH r AS (
    SELECT * FROM unnest(%(ids)b::text[], %(owners)b::text[], %(epochs)b::bigint[]) AS r(id, owner, epoch)
),
held AS (
    SELECT j.id, j.lease_until, r.owner, r.epoch FROM crontick_jobs j JOIN r ON j.id = r.id
    WHERE j.status = 'running' AND j.lease_owner = r.owner AND j.lease_epoch = r.epoch
    FOR UPDATE OF j
),
moved AS (
    UPDATE crontick_jobs j SET lease_until = %(target)s
    FROM held h WHERE j.id = h.id AND (h.lease_until IS NULL OR h.lease_until < %(target)s)
    RETURNING j.id
)
SELECT id, owner, epoch, (SELECT count(*) FROM moved) AS moved FROM held
"""

# A claimed row that passed the SQL check but not Job.from_dict: put back as it was, fenced.
UNCLAIM_SQL = """
UPDATE crontick_jobs j SET status = r.status, lease_owner = r.owner, lease_until = r.until,
    lease_epoch = j.lease_epoch - 1, attempts = r.attempts, updated_at = r.updated
FROM unnest(%(ids)b::text[], %(status)b::text[], %(owner)b::text[], %(until)b::timestamptz[], %(attempts)b::bigint[],
            %(updated)b::timestamptz[], %(epoch)b::bigint[]) AS r(id, status, owner, until, attempts, updated, epoch)
WHERE j.id = r.id AND j.lease_owner = %(tick_id)s AND j.lease_epoch = r.epoch
"""

_INSERT_VALUES = ", ".join(f"%({name})s{cast}" for name, _, cast in _JOB_COLUMNS)
ADD_SQL = f"INSERT INTO crontick_jobs ({', '.join(_NAMES)}) VALUES ({_INSERT_VALUES}) ON CONFLICT DO NOTHING RETURNING id"
UPDATE_SQL = f"UPDATE crontick_jobs SET {', '.join(f'{name} = %({name})s{cast}' for name, _, cast in _JOB_COLUMNS if name != 'id')} WHERE id = %(id)s"
RESTORE_INSERT_SQL = (
    f"INSERT INTO crontick_jobs ({', '.join(_NAMES)}) "
    f"SELECT {', '.join(f'u.{name}{cast}' for name, _, cast in _JOB_COLUMNS)} FROM unnest({_SETTLE_INPUT}) AS u({', '.join(_NAMES)}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)
RESTORE_UPDATE_SQL = (
    f"UPDATE crontick_jobs j SET {', '.join(f'{name} = u.{name}{cast}' for name, _, cast in _JOB_COLUMNS if name != 'id')} "
    f"FROM unnest({_SETTLE_INPUT}) AS u({', '.join(_NAMES)}) WHERE j.id = u.id RETURNING j.id"
)


# -- values ---------------------------------------------------------------------------
def _text(value: str | None) -> str | None:
    """Free text a handler produced (an error message) as PostgreSQL can store it: text
    columns hold no NUL character and only valid UTF-8, so those are replaced (U+FFFD)."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


# One encoder for every call: json.dumps with options builds a JSONEncoder each time (a
# settle encodes two objects per job: 5 us of a job's 20, measured).
_dumps = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode


def _job_values(job: Job) -> dict[str, Any]:
    """The job as statement parameters, by column name."""
    return {
        "id": job.id,
        "job_type": job.job_type,
        "payload": _dumps(job.payload),
        "status": job.status.value,
        "next_run_at": job.next_run_at,
        "fire_at": job.fire_at,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "schedule_at": job.schedule_at,
        "cron": job.cron,
        "interval_seconds": None if job.interval_seconds is None else int(job.interval_seconds),
        "timezone": job.timezone,
        "misfire": Misfire(job.misfire).value,
        "misfire_grace_seconds": int(job.misfire_grace_seconds),
        "overlap": Overlap(job.overlap).value,
        "max_attempts": int(job.max_attempts),
        "timeout_seconds": None if job.timeout_seconds is None else float(job.timeout_seconds),
        "attempts": int(job.attempts),
        "last_run_at": job.last_run_at,
        "last_outcome": _text(job.last_outcome),
        "last_error": _text(job.last_error),
        "created_by": job.created_by,
        "idempotency_key": job.idempotency_key,
        "lease_owner": job.lease_owner,
        "lease_until": job.lease_until,
        "lease_epoch": int(job.lease_epoch),
        "extra": _dumps({name: _plain(getattr(job, name)) for name in _EXTRA_FIELDS}),
    }


def _plain(value: Any) -> Any:
    """A Job field outside the typed columns as Job.to_dict writes it (JSON data)."""
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _job_arrays(jobs: Sequence[Job]) -> dict[str, list[Any]]:
    """Column-wise parameters for ``unnest``: one list per column."""
    rows = [_job_values(job) for job in jobs]
    return {name: [row[name] for row in rows] for name in _NAMES}


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is timezone.utc:
        return value
    return value.astimezone(timezone.utc)


def _job_from_row(row: Sequence[Any]) -> Job:
    """A row of :data:`JOB_SELECT` as a Job; raises what Job.from_dict raises if it does not decode.

    Decoded by the table codec's :func:`~storage.table.job_from_data` (``Job.from_dict``
    without its per-field work when every field is there, which it is in a row this
    version wrote; else ``from_dict`` itself): 30 -> 10-17 us a row in two measurements; a claim
    decodes every row it claims."""
    data = dict(zip(_NAMES, row))
    payload = json.loads(data["payload"])
    if not isinstance(payload, dict):
        raise ValueError(f"payload is a JSON {type(payload).__name__}, not an object")
    extra = json.loads(data.pop("extra"))
    if not isinstance(extra, dict):
        raise ValueError(f"extra is a JSON {type(extra).__name__}, not an object")
    data["payload"] = payload
    for name in _TIMESTAMP_COLUMNS:
        data[name] = _utc(data[name])
    return job_from_data(extra | data)


_TIMESTAMP_COLUMNS = tuple(name for name, kind, _ in _JOB_COLUMNS if kind == "timestamptz")


_DECODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def _decode_job(row: Sequence[Any]) -> Job:
    try:
        return _job_from_row(row)
    except _DECODE_ERRORS as exc:
        raise StoreCorrupt(f"PostgreSQL row crontick_jobs id={row[0]!r} is not a valid job ({exc!r}); crontick will not overwrite it") from None


def _execution_from_row(row: Sequence[Any]) -> Execution:
    job_id, fire_at, attempt, tick_id, outcome, started_at, duration_ms, error, source, task, seq = row
    try:
        return Execution(
            job_id=job_id, fire_at=_utc(fire_at), attempt=attempt, tick_id=tick_id, outcome=Outcome(outcome),
            started_at=_utc(started_at), duration_ms=duration_ms, error=error, source=Source(source),
            task=None if task is None else json.loads(task),
        )
    except (TypeError, ValueError) as exc:
        raise StoreCorrupt(f"PostgreSQL row crontick_executions seq={seq} (job {job_id!r}) is not a valid execution ({exc!r})") from None


def _metrics_from(data: Any) -> TickMetrics:
    data = json.loads(data) if isinstance(data, str) else (data or {})
    known = {f.name for f in dataclasses.fields(TickMetrics)}
    return TickMetrics(**{k: v for k, v in data.items() if k in known})


def _tick_from_row(row: Sequence[Any]) -> TickRecord:
    tick_id, started_at, source, occurrence_key, finished_at, metrics = row
    try:
        return TickRecord(tick_id=tick_id, started_at=_utc(started_at), source=Source(source), occurrence_key=occurrence_key, finished_at=_utc(finished_at), metrics=_metrics_from(metrics))
    except (TypeError, ValueError) as exc:
        raise StoreCorrupt(f"PostgreSQL row crontick_ticks tick_id={tick_id!r} is not a valid tick record ({exc!r})") from None


def _parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(timezone.utc)


def _metrics_json(tick: TickRecord) -> str:
    return _dumps(tick.metrics.to_dict())


# -- migrations --------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str  # "0001_init.sql"
    sql: str
    checksum: str  # sha256 of the file's bytes


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """The migration files of ``folder`` (default :data:`MIGRATIONS_DIR`), in version order.
    Raises StoreError for a file named outside ``NNNN_name.sql`` or a repeated version."""
    folder = folder or MIGRATIONS_DIR
    found: dict[str, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise StoreError(f"migration file {path.name!r} in {folder}: names must look like 0002_add_column.sql")
        version = match.group(1)
        if version in found:
            raise StoreError(f"migrations {found[version].name!r} and {path.name!r} share version {version}")
        raw = path.read_bytes()
        found[version] = Migration(version, path.name, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest())
    return [found[v] for v in sorted(found)]


_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def apply_migrations(
    dsn: str, *, folder: Path | None = None, connect_timeout: float = 10.0, lock_timeout: float = 120.0, password: Callable[[], str] | None = None
) -> list[str]:
    """Apply the pending migrations of ``folder`` to the database at ``dsn``; return the
    names applied by this call (empty when the schema was up to date).

    Holds ``pg_advisory_lock(ADVISORY_LOCK_KEY)`` on its own connection for the whole run
    (a second runner waits, up to ``lock_timeout`` seconds, then finds nothing left to
    do); each migration runs in one transaction with its ``schema_migrations`` row, so a
    failed one leaves neither. Raises StoreError when an applied file's checksum changed,
    StoreUnavailable when the server cannot be reached or the lock not taken in time.
    ``password``, when given, is asked for the login (IAM login: storage/postgres_iam.py).
    """
    import psycopg

    migrations = load_migrations(folder)
    applied_now: list[str] = []
    login = {"password": password()} if password is not None else {}
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, int(connect_timeout)), **login) as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(lock_timeout * 1000)}ms",))
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            try:
                conn.execute(_MIGRATIONS_TABLE)
                applied = {version: (name, checksum) for version, name, checksum in conn.execute("SELECT version, name, checksum FROM schema_migrations")}
                for migration in migrations:
                    if migration.version in applied:
                        name, checksum = applied[migration.version]
                        if checksum != migration.checksum:
                            raise StoreError(
                                f"migration {migration.name} was changed after it was applied (as {name}, sha256 {checksum[:12]}..., "
                                f"now {migration.checksum[:12]}...); restore the file and add a new migration instead"
                            )
                        continue
                    started = time.monotonic()
                    with conn.transaction():
                        conn.execute(migration.sql.encode("utf-8"))  # bytes: no parameters, so "%" needs no escaping
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                    applied_now.append(migration.name)
                    log.info(
                        "Database migration applied",
                        extra={"json_fields": {"action": "postgres_migration_applied", "migration": migration.name, "duration_ms": round((time.monotonic() - started) * 1000, 1)}},
                    )
                unknown = sorted(set(applied) - {m.version for m in migrations})
                if unknown:
                    log.warning(
                        "The database has migrations this version does not know (a newer version applied them)",
                        extra={"json_fields": {"action": "postgres_schema_newer", "versions": unknown}},
                    )
            finally:
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreUnavailable(f"another instance holds the migration lock for over {lock_timeout:g} s: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot apply the PostgreSQL migrations: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"a PostgreSQL migration failed: {exc}") from exc
    return applied_now


def _iam_password() -> Callable[[], str]:
    from storage.postgres_iam import IamTokenPassword

    return IamTokenPassword()


# -- the store ---------------------------------------------------------------------------
class PostgresStore:
    """:class:`~storage.base.JobStore` on PostgreSQL (see the module docstring)."""

    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        history_limit: int = 50,
        history_days: int = 30,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        migrate_at_start: bool = True,
        prune_seconds: float = 600.0,
        migrations: Path | None = None,
        password: Callable[[], str] | None = None,
    ) -> None:
        self.dsn = dsn
        self.password = password  # asked at each new connection (IAM login: storage/postgres_iam.py)
        self.history_limit = history_limit
        self.history_days = history_days
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.migrate_at_start = migrate_at_start
        self.prune_seconds = prune_seconds
        self.migrations = migrations
        self._pool: Any = None
        self._pool_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.statements: Counter[str] = Counter()  # statements sent, by verb (benchmarks and tests read it)
        self._last_prune = time.monotonic()
        self._prune_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresStore:
        migrate = settings.postgres_migrate_at_start
        if migrate is None:  # default: on where a developer runs it, off where releases run `db upgrade`
            migrate = settings.environment in ("local", "test", "development")
        assert settings.postgres_dsn is not None  # Settings._check_postgres requires it
        return cls(
            settings.postgres_dsn,
            history_limit=settings.history_limit,
            history_days=settings.history_days,
            pool_size=settings.postgres_pool_size,
            connect_timeout=settings.postgres_connect_timeout_seconds,
            statement_timeout=settings.postgres_statement_timeout_seconds,
            migrate_at_start=migrate,
            prune_seconds=settings.postgres_prune_seconds,
            password=_iam_password() if settings.postgres_iam_auth else None,
        )

    # -- connections ----------------------------------------------------------------------
    @property
    def statement_count(self) -> int:
        with self._count_lock:
            return sum(self.statements.values())

    def reset_counters(self) -> None:
        with self._count_lock:
            self.statements.clear()

    def _configure(self, conn: Any) -> None:
        # Timestamps come back in UTC (datetime.timezone.utc); a statement that runs past the
        # limit is cancelled by the server and reported as unavailable, never left hanging.
        conn.execute(
            "SELECT set_config('TimeZone', 'UTC', false), set_config('statement_timeout', %s, false)",
            (f"{int(self.statement_timeout * 1000)}ms",),
        )

    def _get_pool(self) -> Any:
        with self._pool_lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                options = {"autocommit": True, "connect_timeout": max(2, int(round(self.connect_timeout))), "application_name": "crontick"}
                password = self.password
                self._pool = ConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    # A callable is asked at each new connection (psycopg_pool >= 3.3): a fresh token.
                    kwargs=options if password is None else (lambda: options | {"password": password()}),
                    configure=self._configure,
                    check=ConnectionPool.check_connection,
                    timeout=self.connect_timeout,
                    # Give up growing soon: a new request starts a fresh attempt at once, so the first
                    # call after a server restart connects instead of waiting out a long backoff.
                    reconnect_timeout=max(1.0, self.connect_timeout),
                    reconnect_failed=lambda pool: log.warning(
                        "PostgreSQL unreachable; the pool stopped reconnecting until the next call",
                        extra={"json_fields": {"action": "postgres_reconnect_failed"}},
                    ),
                    open=False,
                    name="crontick",
                )
                self._pool.open(wait=False)
            return self._pool

    @contextmanager
    def _connection(self, what: str) -> Iterator[Any]:
        """A pooled connection (autocommit): psycopg's failures as crontick's store errors."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._get_pool().connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(f"PostgreSQL {what}: no connection within {self.connect_timeout:g} s ({exc})") from exc
        except psycopg.errors.QueryCanceled as exc:
            raise StoreUnavailable(f"PostgreSQL {what} timed out: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL {what} failed: {exc}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise StoreUnavailable(f"PostgreSQL {what}: the schema is missing ({exc}); run `flask --app main db upgrade`") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {what} failed: {type(exc).__name__}: {exc}") from exc

    def _execute(self, conn: Any, what: str, sql: str, params: Any = None) -> Any:
        with self._count_lock:
            self.statements[what] += 1
        return conn.execute(sql, params)

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> None:
        """Apply pending migrations (when ``migrate_at_start``), then check the schema has every
        migration this version knows. Raises StoreError naming the missing ones."""
        if self.migrate_at_start:
            self.migrate()
        wanted = [m.name for m in load_migrations(self.migrations)]
        with self._connection("open") as conn:
            exists = self._execute(conn, "open", "SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
            applied = {row[0] for row in self._execute(conn, "open", "SELECT name FROM schema_migrations")} if exists else set()
        missing = [name for name in wanted if name not in applied]
        if missing:
            raise StoreError(f"the PostgreSQL schema lacks migration(s) {', '.join(missing)}; run `flask --app main db upgrade` (or SCHEDULER_POSTGRES_MIGRATE_AT_START=true)")

    def migrate(self) -> list[str]:
        """:func:`apply_migrations` with this store's login; the names applied now."""
        return apply_migrations(self.dsn, folder=self.migrations, connect_timeout=self.connect_timeout, password=self.password)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # -- jobs -----------------------------------------------------------------------------
    def _unique_violation(self, exc: Exception) -> ConflictError:
        constraint = getattr(getattr(exc, "diag", None), "constraint_name", None) or ""
        field = "idempotency_key" if "idempotency" in constraint else "id"
        return ConflictError(f"another job already has this {field} ({constraint})")

    def add_job(self, job: Job) -> tuple[Job, bool]:
        """One INSERT ... ON CONFLICT DO NOTHING; on a conflict, one read decides which:
        the idempotency key (the existing job returned) or the id (ConflictError)."""
        params = _job_values(job)
        with self._connection("add_job") as conn:
            for _ in range(3):
                if self._execute(conn, "add_job", ADD_SQL, params).fetchone() is not None:
                    return job, True
                if job.idempotency_key is not None:
                    row = self._execute(conn, "add_job", f"SELECT {JOB_SELECT} FROM crontick_jobs WHERE idempotency_key = %s", (job.idempotency_key,)).fetchone()
                    if row is not None:
                        return _decode_job(row), False
                if self._execute(conn, "add_job", "SELECT 1 FROM crontick_jobs WHERE id = %s", (job.id,)).fetchone() is not None:
                    raise ConflictError(f"a job with id {job.id!r} already exists")
                # The conflicting job was changed or removed between the two statements: try again.
        raise StoreUnavailable(f"job {job.id!r}: its id or idempotency key kept changing while it was added; try again")

    def add_jobs(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """:meth:`add_job` per job (each its own INSERT ... ON CONFLICT DO NOTHING); a taken id
        returns the stored job with ``created=False`` instead of raising."""
        return add_each(self, jobs)

    def get_job(self, job_id: str) -> Job:
        with self._connection("get_job") as conn:
            row = self._execute(conn, "get_job", f"SELECT {JOB_SELECT} FROM crontick_jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _decode_job(row)

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[Job]:
        where, params = [], []
        if status is not None:
            where.append("status = %s")
            params.append(JobStatus(status).value)
        if job_type is not None:
            where.append("job_type = %s")
            params.append(job_type)
        if after_id is not None:
            where.append("id > %s")
            params.append(after_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._connection("list_jobs") as conn:
            rows = self._execute(conn, "list_jobs", f"SELECT {JOB_SELECT} FROM crontick_jobs {clause} ORDER BY id LIMIT %s", (*params, limit)).fetchall()
        jobs, bad = [], []
        for row in rows:
            try:
                jobs.append(_job_from_row(row))
            except _DECODE_ERRORS as exc:
                bad.append(f"{row[0]!r} ({exc})")
        if bad:
            raise StoreCorrupt(f"PostgreSQL rows of crontick_jobs that are not valid jobs: {', '.join(bad[:20])}; crontick will not overwrite them")
        return jobs

    def update_job(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        """SELECT ... FOR UPDATE, ``change``, UPDATE, in one transaction: ``change`` is called once."""
        import psycopg

        with self._connection("update_job") as conn:
            try:
                with conn.transaction():
                    row = self._execute(conn, "update_job", f"SELECT {JOB_SELECT} FROM crontick_jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
                    if row is None:
                        raise JobNotFound(job_id)
                    new = change(_decode_job(row))
                    if new.id != job_id:
                        raise ValueError("update_job's change must not alter the job id")
                    self._execute(conn, "update_job", UPDATE_SQL, _job_values(new))
            except psycopg.errors.UniqueViolation as exc:
                raise self._unique_violation(exc) from None
        return new

    def count_due(self, now: datetime) -> int:
        with self._connection("count_due") as conn:
            return int(self._execute(conn, "count_due", f"SELECT count(*) FROM crontick_jobs WHERE {_DUE}", {"now": now}).fetchone()[0])

    def count_by_status(self) -> dict[str, int]:
        counts = {status.value: 0 for status in JobStatus}
        with self._connection("count_by_status") as conn:
            for status, n in self._execute(conn, "count_by_status", "SELECT status, count(*) FROM crontick_jobs GROUP BY status"):
                counts[status] = int(n)
        return counts

    # -- the tick -----------------------------------------------------------------------------
    def claim_due_jobs(self, *, now: datetime, tick: TickRecord, lease_seconds: float, limit: int) -> ClaimResult:
        """:data:`CLAIM_SQL`, once (see the module docstring). Runs again only after losing the
        race for the occurrence key, or to fill the batch after a claimed row failed to decode
        (it is put back first, fenced, and left out of the next round)."""
        params = {
            "now": now,
            "key": tick.occurrence_key,
            "tick_id": tick.tick_id,
            "horizon": now - timedelta(seconds=lease_seconds),
            "started_at": tick.started_at,
            "source": tick.source.value,
            "finished_at": tick.finished_at,
            "metrics": _metrics_json(tick),
            "lease_until": now + timedelta(seconds=lease_seconds),
            "probe": limit + 1,
            "limit": limit,
            "skip": [],
        }
        result = ClaimResult()
        unreadable: dict[str, str] = {}
        with self._connection("claim_due_jobs") as conn:
            for _ in range(_CLAIM_ATTEMPTS + 2):
                rows = self._execute(conn, "claim_due_jobs", CLAIM_SQL, params).fetchall()
                due_count, any_due, occ_taken, _tick_stored, duplicate, bad = rows[0][:6]
                if duplicate is not None:
                    return ClaimResult(duplicate_of=self._duplicate(json.loads(duplicate), tick))
                for job_id in bad or ():
                    unreadable.setdefault(job_id, "a column holds a value this version does not know (misfire, overlap, payload or extra)")
                if tick.occurrence_key is not None and any_due and not occ_taken:
                    continue  # a concurrent tick took the occurrence first: run again to see its record
                undecodable = []
                for row in rows:
                    if row[6] is None:  # the LEFT JOIN's row when nothing was claimed
                        continue
                    was, job_row = row[6:11], row[11:]
                    try:
                        job = _job_from_row(job_row)
                    except _DECODE_ERRORS as exc:
                        unreadable[job_row[0]] = f"{type(exc).__name__}: {exc}"
                        undecodable.append((job_row, was))
                        continue
                    if was[0] == JobStatus.RUNNING.value:
                        result.recovered.add(job.id)
                    result.claimed.append(job)
                result.checked += int(due_count) + len(bad or ())
                result.due = len(result.claimed) + max(0, int(due_count) - int(params["limit"]))
                result.more_due = int(due_count) > int(params["limit"])
                if not undecodable:
                    break
                self._unclaim(conn, undecodable, tick.tick_id)
                params["skip"] = sorted(set(params["skip"]) | {job_row[0] for job_row, _ in undecodable})
                params["limit"] = limit - len(result.claimed)
                params["probe"] = params["limit"] + 1
                if params["limit"] <= 0:
                    result.more_due = True
                    break
            else:
                raise StoreUnavailable(f"occurrence {tick.occurrence_key!r} is contended by other ticks; try again")
        for job_id in sorted(unreadable):
            log.error(
                "A stored job cannot be read; the claim skipped it",
                extra={"json_fields": {"action": "stored_job_unreadable", "job_id": job_id, "error": unreadable[job_id], "store": "postgres"}},
            )
        result.unreadable = sorted(unreadable)
        result.claimed.sort(key=lambda j: (j.next_run_at is not None, j.next_run_at or now, j.id))
        return result

    def _unclaim(self, conn: Any, rows: list[tuple[Sequence[Any], Sequence[Any]]], tick_id: str) -> None:
        epoch = _NAMES.index("lease_epoch")
        params = {
            "tick_id": tick_id,
            "ids": [row[0] for row, _ in rows],
            "status": [was[0] for _, was in rows],
            "owner": [was[1] for _, was in rows],
            "until": [was[2] for _, was in rows],
            "attempts": [was[3] for _, was in rows],
            "updated": [was[4] for _, was in rows],
            "epoch": [row[epoch] for row, _ in rows],
        }
        self._execute(conn, "claim_due_jobs", UNCLAIM_SQL, params)

    @staticmethod
    def _duplicate(data: dict[str, Any], tick: TickRecord) -> TickRecord:
        """The tick record holding the occurrence (a synthetic one when it stored none)."""
        if data.get("started_at") is None:  # it took the occurrence but claimed nothing
            return TickRecord(tick_id=data["tick_id"], started_at=_parse_ts(data["marked_at"]), source=Source(tick.source), occurrence_key=tick.occurrence_key)
        return TickRecord(
            tick_id=data["tick_id"], started_at=_parse_ts(data["started_at"]), source=Source(data["source"]),
            occurrence_key=tick.occurrence_key, finished_at=_parse_ts(data.get("finished_at")), metrics=_metrics_from(data.get("metrics")),
        )

    def settle_jobs(self, settlements: Sequence[Settlement], *, tick: TickRecord | None) -> SettleResult:
        result = SettleResult()
        if not settlements and tick is None:
            return result
        params: dict[str, Any] = _job_arrays([s.job for s in settlements])
        params["exp_owner"] = [s.expected_owner for s in settlements]
        params["exp_epoch"] = [int(s.expected_epoch) for s in settlements]
        executions = [e for s in settlements for e in s.executions]
        params.update(
            e_job_id=[e.job_id for e in executions],
            e_fire_at=[e.fire_at for e in executions],
            e_attempt=[int(e.attempt) for e in executions],
            e_tick_id=[e.tick_id for e in executions],
            e_outcome=[Outcome(e.outcome).value for e in executions],
            e_started_at=[e.started_at for e in executions],
            e_duration_ms=[float(e.duration_ms) for e in executions],
            e_error=[_text(e.error) for e in executions],
            e_source=[Source(e.source).value for e in executions],
            e_task=[None if e.task is None else _dumps(e.task) for e in executions],
            history_limit=self.history_limit,
            settled=len({s.job.id for s in settlements}),
            tick_id=None if tick is None else tick.tick_id,
            t_started_at=None if tick is None else tick.started_at,
            t_source=None if tick is None else tick.source.value,
            t_key=None if tick is None else tick.occurrence_key,
            t_finished_at=None if tick is None else tick.finished_at,
            t_metrics=None if tick is None else _metrics_json(tick),
            t_lease_lost=None if tick is None else tick.metrics.lease_lost,
        )
        with self._connection("settle_jobs") as conn:
            rows = self._execute(conn, "settle_jobs", SETTLE_SQL, params).fetchall()
        applied = {row[0] for row in rows if row[0] is not None}
        for settlement in settlements:
            (result.applied if settlement.job.id in applied else result.lost).append(settlement.job.id)
        self._maybe_prune()
        return result

    def extend_leases(self, runs: Sequence[RunRef], *, now: datetime, lease_seconds: float) -> ExtendResult:
        result = ExtendResult()
        if not runs:
            return result
        params = {
            "ids": [run.job_id for run in runs],
            "owners": [run.lease_owner for run in runs],
            "epochs": [int(run.lease_epoch) for run in runs],
            "target": now + timedelta(seconds=lease_seconds),
        }
        with self._connection("extend_leases") as conn:
            held = {(row[0], row[1], row[2]) for row in self._execute(conn, "extend_leases", EXTEND_SQL, params)}
        for run in runs:
            (result.extended if (run.job_id, run.lease_owner, run.lease_epoch) in held else result.lost).append(run.job_id)
        return result

    # -- import ------------------------------------------------------------------------------
    def restore_jobs(self, jobs: Sequence[Job]) -> RestoreResult:
        """The whole batch in one transaction: the stored jobs read FOR UPDATE, then one INSERT
        of the absent ones and one UPDATE of the changed ones (epoch above the stored one).
        A job added by someone else meanwhile makes the batch run again; an id given twice is
        applied in order (the batch is split before the repeat)."""
        result = RestoreResult()
        for chunk in split_at_repeated_ids(jobs):
            self._restore_chunk(chunk, result)
        return result

    def _restore_chunk(self, jobs: list[Job], result: RestoreResult) -> None:
        import psycopg

        with self._connection("restore_jobs") as conn:
            for _ in range(_RESTORE_ATTEMPTS):
                outcome: dict[str, str] = {}
                try:
                    with conn.transaction():
                        rows = self._execute(conn, "restore_jobs", f"SELECT {JOB_SELECT} FROM crontick_jobs WHERE id = ANY(%s) FOR UPDATE", ([j.id for j in jobs],)).fetchall()
                        stored_rows = {row[0]: row for row in rows}
                        create, update = [], []
                        for job in jobs:
                            row = stored_rows.get(job.id)
                            if row is None:
                                create.append(job)
                                outcome[job.id] = "created"
                                continue
                            try:
                                stored: Job | None = _job_from_row(row)
                            except _DECODE_ERRORS:
                                stored = None  # an unreadable stored job is replaced by the snapshot's
                            if unchanged_by_restore(stored, job):
                                outcome[job.id] = "unchanged"
                                continue
                            stored_epoch = row[_NAMES.index("lease_epoch")]
                            update.append(job.replace(lease_epoch=max(job.lease_epoch, stored_epoch + 1)))
                            outcome[job.id] = "updated"
                        if update:
                            self._execute(conn, "restore_jobs", RESTORE_UPDATE_SQL, _job_arrays(update))
                        if create:
                            inserted = {row[0] for row in self._execute(conn, "restore_jobs", RESTORE_INSERT_SQL, _job_arrays(create))}
                            if len(inserted) != len(create):
                                raise _Again()  # added by someone else since the read: decide again
                except _Again:
                    continue
                except psycopg.errors.UniqueViolation as exc:
                    raise self._unique_violation(exc) from None
                break
            else:
                raise StoreUnavailable(f"jobs {[j.id for j in jobs][:10]} kept appearing while being restored; run the import again")
        for job in jobs:
            getattr(result, outcome[job.id]).append(job.id)

    # -- retention --------------------------------------------------------------------------
    def delete_finished_jobs(self, *, before: datetime, limit: int) -> int:
        """One statement: the ``limit`` oldest finished jobs (by ``updated_at``) older than
        ``before`` are deleted (rows another transaction holds are skipped, and the status and
        age are checked again on the row deleted), and their executions with them in the
        same statement, so a job goes with its history or not at all."""
        if limit <= 0:
            return 0
        with self._connection("delete_finished_jobs") as conn:
            row = self._execute(conn, "delete_finished_jobs", DELETE_FINISHED_SQL, {"before": before, "limit": limit}).fetchone()
        return int(row[0])

    # -- history ----------------------------------------------------------------------------
    def list_executions(
        self,
        *,
        job_id: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        where, params = [], []
        for clause, value in (("job_id = %s", job_id), ("outcome = %s", None if outcome is None else str(outcome)), ("started_at >= %s", since), ("started_at < %s", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT job_id, fire_at, attempt, tick_id, outcome, started_at, duration_ms, error, source, task::text, seq FROM crontick_executions "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY started_at DESC, seq DESC LIMIT %s"
        )
        with self._connection("list_executions") as conn:
            rows = self._execute(conn, "list_executions", sql, (*params, limit)).fetchall()
        return [_execution_from_row(row) for row in rows]

    def recent_ticks(self, limit: int = 20) -> list[TickRecord]:
        with self._connection("recent_ticks") as conn:
            rows = self._execute(conn, "recent_ticks", f"SELECT {_TICK_COLUMNS} FROM crontick_ticks ORDER BY started_at DESC, tick_id LIMIT %s", (limit,)).fetchall()
        return [_tick_from_row(row) for row in rows]

    # -- retention ------------------------------------------------------------------------------
    def _maybe_prune(self) -> None:
        if self.prune_seconds <= 0 or time.monotonic() - self._last_prune < self.prune_seconds:
            return
        if not self._prune_lock.acquire(blocking=False):
            return  # another thread of this process is pruning
        try:
            self._last_prune = time.monotonic()
            self.prune(now=datetime.now(timezone.utc))
        except StoreError as exc:  # housekeeping: the settle itself succeeded
            log.warning("Pruning old history failed; it is tried again later", extra={"json_fields": {"action": "postgres_prune_failed", "error": str(exc)}})
        finally:
            self._prune_lock.release()

    def prune(self, *, now: datetime, batch: int = PRUNE_BATCH, rounds: int = PRUNE_ROUNDS) -> dict[str, int]:
        """Delete, in statements of at most ``batch`` rows and at most ``rounds`` statements per
        kind: tick records and occurrence rows started before ``now - history_days``, executions
        started before then, and executions beyond ``history_limit`` per job (left by concurrent
        settles of one job, or by a lowered limit). Returns the rows deleted by kind."""
        cutoff = now - timedelta(days=self.history_days)
        statements = {
            "ticks": "DELETE FROM crontick_ticks WHERE tick_id IN (SELECT tick_id FROM crontick_ticks WHERE started_at < %(cutoff)s ORDER BY started_at LIMIT %(batch)s)",
            "occurrences": "DELETE FROM crontick_tick_occurrences WHERE occurrence_key IN (SELECT occurrence_key FROM crontick_tick_occurrences WHERE started_at < %(cutoff)s ORDER BY started_at LIMIT %(batch)s)",
            "old_executions": "DELETE FROM crontick_executions WHERE seq IN (SELECT seq FROM crontick_executions WHERE started_at < %(cutoff)s ORDER BY started_at LIMIT %(batch)s)",
            "excess_executions": (
                "DELETE FROM crontick_executions WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() OVER (PARTITION BY job_id ORDER BY seq DESC) AS rn "
                "FROM crontick_executions) ranked WHERE rn > %(limit)s LIMIT %(batch)s)"
            ),
        }
        deleted: dict[str, int] = {}
        params = {"cutoff": cutoff, "batch": batch, "limit": self.history_limit}
        with self._connection("prune") as conn:
            for kind, sql in statements.items():
                deleted[kind] = 0
                for _ in range(rounds):
                    n = self._execute(conn, "prune", sql, params).rowcount
                    deleted[kind] += n
                    if n < batch:
                        break
        if any(deleted.values()):
            log.info("Old history pruned", extra={"json_fields": {"action": "postgres_pruned", **deleted}})
        return deleted


class _Again(Exception):
    """Raised inside a restore transaction to roll it back and decide the batch again."""
