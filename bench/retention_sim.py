"""Bounded storage, simulated: days of minutely ticks on the JSON store with retention on.

Shared by ``tests/test_retention.py`` (which asserts on it) and ``make bench`` figure 13
(which reports the file size it ends with). An in-process :class:`TickEngine` on a real
:class:`JsonFileStore` file (fsync'd writes and all) ticks every minute of a fake clock;
each tick brings one new one-off ``noop`` job. The jobs are added an hour at a time
(one ``add_jobs`` write of 60, one per tick of that hour) and all fall due at the hour's
last tick, so that 59 ticks in 60 find nothing due: the run then shows both that those
idle ticks write nothing, and that finished jobs stop piling up. (One write per job and
per tick would be 3 fsync'd rewrites of a file of a day's jobs every minute: about 15
minutes of disk work for 60 days, for nothing this test asks.)

The engine's retention (storage/retention.py) runs at most once an hour of tick time and
deletes jobs finished more than ``retention_days`` ago, so the file holds about
``retention_days`` of finished jobs, whatever the number of days simulated.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

START = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)


@dataclass
class Simulation:
    days: int
    retention_days: int
    ticks: int = 0
    jobs_added: int = 0
    jobs_run: int = 0
    jobs_deleted: int = 0
    retention_runs: int = 0
    deleting_runs: int = 0  # retention runs that deleted something
    writes: int = 0
    idle_ticks: int = 0  # ticks with nothing due and nothing deleted
    unexpected_writes: list[tuple[int, int, int]] = field(default_factory=list)  # (minute, writes, expected)
    size_by_day: list[int] = field(default_factory=list)  # the file's bytes at the end of each day
    jobs_by_day: list[int] = field(default_factory=list)  # jobs stored at the end of each day
    seconds: float = 0.0

    @property
    def final_size(self) -> int:
        return self.size_by_day[-1]


def simulate(path: str | os.PathLike[str], *, days: int = 60, retention_days: int = 1, start: datetime = START) -> Simulation:
    """Tick every minute for ``days`` days on a JSON store at ``path``; see the module docstring."""
    from handlers.registry import HandlerRegistry
    from scheduler.engine import TickEngine
    from scheduler.model import Job, JobStatus
    from scheduler.settings import Settings
    from storage.jsonfile import JsonFileStore

    path = Path(path)
    store = JsonFileStore(path)
    store.open()
    registry = HandlerRegistry()
    registry.register("noop", lambda job, ctx: None)
    settings = Settings(environment="test", auth_mode="disabled", storage="json", retention_days=retention_days)
    now = start
    engine = TickEngine(store, registry, settings, clock=lambda: now)
    sim = Simulation(days=days, retention_days=retention_days)
    deleted: list[int] = []
    delete = store.delete_finished_jobs

    def counted_delete(**kwargs: Any) -> int:
        n = delete(**kwargs)
        deleted.append(n)
        return n

    store.delete_finished_jobs = counted_delete  # type: ignore[method-assign]
    stored = 0
    t0 = time.perf_counter()
    for minute in range(days * 1440):
        now = start + timedelta(minutes=minute)
        writes_before = store.fsynced_writes
        if minute % 60 == 0:
            due = now + timedelta(minutes=59)
            hour = minute // 60
            batch = [
                Job(
                    id=f"h{hour:05d}-m{m:02d}", job_type="noop", payload={"minute": m}, status=JobStatus.PENDING,
                    next_run_at=due, fire_at=due, created_at=now, updated_at=now, schedule_at=due,
                )
                for m in range(60)
            ]
            store.add_jobs(batch)
            sim.jobs_added += len(batch)
            stored += len(batch)
            writes_before += 1  # the add's one write
        deleted_before = len(deleted)
        outcome = engine.run_tick(now=now, tick_id=f"tick-{minute:06d}")
        ran = outcome.tick.metrics.jobs_succeeded
        gone = sum(deleted[deleted_before:])
        sim.ticks += 1
        sim.jobs_run += ran
        sim.jobs_deleted += gone
        stored -= gone
        expected = (2 if outcome.tick.metrics.jobs_due else 0) + (1 if gone else 0)
        made = store.fsynced_writes - writes_before
        if made != expected:
            sim.unexpected_writes.append((minute, made, expected))
        if not outcome.tick.metrics.jobs_due and not gone:
            sim.idle_ticks += 1
        if minute % 1440 == 1439:
            sim.size_by_day.append(path.stat().st_size)
            sim.jobs_by_day.append(stored)
    sim.seconds = time.perf_counter() - t0
    sim.retention_runs = engine.retention.runs
    sim.deleting_runs = sum(1 for n in deleted if n)
    sim.writes = store.fsynced_writes
    store.close()
    return sim


def figure13(res: Any, work: Path, quick: bool) -> None:
    """``make bench`` figure 13: the JSON file after 60 simulated days (10 with --quick)."""
    days = 12 if quick else 60
    sim = simulate(work / "retention" / "jobs.json", days=days)
    # Jobs are flat from day 2 (one day kept + the hour before the next deletion); the file also
    # holds the last 200 tick records (one per hour that ran jobs), full by day 9.
    steady = sim.size_by_day[9:]
    flat = max(steady) - min(steady) <= 0.001 * max(steady) and set(sim.jobs_by_day[1:]) == {sim.jobs_by_day[-1]}
    value = (
        f"{sim.final_size / 1e6:.2f} MB, {sim.jobs_by_day[-1]:,} jobs after {days} days of minutely ticks "
        f"({sim.jobs_added:,} one-off jobs run, {sim.jobs_deleted:,} deleted; SCHEDULER_RETENTION_DAYS={sim.retention_days}); "
        f"jobs from day 2: {min(sim.jobs_by_day[1:]):,}-{max(sim.jobs_by_day[1:]):,}; size from day 10: "
        f"{min(steady) / 1e6:.3f}-{max(steady) / 1e6:.3f} MB; {sim.writes:,} fsync'd writes, none by the "
        f"{sim.idle_ticks:,} idle ticks ({len(sim.unexpected_writes)} unexpected); {sim.seconds:.0f} s"
    )
    res.row("13. bounded storage: JSON file after days of ticks", "json", value, "flat (jobs from day 2, bytes from day 10)", flat and not sim.unexpected_writes, f"{sim.ticks:,} ticks", "grows")
    res.raw["fig13"] = {k: v for k, v in vars(sim).items() if k != "unexpected_writes"} | {"unexpected_writes": len(sim.unexpected_writes)}
