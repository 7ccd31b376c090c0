"""``GET /metrics``: Prometheus text exposition (format 0.0.4), written by hand.

Counters live in this process and are fed by ``/cron/tick`` (``web/tick.py``
calls :func:`observe_tick` with each :class:`~scheduler.engine.TickOutcome`).
On Cloud Run each instance has its own counters, reset when it starts; Prometheus
handles resets, and ``sum()`` across instances gives the service's totals. The
``crontick_jobs`` and ``crontick_jobs_due`` gauges are read from the store at
scrape time, so they are the service-wide figures.

Served only when ``METRICS_ENABLED=true`` (else 404). The endpoint takes no token,
so that a scraper beside the container (the Cloud Run Managed Prometheus sidecar
scrapes localhost) can read it; it shows counts only, never job contents.

No ``prometheus_client`` dependency: a handful of counters and one histogram
do not need it, and its process-global default registry fights with the many
apps a test session builds.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable

from flask import Blueprint, Flask, Response, current_app
from werkzeug.exceptions import NotFound

from scheduler.engine import TickOutcome
from scheduler.errors import StoreError
from scheduler.model import JobStatus
from web.context import crontick

log = logging.getLogger(__name__)

EXTENSION = "crontick_metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
JOB_OUTCOMES = ("succeeded", "failed", "misfired", "deferred")

bp = Blueprint("metrics", __name__)


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


def observe_tick(outcome: TickOutcome) -> None:
    """Called by ``/cron/tick`` with each outcome; a no-op on an app without metrics."""
    collector = current_app.extensions.get(EXTENSION)
    if collector is not None:
        collector.observe(outcome)


def store_gauges() -> list[str]:
    ct = crontick()
    lines: list[str] = []
    _family(lines, "crontick_store_up", "gauge", "1 when the store answered this scrape.")
    try:
        counts = ct.store.count_by_status()
        due = ct.store.count_due(ct.clock())
    except StoreError as exc:
        log.warning("metrics: store unavailable", extra={"json_fields": {"error": str(exc)}})
        lines.append("crontick_store_up 0")
        return lines
    lines.append("crontick_store_up 1")
    _family(lines, "crontick_jobs", "gauge", "Jobs in the store, by status.")
    lines += [f'crontick_jobs{{status="{status.value}"}} {counts.get(status.value, 0)}' for status in JobStatus]
    _family(lines, "crontick_jobs_due", "gauge", "Jobs claimable now (pending and due, or holding an expired lease).")
    lines.append(f"crontick_jobs_due {due}")
    return lines


@bp.get("/metrics")
def metrics():
    ct = crontick()
    collector = current_app.extensions.get(EXTENSION)
    if not ct.settings.metrics_enabled or collector is None:
        raise NotFound("metrics are disabled; set METRICS_ENABLED=true")
    lines = collector.render() + store_gauges()
    return Response("\n".join(lines) + "\n", content_type=CONTENT_TYPE)
