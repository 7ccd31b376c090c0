"""Shadow mode: the legacy loop and Cloud Scheduler tick one store side by side, no duplicates."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

from main import create_app
from scheduler.model import Source
from tests.support.handlers import read_ledger
from tests.test_tick_http import SCHEDULER_HEADERS


def test_no_loop_runs_with_shadow_mode_off(app):
    assert app.extensions["crontick"].legacy_loop is None
    assert not [t for t in threading.enumerate() if t.name == "crontick-legacy-loop"]


def test_both_paths_ticking_one_store_run_each_occurrence_once_and_the_report_counts_both(config, registry, clock, tmp_path):
    shadow = config | {"SCHEDULER_SHADOW_MODE": "true", "SCHEDULER_LEGACY_INTERVAL_SECONDS": "3600"}
    app = create_app(shadow | {"SCHEDULER_STORAGE": "json"}, clock=clock, registry=registry)
    ct = app.extensions["crontick"]
    try:
        assert ct.legacy_loop is not None
        ledger = str(tmp_path / "ledger.txt")
        for i in range(40):
            ct.service.create({"id": f"j{i:02d}", "job_type": "ledger", "cron": "* * * * *", "payload": {"ledger": ledger}})
        client = app.test_client()
        for minute in range(1, 6):
            clock.advance(60)
            headers = dict(SCHEDULER_HEADERS, **{"X-CloudScheduler-ScheduleTime": clock().isoformat()})
            # Both paths at once, as in production: the legacy loop in a thread, Cloud Scheduler over HTTP.
            legacy = threading.Thread(target=ct.legacy_loop.tick_once)
            legacy.start()
            assert client.post("/cron/tick", headers=headers).status_code == 200
            legacy.join()
        fires = Counter((row[0], row[1]) for row in read_ledger(ledger))
        assert len(fires) == 40 * 5 and set(fires.values()) == {1}
        report = client.get("/api/v1/shadow-report?window_minutes=60").json
        sources = report["sources"]
        assert report["duplicate_occurrences"] == 0 and report["shadow_mode"] is True
        assert sources["cloud_scheduler"]["occurrences"] + sources["legacy_loop"]["occurrences"] == 200
        assert sources["cloud_scheduler"]["ticks"] + sources["legacy_loop"]["ticks"] >= 5
        for row in sources.values():  # the fake clock ticks exactly on time; which path wins a job is a race
            assert row["lag_seconds"]["max"] in (None, 0.0) and (row["lag_seconds"]["max"] is None) == (row["occurrences"] == 0)
        executions = ct.store.list_executions(limit=1000)
        assert {e.source for e in executions} <= {Source.CLOUD_SCHEDULER, Source.LEGACY_LOOP}
    finally:
        ct.legacy_loop.stop(5)


def test_the_loop_ticks_on_its_own_interval_and_survives_a_failing_store(config, registry, tmp_path):
    app = create_app(config | {"SCHEDULER_SHADOW_MODE": "true", "SCHEDULER_LEGACY_INTERVAL_SECONDS": "1", "SCHEDULER_STORAGE": "json"}, registry=registry)
    ct = app.extensions["crontick"]
    try:
        from scheduler.clock import utc_now

        ct.service.create({"job_type": "log", "schedule_at": utc_now().isoformat()})
        deadline = time.monotonic() + 10
        while ct.store.count_by_status()["completed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ct.store.count_by_status()["completed"] == 1
        assert ct.store.recent_ticks(1)[0].source is Source.LEGACY_LOOP
        path = tmp_path / "jobs.json"
        path.rename(tmp_path / "moved.json")
        path.mkdir()  # reads now fail: the loop logs and keeps going
        ticks = ct.legacy_loop.ticks
        while ct.legacy_loop.ticks < ticks + 2 and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        assert ct.legacy_loop.ticks >= ticks + 2
    finally:
        ct.legacy_loop.stop(5)


def test_shadow_report_cli_and_window_validation(config, registry, clock):
    app = create_app(config, clock=clock, registry=registry)
    result = app.test_cli_runner().invoke(args=["shadow-report", "--window-minutes", "5"])
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["window_seconds"] == 300 and body["duplicate_occurrences"] == 0
    bad = app.test_client().get("/api/v1/shadow-report?window_minutes=0")
    assert bad.status_code == 400 and bad.json["error"]["field"] == "window_minutes"
