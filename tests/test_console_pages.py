"""The console's pages and actions through the Flask test client (CONSOLE_AUTH=disabled,
ENVIRONMENT=local): what each page shows, what each form does, and that the figures'
numbers are those of known executions."""

from __future__ import annotations

import hashlib
import html as html_module
import random
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest

from main import create_app
from scheduler.model import JobStatus
from tests.support.clock import T0, FakeClock
from tests.support.console import FakeMonotonic, timed_registry
from tests.support.jobs import make_job
from web.console.views import HTMX_FILE, HTMX_SHA256

STATIC = Path(__file__).resolve().parents[1] / "web" / "static"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app(clock):
    monotonic = FakeMonotonic()
    config = {"ENVIRONMENT": "local", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "memory", "SCHEDULER_MAX_CONCURRENCY": "1", "SCHEDULER_HISTORY_LIMIT": "100"}
    return create_app(config, clock=clock, registry=timed_registry(monotonic), rng=random.Random(11), monotonic=monotonic)


@pytest.fixture
def ct(app):
    return app.extensions["crontick"]


@pytest.fixture
def client(app):
    return app.test_client()


def text(response) -> str:
    return html_module.unescape(response.get_data(as_text=True))


def words(response) -> str:
    """The page's text without its tags."""
    return html_module.unescape(re.sub(r"<[^>]+>", "", response.get_data(as_text=True)))


def token(client, path: str = "/new") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(chunk) for chunk in re.findall(r"<svg\b.*?</svg>", html, re.S)]


FORM = {
    "job_type": "take", "id": "", "idempotency_key": "", "kind": "cron", "cron": "*/5 * * * *", "interval_seconds": "", "schedule_at": "",
    "timezone": "UTC", "payload": '{"seconds": 0.01}', "misfire": "run_once", "misfire_grace_seconds": "60", "overlap": "skip", "max_attempts": "3", "timeout_seconds": "",
}


def create(client, **fields: str):
    return client.post("/new", data={**FORM, **fields, "csrf_token": token(client)})


def tick(client) -> dict:
    response = client.post("/cron/tick")
    assert response.status_code == 200
    return response.get_json()


# -- assets ---------------------------------------------------------------------------------
def test_vendored_htmx_is_the_pinned_file():
    data = (STATIC / HTMX_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert data.startswith(b"var htmx=function(){")
    assert HTMX_FILE == "vendor/htmx-2.0.11.min.js" and (STATIC / "vendor" / "htmx-2.0.11.LICENSE").read_text().startswith("Zero-Clause BSD")


def test_assets_are_served(client):
    assert client.get(f"/assets/{HTMX_FILE}").data == (STATIC / HTMX_FILE).read_bytes()
    css = client.get("/assets/console.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.get_data(as_text=True)


# -- the form -------------------------------------------------------------------------------
def test_create_from_the_form_goes_through_the_service_and_the_audit(client, ct, clock):
    response = create(client, id="nightly", cron="0 9 * * 1-5", timezone="Europe/Paris", payload='{"seconds": 0.5}', max_attempts="5", timeout_seconds="30", idempotency_key="nightly-report")
    assert response.status_code == 303 and response.headers["Location"] == "/jobs/nightly?done=create"
    job = ct.service.get("nightly")
    assert (job.cron, job.timezone, job.payload, job.max_attempts, job.timeout_seconds, job.idempotency_key) == ("0 9 * * 1-5", "Europe/Paris", {"seconds": 0.5}, 5, 30, "nightly-report")
    assert job.created_by == "local" and [(a.actor, a.action) for a in job.audit] == [("local", "create")]
    assert job.next_run_at.isoformat() == "2026-01-06T08:00:00+00:00"
    page = text(client.get("/jobs/nightly?done=create"))
    assert "Created." in page and "every weekday (Monday to Friday) at 09:00 (Europe/Paris time)" in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"cron": "nope"}, "cron", "cron expression 'nope' must have 5 fields (minute hour day month weekday), got 1"),
        ({"cron": "61 * * * *"}, "cron", "cron expression '61 * * * *' is not valid"),
        ({"kind": "interval", "interval_seconds": "soon"}, "interval_seconds", "interval_seconds must be an integer"),
        ({"kind": "interval", "interval_seconds": "0"}, "interval_seconds", "interval_seconds must be between 1 and 31622400, got 0"),
        ({"kind": "once", "schedule_at": "tomorrow"}, "schedule_at", "schedule_at must be a date and time such as 2026-12-01T09:00, got 'tomorrow'"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone 'Mars/Olympus'"),
        ({"payload": "{nope"}, "payload", "payload is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ({"payload": "[1, 2]"}, "payload", "payload must be a JSON object, got list"),
        ({"job_type": "http_request", "payload": "{}"}, "payload", "http_request needs payload.url, an absolute http(s) URL"),
        ({"max_attempts": "0"}, "max_attempts", "max_attempts must be between 1 and 100, got 0"),
        ({"misfire": "sometimes"}, "misfire", "misfire must be one of run_once, skip, run_all"),
        ({"id": "bad id!"}, "id", "id must be 1-128 characters of letters, digits, '.', '_' or '-'"),
        ({"kind": ""}, "kind", "choose a schedule: cron, interval or one-off"),
    ],
)
def test_a_refusal_shows_the_apis_message_next_to_its_field(client, ct, fields, field, message):
    response = create(client, **fields)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    shown = re.findall(r'<p class="field-error" role="alert" id="f-([\w-]+)-error" data-field="[\w-]+">(.*?)</p>', page, re.S)
    assert [(name, html_module.unescape(body)) for name, body in shown] == [(field, message)]
    assert ct.store.list_jobs() == []
    for name, value in fields.items():  # what was typed is kept
        if name not in ("kind", "job_type", "misfire") and value:
            assert html_module.escape(value, quote=True) in page or html_module.escape(value, quote=False) in page, name


def test_the_api_gives_the_same_message_for_the_same_mistake(client):
    api = client.post("/api/v1/jobs", json={"job_type": "take", "cron": "nope"}).get_json()["error"]
    page = text(create(client, cron="nope"))
    assert api["field"] == "cron" and api["message"] in page


def test_one_off_times_are_wall_times_in_the_zone(client, ct):
    assert create(client, id="once", kind="once", schedule_at="2026-03-29T02:30", timezone="Europe/Berlin").status_code == 303
    assert ct.service.get("once").schedule_at.isoformat() == "2026-03-29T01:00:00+00:00"  # in the DST gap: 03:00 CEST


def test_preview_describes_and_lists_the_next_five_times(client):
    page = client.get("/preview", query_string={"kind": "cron", "cron": "30 8 * * 1", "timezone": "America/New_York"}).get_data(as_text=True)
    assert "Runs every Monday at 08:30 (America/New_York time)." in page
    # T0 is Monday 2026-01-05 12:00 UTC, 07:00 in New York: the first is today.
    assert re.findall(r'data-utc="([^"]+)"', page) == ["2026-01-05T13:30:00Z", "2026-01-12T13:30:00Z", "2026-01-19T13:30:00Z", "2026-01-26T13:30:00Z", "2026-02-02T13:30:00Z"]
    assert "Mon 2026-01-05 08:30:00 EST" in page and "in 90 min" in page and "in 7 days" in page
    interval = client.get("/preview", query_string={"kind": "interval", "interval_seconds": "5400"}).get_data(as_text=True)
    assert "Runs every 1 hour 30 minutes." in interval and len(re.findall(r"data-utc=", interval)) == 5
    once = client.get("/preview", query_string={"kind": "once", "schedule_at": "2026-02-01T10:00", "timezone": "Asia/Tokyo"}).get_data(as_text=True)
    assert re.findall(r'data-utc="([^"]+)"', once) == ["2026-02-01T01:00:00Z"]
    bad = client.get("/preview", query_string={"kind": "cron", "cron": "* * *", "timezone": "UTC"})
    assert bad.status_code == 200  # htmx swaps 200s only
    assert 'data-field="cron">cron expression &#39;* * *&#39; must have 5 fields (minute hour day month weekday), got 3</p>' in bad.get_data(as_text=True)
    assert "<html" not in bad.get_data(as_text=True)


def test_the_form_page_shows_the_preview_without_javascript(client):
    page = text(client.get("/new"))
    assert "Runs every 5 minutes (UTC)." in page and page.count("data-utc=") == 5
    assert 'hx-get="/preview"' in page and 'hx-include="#schedule"' in page


def test_edit_patches_only_what_changed(client, ct, clock):
    create(client, id="e1", kind="interval", interval_seconds="600", payload='{"seconds": 1}')
    before = ct.service.get("e1")
    form = dict(FORM, kind="interval", interval_seconds="600", payload='{"seconds": 2}', csrf_token=token(client, "/jobs/e1/edit"), note="slower now")
    clock.advance(30)
    assert client.post("/jobs/e1/edit", data=form).headers["Location"] == "/jobs/e1?done=edit"
    after = ct.service.get("e1")
    assert after.payload == {"seconds": 2} and after.next_run_at == before.next_run_at  # the schedule kept its timing
    assert (after.audit[-1].action, after.audit[-1].detail, after.audit[-1].note) == ("edit", "payload", "slower now")
    form.update(kind="cron", cron="15 * * * *")
    assert client.post("/jobs/e1/edit", data=form).status_code == 303
    job = ct.service.get("e1")
    assert (job.cron, job.interval_seconds, job.next_run_at.isoformat()) == ("15 * * * *", None, "2026-01-05T12:15:00+00:00")
    assert job.audit[-1].detail == "cron"
    unchanged = client.post("/jobs/e1/edit", data=form)
    assert unchanged.headers["Location"] == "/jobs/e1" and len(ct.service.get("e1").audit) == 3
    bad = client.post("/jobs/e1/edit", data=dict(form, cron="99 * * * *"))
    assert bad.status_code == 400 and "cron expression &#39;99 * * * *&#39; is not valid" in bad.get_data(as_text=True)


# -- actions --------------------------------------------------------------------------------
def test_actions_on_the_job_page(client, ct, clock):
    create(client, id="a1", cron="*/5 * * * *")
    t = token(client, "/jobs/a1")
    assert client.post("/jobs/a1/pause", data={"csrf_token": t, "note": "db migration"}).headers["Location"] == "/jobs/a1?done=pause"
    assert ct.service.get("a1").status is JobStatus.PAUSED
    page = text(client.get("/jobs/a1?done=pause"))
    assert "Paused." in page and re.findall(r'data-action="(\w+)"', page) == ["resume", "backfill", "cancel"]
    assert '<tr data-audit="pause"><td>2026-01-05 12:00:00 UTC</td><td>local</td><td>pause</td><td class="note">db migration</td></tr>' in page
    refused = client.post("/jobs/a1/run", data={"csrf_token": t})
    assert refused.status_code == 409 and "job a1 is paused; only pending or failed jobs can be run now" in text(refused)
    clock.advance(600)
    client.post("/jobs/a1/resume", data={"csrf_token": t, "catch_up": "yes"})
    job = ct.service.get("a1")
    assert job.status is JobStatus.PENDING and job.next_run_at.isoformat() == "2026-01-05T12:05:00+00:00"  # kept the overdue time
    assert client.post("/jobs/a1/run", data={"csrf_token": t}).status_code == 303
    assert ct.service.get("a1").next_run_at == clock()
    no_confirm = client.post("/jobs/a1/cancel", data={"csrf_token": t})
    assert no_confirm.status_code == 400 and "tick the box to confirm: a cancelled job never runs again" in text(no_confirm)
    assert ct.service.get("a1").status is JobStatus.PENDING
    not_running = client.post("/jobs/a1/release", data={"csrf_token": t})
    assert not_running.status_code == 409 and "job a1 is pending; it holds no lease" in text(not_running)
    assert client.post("/jobs/a1/cancel", data={"csrf_token": t, "confirm": "yes", "note": "replaced"}).status_code == 303
    job = ct.service.get("a1")
    assert job.status is JobStatus.CANCELLED
    assert [(a.action, a.detail, a.note) for a in job.audit] == [("create", None, None), ("pause", None, "db migration"), ("resume", "catch_up", None), ("run_now", None, None), ("cancel", None, "replaced")]
    assert client.post("/jobs/a1/explode", data={"csrf_token": t}).status_code == 404


def test_releasing_a_live_lease_needs_force_and_confirmation(client, ct, clock):
    ct.store.add_job(make_job("held", now=clock(), job_type="take"))
    from scheduler.model import Source, TickRecord

    ct.store.claim_due_jobs(now=clock(), tick=TickRecord("t1", clock(), Source.MANUAL), lease_seconds=300, limit=10)
    t = token(client, "/jobs/held")
    page = text(client.get("/jobs/held"))
    assert 'data-action="release"' in page
    live = client.post("/jobs/held/release", data={"csrf_token": t})
    assert live.status_code == 409 and "lease is live until" in text(live)
    unconfirmed = client.post("/jobs/held/release", data={"csrf_token": t, "force": "yes"})
    assert unconfirmed.status_code == 400 and "tick the box to confirm taking a live lease" in text(unconfirmed)
    assert client.post("/jobs/held/release", data={"csrf_token": t, "force": "yes", "confirm": "yes"}).status_code == 303
    job = ct.service.get("held")
    assert job.status is JobStatus.PENDING and (job.audit[-1].action, job.audit[-1].detail) == ("release", "force")


def test_bulk_pause_and_resume(client, ct):
    for job_id in ("b1", "b2", "b3"):
        create(client, id=job_id)
    t = token(client, "/jobs")
    ct.service.cancel("b3", actor="someone")
    page = words(client.post("/jobs", data={"csrf_token": t, "action": "pause", "ids": ["b1", "b2", "b3", "ghost"]}))
    assert "Paused 2 jobs: b1, b2." in page
    assert "b3: job b3 is cancelled; only pending or running jobs can be paused" in page and "ghost: no job with id 'ghost'" in page
    assert [ct.service.get(i).status for i in ("b1", "b2")] == [JobStatus.PAUSED] * 2
    page = words(client.post("/jobs", data={"csrf_token": t, "action": "resume", "ids": ["b1", "b2"]}))
    assert "Resumed 2 jobs: b1, b2." in page and ct.service.get("b1").status is JobStatus.PENDING
    assert client.post("/jobs", data={"csrf_token": t, "action": "resume"}).status_code == 400
    assert client.post("/jobs", data={"csrf_token": t, "action": "delete", "ids": ["b1"]}).status_code == 400


# -- lists ----------------------------------------------------------------------------------
def test_the_jobs_list_filters_searches_and_pages(client, ct, clock):
    for i in range(5):
        create(client, id=f"job-{i}", idempotency_key=f"key-{i}", timezone="Europe/Paris")
    create(client, id="other", job_type="log", kind="interval", interval_seconds="300", payload="{}")
    ct.service.pause("job-3", actor="x")

    def ids(response) -> list[str]:
        return re.findall(r'<tr data-job="([^"]+)">', response.get_data(as_text=True))

    assert ids(client.get("/jobs")) == ["job-0", "job-1", "job-2", "job-3", "job-4", "other"]
    assert ids(client.get("/jobs?status=&job_type=&q=")) == ["job-0", "job-1", "job-2", "job-3", "job-4", "other"]  # the form's "any"
    assert ids(client.get("/jobs?status=paused")) == ["job-3"]
    assert ids(client.get("/jobs?job_type=log")) == ["other"]
    assert ids(client.get("/jobs?q=KEY-2")) == ["job-2"]
    assert ids(client.get("/jobs?q=job-")) == ["job-0", "job-1", "job-2", "job-3", "job-4"]
    first = client.get("/jobs?limit=2").get_data(as_text=True)
    assert ids(client.get("/jobs?limit=2")) == ["job-0", "job-1"]
    next_url = html_module.unescape(re.search(r'<a href="([^"]+)" rel="next">', first).group(1))
    assert next_url == "/jobs?limit=2&cursor=job-1"
    assert ids(client.get(next_url)) == ["job-2", "job-3"]
    assert ids(client.get("/jobs?limit=2&cursor=job-3&q=job")) == ["job-4"]
    row = re.search(r'<tr data-job="job-0">(.*?)</tr>', text(client.get("/jobs")), re.S).group(1)
    assert "every 5 minutes (Europe/Paris time)" in row and "Europe/Paris" in row
    assert "Mon 2026-01-05 13:05:00 CET" in row and "in 5 min" in row and "0 / 3" in row
    bad = client.get("/jobs?status=bogus")
    assert bad.status_code == 400 and "status must be one of pending, running, paused, completed, failed, cancelled, got &#39;bogus&#39;" in bad.get_data(as_text=True)
    fragment = client.get("/jobs?status=paused", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.startswith('<div id="live" data-live hx-get="/jobs?status=paused"') and "<html" not in fragment


def test_the_executions_page_filters_by_job_outcome_and_time(client, ct, clock):
    ct.store.add_job(make_job("ok", now=clock(), job_type="take", payload={"seconds": 0.1}))
    ct.store.add_job(make_job("bad", now=clock(), job_type="take_fail", payload={"seconds": 0.2}, max_attempts=1))
    tick(client)
    clock.advance(3600)
    ct.store.add_job(make_job("later", now=clock(), job_type="take", payload={"seconds": 0.3}))
    tick(client)

    def rows(query: str) -> list[str]:
        return re.findall(r'<tr data-execution="([^"]+)">', client.get(f"/executions{query}").get_data(as_text=True))

    assert sorted(rows("")) == ["bad", "later", "ok"]
    assert rows("?outcome=failed") == ["bad"]
    assert rows("?job_id=later") == ["later"]
    assert sorted(rows("?until=2026-01-05T12:30")) == ["bad", "ok"]
    assert rows("?since=2026-01-05T12:30") == ["later"]
    assert rows("?since=2026-01-05T12:30:00%2B00:00") == ["later"]
    wrong = client.get("/executions?since=2026-01-05T13:30&until=2026-01-05T12:30")
    assert wrong.status_code == 400 and "since must not be after until" in text(wrong)
    unknown = client.get("/executions?job_id=ghost")
    assert unknown.status_code == 404 and "no job with id 'ghost'" in text(unknown)


# -- the dashboard and its figures -----------------------------------------------------------
def run_at(client, ct, clock, when, jobs):
    """At ``when``, add one-off jobs (id, type, seconds late, handler seconds) and tick once."""
    clock.set(when)
    for job_id, job_type, late, seconds in jobs:
        ct.store.add_job(make_job(job_id, due_in=-late, now=when, job_type=job_type, payload={"seconds": seconds}, max_attempts=1))
    tick(client)


def test_dashboard_figures_show_the_lag_percentiles_and_runs_of_known_executions(client, ct, clock):
    from scheduler.model import Misfire

    run_at(client, ct, clock, T0 - timedelta(hours=2) + timedelta(minutes=10), [("a", "take", 2, 0.1), ("b", "take", 4, 0.1), ("c", "take_fail", 10, 0.1)])
    clock.set(T0 - timedelta(hours=1) + timedelta(minutes=5))
    ct.store.add_job(make_job("d", due_in=-30, now=clock(), job_type="take", payload={"seconds": 1}))
    ct.store.add_job(make_job("m", due_in=-600, now=clock(), job_type="take", cron="*/5 * * * *", schedule_at=None, misfire=Misfire.SKIP, misfire_grace_seconds=60))
    tick(client)
    run_at(client, ct, clock, T0 - timedelta(hours=30), [("old", "take", 999, 0.1)])  # outside the 24 hours
    clock.set(T0 + timedelta(minutes=30))
    page = client.get("/").get_data(as_text=True)
    lag, runs = svgs(page)
    points = {(c.get("class"), c.get("data-hour")): (c.get(f"data-{c.get('class')}"), c.get("data-runs")) for c in lag.iter(f"{SVG}circle")}
    assert points == {
        ("p50", "2026-01-05T10:00Z"): ("4", "3"),
        ("p95", "2026-01-05T10:00Z"): ("10", "3"),
        ("p50", "2026-01-05T11:00Z"): ("30", "1"),
        ("p95", "2026-01-05T11:00Z"): ("30", "1"),
    }
    bars = {(r.get("data-hour"), r.get("data-outcome")): r.get("data-count") for r in runs.iter(f"{SVG}rect") if r.get("data-hour")}
    assert bars == {
        ("2026-01-05T10:00Z", "succeeded"): "2",
        ("2026-01-05T10:00Z", "failed"): "1",
        ("2026-01-05T11:00Z", "succeeded"): "1",
        ("2026-01-05T11:00Z", "misfired"): "1",
    }
    # Bar heights are proportional: 2 of an axis topped at 2 fills the plot, 1 is half of it.
    heights = {(r.get("data-hour"), r.get("data-outcome")): float(r.get("height")) for r in runs.iter(f"{SVG}rect") if r.get("data-hour")}
    assert heights[("2026-01-05T10:00Z", "failed")] * 2 == pytest.approx(heights[("2026-01-05T10:00Z", "succeeded")], abs=0.2)
    shown = text(client.get("/"))
    assert re.search(r'data-figure="failures-24h"><span class="n">1</span>', shown)
    assert "RuntimeError: failed on purpose" in shown


def test_dashboard_counts_leases_ticks_overdue_and_shadow(ct, clock):
    monotonic = FakeMonotonic()
    app = create_app({"ENVIRONMENT": "local", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "memory", "SCHEDULER_SHADOW_MODE": "true", "SCHEDULER_LEGACY_INTERVAL_SECONDS": "3600"}, clock=clock, registry=timed_registry(monotonic), monotonic=monotonic)
    try:
        store = app.extensions["crontick"].store
        client = app.test_client()
        store.add_job(make_job("late", due_in=-90, now=clock(), job_type="take", status=JobStatus.PAUSED))
        store.add_job(make_job("due", due_in=-75, now=clock(), job_type="take"))
        page = text(client.get("/"))
        assert re.search(r'data-figure="due"><span class="n">1</span>', page)
        assert 'data-overdue="due"' in page and 'data-lag-seconds="75.0"' in page
        assert "data-shadow" in page and 'data-duplicate-occurrences="0"' in page
        client.post("/cron/tick")
        page = text(client.get("/"))
        assert len(re.findall(r"<tr data-tick=", page)) == 1 and "Nothing is overdue." in page
        assert re.search(r'data-status="paused"><span class="n">1</span>', page)
        fragment = client.get("/", headers={"HX-Request": "true"}).get_data(as_text=True)
        assert fragment.startswith('<div id="live" data-live') and "<html" not in fragment
    finally:
        loop = app.extensions["crontick"].legacy_loop
        if loop is not None:
            loop.stop()


def test_the_job_page_shows_fire_times_runs_and_the_duration_strip(client, ct, clock):
    create(client, id="s1", kind="interval", interval_seconds="60", payload='{"seconds": 0.1}')
    durations = [0.1, 0.5, 0.2]
    for i, seconds in enumerate(durations):
        if i:
            ct.service.patch("s1", {"payload": {"seconds": seconds}}, actor="t")
        clock.advance(60)
        tick(client)
    page = client.get("/jobs/s1").get_data(as_text=True)
    [strip] = svgs(page)
    bars = [r for r in strip.iter(f"{SVG}rect")]
    assert [(b.get("data-outcome"), b.get("data-duration-ms")) for b in bars] == [("succeeded", "100"), ("succeeded", "500"), ("succeeded", "200")]
    h = [float(b.get("height")) for b in bars]
    assert h[1] == pytest.approx(5 * h[0], abs=0.2) and h[2] == pytest.approx(2 * h[0], abs=0.2)
    assert len(re.findall(r'<tr data-run="succeeded">', page)) == 3
    utc = re.search(r"<table class=\"times\" data-fire-times>(.*?)</table>", page, re.S).group(1)
    assert len(re.findall(r"data-utc=", utc)) == 10
    assert re.findall(r'data-utc="([^"]+)"', utc)[:2] == ["2026-01-05T12:04:00Z", "2026-01-05T12:05:00Z"]
    assert re.search(r'<td data-field="max_attempts">3</td>', page)
    assert client.get("/jobs/nope").status_code == 404 and client.get("/jobs/bad%20id").status_code == 404


def test_empty_figures_say_so(client):
    page = client.get("/").get_data(as_text=True)
    assert page.count("no runs in the last 24 hours") == 2
    create(client, id="fresh")
    assert "no runs yet" in client.get("/jobs/fresh").get_data(as_text=True)


def test_backfill_from_the_job_page(client, ct, clock):
    create(client, id="hourly", cron="0 * * * *")
    t = token(client, "/jobs/hourly")
    done = client.post("/jobs/hourly/backfill", data={"csrf_token": t, "start": "2026-01-05T08:00", "end": "2026-01-05T12:00"})
    assert done.status_code == 303 and done.headers["Location"] == "/jobs/hourly?done=backfill"
    children = sorted(job.id for job in ct.store.list_jobs() if job.backfill_of == "hourly")
    assert children == [f"hourly.bf-20260105T{h:02d}0000" for h in (8, 9, 10, 11)]
    assert "Backfill requested" in text(client.get("/jobs/hourly?done=backfill"))
    future = client.post("/jobs/hourly/backfill", data={"csrf_token": t, "start": "2026-01-05T08:00", "end": "2026-01-06T08:00"})
    assert future.status_code == 400 and "end must not be in the future" in text(future)
    bad = client.post("/jobs/hourly/backfill", data={"csrf_token": t, "start": "soon", "end": "2026-01-05T08:00"})
    assert bad.status_code == 400 and "start must be a date and time" in text(bad)
