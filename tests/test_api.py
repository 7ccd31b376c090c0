"""The operator API (/api/v1) and /metrics, through the real app on every store kind.

The app is built with ``create_app(config, store=make_store())``, so every kind in
``tests/conftest.py::STORE_KINDS`` runs these tests.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from main import create_app
from scheduler.model import Source, TickRecord, to_iso
from tests.support.clock import T0
from tests.support.oidc import AUDIENCE, CertServer, TokenFactory, oidc_env, token_factory  # noqa: F401 - fixture

API = "/api/v1"


@pytest.fixture
def api_app(make_store, config, clock, registry):
    return create_app(config, store=make_store(), clock=clock, registry=registry, rng=random.Random(7))


@pytest.fixture
def api(api_app):
    return api_app.test_client()


@pytest.fixture
def store_of(api_app):
    return api_app.extensions["crontick"].store


def create(api, expect: int = 201, **fields):
    schedule = {} if any(k in fields for k in ("cron", "schedule_at", "interval_seconds")) else {"interval_seconds": 300}
    body = {"job_type": "log"} | schedule | fields
    body = {k: v for k, v in body.items() if v is not None}
    response = api.post(f"{API}/jobs", json=body)
    assert response.status_code == expect, response.get_json()
    return response.get_json()


def assert_error(response, status: int, field: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def iso(dt: datetime) -> str:
    return to_iso(dt)


# -- create ----------------------------------------------------------------------------
def test_create_returns_201_and_a_repeated_idempotency_key_returns_the_same_job(api, store_of):
    response = api.post(f"{API}/jobs", json={"job_type": "log", "cron": "*/5 * * * *", "payload": {"a": 1}, "idempotency_key": "k-1"})
    assert response.status_code == 201
    job = response.get_json()
    assert response.headers["Location"] == f"{API}/jobs/{job['id']}"
    assert job["status"] == "pending" and job["created_by"] == "local" and job["payload"] == {"a": 1}
    assert job["next_run_at"] == iso(T0 + timedelta(minutes=5))

    again = api.post(f"{API}/jobs", json={"job_type": "log", "cron": "0 * * * *", "idempotency_key": "k-1"})
    assert again.status_code == 200
    assert again.get_json() == job  # the existing job, unchanged
    assert store_of.count_by_status()["pending"] == 1


def test_create_with_a_taken_id_is_a_conflict(api):
    create(api, id="same")
    assert_error(api.post(f"{API}/jobs", json={"id": "same", "job_type": "log", "interval_seconds": 60}), 409, code="conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_type": "log"}, "schedule"),
        ({"job_type": "nope", "interval_seconds": 60}, "job_type"),
        ({"job_type": "log", "interval_seconds": "60"}, "interval_seconds"),
        ({"job_type": "log", "interval_seconds": 60, "max_attempts": True}, "max_attempts"),
        ({"job_type": "log", "interval_seconds": 60, "max_attempts": 0}, "max_attempts"),
        ({"job_type": "log", "interval_seconds": 60, "payload": []}, "payload"),
        ({"job_type": "log", "interval_seconds": 60, "colour": "red"}, "colour"),
        ({"job_type": "log", "cron": "* * *"}, "cron"),
        ({"job_type": "log", "cron": "0 0 30 2 *"}, "cron"),
        ({"job_type": "log", "cron": "0 0 * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"job_type": "log", "schedule_at": "2026-01-05T12:00:00"}, "schedule_at"),
        ({"job_type": "log", "schedule_at": "next tuesday"}, "schedule_at"),
        ({"job_type": "log", "schedule_at": "20260105T120000+0000"}, "schedule_at"),
        ({"job_type": "log", "schedule_at": "9999-12-31T23:59:59-05:00"}, "schedule_at"),
        ({"job_type": "log", "schedule_at": "0003-06-01T13:43:01Z"}, "schedule_at"),
        ({"job_type": "log", "schedule_at": "1969-12-31T23:59:59Z"}, "schedule_at"),
        ({"job_type": "log", "interval_seconds": 60, "id": "has space"}, "id"),
        ({"job_type": "log", "interval_seconds": 60, "idempotency_key": ""}, "idempotency_key"),
        ({"job_type": "log", "interval_seconds": 60, "cron": "* * * * *"}, "interval_seconds"),
        ({"job_type": "http_request", "interval_seconds": 60, "payload": {"bogus": 1}}, "payload.bogus"),
        ([{"job_type": "log"}], None),
    ],
)
def test_create_refuses_bad_input_with_400_naming_the_field(api, store_of, body, field):
    error = assert_error(api.post(f"{API}/jobs", json=body), 400, code="invalid_argument")
    assert error["field"] == field
    assert sum(store_of.count_by_status().values()) == 0


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{bad", b'{"job_type": "log", "interval_seconds": NaN}', b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b'{"a": 1' + b"0" * 5000 + b"}"],
    ids=["empty", "blank", "broken", "nan", "deep", "not-utf8", "huge-int"],
)
def test_a_body_that_is_not_json_is_a_400_on_body(api, raw):
    assert_error(api.post(f"{API}/jobs", data=raw, content_type="application/json"), 400, "body")


def test_body_media_type_and_size(api):
    assert_error(api.post(f"{API}/jobs", data="job_type=log", content_type="application/x-www-form-urlencoded"), 415)
    big = b'{"job_type": "log", "interval_seconds": 60, "payload": {"x": "' + b"a" * (1 << 20) + b'"}}'
    assert_error(api.post(f"{API}/jobs", data=big, content_type="application/json"), 413)
    # No Content-Type at all is read as JSON (curl -d without -H).
    response = api.post(f"{API}/jobs", data=b'{"job_type": "log", "interval_seconds": 60}')
    assert response.status_code == 201


# -- list -----------------------------------------------------------------------------------
def test_list_pages_with_a_cursor_and_filters(api):
    for i in range(7):
        create(api, id=f"j{i}", job_type="boom" if i % 3 == 0 else "log")
    api.post(f"{API}/jobs/j1:pause")

    seen, cursor, pages = [], None, 0
    while True:
        url = f"{API}/jobs?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(url).get_json()
        pages += 1
        seen += [job["id"] for job in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor == body["jobs"][-1]["id"]
    assert seen == [f"j{i}" for i in range(7)] and pages == 3

    exact = api.get(f"{API}/jobs?limit=7").get_json()
    assert len(exact["jobs"]) == 7 and exact["next_cursor"] is None
    assert [j["id"] for j in api.get(f"{API}/jobs?status=paused").get_json()["jobs"]] == ["j1"]
    assert [j["id"] for j in api.get(f"{API}/jobs?job_type=boom").get_json()["jobs"]] == ["j0", "j3", "j6"]
    assert [j["id"] for j in api.get(f"{API}/jobs?job_type=boom&status=pending&cursor=j0").get_json()["jobs"]] == ["j3", "j6"]
    assert api.get(f"{API}/jobs?job_type=unknown").get_json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=1000000000", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("cursor=a%2Fb", "cursor"),
        ("job_type=", "job_type"),
        ("job_type=" + "x" * 201, "job_type"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_list_refuses_bad_query_parameters(api, query, field):
    assert_error(api.get(f"{API}/jobs?{query}"), 400, field)


# -- one job ------------------------------------------------------------------------------
def test_get_unknown_and_impossible_ids_are_404(api):
    assert_error(api.get(f"{API}/jobs/missing"), 404, "id", "not_found")
    assert_error(api.get(f"{API}/jobs/no%20such"), 404)
    assert_error(api.get(f"{API}/jobs/" + "x" * 200), 404)
    assert_error(api.get(f"{API}/nowhere"), 404, code="not_found")
    assert_error(api.put(f"{API}/jobs/x", json={}), 405)


def test_patch_changes_payload_and_schedule(api, clock):
    create(api, id="p", cron="0 9 * * *", payload={"v": 1})
    clock.advance(60)
    response = api.patch(f"{API}/jobs/p", json={"payload": {"v": 2}, "cron": "30 10 * * *", "timezone": "Europe/Paris", "max_attempts": 5})
    assert response.status_code == 200
    job = response.get_json()
    assert job["payload"] == {"v": 2} and job["cron"] == "30 10 * * *" and job["max_attempts"] == 5
    assert job["next_run_at"] == "2026-01-06T09:30:00.000000Z"  # 10:30 in Paris (CET)
    assert job["updated_at"] == iso(clock())
    assert api.get(f"{API}/jobs/p").get_json() == job

    switched = api.patch(f"{API}/jobs/p", json={"interval_seconds": 600}).get_json()
    assert switched["cron"] is None and switched["interval_seconds"] == 600

    assert_error(api.patch(f"{API}/jobs/p", json={}), 400)
    assert_error(api.patch(f"{API}/jobs/p", json={"job_type": "boom"}), 400, "job_type")
    assert_error(api.patch(f"{API}/jobs/p", json={"max_attempts": "many"}), 400, "max_attempts")
    assert_error(api.patch(f"{API}/jobs/p", data="nope", content_type="application/json"), 400, "body")
    assert_error(api.patch(f"{API}/jobs/missing", json={"max_attempts": 2}), 404)
    api.delete(f"{API}/jobs/p")
    assert_error(api.patch(f"{API}/jobs/p", json={"max_attempts": 2}), 409, code="conflict")


def test_pause_resume_run_cancel_and_their_conflicts(api, clock):
    created = create(api, id="a", cron="*/10 * * * *")

    paused = api.post(f"{API}/jobs/a:pause")
    assert paused.status_code == 200 and paused.get_json()["status"] == "paused"
    assert api.post(f"{API}/jobs/a:pause").status_code == 200  # idempotent
    assert_error(api.post(f"{API}/jobs/a:run"), 409)

    clock.advance(minutes=25)  # two fire times missed while paused
    resumed = api.post(f"{API}/jobs/a:resume").get_json()
    assert resumed["status"] == "pending" and resumed["next_run_at"] == iso(T0 + timedelta(minutes=30))
    assert_error(api.post(f"{API}/jobs/a:resume"), 409)

    api.post(f"{API}/jobs/a:pause")
    caught_up = api.post(f"{API}/jobs/a:resume?catch_up=true").get_json()
    assert caught_up["next_run_at"] == iso(T0 + timedelta(minutes=30))  # not overdue: unchanged
    api.post(f"{API}/jobs/a:pause")
    clock.advance(minutes=10)
    caught_up = api.post(f"{API}/jobs/a:resume?catch_up=true").get_json()
    assert caught_up["next_run_at"] == iso(T0 + timedelta(minutes=30))  # overdue, kept for the next tick
    assert_error(api.post(f"{API}/jobs/a:resume?catch_up=maybe"), 400, "catch_up")
    assert_error(api.post(f"{API}/jobs/a:pause?force=true"), 400, "force")

    ran = api.post(f"{API}/jobs/a:run").get_json()
    assert ran["next_run_at"] == iso(clock()) and ran["cron"] == created["cron"]

    cancelled = api.delete(f"{API}/jobs/a")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert api.get(f"{API}/jobs/a").get_json()["status"] == "cancelled"  # the record stays
    assert api.delete(f"{API}/jobs/a").status_code == 200
    for verb in ("pause", "resume", "run", "release"):
        assert_error(api.post(f"{API}/jobs/a:{verb}"), 409, code="conflict")

    once = create(api, id="once", schedule_at=iso(clock() - timedelta(seconds=1)))
    assert once["next_run_at"] == iso(clock() - timedelta(seconds=1))
    api.post("/cron/tick")
    assert api.get(f"{API}/jobs/once").get_json()["status"] == "completed"
    assert_error(api.delete(f"{API}/jobs/once"), 409)


def test_unknown_actions_and_ids_are_404(api):
    create(api, id="a")
    for path in ("a:bogus", "a:", "a", "a:pause:now", "missing:pause", "bad%20id:run"):
        assert_error(api.post(f"{API}/jobs/{path}"), 404)
    assert api.get(f"{API}/jobs/a").status_code == 200


def test_release_frees_an_expired_lease_and_needs_force_for_a_live_one(api, api_app, clock, store_of):
    create(api, id="r", schedule_at=iso(T0))
    assert_error(api.post(f"{API}/jobs/r:release"), 409)
    claim = store_of.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=10)
    assert [job.id for job in claim.claimed] == ["r"]

    error = assert_error(api.post(f"{API}/jobs/r:release"), 409)
    assert "force" in error["message"]
    assert_error(api.post(f"{API}/jobs/r:release?force=yes-please"), 400, "force")
    forced = api.post(f"{API}/jobs/r:release?force=true").get_json()
    assert forced["status"] == "pending" and forced["lease_owner"] is None and forced["attempts"] == 0
    assert forced["lease_epoch"] == 2

    store_of.claim_due_jobs(now=T0, tick=TickRecord("t2", T0, Source.MANUAL), lease_seconds=60, limit=10)
    clock.advance(61)
    released = api.post(f"{API}/jobs/r:release").get_json()
    assert released["status"] == "pending" and released["next_run_at"] == iso(T0)


# -- preview --------------------------------------------------------------------------
def test_preview_across_a_dst_change(api, clock):
    clock.set(datetime(2026, 3, 27, 12, 0, tzinfo=timezone.utc))
    create(api, id="berlin", cron="30 2 * * *", timezone="Europe/Berlin")
    body = api.get(f"{API}/jobs/berlin/preview?count=3").get_json()
    assert body["description"] == "every day at 02:30 (Europe/Berlin time)"
    assert body["timezone"] == "Europe/Berlin" and body["schedule"]["cron"] == "30 2 * * *"
    assert body["fire_times"] == [
        {"utc": "2026-03-28T01:30:00.000000Z", "local": "2026-03-28T02:30:00+01:00", "fire_at": "2026-03-28T01:30:00.000000Z", "dst": None, "wall_time": "2026-03-28T02:30:00"},
        # 02:30 does not exist that day: dst_gap=shift (the default) moves it to the gap's end, and says so
        {"utc": "2026-03-29T01:00:00.000000Z", "local": "2026-03-29T03:00:00+02:00", "fire_at": "2026-03-29T01:00:00.000000Z", "dst": "shifted", "wall_time": "2026-03-29T02:30:00"},
        {"utc": "2026-03-30T00:30:00.000000Z", "local": "2026-03-30T02:30:00+02:00", "fire_at": "2026-03-30T00:30:00.000000Z", "dst": None, "wall_time": "2026-03-30T02:30:00"},
    ]
    create(api, id="berlin-skip", cron="30 2 * * *", timezone="Europe/Berlin", dst_gap="skip")
    skipped = api.get(f"{API}/jobs/berlin-skip/preview?count=3").get_json()["fire_times"]
    assert [(t["utc"], t["dst"], t["wall_time"]) for t in skipped] == [
        ("2026-03-28T01:30:00.000000Z", None, "2026-03-28T02:30:00"),
        (None, "dropped", "2026-03-29T02:30:00"),
        ("2026-03-30T00:30:00.000000Z", None, "2026-03-30T02:30:00"),
    ]
    assert len(api.get(f"{API}/jobs/berlin/preview").get_json()["fire_times"]) == 5
    assert len(api.get(f"{API}/jobs/berlin/preview?count=100").get_json()["fire_times"]) == 100
    for bad in ("0", "101", "x", "1e3"):
        assert_error(api.get(f"{API}/jobs/berlin/preview?count={bad}"), 400, "count")
    assert_error(api.get(f"{API}/jobs/missing/preview"), 404)


@pytest.mark.parametrize(
    ("fields", "description"),
    [
        ({"cron": "*/5 * * * *"}, "every 5 minutes (UTC)"),
        ({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}, "every weekday (Monday to Friday) at 09:00 (Europe/Paris time)"),
        ({"cron": "@daily"}, "every day at 00:00 (UTC)"),
        ({"interval_seconds": 7200}, "every 2 hours"),
        ({"interval_seconds": 90}, "every 1 minute 30 seconds"),
        ({"interval_seconds": 60}, "every minute"),
        ({"schedule_at": "2026-02-01T08:00:00+01:00"}, "once, on Sun 2026-02-01 at 07:00 UTC"),
    ],
)
def test_preview_describes_the_schedule(api, fields, description):
    create(api, id="d", **{"interval_seconds": None, **fields})
    body = api.get(f"{API}/jobs/d/preview?count=2").get_json()
    assert body["description"] == description
    assert len(body["fire_times"]) == (1 if "schedule_at" in fields else 2)


# -- executions -----------------------------------------------------------------------------
def test_executions_after_a_tick(api, clock):
    create(api, id="ok", schedule_at=iso(T0))
    create(api, id="bad", job_type="boom", schedule_at=iso(T0), max_attempts=1)
    create(api, id="later", cron="0 0 1 1 *")
    tick = api.post("/cron/tick").get_json()
    assert tick["jobs_succeeded"] == 1 and tick["jobs_failed"] == 1

    rows = api.get(f"{API}/executions").get_json()["executions"]
    assert sorted((r["job_id"], r["outcome"]) for r in rows) == [("bad", "failed"), ("ok", "succeeded")]
    assert all(r["tick_id"] == tick["tick_id"] and r["started_at"] == iso(T0) and r["attempt"] == 1 for r in rows)
    failed = api.get(f"{API}/executions?outcome=failed").get_json()["executions"]
    assert [r["job_id"] for r in failed] == ["bad"] and failed[0]["error"] == "RuntimeError: boom"
    assert [r["job_id"] for r in api.get(f"{API}/executions?job_id=ok").get_json()["executions"]] == ["ok"]
    assert api.get(f"{API}/executions?job_id=later").get_json() == {"executions": []}
    assert len(api.get(f"{API}/executions?limit=1").get_json()["executions"]) == 1
    assert len(api.get(f"{API}/executions?since=2026-01-05T12:00:00Z&until=2026-01-05T12:00:01Z").get_json()["executions"]) == 2
    assert api.get(f"{API}/executions?since=2026-01-05T12:00:00.000001Z").get_json() == {"executions": []}
    assert api.get(f"{API}/executions?until=2026-01-05T13:00:00%2B01:00").get_json() == {"executions": []}
    assert api.get(f"{API}/jobs/bad").get_json()["status"] == "failed"

    assert_error(api.get(f"{API}/executions?job_id=missing"), 404)
    assert_error(api.get(f"{API}/executions?since=yesterday"), 400, "since")
    assert_error(api.get(f"{API}/executions?since=2026-01-05T12:00:00"), 400, "since")
    assert_error(api.get(f"{API}/executions?until=0999-01-01T00:00:00Z"), 400, "until")
    error = assert_error(api.get(f"{API}/executions?until=2026-01-05T12:00:00+01:00"), 400, "until")
    assert "%2B" in error["message"]
    assert_error(api.get(f"{API}/executions?since=2026-01-06T00:00:00Z&until=2026-01-05T00:00:00Z"), 400, "since")
    assert_error(api.get(f"{API}/executions?outcome=meh"), 400, "outcome")
    assert_error(api.get(f"{API}/executions?limit=0"), 400, "limit")
    assert_error(api.get(f"{API}/executions?job_id=a/b"), 400, "job_id")


# -- status -----------------------------------------------------------------------------------
def test_status_figures_are_exact(api, clock, store_of):
    empty = api.get(f"{API}/status").get_json()
    assert empty["jobs"] == {"total": 0, "by_status": dict.fromkeys(["pending", "running", "paused", "completed", "failed", "cancelled"], 0), "due": 0}
    assert empty["oldest_overdue"] is None and empty["recent_ticks"] == []

    create(api, id="run-a", schedule_at=iso(T0 - timedelta(seconds=60)))
    create(api, id="run-b", schedule_at=iso(T0 - timedelta(seconds=60)))
    first = store_of.claim_due_jobs(now=T0, tick=TickRecord("tick-short", T0, Source.MANUAL), lease_seconds=30, limit=1)
    second = store_of.claim_due_jobs(now=T0, tick=TickRecord("tick-long", T0 + timedelta(seconds=1), Source.MANUAL), lease_seconds=600, limit=1)
    short_id, long_id = first.claimed[0].id, second.claimed[0].id
    assert {short_id, long_id} == {"run-a", "run-b"}
    create(api, id="late", schedule_at=iso(T0 - timedelta(seconds=120)))
    create(api, id="future", cron="0 0 1 1 *")
    create(api, id="held")
    api.post(f"{API}/jobs/held:pause")
    create(api, id="gone")
    api.delete(f"{API}/jobs/gone")
    clock.advance(60)

    body = api.get(f"{API}/status").get_json()
    assert body["store"] == store_of.kind
    assert body["now"] == iso(T0 + timedelta(seconds=60))
    assert body["jobs"] == {
        "total": 6,
        "by_status": {"pending": 2, "running": 2, "paused": 1, "completed": 0, "failed": 0, "cancelled": 1},
        "due": 2,  # "late" and the expired lease
    }
    assert body["leases"] == {"held": 1, "expired": 1, "expired_job_ids": [short_id]}
    assert body["oldest_overdue"] == {"id": "late", "job_type": "log", "status": "pending", "due_since": iso(T0 - timedelta(seconds=120)), "lag_seconds": 180.0}
    assert [t["tick_id"] for t in body["recent_ticks"]] == ["tick-long", "tick-short"]
    assert set(body["recent_ticks"][0]["metrics"]) >= {"jobs_due", "jobs_executed", "lease_lost", "duration_ms"}
    assert len(api.get(f"{API}/status?ticks=1").get_json()["recent_ticks"]) == 1
    assert api.get(f"{API}/status?ticks=0").get_json()["recent_ticks"] == []
    assert_error(api.get(f"{API}/status?ticks=201"), 400, "ticks")

    # Once "late" ran, the expired lease is the oldest due job (due since its lease ran out).
    api.post(f"{API}/jobs/late:pause")
    overdue = api.get(f"{API}/status").get_json()["oldest_overdue"]
    assert overdue == {"id": short_id, "job_type": "log", "status": "running", "due_since": iso(T0 + timedelta(seconds=30)), "lag_seconds": 30.0}


# -- auth ---------------------------------------------------------------------------------------
@pytest.fixture
def oidc_api(token_factory):  # noqa: F811 - the fixture
    with CertServer(token_factory.certs) as server:
        app = create_app(oidc_env(server.url, ADMIN_EMAILS="ops@example.com"))
        yield app.test_client()


def test_every_route_needs_an_admin_token(oidc_api, token_factory):  # noqa: F811
    routes = [
        ("get", "/jobs"), ("post", "/jobs"), ("get", "/jobs/x"), ("patch", "/jobs/x"), ("delete", "/jobs/x"),
        ("post", "/jobs/x:pause"), ("post", "/jobs/x:resume"), ("post", "/jobs/x:run"), ("post", "/jobs/x:release"),
        ("get", "/jobs/x/preview"), ("get", "/executions"), ("get", "/status"), ("get", "/openapi.json"),
    ]
    outsider = {"Authorization": f"Bearer {token_factory.token(email='dev@example.com')}"}
    for method, path in routes:
        assert_error(getattr(oidc_api, method)(API + path), 401, code="unauthenticated")
        assert_error(getattr(oidc_api, method)(API + path, headers=outsider), 403, code="permission_denied")

    admin = {"Authorization": f"Bearer {token_factory.token(email='ops@example.com')}"}
    response = oidc_api.post(f"{API}/jobs", json={"job_type": "log", "interval_seconds": 60}, headers=admin)
    assert response.status_code == 201 and response.get_json()["created_by"] == "ops@example.com"
    assert oidc_api.get(f"{API}/status", headers=admin).status_code == 200
    assert AUDIENCE  # the audience the tokens are minted for


# -- metrics --------------------------------------------------------------------------------------
def test_metrics_are_404_unless_enabled(api):
    assert_error(api.get("/metrics"), 404)


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_count_ticks_and_outcomes(make_store, config, clock, registry):
    app = create_app(config | {"METRICS_ENABLED": "true"}, store=make_store(), clock=clock, registry=registry, rng=random.Random(7))
    api = app.test_client()
    create(api, id="ok", schedule_at=iso(T0))
    create(api, id="bad", job_type="boom", schedule_at=iso(T0))
    create(api, id="idle", cron="0 0 1 1 *")
    headers = {"X-CloudScheduler-JobName": "crontick-tick", "X-CloudScheduler-ScheduleTime": "2026-01-05T12:00:00Z"}
    assert api.post("/cron/tick", headers=headers).get_json()["jobs_executed"] == 2
    assert api.post("/cron/tick", headers=headers).get_json()["duplicate"] is True  # a retry of that occurrence
    assert api.post("/cron/tick").get_json()["jobs_due"] == 0

    response = api.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    assert "# TYPE crontick_tick_duration_seconds histogram" in text
    samples = _samples(text)
    assert samples['crontick_ticks_total{result="ran"}'] == 2
    assert samples['crontick_ticks_total{result="duplicate"}'] == 1
    assert samples['crontick_jobs_total{outcome="succeeded"}'] == 1
    assert samples['crontick_jobs_total{outcome="failed"}'] == 1
    assert samples["crontick_jobs_executed_total"] == 2
    assert samples["crontick_claim_conflicts_total"] == 0
    assert samples["crontick_recovered_leases_total"] == 0
    assert samples["crontick_lease_lost_total"] == 0
    assert samples["crontick_tick_duration_seconds_count"] == 2
    assert samples['crontick_tick_duration_seconds_bucket{le="+Inf"}'] == 2
    assert samples['crontick_tick_duration_seconds_bucket{le="300.0"}'] == 2
    assert samples["crontick_store_up"] == 1
    assert samples['crontick_jobs{status="pending"}'] == 2  # "bad" waits for its retry, "idle" for January
    assert samples["crontick_jobs_due"] == 0
