"""``/metrics`` serves the store gauges from a per-app cache (METRICS_STORE_CACHE_SECONDS).

The app is real (``create_app`` over a real MemoryStore); the store is wrapped in a
counting proxy (a spy: every call goes through to the real store) that can also be
told to fail or to hold a read until released. Time is the app's injected monotonic
clock, moved by hand, so no test sleeps.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from main import create_app
from scheduler.errors import StoreUnavailable
from storage.memory import MemoryStore
from tests.conftest import BASE_CONFIG

COUNTED = ("count_by_status", "count_due")


class CountingStore:
    """A real store behind a spy: counts the gauge reads, fails or holds them on demand."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = dict.fromkeys(COUNTED, 0)
        self.fail = False
        self.entered = threading.Event()  # a gauge read has started
        self.gate: threading.Event | None = None  # when set, count_by_status waits for it

    def count_by_status(self) -> dict[str, int]:
        self.calls["count_by_status"] += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never released the read"
        if self.fail:
            raise StoreUnavailable("store down (injected)")
        return self.inner.count_by_status()

    def count_due(self, now):
        self.calls["count_due"] += 1
        if self.fail:
            raise StoreUnavailable("store down (injected)")
        return self.inner.count_due(now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(MemoryStore())


@pytest.fixture
def mono() -> Monotonic:
    return Monotonic()


def make_app(store: CountingStore, mono: Monotonic, clock, registry, **config: str):
    return create_app(BASE_CONFIG | {"METRICS_ENABLED": "true"} | config, store=store, clock=clock, registry=registry, monotonic=mono)


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    samples = {}
    for line in response.get_data(as_text=True).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def add_job(client, job_id: str) -> None:
    response = client.post("/api/v1/jobs", json={"id": job_id, "job_type": "log", "schedule_at": "2026-01-05T11:00:00Z"})
    assert response.status_code == 201, response.get_json()


def test_scrapes_within_the_window_read_the_store_once_and_a_later_one_refreshes(store, mono, clock, registry):
    client = make_app(store, mono, clock, registry, METRICS_STORE_CACHE_SECONDS="15").test_client()
    add_job(client, "a")

    ages = []
    for step in range(6):
        samples = scrape(client)
        ages.append(samples["crontick_store_gauges_age_seconds"])
        assert samples["crontick_store_up"] == 1
        assert samples['crontick_jobs{status="pending"}'] == 1 and samples["crontick_jobs_due"] == 1
        if step == 2:
            add_job(client, "b")  # not seen until the figures are refreshed
        mono.now += 2.5
    assert store.calls == {"count_by_status": 1, "count_due": 1}
    assert ages == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5]

    mono.now += 2.5  # 15 s after the read: stale
    samples = scrape(client)

    assert store.calls == {"count_by_status": 2, "count_due": 2}
    assert samples['crontick_jobs{status="pending"}'] == 2 and samples["crontick_jobs_due"] == 2
    assert samples["crontick_store_gauges_age_seconds"] == 0
    assert scrape(client)['crontick_jobs{status="pending"}'] == 2
    assert store.calls["count_by_status"] == 2


def test_the_default_window_is_15_seconds(store, mono, clock, registry):
    client = make_app(store, mono, clock, registry).test_client()
    scrape(client)
    mono.now += 14.999
    assert scrape(client)["crontick_store_gauges_age_seconds"] == 14.999
    assert store.calls["count_by_status"] == 1
    mono.now += 0.001
    scrape(client)
    assert store.calls["count_by_status"] == 2


def test_zero_reads_the_store_on_every_scrape(store, mono, clock, registry):
    client = make_app(store, mono, clock, registry, METRICS_STORE_CACHE_SECONDS="0").test_client()
    for expected in (1, 2, 3):
        samples = scrape(client)
        assert store.calls == {"count_by_status": expected, "count_due": expected}
        assert samples["crontick_store_gauges_age_seconds"] == 0


def test_a_store_failure_shows_down_and_does_not_poison_the_cache(store, mono, clock, registry):
    client = make_app(store, mono, clock, registry, METRICS_STORE_CACHE_SECONDS="15").test_client()
    add_job(client, "a")
    assert scrape(client)["crontick_store_up"] == 1

    mono.now += 15
    store.fail = True
    down = scrape(client)

    assert down["crontick_store_up"] == 0
    assert not [name for name in down if name.startswith(("crontick_jobs{", "crontick_jobs_due"))]  # nothing stale served as current
    assert down["crontick_store_gauges_age_seconds"] == 15  # the last good figures are kept, and this old
    assert down["crontick_ticks_total{result=\"ran\"}"] == 0  # the rest of the page is served
    # The failure is not cached: the very next scrape reads again.
    assert scrape(client)["crontick_store_up"] == 0
    assert store.calls["count_by_status"] == 3

    store.fail = False
    up = scrape(client)

    assert store.calls["count_by_status"] == 4
    assert up["crontick_store_up"] == 1 and up['crontick_jobs{status="pending"}'] == 1
    assert up["crontick_store_gauges_age_seconds"] == 0
    scrape(client)
    assert store.calls["count_by_status"] == 4  # and the good figures are cached again


def test_a_failure_before_any_figures_shows_only_store_up(store, mono, clock, registry):
    client = make_app(store, mono, clock, registry).test_client()
    store.fail = True

    samples = scrape(client)

    assert samples["crontick_store_up"] == 0
    assert "crontick_store_gauges_age_seconds" not in samples and "crontick_jobs_due" not in samples
    store.fail = False
    assert scrape(client)["crontick_store_up"] == 1
    assert store.calls["count_by_status"] == 2


def _scrape_in_thread(app, results: list, index: int) -> threading.Thread:
    def run() -> None:
        results[index] = scrape(app.test_client())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_one_refresh_at_a_time_others_get_the_previous_figures(store, mono, clock, registry):
    app = make_app(store, mono, clock, registry, METRICS_STORE_CACHE_SECONDS="15")
    client = app.test_client()
    add_job(client, "a")
    assert scrape(client)['crontick_jobs{status="pending"}'] == 1
    add_job(client, "b")
    mono.now += 20
    store.gate = threading.Event()
    store.entered.clear()
    results: list = [None] * 5

    refresher = _scrape_in_thread(app, results, 0)
    assert store.entered.wait(30)
    # While that read is held, other scrapes answer at once with the previous figures.
    others = [_scrape_in_thread(app, results, i) for i in range(1, 5)]
    for thread in others:
        thread.join(30)
        assert not thread.is_alive()
    assert refresher.is_alive()
    for samples in results[1:]:
        assert samples["crontick_store_up"] == 1
        assert samples['crontick_jobs{status="pending"}'] == 1
        assert samples["crontick_store_gauges_age_seconds"] == 20
    store.gate.set()
    refresher.join(30)

    assert results[0]['crontick_jobs{status="pending"}'] == 2 and results[0]["crontick_store_gauges_age_seconds"] == 0
    assert store.calls == {"count_by_status": 2, "count_due": 2}


def test_scrapes_before_the_first_figures_wait_for_the_one_read(store, mono, clock, registry):
    app = make_app(store, mono, clock, registry, METRICS_STORE_CACHE_SECONDS="15")
    add_job(app.test_client(), "a")
    store.gate = threading.Event()
    results: list = [None] * 4

    first = _scrape_in_thread(app, results, 0)
    assert store.entered.wait(30)
    waiting = [_scrape_in_thread(app, results, i) for i in range(1, 4)]
    for thread in waiting:
        thread.join(0.2)  # they cannot answer: there is nothing to show until the read ends
        assert thread.is_alive()
    assert results[1:] == [None, None, None]
    store.gate.set()
    for thread in [first, *waiting]:
        thread.join(30)
        assert not thread.is_alive()

    assert store.calls == {"count_by_status": 1, "count_due": 1}
    for samples in results:
        assert samples["crontick_store_up"] == 1 and samples['crontick_jobs{status="pending"}'] == 1


def test_each_app_has_its_own_cache(store, mono, clock, registry):
    first = make_app(store, mono, clock, registry).test_client()
    second = make_app(store, mono, clock, registry).test_client()
    scrape(first)
    scrape(second)
    scrape(first)
    assert store.calls["count_by_status"] == 2


def test_the_cache_setting_is_validated():
    from scheduler.errors import ConfigError
    from scheduler.settings import Settings

    with pytest.raises(ConfigError, match=r"METRICS_STORE_CACHE_SECONDS='-1': must be at least 0"):
        Settings.from_env({"AUTH_MODE": "disabled", "METRICS_STORE_CACHE_SECONDS": "-1"})
    with pytest.raises(ConfigError, match=r"METRICS_STORE_CACHE_SECONDS='soon': must be a number"):
        Settings.from_env({"AUTH_MODE": "disabled", "METRICS_STORE_CACHE_SECONDS": "soon"})
    assert Settings.from_env({"AUTH_MODE": "disabled"}).metrics_store_cache_seconds == 15.0
