"""Job types for tests, loadable in subprocesses via SCHEDULER_HANDLER_MODULES=tests.support.handlers.

``ledger`` appends one line ``<job_id> <fire_at> <attempt> <pid>`` to the file named by
``payload.ledger`` (or $CRONTICK_TEST_LEDGER) with O_APPEND, so concurrent processes
produce an exact, append-only record of executions. With ``payload.until_pids: N`` it then
waits (at most ``payload.until_timeout`` seconds, default 20) until the ledger holds lines from N
processes: a race test uses it so that one fast process cannot take every job before the others
have claimed anything, which made "more than one process took part" a matter of luck.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


_RENDEZVOUS_MET: set[tuple[str, int]] = set()  # (ledger, N) seen with N processes, in this process


def ledger(job, ctx) -> None:
    path = job.payload.get("ledger") or os.environ["CRONTICK_TEST_LEDGER"]
    append_line(path, f"{job.id} {ctx.fire_at.isoformat()} {ctx.attempt} {os.getpid()}")
    until_pids = job.payload.get("until_pids")
    if until_pids and (path, until_pids) not in _RENDEZVOUS_MET:
        deadline = time.monotonic() + job.payload.get("until_timeout", 20)
        while len({row[3] for row in read_ledger(path)}) < until_pids and time.monotonic() < deadline:
            time.sleep(0.01)
        _RENDEZVOUS_MET.add((path, until_pids))


def ledger_then_hang(job, ctx) -> None:
    """Record the start, then block until ``payload.release`` exists (or forever):
    used to kill a process mid-handler."""
    ledger(job, ctx)
    release = job.payload.get("release")
    while not (release and Path(release).exists()):
        time.sleep(0.01)


def boom(job, ctx) -> None:
    raise RuntimeError("boom")


def register(registry) -> None:
    registry.register("ledger", ledger)
    registry.register("ledger_then_hang", ledger_then_hang)
    registry.register("boom", boom)


def read_ledger(path) -> list[list[str]]:
    try:
        return [line.split() for line in Path(path).read_text().splitlines() if line]
    except FileNotFoundError:
        return []
