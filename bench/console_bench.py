"""Figure 11 of ``make bench``: the operator console (web/console) on the JSON store.

1. The jobs list page of 100 jobs (``GET /jobs?limit=100``) through real HTTP: gunicorn,
   1 worker x 8 threads on loopback, a new connection per request, ``CONSOLE_AUTH=disabled``
   (``ENVIRONMENT=local``), so the figure is the page itself: one store read, the schedule
   descriptions, the local times, the template. p50 and p99; goal p50 <= 30 ms.
2. What the console adds to a cold start: ``-X importtime`` of ``import main; create_app()``
   with the console on, the cumulative import time of ``web.console`` and of
   ``web.console.views`` (imported when the console is registered, with everything it
   pulls in that the service had not loaded already), median of several fresh processes;
   goal <= 20 ms. Also reported: ``create_app()`` wall time with the console on minus off.

Run alone: ``.venv/bin/python -m bench.console_bench [--quick]``; ``bench/run.py`` runs it
as figure 11. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, StoreSetup, make_jobs, summary_ms  # noqa: E402

GOALS = {"list_p50_ms": 30.0, "import_ms": 20.0}
REPS = {"requests": 300, "processes": 7}
QUICK_DIVISOR = 10
LIST_JOBS = 100


def _get(url: str, path: str) -> tuple[int, bytes, float]:
    host, _, port = url.removeprefix("http://").partition(":")
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - t0
    finally:
        conn.close()


def list_page(work: Path, requests: int) -> dict[str, Any]:
    from tests.support.processes import Gunicorn

    setup = StoreSetup("json", json_path=work / "console" / "jobs.json")
    jobs = make_jobs(LIST_JOBS, prefix="console-", due=False, cron_every=3)
    jobs = [job.replace(timezone="Europe/Paris") if i % 2 else job for i, job in enumerate(jobs)]
    setup.reset(jobs)
    env = setup.env(ENVIRONMENT="local", AUTH_MODE="disabled", CONSOLE_AUTH="disabled")
    server = Gunicorn(env, work / "gunicorn-console.log", workers=1, threads=8)
    try:
        status, body, _ = _get(server.url, f"/jobs?limit={LIST_JOBS}")
        rows = body.count(b"<tr data-job=")
        if status != 200 or rows != LIST_JOBS:
            raise RuntimeError(f"the list page answered {status} with {rows} rows, expected 200 with {LIST_JOBS}")
        for _ in range(10):  # warm: templates compiled, zones loaded
            _get(server.url, f"/jobs?limit={LIST_JOBS}")
        samples = [_get(server.url, f"/jobs?limit={LIST_JOBS}")[2] for _ in range(requests)]
    finally:
        server.stop()
    return {"summary": summary_ms(samples), "bytes": len(body), "rows": rows}


_CREATE = """
import os, sys, time
t0 = time.perf_counter()
import main
t1 = time.perf_counter()
main.create_app(os.environ)
t2 = time.perf_counter()
print(f"{(t1 - t0) * 1000:.3f} {(t2 - t1) * 1000:.3f} {'web.console.views' in sys.modules}")
"""


def _console_import_ms(env: dict[str, str]) -> float:
    code = "import main, os; main.create_app(os.environ)"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"importtime run failed: {proc.stderr[-2000:]}")
    total_us = 0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        if name.strip() in ("web.console", "web.console.views"):
            total_us += int(cum_us)
    return total_us / 1000


def _create_app_ms(env: dict[str, str]) -> tuple[float, bool]:
    proc = subprocess.run([sys.executable, "-c", _CREATE], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"create_app run failed: {proc.stderr[-2000:]}")
    _import_ms, create_ms, loaded = proc.stdout.strip().splitlines()[-1].split()  # log lines come first
    return float(create_ms), loaded == "True"


def cold_start(work: Path, processes: int) -> dict[str, Any]:
    setup = StoreSetup("json", json_path=work / "console-cold" / "jobs.json")
    setup.reset([])
    on = setup.env(ENVIRONMENT="local", AUTH_MODE="disabled", CONSOLE_AUTH="disabled")
    off = setup.env(ENVIRONMENT="local", AUTH_MODE="disabled", CONSOLE_AUTH="off")
    imports = [_console_import_ms(on) for _ in range(processes)]
    with_console, without = [], []
    for _ in range(processes):
        ms, loaded = _create_app_ms(on)
        if not loaded:
            raise RuntimeError("the console was not loaded with CONSOLE_AUTH=disabled")
        with_console.append(ms)
        ms, loaded = _create_app_ms(off)
        if loaded:
            raise RuntimeError("the console's views were loaded with CONSOLE_AUTH=off")
        without.append(ms)
    return {
        "import_ms": {"p50": round(statistics.median(imports), 2), "max": round(max(imports), 2), "samples": [round(x, 2) for x in imports]},
        "create_app_ms": {"on_p50": round(statistics.median(with_console), 2), "off_p50": round(statistics.median(without), 2)},
    }


def figure11(res: Any, work: Path, quick: bool) -> None:
    """Rows for bench/run.py's table (``res`` is its Results)."""
    from bench.run import over

    requests = max(20, REPS["requests"] // QUICK_DIVISOR) if quick else REPS["requests"]
    processes = 3 if quick else REPS["processes"]
    page = list_page(work, requests)
    s = page["summary"]
    goal = GOALS["list_p50_ms"]
    res.row("11. console: jobs list page of 100 jobs, HTTP", "json", f"p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms ({page['bytes'] // 1024} KiB)", f"<= {goal:g} ms (p50)", s["p50"] <= goal, f"{requests} requests", over(s["p50"], goal, "ms"))
    cold = cold_start(work, processes)
    imp = cold["import_ms"]
    goal = GOALS["import_ms"]
    res.row("11. console: import at cold start (web.console + views)", "json", f"p50 {imp['p50']:.1f} ms, max {imp['max']:.1f} ms", f"<= {goal:g} ms (p50)", imp["p50"] <= goal, f"{processes} processes", over(imp["p50"], goal, "ms"))
    app = cold["create_app_ms"]
    res.row("11. console: create_app() with the console on / off", "json", f"p50 {app['on_p50']:.1f} / {app['off_p50']:.1f} ms", "(reported)", None, f"{processes} processes each")
    res.raw["fig11"] = {"list_page": page, "cold_start": cold}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from bench.run import Results

    res = Results()
    with tempfile.TemporaryDirectory(prefix="crontick-console-bench-") as tmp:
        figure11(res, Path(tmp), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
