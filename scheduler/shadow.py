"""The shadow-mode comparison: what each path (Cloud Scheduler, legacy loop, manual) did.

Read from execution records and tick records over a window, so it works on every
store and in every instance. Per source:

``occurrences``
    distinct (job, fire time) pairs the path ran to an outcome (succeeded, failed, dead);
``executions``
    attempts it recorded, ``lease_lost`` among them;
``duplicates_prevented``
    due jobs the path found already claimed by another tick (``jobs_skipped``),
    plus its settles refused by the fence;
``lag_seconds``
    fire time to tick start, p50 / p95 / max over the path's executions.

``duplicate_occurrences`` counts (job, fire time) pairs that reached a final
outcome more than once across all paths: the figure that must be 0.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from scheduler.model import Outcome, Source
from storage.base import JobStore

_RAN = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def shadow_report(store: JobStore, *, now: datetime, window: timedelta, limit: int = 10000) -> dict[str, Any]:
    since = now - window
    executions = store.list_executions(since=since, limit=limit)
    ticks = [t for t in store.recent_ticks(limit=200) if t.started_at >= since]
    per: dict[str, dict[str, Any]] = {
        s.value: {"ticks": 0, "occurrences": 0, "executions": 0, "lease_lost": 0, "duplicates_prevented": 0, "lag": []}
        for s in Source
    }
    occurrences: dict[str, set[tuple[str, datetime]]] = defaultdict(set)
    succeeded = Counter()
    for e in executions:
        row = per[e.source.value]
        row["executions"] += 1
        if e.outcome is Outcome.LEASE_LOST:
            row["lease_lost"] += 1
            row["duplicates_prevented"] += 1
        elif e.outcome in _RAN:
            occurrences[e.source.value].add((e.job_id, e.fire_at))
            row["lag"].append((e.started_at - e.fire_at).total_seconds())
            if e.outcome is Outcome.SUCCEEDED:
                succeeded[(e.job_id, e.fire_at)] += 1
    for t in ticks:
        row = per[t.source.value]
        row["ticks"] += 1
        row["duplicates_prevented"] += t.metrics.jobs_skipped
    report = {}
    for source, row in per.items():
        lag = row.pop("lag")
        row["occurrences"] = len(occurrences[source])
        row["lag_seconds"] = {"p50": _percentile(lag, 0.5), "p95": _percentile(lag, 0.95), "max": max(lag) if lag else None}
        report[source] = row
    return {
        "window_seconds": window.total_seconds(),
        "since": since.isoformat(),
        "sources": report,
        "duplicate_occurrences": sum(1 for n in succeeded.values() if n > 1),
        "executions_read": len(executions),
    }
