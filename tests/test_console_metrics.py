"""/metrics' per-run histograms against runs of known lag and duration."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from main import create_app
from scheduler.model import JobStatus
from tests.conftest import BASE_CONFIG
from tests.support.clock import T0, FakeClock
from tests.support.console import FakeMonotonic, timed_registry
from tests.support.jobs import make_job
from web.metrics import RUN_DURATION_BUCKETS, Histogram


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.fixture
def metrics_app():
    clock, monotonic = FakeClock(T0), FakeMonotonic()
    config = BASE_CONFIG | {"METRICS_ENABLED": "true", "METRICS_STORE_CACHE_SECONDS": "0", "SCHEDULER_MAX_CONCURRENCY": "1"}
    app = create_app(config, clock=clock, registry=timed_registry(monotonic), rng=random.Random(1), monotonic=monotonic)
    return app, clock


def test_lag_and_duration_histograms_count_each_run_in_its_buckets(metrics_app):
    app, clock = metrics_app
    store = app.extensions["crontick"].store
    # (id, type, seconds late, handler seconds)
    runs = [("a", "take", 3, 0.03), ("b", "take", 45, 2.0), ("c", "take_fail", 0.2, 0.7), ("d", "log", 700, 0.0)]
    for job_id, job_type, late, seconds in runs:
        store.add_job(make_job(job_id, due_in=-late, now=T0, job_type=job_type, payload={"seconds": seconds}))
    # A paused job never runs and is in neither histogram.
    store.add_job(make_job("p", now=T0, job_type="take", payload={"seconds": 5}, status=JobStatus.PAUSED))
    client = app.test_client()
    assert client.post("/cron/tick").get_json()["jobs_executed"] == 4
    m = samples(client.get("/metrics").get_data(as_text=True))
    lag = {le: m[f'crontick_schedule_lag_seconds_bucket{{le="{le}"}}'] for le in ("0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "60.0", "600.0", "1800.0", "+Inf")}
    assert lag == {"0.5": 1, "1.0": 1, "2.0": 1, "5.0": 2, "10.0": 2, "30.0": 2, "60.0": 3, "600.0": 3, "1800.0": 4, "+Inf": 4}
    assert m["crontick_schedule_lag_seconds_count"] == 4
    assert m["crontick_schedule_lag_seconds_sum"] == pytest.approx(3 + 45 + 0.2 + 700)
    take = {le: m[f'crontick_run_duration_seconds_bucket{{job_type="take",le="{le}"}}'] for le in ("0.01", "0.05", "1.0", "2.5", "+Inf")}
    assert take == {"0.01": 0, "0.05": 1, "1.0": 1, "2.5": 2, "+Inf": 2}
    assert m['crontick_run_duration_seconds_sum{job_type="take"}'] == pytest.approx(2.03)
    assert m['crontick_run_duration_seconds_count{job_type="take_fail"}'] == 1
    assert m['crontick_run_duration_seconds_bucket{job_type="take_fail",le="0.5"}'] == 0
    assert m['crontick_run_duration_seconds_bucket{job_type="take_fail",le="1.0"}'] == 1
    assert m['crontick_run_duration_seconds_count{job_type="log"}'] == 1
    assert not any('job_type="ledger"' in name for name in m)


def test_a_second_tick_adds_to_the_histograms_and_a_duplicate_adds_nothing(metrics_app):
    app, clock = metrics_app
    store = app.extensions["crontick"].store
    store.add_job(make_job("x", due_in=-1, now=T0, job_type="take", payload={"seconds": 0.3}))
    client = app.test_client()
    headers = {"X-CloudScheduler-JobName": "ticker", "X-CloudScheduler-ScheduleTime": "2026-01-05T12:00:00Z"}
    client.post("/cron/tick", headers=headers)
    clock.advance(5)
    store.add_job(make_job("y", due_in=-4, now=clock(), job_type="take", payload={"seconds": 0.3}))
    # The same occurrence again: a duplicate, runs nothing even though y is due.
    assert client.post("/cron/tick", headers=headers).get_json()["duplicate"] is True
    m = samples(client.get("/metrics").get_data(as_text=True))
    assert m["crontick_schedule_lag_seconds_count"] == 1
    client.post("/cron/tick")
    m = samples(client.get("/metrics").get_data(as_text=True))
    assert m["crontick_schedule_lag_seconds_count"] == 2
    assert m['crontick_schedule_lag_seconds_bucket{le="1.0"}'] == 1
    assert m['crontick_schedule_lag_seconds_bucket{le="5.0"}'] == 2
    assert m['crontick_run_duration_seconds_count{job_type="take"}'] == 2


def test_label_values_are_escaped():
    from web.metrics import _label_value

    assert _label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_histograms_are_declared_once_with_help_and_type(metrics_app):
    app, _ = metrics_app
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert text.count("# TYPE crontick_schedule_lag_seconds histogram") == 1
    assert text.count("# TYPE crontick_run_duration_seconds histogram") == 1
    assert 'crontick_schedule_lag_seconds_bucket{le="+Inf"} 0' in text
    assert "crontick_run_duration_seconds_bucket" not in text  # no job type has run yet


@settings(max_examples=200, database=None)
@given(st.lists(st.floats(min_value=0, max_value=4000, allow_nan=False) | st.sampled_from(RUN_DURATION_BUCKETS), max_size=40))
def test_a_histogram_bucket_counts_the_values_at_or_below_its_bound(values):
    """Kept per bucket and added up at render: the same counts as Prometheus's definition."""
    histogram = Histogram(RUN_DURATION_BUCKETS)
    for value in values:
        histogram.observe(value)
    lines: list[str] = []
    histogram.render(lines, "h")
    rendered = dict(line.rsplit(" ", 1) for line in lines)
    for bound in RUN_DURATION_BUCKETS:
        assert int(rendered[f'h_bucket{{le="{bound!r}"}}']) == sum(1 for v in values if v <= bound), bound
    assert int(rendered['h_bucket{le="+Inf"}']) == len(values) == int(rendered["h_count"])
