"""Shared pieces of the benchmark: statistics, seeding both stores, the service under test.

Nothing here asserts anything about time; figures record what they measure and
:mod:`bench.run` compares it with the goals.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scheduler.clock import utc_now
from scheduler.model import Job, JobStatus, Misfire
from storage.jsonfile import JsonFileStore
from storage.table import empty_document

REPO = Path(__file__).resolve().parents[1]
HANDLER_MODULE = "bench.noop_handlers"
FIRESTORE_SEED_BATCH = 500


# -- statistics ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with 20 samples, p99 is the largest."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 3),
        "p99": round(percentile(ms, 99), 3),
        "min": round(min(ms), 3),
        "max": round(max(ms), 3),
        "mean": round(statistics.fmean(ms), 3),
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


# -- jobs -----------------------------------------------------------------------


def make_jobs(n: int, *, prefix: str, now: datetime | None = None, due: bool = True, job_type: str = "noop", cron_every: int = 0) -> list[Job]:
    """``n`` pending jobs: due (``next_run_at`` 1-2 s in the past) or in the future
    (spread over the next days). With ``cron_every`` = k, every k-th job is a
    recurring cron job instead of a one-off."""
    now = now or utc_now()
    jobs = []
    for i in range(n):
        when = now - timedelta(seconds=1, microseconds=i) if due else now + timedelta(hours=1, seconds=i * 7)
        recurring = cron_every and i % cron_every == 0
        jobs.append(
            Job(
                id=f"{prefix}{i:06d}",
                job_type=job_type,
                payload={"i": i},
                status=JobStatus.PENDING,
                next_run_at=when,
                fire_at=when,
                created_at=now - timedelta(hours=1),
                updated_at=now - timedelta(hours=1),
                schedule_at=None if recurring else when,
                cron="0 0 1 1 *" if recurring else None,
                misfire=Misfire.RUN_ONCE,
            )
        )
    return jobs


def write_json_store(path: str | os.PathLike[str], jobs: Iterable[Job]) -> None:
    """Replace the JSON store's file with a fresh document holding ``jobs`` (no history),
    written the way the store writes (generation token, fsync, atomic replace)."""
    writer = JsonFileStore(path)
    writer.path.parent.mkdir(parents=True, exist_ok=True)
    doc = empty_document()
    doc["jobs"] = {job.id: job.to_dict() for job in jobs}
    with writer._file_lock():
        writer._save(doc)


def seed_firestore(store: Any, jobs: Sequence[Job], *, batch: int = FIRESTORE_SEED_BATCH) -> None:
    """Write (overwrite) job documents with BatchWrite RPCs of ``batch`` writes."""
    from storage.firestore import _job_fields

    col = store._col("jobs")
    for start in range(0, len(jobs), batch):
        writes = [store._pb_set(col.document(job.id)._document_path, _job_fields(job) | {"history": []}) for job in jobs[start : start + batch]]
        codes, _, _ = store._batch_write(writes, "seed")
        if set(codes) != {0}:
            raise RuntimeError(f"seeding failed: codes {sorted(set(codes))}")


# -- the service under test -------------------------------------------------------


@dataclass
class StoreSetup:
    """Where one store kind lives for a benchmark run."""

    kind: str  # "json" | "firestore"
    json_path: Path | None = None
    emulator: Any = None  # tests.support.firestore_emulator.FirestoreEmulator

    def env(self, **extra: str) -> dict[str, str]:
        from tests.support.processes import service_env

        settings = {"SCHEDULER_HANDLER_MODULES": HANDLER_MODULE, "LOG_LEVEL": "INFO"}
        if self.kind == "json":
            settings |= {"SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(self.json_path)}
        else:
            settings |= {"SCHEDULER_STORAGE": "firestore", "GOOGLE_CLOUD_PROJECT": self.emulator.project, "FIRESTORE_EMULATOR_HOST": self.emulator.host}
        return service_env(**(settings | extra))

    def store(self) -> Any:
        """A store instance of the bench process itself (for seeding and in-process ticks)."""
        if self.kind == "json":
            store = JsonFileStore(self.json_path)
        else:
            from storage.firestore import FirestoreStore

            os.environ["FIRESTORE_EMULATOR_HOST"] = self.emulator.host
            store = FirestoreStore(project=self.emulator.project)
        store.open()
        return store

    def reset(self, jobs: Sequence[Job], store: Any = None) -> None:
        """Make ``jobs`` the only jobs of the store (JSON: a fresh file; Firestore: clear, then seed)."""
        if self.kind == "json":
            write_json_store(self.json_path, jobs)
        else:
            self.emulator.clear()
            seed_firestore(store, jobs)

    def put(self, jobs: Sequence[Job], store: Any = None) -> None:
        """Re-seed ``jobs`` as pending and due (JSON: a fresh file with only them; Firestore: overwrite them)."""
        if self.kind == "json":
            write_json_store(self.json_path, jobs)
        else:
            seed_firestore(store, jobs)


def post(url: str, path: str = "/cron/tick", body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, bytes, float]:
    """POST on a new loopback connection (as Cloud Scheduler opens one per tick);
    returns (status, body, seconds from connect to the last byte of the answer)."""
    host, _, port = url.removeprefix("http://").partition(":")
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Length": str(len(body)), **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
        return response.status, data, elapsed
    finally:
        conn.close()


def tick(url: str) -> tuple[dict[str, Any], float]:
    status, body, elapsed = post(url)
    if status != 200:
        raise RuntimeError(f"tick answered {status}: {body[:300]!r}")
    return json.loads(body), elapsed
