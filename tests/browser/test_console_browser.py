"""The console in a real browser: an operator's whole round trip, a viewer, forgery,
auto-refresh, 375 px and dark mode. Each test leaves the jobs it made for the next,
so they run in file order against one server."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from scheduler.timing import cron_fire_times
from tests.support.iap import ADMIN, VIEWER

JOB = "browser-job"
pytestmark = pytest.mark.slow  # about 30 s: `make test` runs it, `make check` (the fast lane) leaves it out


def tick(server) -> dict:
    status, body = server.post("/cron/tick")
    assert status == 200, body
    return json.loads(body)


def api(server, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def expected_times(cron: str, tz: str, count: int = 5) -> list[str]:
    times = cron_fire_times(cron, tz, datetime.now(timezone.utc))
    return [next(times).strftime("%Y-%m-%dT%H:%M:%SZ") for _ in range(count)]


def preview_times(browser) -> list[str]:
    return [cell.get_attribute("data-utc") for cell in browser.find_all("#preview td[data-utc]")]


def type_into(element, text: str) -> None:
    element.clear()
    element.send_keys(text)


def test_an_operator_creates_finds_pauses_runs_edits_and_cancels_a_job(browser, server):
    from selenium.webdriver.support.select import Select

    browser.sign_in(ADMIN)
    browser.open("/new")
    Select(browser.find("#f-job-type")).select_by_value("log")
    type_into(browser.find("#f-id"), JOB)
    type_into(browser.find("#f-timezone"), "Europe/Paris")
    type_into(browser.find("#f-cron"), "0 9 * * 1-5")
    # The preview follows the typing (htmx calls /preview): words and the next five times.
    browser.wait(lambda d: "every weekday (Monday to Friday) at 09:00 (Europe/Paris time)" in browser.find("#preview").text)
    browser.wait(lambda d: preview_times(browser) == expected_times("0 9 * * 1-5", "Europe/Paris"))
    # A payload that is not JSON is caught before it is sent.
    type_into(browser.find("#f-payload"), '{"msg": "from the browser"')
    browser.find("#f-submit").click()
    error = browser.find("#f-payload-client-error")
    assert error.is_displayed() and error.text.startswith("payload is not valid JSON")
    assert browser.driver.current_url.endswith("/new")
    type_into(browser.find("#f-payload"), '{"msg": "from the browser"}')
    browser.find("#f-submit").click()
    browser.wait(lambda d: d.current_url.endswith(f"/jobs/{JOB}?done=create"))
    assert browser.find("[data-done]").text == "Created."
    assert browser.find("[data-status]").text == "pending"

    # Find it in the list, open it.
    browser.open("/jobs")
    type_into(browser.find("#f-q"), "browser")
    browser.find("form.filters button").click()
    browser.wait(lambda d: d.current_url.endswith("/jobs?status=&job_type=&q=browser"))
    rows = browser.find_all("tr[data-job]")
    assert [row.get_attribute("data-job") for row in rows] == [JOB]
    assert "every weekday (Monday to Friday) at 09:00 (Europe/Paris time)" in rows[0].text
    browser.shot("list")
    rows[0].find_element("css selector", "td.id a").click()
    browser.wait(lambda d: d.current_url.endswith(f"/jobs/{JOB}"))

    # Pause it with a note.
    type_into(browser.find("#f-pause-note"), "maintenance window")
    browser.find('[data-action="pause"] button').click()
    browser.wait(lambda d: d.current_url.endswith("?done=pause"))
    assert browser.find("[data-status]").text == "paused"
    audit = browser.find('tr[data-audit="pause"]').text
    assert ADMIN in audit and "maintenance window" in audit

    # Resume, run now, and see the run after a tick.
    browser.find('[data-action="resume"] button').click()
    browser.wait(lambda d: d.current_url.endswith("?done=resume"))
    browser.find('[data-action="run"] button').click()
    browser.wait(lambda d: d.current_url.endswith("?done=run"))
    assert browser.find("[data-done]").text == "It runs at the next tick."
    assert tick(server)["jobs_succeeded"] == 1
    browser.open(f"/jobs/{JOB}")
    runs = browser.find_all('tr[data-run="succeeded"]')
    assert len(runs) == 1 and "manual" in runs[0].text
    assert [bar.get_attribute("data-outcome") for bar in browser.find_all("svg.strip rect")] == ["succeeded"]
    browser.shot("detail")

    # Edit its schedule; the preview follows.
    browser.find("a.button[href$='/edit']").click()
    browser.wait(lambda d: d.current_url.endswith(f"/jobs/{JOB}/edit"))
    type_into(browser.find("#f-cron"), "30 7 * * *")
    browser.wait(lambda d: preview_times(browser) == expected_times("30 7 * * *", "Europe/Paris"))
    browser.find("#f-submit").click()
    browser.wait(lambda d: d.current_url.endswith("?done=edit"))
    assert "every day at 07:30 (Europe/Paris time)" in browser.find("p.lead").text
    assert api(server, "GET", f"/api/v1/jobs/{JOB}")["cron"] == "30 7 * * *"

    # Cancel it: the box must be ticked (the browser will not send the form without it).
    browser.find('[data-action="cancel"] button').click()
    assert browser.driver.current_url.endswith(f"/jobs/{JOB}?done=edit")  # not sent
    browser.find("#f-cancel-confirm").click()
    browser.find('[data-action="cancel"] button').click()
    browser.wait(lambda d: d.current_url.endswith("?done=cancel"))
    assert browser.find("[data-status]").text == "cancelled"
    actions = [row.get_attribute("data-audit") for row in browser.find_all("tr[data-audit]")]
    assert actions == ["cancel", "edit", "run_now", "resume", "pause", "create"]  # newest first
    errors = browser.console_errors()
    assert errors == [], "\n".join(errors)


def test_a_bad_cron_shows_the_field_error(browser):
    browser.sign_in(ADMIN)
    browser.open("/new")
    type_into(browser.find("#f-cron"), "61 * * * *")
    browser.wait(lambda d: "cron expression '61 * * * *' is not valid" in browser.find("#preview").text)
    browser.find("#f-submit").click()
    browser.wait(lambda d: browser.find_all("#f-cron-error"))
    assert browser.find("#f-cron-error").text == "cron expression '61 * * * *' is not valid"
    assert browser.find("#f-cron").get_attribute("value") == "61 * * * *"


def test_a_viewer_sees_no_actions_and_a_forged_post_is_refused(browser, server):
    api(server, "POST", "/api/v1/jobs", {"id": "target", "job_type": "log", "interval_seconds": 3600})
    browser.sign_in(VIEWER)
    browser.open("/jobs/target")
    assert browser.find(".who").text.startswith(VIEWER)
    assert browser.find_all("[data-action]") == [] and browser.find_all("section.actions") == []
    assert browser.find_all("a[href='/new']") == [] and browser.find_all("input[name=ids]") == []
    # The viewer's browser sends a POST anyway.
    status = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/jobs/target/pause', {method: 'POST', body: new URLSearchParams({note: 'x'})}).then(r => done(r.status));"
    )
    assert status == 403
    # Another site makes an admin's browser post a form to the console.
    browser.sign_in(ADMIN)
    browser.open("/jobs/target")  # the admin has a console session (cookie) in this browser
    evil = _serve_once(f'<form method="post" action="{server.url}/jobs/target/pause"><input name="note" value="forged"><button id="go">win a prize</button></form>')
    try:
        browser.driver.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        browser.find("#go").click()
        browser.wait(lambda d: d.current_url.startswith(server.url))
        assert browser.find("h1").text == "Refused"
        assert "the form was sent from another site" in browser.find("p.error").text
    finally:
        evil.shutdown()
        evil.server_close()
    job = api(server, "GET", "/api/v1/jobs/target")
    assert job["status"] == "pending" and [entry["action"] for entry in job["audit"]] == ["create"]


def test_lists_refresh_themselves_until_paused(browser, server):
    browser.console_errors()  # drained: the refusals the earlier tests provoked are logged as errors
    browser.sign_in(ADMIN)
    browser.open("/jobs")
    toggle = browser.find("[data-refresh-toggle]")
    assert toggle.is_displayed() and toggle.text == "Pause auto-refresh"
    api(server, "POST", "/api/v1/jobs", {"id": "appears-by-itself", "job_type": "log", "interval_seconds": 3600})
    browser.wait(lambda d: browser.find_all('tr[data-job="appears-by-itself"]'), timeout=8)
    toggle.click()
    assert toggle.text == "Resume auto-refresh" and toggle.get_attribute("aria-pressed") == "true"
    assert browser.find("[data-refresh-status]").text == "auto-refresh paused"
    api(server, "POST", "/api/v1/jobs", {"id": "waits-for-resume", "job_type": "log", "interval_seconds": 3600})
    time.sleep(5)  # more than two refresh periods
    assert browser.find_all('tr[data-job="waits-for-resume"]') == []
    toggle.click()
    browser.wait(lambda d: browser.find_all('tr[data-job="waits-for-resume"]'), timeout=8)
    errors = browser.console_errors()
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("path", ["/", "/jobs", f"/jobs/{JOB}", "/new", "/executions"])
def test_pages_fit_375_px(browser, path):
    browser.sign_in(ADMIN)
    browser.driver.set_window_size(375, 812)
    try:
        browser.open(path)
        width = browser.driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, f"{path} is {width} px wide at 375 px"
        if path == "/":
            browser.shot("dashboard-375")
    finally:
        browser.driver.set_window_size(1280, 900)


def test_dark_mode_follows_the_system(browser):
    browser.sign_in(ADMIN)
    browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        browser.open(f"/jobs/{JOB}")
        assert browser.driver.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(21, 23, 26)"
        browser.shot("detail-dark")
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    browser.open(f"/jobs/{JOB}")
    assert browser.driver.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 248)"


def _serve_once(body: str) -> http.server.ThreadingHTTPServer:
    """A page on another origin (another loopback port), served from a daemon thread."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def seed_a_day(json_path) -> dict[str, int]:
    """A day of history in the server's JSON store, made by the real engine: ticks every
    5 minutes over the last 24 hours (a little late, later in a few hours), jobs of known
    durations, one that fails now and then. Returns the runs by outcome."""
    from collections import Counter
    from datetime import timedelta

    from handlers import build_registry
    from scheduler.engine import TickEngine
    from scheduler.model import Misfire, Source
    from scheduler.settings import Settings
    from storage.jsonfile import JsonFileStore
    from tests.support.console import FakeMonotonic
    from tests.support.jobs import make_job

    monotonic = FakeMonotonic()
    calls = Counter()

    def work(job, ctx) -> None:
        calls[job.id] += 1
        monotonic.advance(job.payload["seconds"] * (1 + (calls[job.id] % 5) / 10))
        if job.payload.get("fail_every") and calls[job.id] % job.payload["fail_every"] == 0:
            raise RuntimeError("upstream answered 503 Service Unavailable")

    registry = build_registry()
    for name in ("send_digest", "sync_crm", "nightly_report", "webhook"):
        registry.register(name, work)
    store = JsonFileStore(json_path, history_limit=1000)  # keep the whole day (the server keeps its default on its own writes)
    store.open()
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = end - timedelta(hours=24)
    jobs = [
        ("sync-crm", "sync_crm", {"interval_seconds": 900}, {"seconds": 0.4}),
        ("send-digest", "send_digest", {"cron": "*/30 * * * *", "timezone": "Europe/Paris"}, {"seconds": 0.2}),
        ("nightly-report", "nightly_report", {"cron": "0 2 * * *", "timezone": "Europe/Paris"}, {"seconds": 2.5}),
        ("partner-webhook", "webhook", {"interval_seconds": 1800}, {"seconds": 0.8, "fail_every": 4}),
    ]
    for job_id, job_type, schedule, payload in jobs:
        job = make_job(job_id, now=start, due_in=60, job_type=job_type, payload=payload, schedule_at=None, misfire=Misfire.RUN_ONCE, max_attempts=2, **schedule)
        store.add_job(job.replace(created_at=start - timedelta(days=3), timezone=schedule.get("timezone", "UTC")))
    settings = Settings.from_env({"AUTH_MODE": "disabled", "SCHEDULER_MAX_CONCURRENCY": "1", "SCHEDULER_RETRY_BASE_SECONDS": "60"})
    outcomes: Counter = Counter()
    when = start
    step = 0
    while when < end - timedelta(minutes=5):
        step += 1
        late = 2 + step % 7 + (40 if 8 <= when.hour < 10 else 0)  # a slow patch in the morning
        now = when + timedelta(seconds=late)
        engine = TickEngine(store, registry, settings, monotonic=monotonic, clock=lambda now=now: now)
        outcome = engine.run_tick(now=now, tick_id=f"seed-{step:04d}", source=Source.CLOUD_SCHEDULER)
        for run in outcome.runs:
            outcomes.update(e.outcome.value for e in run.settlement.executions)
        when += timedelta(minutes=5)
    store.close()
    return dict(outcomes)


def test_a_day_of_history_on_the_dashboard_and_a_job_page(browser, server):
    runs = seed_a_day(server.json_path)
    assert runs["succeeded"] > 100 and runs["failed"] > 5
    browser.sign_in(ADMIN)
    browser.driver.set_window_size(1280, 900)
    browser.open("/")
    bars = browser.find_all("svg.figure rect[data-count]")
    # The figure draws the stored history of the 24 hours it shows (every run here: the seeding
    # store kept them all, where a store normally keeps the latest SCHEDULER_HISTORY_LIMIT per job).
    from storage.jsonfile import JsonFileStore

    first = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    stored = JsonFileStore(server.json_path).list_executions(since=first, limit=100_000)
    assert sum(int(bar.get_attribute("data-count")) for bar in bars) == len(stored)
    assert browser.find_all("svg.figure circle.p95")
    browser.shot("dashboard", full=True)
    browser.shot("readme-dashboard")  # the window only: README.md's picture (docs/console-dashboard.png)
    browser.open("/jobs")
    browser.shot("list", full=True)
    browser.open("/jobs/partner-webhook")
    strip = browser.find_all("svg.strip rect")
    assert len(strip) == 50 and {bar.get_attribute("data-outcome") for bar in strip} == {"succeeded", "failed"}
    browser.shot("detail", full=True)
