"""The dispatch figures of ``make bench`` (``SCHEDULER_DISPATCH=cloud_tasks``): 7, 8 and 9.

7. **A tick dispatching 1,000 claimed runs** (JSON store, the Cloud Tasks emulator):
   gunicorn in ``cloud_tasks`` mode (1 worker x 8 threads, default settings: claim
   batches of 500, 16 CreateTask calls at once), 1,000 due no-op jobs seeded afresh
   before each tick, one ``POST /cron/tick`` timed to the last byte of its answer. The
   queue is paused, so the emulator only takes the tasks (CreateTask) and delivers
   none: the figure is the tick's own cost, not the delivery's (in production Google
   delivers, not this machine). The dispatcher's share (its ``tasks_dispatched`` log
   lines) is reported beside it. Goal: p50 <= 1.5 s over at least 5 ticks.
8. **Runs per second, due to executed, 2 instances.** Two gunicorns (1 worker x 8
   threads each) share one JSON file; N due no-op jobs; one tick posted to each at
   once (claim batches of N/2, so that each tick claims about half); timed from the
   ticks' start until the store shows all N completed. ``cloud_tasks``: each instance
   has a queue of its own whose tasks go to its own ``/tasks/run``: the emulator
   delivers one task at a time per queue and waits for the answer, so its rate is
   bounded by one ``/tasks/run`` round trip per queue; one queue per instance doubles
   that bound, and the same run is also measured with one shared queue to show the
   bound. The JSON store bounds it too: each dispatched run is two whole-file fsync'd
   writes (taking the run, settling it) under the file's lock, shared by both
   instances, where an inline tick writes twice per batch. ``inline``: the same two instances with ``SCHEDULER_DISPATCH=inline`` (each
   tick runs its claims in its pool of 8). Same machine, same run, same N.
9. **One heartbeat** (``extend_leases`` of N runs, the call the lease keeper makes
   every lease/3 for every run a process holds): N = 1, 100, 1,000 runs claimed in the
   store, then ms per call; on the JSON store and on the Firestore emulator.

Nothing here asserts a time; each row says whether its goal is met (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import StoreSetup, make_jobs, summary_ms, tick
from scheduler.clock import utc_now
from scheduler.model import RunRef, Source, TickRecord

GOAL_DISPATCH_1000_P50_S = 1.5
REPS = {
    "fig7": {"ticks": 10, "quick": 5},  # at least 5 either way (the goal is a p50 over >= 5)
    "fig8": {"jobs": 300, "rounds": 3, "quick_jobs": 60, "quick_rounds": 1},
    "fig9": {"json": {1: 50, 100: 30, 1000: 10}, "firestore": {1: 20, 100: 10, 1000: 5}},
}
DEFAULT_LEASE_SECONDS = 300.0  # SCHEDULER_LEASE_SECONDS' default: a beat every 100 s
FIG8_TIMEOUT_S = 300.0


def _over(value: float, goal: float, unit: str) -> str:
    return f"{value / goal:.1f}x the goal (+{value - goal:.2f} {unit})"


# -- the services ------------------------------------------------------------------


def _gunicorn(setup: StoreSetup, log_path: Path, **env: str) -> Any:
    """gunicorn main:app (1 worker x 8 threads) on a port chosen here, so that its own
    ``/tasks/run`` can be its queue's target."""
    from tests.support.processes import Gunicorn, free_port

    port = free_port()
    settings = {key: value.replace("{port}", str(port)) for key, value in env.items()}
    command = ["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8", "--timeout", "0", "main:app"]
    return Gunicorn(setup.env(PORT=str(port), **settings), log_path, command=command)


def _tasks_env(emulator: Any, queue: str) -> dict[str, str]:
    return {
        "SCHEDULER_DISPATCH": "cloud_tasks",
        "CLOUD_TASKS_EMULATOR_HOST": emulator.host,
        "CLOUD_TASKS_QUEUE": queue,
        "CLOUD_TASKS_TARGET_URL": "http://127.0.0.1:{port}/tasks/run",
    }


def _dispatch_ms(log_path: Path, skip: int) -> tuple[list[float], int]:
    """The ``elapsed_ms`` of the dispatcher's ``tasks_dispatched`` lines after the first ``skip``."""
    lines = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"tasks_dispatched"' in line:
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return [float(r["elapsed_ms"]) for r in lines[skip:] if r.get("action") == "tasks_dispatched"], len(lines)


# -- figure 7 ---------------------------------------------------------------------------


def figure7(res: Any, setup: StoreSetup, emulator: Any, log_dir: Path, quick: bool) -> None:
    n = 1000
    runs = REPS["fig7"]["quick" if quick else "ticks"]
    queue = emulator.create_queue()
    client = emulator.client()
    client.pause_queue(name=queue, timeout=10)  # take the tasks, deliver none: the tick's cost alone
    log_path = log_dir / "gunicorn-dispatch.log"
    server = _gunicorn(setup, log_path, **_tasks_env(emulator, queue))
    samples: list[float] = []
    dispatch_per_tick: list[float] = []
    try:
        setup.put(make_jobs(20, prefix="warm-"))
        tick(server.url)  # warm the worker: imports google.cloud.tasks_v2, opens the channel
        client.purge_queue(name=queue, timeout=10)
        _, seen = _dispatch_ms(log_path, 0)
        for _ in range(runs):
            setup.put(make_jobs(n, prefix=f"dispatch{n}-"))
            body, elapsed = tick(server.url)
            if body["jobs_dispatched"] != n or body["jobs_dispatch_failed"]:
                raise RuntimeError(f"figure 7: a tick over {n} due jobs dispatched {body['jobs_dispatched']}, failed {body['jobs_dispatch_failed']}: {body}")
            samples.append(elapsed)
            time.sleep(0.2)  # the log line is written before the answer; let the file catch up
            parts, seen_now = _dispatch_ms(log_path, seen)
            seen = seen_now
            dispatch_per_tick.append(sum(parts))
            client.purge_queue(name=queue, timeout=10)
    finally:
        server.stop()
    s = summary_ms(samples)
    d = statistics.median(dispatch_per_tick) if dispatch_per_tick else None
    res.raw.setdefault("fig7", {})["json"] = s | {"dispatcher_ms_per_tick": dispatch_per_tick}
    p50_s = s["p50"] / 1000
    share = f"; the dispatcher's CreateTask batches: p50 {d:.0f} ms of it" if d is not None else ""
    res.row(
        "7. tick dispatching 1,000 claimed runs (emulator)",
        "json",
        f"p50 {p50_s:.2f} s, p99 {s['p99'] / 1000:.2f} s{share}",
        f"p50 <= {GOAL_DISPATCH_1000_P50_S:g} s",
        p50_s <= GOAL_DISPATCH_1000_P50_S,
        f"{runs} ticks",
        _over(p50_s, GOAL_DISPATCH_1000_P50_S, "s"),
    )


# -- figure 8 -----------------------------------------------------------------------------


def _round(setup: StoreSetup, servers: list[Any], n: int, label: str) -> dict[str, Any]:
    """Seed ``n`` due jobs, post one tick to each server at once, wait for all completed."""
    store = setup.store()
    setup.put(make_jobs(n, prefix=f"rate-{label}-"))
    answers: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(url: str) -> None:
        try:
            body, _ = tick(url)
        except Exception as exc:  # reported below
            with lock:
                errors.append(str(exc)[:300])
            return
        with lock:
            answers.append(body)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(server.url,)) for server in servers]
    for thread in threads:
        thread.start()
    completed = 0
    deadline = t0 + FIG8_TIMEOUT_S
    while time.perf_counter() < deadline:
        completed = store.count_by_status()["completed"]
        if completed >= n:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    for thread in threads:
        thread.join(60)
    store.close()
    if errors or completed != n:
        raise RuntimeError(f"figure 8 ({label}): {completed} of {n} completed in {elapsed:.1f} s; tick errors: {errors}")
    split = [a.get("jobs_dispatched", 0) or a.get("jobs_executed", 0) for a in answers]
    return {"seconds": round(elapsed, 3), "per_second": round(n / elapsed, 1), "split": split}


def figure8(res: Any, emulator: Any, work: Path, log_dir: Path, quick: bool) -> None:
    n = REPS["fig8"]["quick_jobs" if quick else "jobs"]
    rounds = REPS["fig8"]["quick_rounds" if quick else "rounds"]
    setup = StoreSetup("json", json_path=work / "data-dispatch" / "jobs.json")
    batch = str(max(1, n // 2))
    modes: dict[str, list[dict[str, str]]] = {
        "inline": [{"SCHEDULER_DISPATCH": "inline", "SCHEDULER_CLAIM_BATCH_SIZE": batch}] * 2,
        "cloud_tasks, a queue per instance": [_tasks_env(emulator, emulator.create_queue()) | {"SCHEDULER_CLAIM_BATCH_SIZE": batch} for _ in range(2)],
    }
    shared = emulator.create_queue()
    modes["cloud_tasks, one shared queue"] = [_tasks_env(emulator, shared) | {"SCHEDULER_CLAIM_BATCH_SIZE": batch} for _ in range(2)]
    raw: dict[str, Any] = {}
    setup.put([])
    for mode, envs in modes.items():
        slug = mode.replace(", ", "-").replace(" ", "-")
        servers = [_gunicorn(setup, log_dir / f"gunicorn-rate-{slug}-{i}.log", **env) for i, env in enumerate(envs)]
        try:
            tick(servers[0].url)  # warm both workers (imports, channel) on an empty store
            tick(servers[1].url)
            raw[mode] = [_round(setup, servers, n, f"{slug}-{r}") for r in range(rounds)]
        finally:
            for server in servers:
                server.stop()
    res.raw["fig8"] = {"jobs": n, "claim_batch": int(batch), "rounds": raw}

    def rate(mode: str) -> float:
        return statistics.median(r["per_second"] for r in raw[mode])

    inline = rate("inline")
    for mode in modes:
        r = rate(mode)
        splits = "; ".join("/".join(str(x) for x in row["split"]) for row in raw[mode])
        times = ", ".join(f"{row['seconds']:.2f} s" for row in raw[mode])
        detail = f"{r:.0f} runs/s (median; {times} for {n} jobs; per instance {splits})"
        if mode != "inline":
            detail += f"; {r / inline:.2f}x inline"
        res.row(f"8. due to executed, 2 instances: {mode}", "json", detail, "(reported)", None, f"{rounds} round(s) of {n}")
    res.notes.append(
        "Figure 8: the emulator delivers one task at a time per queue and waits for each answer, so the cloud_tasks rows are "
        "bounded by one /tasks/run round trip per queue (Cloud Tasks itself delivers up to the queue's max concurrent dispatches "
        "at once). Each instance got a queue of its own (2 delivery threads); the shared-queue row shows the single-queue bound. "
        "On the JSON store every dispatched run also costs two fsync'd whole-file writes (take, settle) under one lock shared by "
        "both instances, against two per batch inline; so these rows measure this machine's emulator and file, not Cloud Tasks "
        "with Firestore."
    )


# -- figure 9 -------------------------------------------------------------------------------


def _claim_all(store: Any, n: int) -> list[RunRef]:
    now = utc_now()
    tick_record = TickRecord(tick_id=uuid.uuid4().hex, started_at=now, source=Source.MANUAL)
    runs: list[RunRef] = []
    while len(runs) < n:
        claim = store.claim_due_jobs(now=now, tick=tick_record, lease_seconds=DEFAULT_LEASE_SECONDS, limit=min(500, n - len(runs)))
        if not claim.claimed:
            break
        runs += [RunRef.of(job) for job in claim.claimed]
    if len(runs) != n:
        raise RuntimeError(f"figure 9: claimed {len(runs)} of {n}")
    return runs


def figure9(res: Any, setup: StoreSetup, store: Any, quick: bool) -> None:
    kind = setup.kind
    raw: dict[int, Any] = {}
    for n, count in REPS["fig9"][kind].items():
        runs_count = max(3, count // 5) if quick else count
        setup.reset(make_jobs(n, prefix=f"beat{n}-"), store)
        runs = _claim_all(store, n)
        store.extend_leases(runs, now=utc_now(), lease_seconds=DEFAULT_LEASE_SECONDS)  # JSON: the first call re-reads the file
        samples = []
        for _ in range(runs_count):
            t0 = time.perf_counter()
            result = store.extend_leases(runs, now=utc_now(), lease_seconds=DEFAULT_LEASE_SECONDS)
            samples.append(time.perf_counter() - t0)
            if len(result.extended) != n or result.lost:
                raise RuntimeError(f"figure 9: a beat over {n} runs extended {len(result.extended)}, lost {len(result.lost)}")
        s = summary_ms(samples)
        raw[n] = s
        res.row(
            f"9. one heartbeat (extend_leases) of {n:,} run{'s' if n > 1 else ''}",
            kind,
            f"p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms (one beat per lease/3: every 100 s by default)",
            "(reported)",
            None,
            f"{runs_count} beats",
        )
    res.raw.setdefault("fig9", {})[kind] = raw


# -- the emulator for figures 7 and 8 ---------------------------------------------------------


def run_tasks_figures(res: Any, figures: set[int], work: Path, log_dir: Path, quick: bool, load: Any) -> None:
    """Figures 7 and 8 with one Cloud Tasks emulator (web/local_tasks.py, from .venv-tasks);
    without the emulator a note says why they are missing."""
    from web.local_tasks import TasksEmulator, TasksEmulatorUnavailable

    emulator = TasksEmulator(log_path=log_dir / "tasks-emulator.log")
    try:
        emulator.start()
    except (TasksEmulatorUnavailable, RuntimeError) as exc:
        res.notes.append(f"Figures 7 and 8 not measured: {exc}.")
        print(f"figures 7 and 8 skipped: {exc}", flush=True)
        return
    try:
        if 7 in figures:
            print(f"figure 7 (json, Cloud Tasks emulator), load {load()}", flush=True)
            figure7(res, StoreSetup("json", json_path=work / "data-dispatch7" / "jobs.json"), emulator, log_dir, quick)
        if 8 in figures:
            print(f"figure 8 (json, Cloud Tasks emulator), load {load()}", flush=True)
            figure8(res, emulator, work, log_dir, quick)
    finally:
        emulator.stop()

