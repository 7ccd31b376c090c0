"""Benchmark: ``flask --app main import FILE`` of N jobs into an empty JSON store.

Writes a snapshot of N pending jobs (a cron, an interval and a one-off schedule in
turn, small payloads), then times the whole CLI command as an operator runs it
(a new process: start-up, parse and checks, the import, the summary), and the
in-process :func:`scheduler.snapshot.import_snapshot` alone. Prints the figures
and the number of file replacements the store made; asserts nothing about time.

Usage::

    .venv/bin/python -m bench.import_bench            # 10,000 jobs
    .venv/bin/python -m bench.import_bench --jobs 50000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from scheduler import snapshot as snap
from scheduler.clock import utc_now
from scheduler.model import Job, JobStatus
from storage.jsonfile import JsonFileStore

REPO = Path(__file__).resolve().parents[1]


def make_jobs(n: int) -> list[Job]:
    now = utc_now().replace(microsecond=0)
    jobs = []
    for i in range(n):
        when = now + timedelta(minutes=1 + i % 600)
        schedule = ({"cron": "*/5 * * * *"}, {"interval_seconds": 300 + i % 60}, {"schedule_at": when})[i % 3]
        jobs.append(Job(
            id=f"bench-{i:06d}", job_type="log", payload={"n": i, "msg": "benchmark job"}, status=JobStatus.PENDING,
            next_run_at=when, fire_at=when, created_at=now, updated_at=now, **schedule,
        ))
    return jobs


def write_snapshot(jobs: list[Job], path: Path) -> None:
    document = {"format": snap.FORMAT, "version": snap.VERSION, "exported_at": "2026-01-05T12:00:00.000000Z", "store": "memory", "with_history": False, "jobs": [job.to_dict() for job in jobs]}
    document["checksum"] = snap.checksum(document)
    snap.write_snapshot(document, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crontick-import-") as tmp:
        folder = Path(tmp)
        backup = folder / "backup.json"
        write_snapshot(make_jobs(args.jobs), backup)

        env = os.environ | {"ENVIRONMENT": "local", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "json",
                            "SCHEDULER_JSON_PATH": str(folder / "cli" / "jobs.json"), "LOG_LEVEL": "WARNING"}
        env.pop("CRONTICK_DEMO_JOB", None)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "main", "import", str(backup)], env=env, cwd=REPO, capture_output=True, text=True, check=False)
        cli_seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"import failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        progress = [line for line in done.stderr.splitlines() if line.startswith("imported ")]

        store = JsonFileStore(folder / "direct" / "jobs.json")
        store.open()
        started = time.perf_counter()
        parsed = snap.parse_snapshot(backup.read_bytes())
        parse_seconds = time.perf_counter() - started
        started = time.perf_counter()
        summary = snap.import_snapshot(store, parsed)
        import_seconds = time.perf_counter() - started

    print(json.dumps({
        "jobs": args.jobs,
        "cli_total_s": round(cli_seconds, 2),
        "cli_progress_lines": len(progress),
        "parse_and_check_s": round(parse_seconds, 2),
        "import_snapshot_s": round(import_seconds, 2),
        "created": summary.created,
        "file_replacements": store.fsynced_writes,
    }, indent=1))


if __name__ == "__main__":
    main()
