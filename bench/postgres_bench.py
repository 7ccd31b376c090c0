"""Figure 10: the PostgreSQL store (``python -m bench.run --figures 10``; part of ``make bench``).

One PostgreSQL 15 server (tests/support/postgres_server.py, ``durable=True``: fsync and
synchronous commit on, as a real server runs) serves every row of this figure:

a. tick latency over HTTP (gunicorn, 1 worker x 8 threads) with 0/10/100/1,000 due no-op jobs;
b. an idle tick over 10,000 future jobs (the partial indexes keep it flat);
c. store statements per tick with 10/100/1,000 due jobs (in-process, batch 1,000): constant;
d. side by side with procrastinate (a Python task queue on PostgreSQL), on the same server,
   each in its own database: 1,000 due no-op jobs from due to all executed. crontick: the
   jobs are stored due, then ticks run in-process (8 handler threads) until none is due.
   procrastinate: the jobs are deferred (not timed), then ``run_worker_async(wait=False,
   concurrency=8)`` runs until the queue is empty. Each side in its natural mode: crontick's
   handler a plain function, procrastinate's an ``async def``; both no-ops. Pairs alternate,
   the ratio is of the medians of one run. Goal: crontick at least 2x faster.

procrastinate is a benchmark-only dependency (requirements-bench.txt); without it row d
says so and the other rows still run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import make_jobs, summary_ms, tick

REPS = {"http": {0: 100, 10: 30, 100: 20, 1000: 10}, "idle_10k": 50, "pairs": 5}
QUICK_DIVISOR = 10
JOBS = 1000
GOALS = {"idle_p99_ms": 10.0, "due1000_p50_ms": 250.0, "procrastinate_speedup": 2.0, "idle_10k_p50_ms": 50.0}
FIGURE = "10"


def _reps(value: int, quick: bool) -> int:
    return max(2, value // QUICK_DIVISOR) if quick else value


def _store(dsn: str, **options: Any) -> Any:
    from storage.postgres import PostgresStore

    store = PostgresStore(dsn, pool_size=4, prune_seconds=0, **options)
    store.open()
    return store


def _truncate(dsn: str) -> None:
    from tests.support.postgres_server import PostgresServer

    PostgresServer.truncate(dsn)


def _engine(store: Any, batch: int = 1000) -> Any:
    from handlers.registry import HandlerRegistry
    from scheduler.engine import TickEngine
    from scheduler.settings import Settings

    from bench import noop_handlers

    registry = HandlerRegistry()
    noop_handlers.register(registry)
    return TickEngine(store, registry, Settings(environment="test", auth_mode="disabled", storage="postgres", claim_batch_size=batch, max_concurrency=8))


# -- a/b: over HTTP --------------------------------------------------------------------


def http_rows(res: Any, dsn: str, log_dir: Path, quick: bool) -> dict[str, Any]:
    from tests.support.processes import Gunicorn, service_env

    store = _store(dsn)
    _truncate(dsn)
    env = service_env(SCHEDULER_STORAGE="postgres", SCHEDULER_POSTGRES_DSN=dsn, SCHEDULER_HANDLER_MODULES="bench.noop_handlers", LOG_LEVEL="WARNING")
    server = Gunicorn(env, log_dir / "gunicorn-postgres.log", workers=1, threads=8)
    raw: dict[str, Any] = {}
    try:
        for _ in range(5):
            tick(server.url)  # warm the worker and its pool
        for n, count in REPS["http"].items():
            runs = _reps(count, quick)
            samples = []
            for run in range(runs):
                if n:
                    store.restore_jobs(make_jobs(n, prefix=f"due{n}-{run}-"))
                body, elapsed = tick(server.url)
                if body["jobs_succeeded"] != n:
                    raise RuntimeError(f"figure 10: a tick over {n} due jobs ran {body['jobs_succeeded']}: {body}")
                samples.append(elapsed)
            raw[str(n)] = s = summary_ms(samples)
            label = "idle tick (0 due)" if n == 0 else f"{n:,} due no-op jobs"
            value = f"p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms"
            if n == 0:
                res.row(f"{FIGURE}. Postgres: tick latency over HTTP, {label}", "postgres", value, f"p99 <= {GOALS['idle_p99_ms']:g} ms", s["p99"] <= GOALS["idle_p99_ms"], f"{runs} ticks", f"{s['p99'] / GOALS['idle_p99_ms']:.1f}x the goal")
            elif n == 1000:
                res.row(f"{FIGURE}. Postgres: tick latency over HTTP, {label}", "postgres", value, f"p50 <= {GOALS['due1000_p50_ms']:g} ms", s["p50"] <= GOALS["due1000_p50_ms"], f"{runs} ticks", f"{s['p50'] / GOALS['due1000_p50_ms']:.1f}x the goal")
            else:
                res.row(f"{FIGURE}. Postgres: tick latency over HTTP, {label}", "postgres", value, "(reported)", None, f"{runs} ticks")
        _truncate(dsn)
        store.restore_jobs(make_jobs(10_000, prefix="future-", due=False))
        with store._connection("bench") as conn:
            conn.execute("ANALYZE crontick_jobs")
        runs = _reps(REPS["idle_10k"], quick)
        samples = []
        for _ in range(runs):
            body, elapsed = tick(server.url)
            assert body["jobs_due"] == 0, body
            samples.append(elapsed)
        raw["idle_10k"] = s = summary_ms(samples)
        res.row(f"{FIGURE}. Postgres: idle tick over 10,000 future jobs", "postgres", f"p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms", f"p50 < {GOALS['idle_10k_p50_ms']:g} ms", s["p50"] < GOALS["idle_10k_p50_ms"], f"{runs} ticks")
    finally:
        server.stop()
        store.close()
    return raw


# -- c: statements per tick -----------------------------------------------------------


def statement_rows(res: Any, dsn: str) -> dict[str, Any]:
    store = _store(dsn)
    engine = _engine(store)
    raw: dict[str, Any] = {}
    try:
        for n in (0, 10, 100, 1000):
            _truncate(dsn)
            if n:
                store.restore_jobs(make_jobs(n, prefix=f"st{n}-"))
            store.reset_counters()
            metrics = engine.run_tick(now=_now(), tick_id=uuid.uuid4().hex).tick.metrics
            assert metrics.jobs_succeeded == n, metrics
            raw[str(n)] = dict(store.statements)
        counts = {n: sum(raw[str(n)].values()) for n in (10, 100, 1000)}
        value = ", ".join(f"{n:,} due: {c}" for n, c in counts.items()) + f"; idle: {sum(raw['0'].values())}"
        res.row(f"{FIGURE}. Postgres: store statements per tick (batch 1,000)", "postgres", value, "constant in the due jobs", len(set(counts.values())) == 1, "1 tick each", "grows with the due jobs")
    finally:
        store.close()
    return raw


def _now() -> Any:
    from scheduler.clock import utc_now

    return utc_now()


# -- d: procrastinate side by side ------------------------------------------------------


def _crontick_once(dsn: str, store: Any) -> float:
    _truncate(dsn)
    store.restore_jobs(make_jobs(JOBS, prefix=f"cmp-{uuid.uuid4().hex[:6]}-"))
    engine = _engine(store)
    executed = 0
    start = time.perf_counter()
    while True:
        metrics = engine.run_tick(now=_now(), tick_id=uuid.uuid4().hex).tick.metrics
        executed += metrics.jobs_succeeded
        if metrics.jobs_due == 0:
            break
    elapsed = time.perf_counter() - start
    if executed != JOBS:
        raise RuntimeError(f"crontick executed {executed} of {JOBS}")
    return elapsed


def _procrastinate_app(dsn: str) -> tuple[Any, Counter[str]]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    app.__module__ = "bench.postgres_bench"  # run as __main__ it would warn that the app lives in the main module
    ran: Counter[str] = Counter()

    @app.task(name="noop")
    async def noop(n: int) -> None:
        ran["noop"] += 1

    return app, ran


async def _procrastinate_once(dsn: str) -> float:
    import psycopg

    app, ran = _procrastinate_app(dsn)
    async with app.open_async():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events RESTART IDENTITY CASCADE")
        await app.tasks["noop"].batch_defer_async(*({"n": i} for i in range(JOBS)))
        start = time.perf_counter()
        await app.run_worker_async(wait=False, concurrency=8, install_signal_handlers=False, listen_notify=False)
        elapsed = time.perf_counter() - start
    if ran["noop"] != JOBS:
        raise RuntimeError(f"procrastinate executed {ran['noop']} of {JOBS}")
    return elapsed


async def _procrastinate_schema(dsn: str) -> None:
    app, _ = _procrastinate_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


def procrastinate_rows(res: Any, crontick_dsn: str, procrastinate_dsn: str, quick: bool) -> dict[str, Any] | None:
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        res.row(f"{FIGURE}. 1,000 due jobs to all executed vs procrastinate (same server)", "postgres", "not measured: procrastinate is not installed (pip install -r requirements-bench.txt)", f">= {GOALS['procrastinate_speedup']:g}x faster", None, "-")
        return None
    import logging

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    asyncio.run(_procrastinate_schema(procrastinate_dsn))
    store = _store(crontick_dsn)
    pairs = _reps(REPS["pairs"], quick)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        _crontick_once(crontick_dsn, store)  # warm both: imports, pools, prepared statements
        asyncio.run(_procrastinate_once(procrastinate_dsn))
        for _ in range(pairs):
            ours.append(_crontick_once(crontick_dsn, store))
            theirs.append(asyncio.run(_procrastinate_once(procrastinate_dsn)))
    finally:
        store.close()
    a, b = statistics.median(ours), statistics.median(theirs)
    ratio = b / a
    goal = GOALS["procrastinate_speedup"]
    res.row(
        f"{FIGURE}. 1,000 due jobs to all executed vs procrastinate (same server)", "postgres",
        f"crontick {a * 1000:.0f} ms, procrastinate {b * 1000:.0f} ms: {ratio:.1f}x faster", f">= {goal:g}x faster", ratio >= goal, f"{pairs} pairs",
        f"{ratio:.1f}x",
    )
    return {"crontick_s": ours, "procrastinate_s": theirs, "ratio_of_medians": ratio}


def run(res: Any, work: Path, log_dir: Path, quick: bool) -> None:
    """Every row of figure 10 on one fresh server; its figures go to ``res.raw["fig10"]``."""
    from tests.support.postgres_server import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer(durable=True)  # its own temporary folder, which the postgres user can reach
    except PostgresUnavailable as exc:
        res.notes.append(f"Figure 10 not measured: {exc}")
        return
    server.start()
    try:
        from storage.postgres import apply_migrations

        crontick_dsn = server.create_database("crontick_bench")
        apply_migrations(crontick_dsn)
        procrastinate_dsn = server.create_database("procrastinate_bench")
        raw: dict[str, Any] = {}
        print("figure 10 (postgres): HTTP ticks", flush=True)
        raw["http"] = http_rows(res, crontick_dsn, log_dir, quick)
        print("figure 10 (postgres): statements per tick", flush=True)
        raw["statements"] = statement_rows(res, crontick_dsn)
        print("figure 10 (postgres): side by side with procrastinate", flush=True)
        raw["procrastinate"] = procrastinate_rows(res, crontick_dsn, procrastinate_dsn, quick)
        res.raw["fig10"] = raw
        res.notes.append(
            "Figure 10 runs against a local PostgreSQL 15 (fsync on) on the same 2 cores as the service; "
            "procrastinate runs async no-op tasks with concurrency 8 in one worker, crontick plain no-op handlers on 8 threads."
        )
    finally:
        server.destroy()


if __name__ == "__main__":
    import argparse
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parser = argparse.ArgumentParser(description="figure 10 alone (prints the rows)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    class _Rows:
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []
            self.raw: dict[str, Any] = {}
            self.notes: list[str] = []

        def row(self, figure: str, store: str, value: str, goal: str, met: bool | None, runs: str, by: str = "") -> None:
            print(f"  {figure:<64} {value:<50} goal {goal:<22} met {met}  [{runs}]", flush=True)

    work = Path(tempfile.mkdtemp(prefix="crontick-bench-pg-"))
    (work / "logs").mkdir()
    rows = _Rows()
    run(rows, work, work / "logs", args.quick)
    print("\n".join(rows.notes))
