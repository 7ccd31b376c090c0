"""Reliability drills: real gunicorn processes, real kills and outages, on the JSON store, the Firestore emulator
and a real PostgreSQL 15 server.

Every drill runs in two sizes. Plain ``pytest`` (``make test``) runs the short
form; ``CRONTICK_DRILLS=long`` (``make drills``) the long one. Each drill
asserts exact counts from the append-only ledger that the ``ledger`` job type
writes (tests/support/handlers.py): one line ``<job_id> <fire_at> <attempt> <pid>``
per handler run.

``backend`` is parametrised over the stores; the Firestore one uses the
session's emulator (tests/support/firestore_emulator.py), cleared first; the
Postgres one a new database per backend on the session's server
(tests/support/postgres_server.py), whose outage is the server stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scheduler.clock import utc_now
from scheduler.model import Job, JobStatus
from storage.jsonfile import JsonFileStore
from storage.table import JobTable
from tests.support.jobs import make_job
from tests.support.processes import service_env

LONG = os.environ.get("CRONTICK_DRILLS", "short").strip().lower() == "long"


def size(short: Any, long: Any) -> Any:
    """The drill's count: ``short`` under ``make test``, ``long`` under ``make drills``."""
    return long if LONG else short


# Leases short enough to expire within a drill. Settings require budget < lease and job timeout < budget,
# and a job starts only if it can time out within the budget: on the Firestore emulator a claim can take
# over 0.5 s on a busy 2-core machine, and with a 2 s budget every job would be deferred. So Firestore
# drills get 3 s more of each.
SHORT_LEASES = {
    "json": {"SCHEDULER_LEASE_SECONDS": "3", "SCHEDULER_TICK_BUDGET_SECONDS": "2", "SCHEDULER_JOB_TIMEOUT_SECONDS": "1.5"},
    "firestore": {"SCHEDULER_LEASE_SECONDS": "6", "SCHEDULER_TICK_BUDGET_SECONDS": "5", "SCHEDULER_JOB_TIMEOUT_SECONDS": "1.5"},
    "postgres": {"SCHEDULER_LEASE_SECONDS": "3", "SCHEDULER_TICK_BUDGET_SECONDS": "2", "SCHEDULER_JOB_TIMEOUT_SECONDS": "1.5"},
}


def ledger_jobs(n: int, ledger: Path, *, prefix: str = "j", cron_every: int = 0, job_type: str = "ledger", now: datetime | None = None, spread: float = 0.0, **payload: Any) -> list[Job]:
    """``n`` due jobs writing to ``ledger``. Every ``cron_every``-th is a cron job
    (``0 0 1 1 *``: due now once, next due next January, so it has exactly one
    occurrence in a drill); the rest are one-offs. ``spread`` seconds: job i is due
    at ``now + i * spread / n`` (later ones become due while the drill runs)."""
    now = now or utc_now()
    jobs = []
    for i in range(n):
        due_in = -1.0 + (i * spread / n if spread else 0.0)
        fields: dict[str, Any] = {"job_type": job_type, "payload": {"ledger": str(ledger), **payload}}
        if cron_every and i % cron_every == 0:
            fields |= {"schedule_at": None, "cron": "0 0 1 1 *"}
        jobs.append(make_job(f"{prefix}{i:05d}", now=now, due_in=due_in, **fields))
    return jobs


class Backend:
    """One store kind as the service and the drill see it: the environment for
    gunicorn, store instances for the test process, bulk seeding, and an outage."""

    def __init__(self, kind: str, root: Path, emulator: Any = None, name: str = "drill", postgres: Any = None) -> None:
        self.kind = kind
        self.root = root
        self.emulator = emulator
        self.name = name
        self.postgres = postgres  # the session's SessionPostgres (kind "postgres")
        self.dsn = postgres.server.create_database() if postgres is not None else None
        self.json_path = root / f"{name}-data" / "jobs.json"
        self._stores: list[Any] = []
        self._saved: Path | None = None

    def sibling(self, name: str) -> Backend:
        """Another, separate store of the same kind (another file / other collections)."""
        return Backend(self.kind, self.root, self.emulator, name, self.postgres)

    @property
    def short_leases(self) -> dict[str, str]:
        return SHORT_LEASES[self.kind]

    @property
    def lease_seconds(self) -> float:
        return float(self.short_leases["SCHEDULER_LEASE_SECONDS"])

    @property
    def collections(self) -> dict[str, str]:
        return {"jobs": f"{self.name}_jobs", "executions": f"{self.name}_executions", "ticks": f"{self.name}_ticks"}

    def env(self, **extra: str) -> dict[str, str]:
        settings = {"SCHEDULER_HANDLER_MODULES": "tests.support.handlers", "LOG_LEVEL": "INFO"}
        if self.kind == "json":
            settings |= {"SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(self.json_path)}
        elif self.kind == "postgres":
            settings |= {"SCHEDULER_STORAGE": "postgres", "SCHEDULER_POSTGRES_DSN": self.dsn, "SCHEDULER_POSTGRES_CONNECT_TIMEOUT_SECONDS": "2"}
        else:
            c = self.collections
            settings |= {
                "SCHEDULER_STORAGE": "firestore",
                "GOOGLE_CLOUD_PROJECT": self.emulator.project,
                "FIRESTORE_EMULATOR_HOST": self.emulator.host,
                "FIRESTORE_JOBS_COLLECTION": c["jobs"],
                "FIRESTORE_EXECUTIONS_COLLECTION": c["executions"],
                "FIRESTORE_TICKS_COLLECTION": c["ticks"],
            }
        return service_env(**(settings | extra))

    def store(self, **options: Any) -> Any:
        if self.kind == "json":
            store: Any = JsonFileStore(self.json_path, **options)
        elif self.kind == "postgres":
            from storage.postgres import PostgresStore

            store = PostgresStore(self.dsn, **options)
        else:
            from storage.firestore import FirestoreStore

            c = self.collections
            store = FirestoreStore(project=self.emulator.project, jobs_collection=c["jobs"], executions_collection=c["executions"], ticks_collection=c["ticks"], **options)
        store.open()
        self._stores.append(store)
        return store

    def seed(self, jobs: Sequence[Job]) -> None:
        """Add many jobs in a few writes (add_job would be one fsync or RPC each)."""
        store = self.store()
        if self.kind == "json":
            with store._mutex, store._file_lock():
                doc = store._load()
                table = JobTable(doc, history_limit=store.history_limit)
                for job in jobs:
                    table.add_job(job)
                store._save(doc)
        elif self.kind == "postgres":
            for start in range(0, len(jobs), 1000):
                assert len(store.restore_jobs(jobs[start : start + 1000]).created) == len(jobs[start : start + 1000])
        else:
            from storage.firestore import _job_fields

            col = store._col("jobs")
            writes = [store._pb_create(col.document(job.id)._document_path, _job_fields(job) | {"history": []}) for job in jobs]
            for start in range(0, len(writes), 500):
                codes, _, _ = store._batch_write(writes[start : start + 500], "seed")
                assert set(codes) == {0}, codes

    def all_jobs(self) -> list[Job]:
        """Every stored job, read through a store of its own, closed after: drills call this
        once per round, and the long crash drill's 200 rounds of PostgreSQL pools left open
        ran the server out of connections ("too many clients already")."""
        store = self.store()
        try:
            out: list[Job] = []
            after = None
            while True:
                page = store.list_jobs(limit=500, after_id=after)
                out += page
                if len(page) < 500:
                    return out
                after = page[-1].id
        finally:
            self._stores.remove(store)
            store.close()

    # -- outage ---------------------------------------------------------------
    def down(self) -> None:
        """Make the store unreachable. JSON: the data folder becomes a file (as root,
        permissions do not stop writes). Firestore: the emulator stops (its data is exported)."""
        if self.kind == "json":
            folder = self.json_path.parent
            self._saved = folder.with_name(folder.name + "-saved")
            folder.rename(self._saved)
            folder.write_text("the store is down\n")
        elif self.kind == "postgres":
            self.postgres.server.stop()  # a fast shutdown: open connections are cut, the data stays
        else:
            self.emulator.stop(keep_data=True)

    def up(self) -> None:
        if self.kind == "json":
            folder = self.json_path.parent
            folder.unlink()
            assert self._saved is not None
            self._saved.rename(folder)
            self._saved = None
        elif self.kind == "postgres":
            self.postgres.server.start()
        else:
            self.emulator.start()

    def close(self) -> None:
        if self._saved is not None:
            self.up()
        if self.kind == "firestore" and not self.emulator.running:
            self.emulator.start()
        if self.kind == "postgres" and not self.postgres.server.running:
            self.postgres.server.start()
        for store in self._stores:
            try:
                store.close()
            except Exception:  # noqa: BLE001 - a store of a stopped emulator
                pass


@pytest.fixture(params=["json", pytest.param("firestore", marks=pytest.mark.firestore), pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    emulator = postgres = None
    if request.param == "firestore":
        emulator = request.getfixturevalue("firestore_emulator")
        emulator.clear()
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_server")
    backend = Backend(request.param, tmp_path, emulator, postgres=postgres)
    try:
        yield backend
    finally:
        backend.close()


def final_states(backend: Backend) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in backend.all_jobs():
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    return counts


def due_later(job: Job, now: datetime) -> bool:
    """A recurring job settled to its next fire time (after ``now``)."""
    return job.status is JobStatus.PENDING and job.next_run_at is not None and job.next_run_at > now - timedelta(seconds=1)
