"""Backfill: ``POST /api/v1/jobs/{id}:backfill`` runs each fire time in [start, end) once,
oldest first, through the normal claim path; asked twice (or at once) it runs nothing twice."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from main import create_app
from scheduler.model import Outcome, Source
from storage.jsonfile import JsonFileStore
from tests.support.clock import FakeClock
from tests.support.handlers import read_ledger

UTC = timezone.utc
API = "/api/v1"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def app(make_store, config, registry):
    # One handler at a time, so the ledger's order is the claim's order.
    return create_app(config | {"SCHEDULER_MAX_CONCURRENCY": "1"}, store=make_store(), clock=FakeClock(NOW), registry=registry, rng=random.Random(1))


def _hourly(client, ledger) -> str:
    body = {"id": "hourly", "job_type": "ledger", "cron": "0 * * * *", "payload": {"ledger": str(ledger)}}
    assert client.post(f"{API}/jobs", json=body).status_code == 201
    return "hourly"


def test_backfill_runs_each_fire_time_once_oldest_first_and_never_twice(app, tmp_path):
    client = app.test_client()
    ledger = tmp_path / "ledger.txt"
    job_id = _hourly(client, ledger)
    window = {"start": "2026-01-05T06:00:00Z", "end": "2026-01-05T12:00:00Z"}
    first = client.post(f"{API}/jobs/{job_id}:backfill", json=window)
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["fire_times"] == [f"2026-01-05T{h:02d}:00:00.000000Z" for h in range(6, 12)]
    assert len(body["created"]) == 6 and body["existing"] == []
    again = client.post(f"{API}/jobs/{job_id}:backfill", json=window)
    assert again.status_code == 200 and again.get_json()["created"] == [] and sorted(again.get_json()["existing"]) == sorted(body["created"])
    tick = client.post("/cron/tick").get_json()
    assert tick["jobs_succeeded"] == 6
    rows = read_ledger(ledger)
    assert [row[1] for row in rows] == [f"2026-01-05T{h:02d}:00:00+00:00" for h in range(6, 12)]  # ctx.fire_at, oldest first
    client.post(f"{API}/jobs/{job_id}:backfill", json=window)
    client.post("/cron/tick")
    assert len(read_ledger(ledger)) == 6  # nothing twice
    store = app.extensions["crontick"].store
    child = store.get_job(body["created"][0])
    assert child.backfill_of == job_id and child.schedule_at == datetime(2026, 1, 5, 6, tzinfo=UTC)
    [execution] = store.list_executions(job_id=child.id)
    assert execution.source is Source.BACKFILL and execution.outcome is Outcome.SUCCEEDED
    assert store.get_job(job_id).next_run_at == datetime(2026, 1, 5, 13, tzinfo=UTC)  # the job's own schedule is untouched


def test_backfill_is_bounded_and_refuses_bad_requests_naming_the_field(app, tmp_path):
    client = app.test_client()
    job_id = _hourly(client, tmp_path / "ledger.txt")
    wide = {"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}  # 8,760 fire times
    refused = client.post(f"{API}/jobs/{job_id}:backfill", json=wide)
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "end" and "more than 1000" in refused.get_json()["error"]["message"]
    capped = client.post(f"{API}/jobs/{job_id}:backfill", json=wide | {"max_runs": 10}).get_json()
    assert capped["fire_times"][0] == "2025-01-01T00:00:00.000000Z" and len(capped["created"]) == 10
    for body, field in [
        ({"start": "2026-01-05T00:00:00Z"}, "end"),
        ({"start": "2026-01-05T00:00:00Z", "end": "2026-01-06T00:00:00Z"}, "end"),  # in the future
        ({"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T09:00:00Z"}, "end"),
        ({"start": "yesterday", "end": "2026-01-05T09:00:00Z"}, "start"),
        ({"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T09:00:00Z", "max_runs": 1001}, "max_runs"),
        ({"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T09:00:00Z", "extra": 1}, "extra"),
    ]:
        response = client.post(f"{API}/jobs/{job_id}:backfill", json=body)
        assert response.status_code == 400 and response.get_json()["error"]["field"] == field, (body, response.get_json())
    one_off = client.post(f"{API}/jobs", json={"job_type": "log", "schedule_at": "2026-01-06T00:00:00Z"}).get_json()
    assert client.post(f"{API}/jobs/{one_off['id']}:backfill", json={"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T09:00:00Z"}).status_code == 409
    assert client.post(f"{API}/jobs/nope:backfill", json={"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T09:00:00Z"}).status_code == 404


@pytest.mark.parametrize("store_kind", ["json"], indirect=True)
def test_concurrent_backfills_and_ticks_run_each_occurrence_once(app, tmp_path):
    """Four clients ask the same backfill while four threads tick: each occurrence runs once."""
    ledger = tmp_path / "ledger.txt"
    _hourly(app.test_client(), ledger)
    window = {"start": "2026-01-04T12:00:00Z", "end": "2026-01-05T12:00:00Z"}  # 24 fire times
    errors: list[str] = []

    def ask():
        response = app.test_client().post(f"{API}/jobs/hourly:backfill", json=window)
        if response.status_code not in (200, 201):
            errors.append(response.get_data(as_text=True))

    def tick():
        for _ in range(5):
            response = app.test_client().post("/cron/tick")
            if response.status_code != 200:
                errors.append(response.get_data(as_text=True))

    threads = [threading.Thread(target=ask) for _ in range(4)] + [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    app.test_client().post("/cron/tick")
    assert errors == []
    counts = Counter(row[1] for row in read_ledger(ledger))
    assert len(counts) == 24 and set(counts.values()) == {1}
