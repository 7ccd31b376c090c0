"""``GET /metrics``: Prometheus text exposition (format 0.0.4), written by hand.

Counters live in this process and are fed by ``/cron/tick`` (``web/tick.py``
calls :func:`observe_tick` with each :class:`~scheduler.engine.TickOutcome`).
On Cloud Run each instance has its own counters, reset when it starts; Prometheus
handles resets, and ``sum()`` across instances gives the service's totals. The
``crontick_jobs`` and ``crontick_jobs_due`` gauges are read from the store, so they
are the service-wide figures (take ``max()``, not ``sum()``, across instances).

**Store gauges are cached.** Counting by status and counting due jobs scans the
store (the whole file for the JSON store), and the endpoint takes no token, so a few
scrapers would otherwise slow every other caller. Each app keeps the last figures
and reads the store again at most every ``METRICS_STORE_CACHE_SECONDS`` (default 15;
``0`` reads it on every scrape). At most one refresh is in flight: scrapes that
arrive meanwhile get the previous figures, or wait for that refresh when there are
none yet. ``crontick_store_gauges_age_seconds`` is how old the figures are (measured
on the app's monotonic clock), and ``crontick_store_up`` says whether the latest read
answered. A failed read is not cached: the good figures are kept (not served while
``crontick_store_up`` is 0) and the next scrape reads again.

Served only when ``METRICS_ENABLED=true`` (else 404). The endpoint takes no token,
so that a scraper beside the container (the Cloud Run Managed Prometheus sidecar
scrapes localhost) can read it; it shows counts only, never job contents.

Per-run histograms, fed from each tick's :attr:`~scheduler.engine.TickOutcome.runs`
(every execution whose handler ran: ``succeeded`` or ``failed``, timeouts included):
``crontick_schedule_lag_seconds`` is fire time to start (the execution's
``started_at``, which is the tick's clock reading, minus its ``fire_at``; negative
values count as 0), ``crontick_run_duration_seconds{job_type}`` the handler's wall
time. Runs dispatched to Cloud Tasks settle in ``/tasks/run`` and are not in them.

No ``prometheus_client`` dependency: a handful of counters and three histograms
do not need it, and its process-global default registry fights with the many
apps a test session builds.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate

from flask import Blueprint, Flask, Response, current_app
from werkzeug.exceptions import NotFound

from scheduler.engine import PlannedRun, TaskRunOutcome, TickOutcome
from scheduler.errors import StoreError
from scheduler.model import JobStatus, Outcome
from web.context import crontick

log = logging.getLogger(__name__)

EXTENSION = "crontick_metrics"
CACHE_EXTENSION = "crontick_metrics_store_cache"
_CACHE_INIT = threading.Lock()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Ticks come once a minute, so lag below a second is the norm and a minute or more means missed ticks.
LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
RUN_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_RAN = (Outcome.SUCCEEDED, Outcome.FAILED)
JOB_OUTCOMES = ("succeeded", "failed", "misfired", "deferred")

bp = Blueprint("metrics", __name__)


class Histogram:
    """Cumulative Prometheus buckets for one label set (not thread-safe: the collector locks)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        # Per bucket, not cumulative (render adds them up): observe is one bisect, not a
        # pass over every bucket, and a tick observes two per run.
        self.counts = [0] * (len(buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1  # the first bucket with value <= its bound
        self.count += 1
        self.sum += value

    def render(self, lines: list[str], name: str, labels: str = "") -> None:
        sep = "," if labels else ""
        for bound, count in zip(self.buckets, accumulate(self.counts), strict=False):
            lines.append(f'{name}_bucket{{{labels}{sep}le="{_number(bound)}"}} {count}')
        lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{suffix} {_number(self.sum)}")
        lines.append(f"{name}_count{suffix} {self.count}")


def _label_value(value: str) -> str:
    """A label value in the exposition format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class TickMetricsCollector:
    """Per-process counters over completed ticks; thread-safe."""

    def __init__(self, buckets: Iterable[float] = DURATION_BUCKETS) -> None:
        self._lock = threading.Lock()
        self.buckets = tuple(sorted(buckets))
        self.ticks = {"ran": 0, "duplicate": 0}
        self.jobs = dict.fromkeys(JOB_OUTCOMES, 0)
        self.jobs_executed = 0
        self.claim_conflicts = 0
        self.recovered_leases = 0
        self.lease_lost = 0
        self.bucket_counts = [0] * len(self.buckets)
        self.duration_count = 0
        self.duration_sum = 0.0
        self.schedule_lag = Histogram(LAG_BUCKETS)
        self.run_duration: dict[str, Histogram] = {}

    def observe(self, outcome: TickOutcome) -> None:
        with self._lock:
            if outcome.duplicate_of is not None:
                self.ticks["duplicate"] += 1
                return
            m = outcome.tick.metrics
            self.ticks["ran"] += 1
            self.jobs["succeeded"] += m.jobs_succeeded
            self.jobs["failed"] += m.jobs_failed
            self.jobs["misfired"] += m.jobs_misfired
            self.jobs["deferred"] += m.jobs_deferred
            self.jobs_executed += m.jobs_executed
            self.claim_conflicts += m.jobs_skipped
            self.recovered_leases += m.jobs_recovered
            self.lease_lost += m.lease_lost
            seconds = max(m.duration_ms, 0.0) / 1000.0
            for index, bound in enumerate(self.buckets):
                if seconds <= bound:
                    self.bucket_counts[index] += 1
            self.duration_count += 1
            self.duration_sum += seconds
            self._observe_runs(outcome.runs)

    def observe_runs(self, runs: Iterable[PlannedRun]) -> None:
        """Runs settled outside a tick (``/tasks/run``): the per-run histograms only."""
        with self._lock:
            self._observe_runs(runs)

    def _observe_runs(self, runs: Iterable[PlannedRun]) -> None:
        for run in runs:
            job_type = run.settlement.job.job_type
            for execution in run.settlement.executions:
                if execution.outcome not in _RAN:
                    continue
                self.schedule_lag.observe(max((execution.started_at - execution.fire_at).total_seconds(), 0.0))
                histogram = self.run_duration.get(job_type)
                if histogram is None:
                    histogram = self.run_duration[job_type] = Histogram(RUN_DURATION_BUCKETS)
                histogram.observe(max(execution.duration_ms, 0.0) / 1000.0)

    def render(self) -> list[str]:
        with self._lock:
            lines: list[str] = []
            _family(lines, "crontick_ticks_total", "counter", "Ticks handled by this instance; duplicate = a Cloud Scheduler retry of an occurrence already handled.")
            lines += [f'crontick_ticks_total{{result="{result}"}} {count}' for result, count in self.ticks.items()]
            _family(lines, "crontick_jobs_total", "counter", "Jobs a tick finished, by outcome (failed includes dead-lettered).")
            lines += [f'crontick_jobs_total{{outcome="{name}"}} {count}' for name, count in self.jobs.items()]
            _family(lines, "crontick_jobs_executed_total", "counter", "Jobs whose handler ran (succeeded or failed).")
            lines.append(f"crontick_jobs_executed_total {self.jobs_executed}")
            _family(lines, "crontick_claim_conflicts_total", "counter", "Due jobs another tick claimed first.")
            lines.append(f"crontick_claim_conflicts_total {self.claim_conflicts}")
            _family(lines, "crontick_recovered_leases_total", "counter", "Jobs claimed again after their lease expired.")
            lines.append(f"crontick_recovered_leases_total {self.recovered_leases}")
            _family(lines, "crontick_lease_lost_total", "counter", "Settlements refused because another tick or an operator took the lease.")
            lines.append(f"crontick_lease_lost_total {self.lease_lost}")
            _family(lines, "crontick_tick_duration_seconds", "histogram", "Wall time of a tick, claim to settle.")
            for bound, count in zip(self.buckets, self.bucket_counts, strict=True):
                lines.append(f'crontick_tick_duration_seconds_bucket{{le="{_number(bound)}"}} {count}')
            lines.append(f'crontick_tick_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
            lines.append(f"crontick_tick_duration_seconds_sum {_number(self.duration_sum)}")
            lines.append(f"crontick_tick_duration_seconds_count {self.duration_count}")
            _family(lines, "crontick_schedule_lag_seconds", "histogram", "Fire time to start of each run whose handler ran (ticks' and /tasks/run's runs).")
            self.schedule_lag.render(lines, "crontick_schedule_lag_seconds")
            _family(lines, "crontick_run_duration_seconds", "histogram", "Handler wall time of each run, by job_type (ticks' and /tasks/run's runs).")
            for job_type in sorted(self.run_duration):
                self.run_duration[job_type].render(lines, "crontick_run_duration_seconds", f'job_type="{_label_value(job_type)}"')
            return lines


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else f"{value:.1f}"


def register_metrics(app: Flask) -> None:
    app.extensions[EXTENSION] = TickMetricsCollector()
    app.register_blueprint(bp)


def observe_task_run(outcome: TaskRunOutcome) -> None:
    """Called by ``/tasks/run`` with each dispatched run it settled."""
    collector = current_app.extensions.get(EXTENSION)
    if collector is not None and outcome.run is not None:
        collector.observe_runs([outcome.run])


def observe_tick(outcome: TickOutcome) -> None:
    """Called by ``/cron/tick`` with each outcome; a no-op on an app without metrics."""
    collector = current_app.extensions.get(EXTENSION)
    if collector is not None:
        collector.observe(outcome)


@dataclass(frozen=True)
class StoreFigures:
    """The store's job counts by status and its due count, as read at ``read_at``."""

    counts: dict[str, int]
    due: int
    read_at: float  # on the cache's monotonic clock


@dataclass(frozen=True)
class StoreReading:
    """What one scrape shows: ``figures`` are the last good ones (None before the first),
    ``up`` whether the latest completed read answered."""

    figures: StoreFigures | None
    up: bool


class StoreGaugeCache:
    """The store's counts for ``/metrics``, read at most every ``max_age`` seconds; thread-safe.

    :meth:`get` returns cached figures younger than ``max_age``. Otherwise one caller
    (the first) reads the store, outside the lock; callers arriving during that read get
    the previous reading, or, when there is none yet, wait for it. A read that raises
    :class:`StoreError` leaves the previous figures in place and marks the reading down,
    and is not cached: the next :meth:`get` reads again. Any other exception propagates
    to the reader (a bug) and likewise leaves the figures as they were. ``max_age <= 0``
    (or NaN) reads every time.
    """

    def __init__(self, read: Callable[[], tuple[dict[str, int], int]], *, max_age: float, monotonic: Callable[[], float]) -> None:
        self._read = read
        self.max_age = max_age
        self._monotonic = monotonic
        self._changed = threading.Condition(threading.Lock())
        self._figures: StoreFigures | None = None
        self._up = False
        self._done = False  # a read has completed (either way)
        self._reading = False

    def get(self) -> StoreReading:
        with self._changed:
            if self._fresh():
                return StoreReading(self._figures, True)
            if self._reading:
                if self._done:
                    return StoreReading(self._figures, self._up)
                while not self._done:  # nothing to show yet: wait for the read under way
                    self._changed.wait()
                return StoreReading(self._figures, self._up)
            self._reading = True
        figures, up = None, False
        try:
            counts, due = self._read()
            figures, up = StoreFigures(dict(counts), due, self._monotonic()), True
        except StoreError as exc:
            log.warning("metrics: store unavailable", extra={"json_fields": {"action": "metrics_store_read_failed", "error": str(exc)}})
        finally:
            with self._changed:
                if figures is not None:
                    self._figures = figures
                self._up, self._done, self._reading = up, True, False
                reading = StoreReading(self._figures, up)
                self._changed.notify_all()
        return reading

    def age(self, figures: StoreFigures) -> float:
        return max(self._monotonic() - figures.read_at, 0.0)

    def _fresh(self) -> bool:
        if self._figures is None or not self._up or not self.max_age > 0:
            return False
        return self._monotonic() - self._figures.read_at < self.max_age


def _store_cache(ct) -> StoreGaugeCache:
    """The app's cache, made on first use (the app's store, clock and monotonic clock are wired by then)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with _CACHE_INIT:
        cache = app.extensions.get(CACHE_EXTENSION)
        if cache is None:
            def read() -> tuple[dict[str, int], int]:
                return ct.store.count_by_status(), ct.store.count_due(ct.clock())

            cache = StoreGaugeCache(read, max_age=ct.settings.metrics_store_cache_seconds, monotonic=ct.engine.monotonic)
            app.extensions[CACHE_EXTENSION] = cache
        return cache


def store_gauges() -> list[str]:
    cache = _store_cache(crontick())
    reading = cache.get()
    lines: list[str] = []
    _family(lines, "crontick_store_up", "gauge", "1 when the store answered the latest read of the gauges below.")
    lines.append(f"crontick_store_up {1 if reading.up else 0}")
    figures = reading.figures
    if figures is None:
        return lines
    _family(lines, "crontick_store_gauges_age_seconds", "gauge", "Age of the store figures served (cached up to METRICS_STORE_CACHE_SECONDS).")
    lines.append(f"crontick_store_gauges_age_seconds {_number(round(cache.age(figures), 3))}")
    if not reading.up:
        return lines
    _family(lines, "crontick_jobs", "gauge", "Jobs in the store, by status.")
    lines += [f'crontick_jobs{{status="{status.value}"}} {figures.counts.get(status.value, 0)}' for status in JobStatus]
    _family(lines, "crontick_jobs_due", "gauge", "Jobs claimable now (pending and due, or holding an expired lease).")
    lines.append(f"crontick_jobs_due {figures.due}")
    return lines


@bp.get("/metrics")
def metrics():
    ct = crontick()
    collector = current_app.extensions.get(EXTENSION)
    if not ct.settings.metrics_enabled or collector is None:
        raise NotFound("metrics are disabled; set METRICS_ENABLED=true")
    lines = collector.render() + store_gauges()
    return Response("\n".join(lines) + "\n", content_type=CONTENT_TYPE)
