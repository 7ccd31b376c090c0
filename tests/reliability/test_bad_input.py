"""Drill: generated bad input to a real gunicorn with real OIDC, on each store.

tests/test_api_fuzz.py checks /api/v1 against its OpenAPI document in-process
(schemathesis, memory store, auth off). This drill sends hypothesis-generated
requests over HTTP to gunicorn serving the JSON or Firestore store with
``AUTH_MODE=oidc`` (tokens signed by tests/support/oidc.py, certs on loopback):

* ``/cron/tick`` with valid tokens and arbitrary Cloud Scheduler / source headers and bodies;
* ``/api/v1`` with an admin token and arbitrary JSON (job-shaped or not), bodies that are not JSON, odd query strings;
* ``/webhook`` with a Chat token and arbitrary events and command texts;
* every kind of forged or misdirected token, on every protected endpoint.

Never a 5xx; every forged token refused with its 401/403. Ticks and API/Chat
writes go to separate stores, so generated jobs (``http_request`` ones
included) are never run. The tick store holds ledger jobs: the generated ticks
run each exactly once, and forged ticks run nothing.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import ledger_jobs, size
from tests.support.handlers import read_ledger
from tests.support.oidc import AUDIENCE, INVOKER, OMIT, cert_server, impostor_factory, token_factory  # noqa: F401 - fixtures
from tests.support.processes import Gunicorn

pytestmark = pytest.mark.slow

REQUESTS = size(500, 10_000)
ADMIN = "admin@example.com"
CHAT_ISSUER = "chat@system.gserviceaccount.com"
WEBHOOK_AUDIENCE = "https://crontick.example.run.app/webhook"
TICK_JOBS = 40

# -- tokens -----------------------------------------------------------------------


def _tamper(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b'=').decode()}.{signature}"


def forged_tokens(tf, impostor) -> dict[str, tuple[str | None, int]]:
    """Authorization header value (None: no header) and the status /cron/tick must answer."""
    now = int(time.time())
    claims = tf.valid_claims()
    return {
        "missing": (None, 401),
        "empty": ("", 401),
        "basic scheme": ("Basic " + base64.b64encode(b"user:pass").decode(), 401),
        "valid token under another scheme": ("Token " + tf.token(), 401),
        "bearer without token": ("Bearer ", 401),
        "garbage": ("Bearer not-a.jwt.at-all", 401),
        "alg none": ("Bearer " + tf.sign(claims, alg="none"), 401),
        "HS256 keyed with the public cert": ("Bearer " + tf.sign(claims, alg="HS256"), 401),
        "another key, same kid": ("Bearer " + impostor.token(), 401),
        "unknown kid": ("Bearer " + tf.sign(claims, kid="no-such-kid"), 401),
        "another key, no kid": ("Bearer " + impostor.sign(claims, kid=None), 401),
        "tampered payload": ("Bearer " + _tamper(tf.token(email="nobody@example.com"), email=INVOKER), 401),
        "wrong audience": ("Bearer " + tf.token(audience="https://evil.example"), 401),
        "no audience": ("Bearer " + tf.token(aud=OMIT), 401),
        "wrong issuer": ("Bearer " + tf.token(iss="https://evil.example"), 401),
        "expired": ("Bearer " + tf.token(iat=now - 7200, exp=now - 3600), 401),
        "issued in the future": ("Bearer " + tf.token(iat=now + 3600, exp=now + 7200), 401),
        "exp as a string": ("Bearer " + tf.token(exp=str(now + 3600)), 401),
        "unverified email": ("Bearer " + tf.token(email_verified=False), 403),
        "email_verified as a string": ("Bearer " + tf.token(email_verified="true"), 403),
        "no email": ("Bearer " + tf.token(email=OMIT), 403),
        "another email": ("Bearer " + tf.token(email="mallory@evil.example"), 403),
        "the admin calling /cron/tick": ("Bearer " + tf.token(email=ADMIN), 403),
    }


# -- strategies -------------------------------------------------------------------

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=120)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
CRONS = st.sampled_from(["0 9 * * 1-5", "*/5 * * * *", "0 0 31 2 *", "* * * *", "60 * * * *", "@daily", "0 9 * * 1-5 extra", ""])
TIMES = st.sampled_from(["2026-12-01T09:00:00+01:00", "2020-01-01T00:00:00Z", "2026-12-01T09:00:00", "yesterday", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", ""])
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Mars/Olympus", "", "../../etc/passwd"])
JOB_TYPES = st.sampled_from(["log", "chat_message", "http_request", "ledger", "no-such-type", ""])
JOB_FIELDS = {
    "id": st.text(max_size=140),
    "job_type": JOB_TYPES | st.text(max_size=20),
    "schedule_at": TIMES | JSON,
    "cron": CRONS | st.text(max_size=30),
    "interval_seconds": st.integers(-10, 2**40) | JSON,
    "timezone": ZONES | JSON,
    "payload": st.dictionaries(st.text(max_size=10), JSON, max_size=4) | JSON,
    "max_attempts": st.integers(-5, 10**6) | JSON,
    "timeout_seconds": st.floats(allow_nan=False, allow_infinity=False) | JSON,
    "misfire": st.sampled_from(["run_once", "skip", "run_all", "sometimes"]) | JSON,
    "misfire_grace_seconds": st.integers(-5, 10**9) | JSON,
    "idempotency_key": st.text(max_size=80) | JSON,
    "status": st.sampled_from(["pending", "running", "completed", "paused"]) | JSON,
}
JOB_BODY = st.fixed_dictionaries({}, optional=JOB_FIELDS) | st.fixed_dictionaries({}, optional={**JOB_FIELDS, "extra": JSON})
JOB_IDS = st.sampled_from(["seed-pending", "seed-paused", "seed-cron", "missing-id"]) | st.text(alphabet="abcdefghij-_.:%/ ", max_size=20)
ACTIONS = st.sampled_from(["pause", "resume", "run", "release", "explode", ""])
QUERY = st.dictionaries(st.sampled_from(["status", "job_type", "limit", "after", "outcome", "since", "until", "count", "catch_up", "force", "x"]), HEADER_TEXT.map(lambda s: s[:30]), max_size=3)
CHAT_TEXT = st.tuples(
    st.sampled_from(["help", "remind", "schedule", "list", "list all", "show", "history", "pause", "resume", "run", "cancel", "REMIND", "what"]),
    st.sampled_from(["", "in 10m", "every day at 9:00", "every weekday at 9:00", "at 2026-12-01 09:00", "tomorrow 9:00", 'cron "0 9 * * 1-5"', "in -5m", "every 0s", "at 25:99", "tz=Mars/Olympus in 1h"]),
    st.sampled_from(["", "log", "http_request", "chat_message", "stretch"]),
    st.text(max_size=60) | JSON.map(json.dumps),
).map(" ".join)


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def api_request(draw) -> tuple[str, str, dict[str, str], bytes]:
    kind = draw(st.sampled_from(["create", "patch", "action", "list", "get", "preview", "executions", "status", "delete"]))
    job_id = draw(JOB_IDS)
    quoted = urllib.parse.quote(job_id, safe="") if job_id else "x"
    query = draw(QUERY)
    qs = ("?" + urllib.parse.urlencode(query)) if query else ""
    body_kind = draw(st.sampled_from(["job", "json", "bytes", "none"]))
    body = {"job": lambda: _body(draw(JOB_BODY)), "json": lambda: _body(draw(JSON)), "bytes": lambda: draw(st.binary(max_size=200)), "none": lambda: b""}[body_kind]()
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", ""]))}
    method, path = {
        "create": ("POST", "/api/v1/jobs"),
        "patch": ("PATCH", f"/api/v1/jobs/{quoted}"),
        "action": ("POST", f"/api/v1/jobs/{quoted}:{draw(ACTIONS)}"),
        "list": ("GET", "/api/v1/jobs"),
        "get": ("GET", f"/api/v1/jobs/{quoted}"),
        "preview": ("GET", f"/api/v1/jobs/{quoted}/preview"),
        "executions": ("GET", "/api/v1/executions"),
        "status": ("GET", "/api/v1/status"),
        "delete": ("DELETE", f"/api/v1/jobs/{quoted}"),
    }[kind]
    return method, path + qs, headers, body


@st.composite
def chat_event(draw) -> bytes:
    sender = draw(st.sampled_from(["ann@example.com", ADMIN, "stranger@else.example", "", None]))
    shape = draw(st.sampled_from(["message", "message", "added", "removed", "clicked", "odd", "json", "bytes"]))
    if shape == "json":
        return _body(draw(JSON))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    text = draw(CHAT_TEXT)
    event: dict[str, Any] = {
        "type": {"message": "MESSAGE", "added": "ADDED_TO_SPACE", "removed": "REMOVED_FROM_SPACE", "clicked": "CARD_CLICKED", "odd": draw(st.text(max_size=20))}[shape],
        "space": {"name": draw(st.sampled_from(["spaces/AAA", "spaces/", "", "not-a-space"]))},
        "user": {"email": sender} if sender is not None else {},
        "message": {"text": text, "argumentText": draw(st.none() | st.just(text)), "sender": {"email": sender}, "thread": {"name": draw(st.sampled_from(["spaces/AAA/threads/T", "bad", ""]))}, "name": "spaces/AAA/messages/M"},
    }
    if draw(st.booleans()):
        event[draw(st.text(max_size=8))] = draw(JSON)
    return _body(event)


# -- the drill --------------------------------------------------------------------


def send(url: str, method: str, path: str, headers: dict[str, str | None], body: bytes) -> tuple[int, bytes]:
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            if value is not None:
                conn.putheader(name, value.encode("latin-1"))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_generated_bad_input_never_gives_a_5xx_and_forged_tokens_are_refused(backend, tmp_path, cert_server, token_factory, impostor_factory):
    ledger = tmp_path / "ledger.txt"
    auth = {
        "AUTH_MODE": "oidc",
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_ALLOWED_EMAILS": INVOKER,
        "ADMIN_EMAILS": ADMIN,
        "OIDC_CERTS_URL": cert_server.url,
        "CHAT_AUTH_AUDIENCE": WEBHOOK_AUDIENCE,
        "CHAT_ALLOWED_SENDERS": "ann@example.com",
        "CHAT_API_BASE_URL": "http://127.0.0.1:9/v1",  # nothing is ever posted, but never anywhere else
    }
    api_backend = backend.sibling("api")
    tick_backend = backend
    tick_backend.seed(ledger_jobs(TICK_JOBS, ledger, cron_every=4))
    api = Gunicorn(api_backend.env(**auth), tmp_path / "api.log", workers=1, threads=4)
    ticks = Gunicorn(tick_backend.env(**auth), tmp_path / "tick.log", workers=1, threads=4)
    invoker = {"Authorization": "Bearer " + token_factory.token()}
    admin = {"Authorization": "Bearer " + token_factory.token(email=ADMIN)}
    chat = {"Authorization": "Bearer " + token_factory.token(audience=WEBHOOK_AUDIENCE, email=CHAT_ISSUER)}
    forged = forged_tokens(token_factory, impostor_factory)
    statuses: Counter[tuple[str, int]] = Counter()
    tick_results: list[dict] = []
    try:
        for job_id, fields in (("seed-pending", {"cron": "*/5 * * * *"}), ("seed-paused", {"interval_seconds": 600}), ("seed-cron", {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})):
            status, body = send(api.url, "POST", "/api/v1/jobs", admin | {"Content-Type": "application/json"}, _body({"id": job_id, "job_type": "log", **fields}))
            assert status == 201, body
        assert send(api.url, "POST", "/api/v1/jobs/seed-paused:pause", admin, b"")[0] == 200

        @settings(max_examples=REQUESTS, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(data=st.data())
        def one_request(data) -> None:
            kind = data.draw(st.sampled_from(["tick", "api", "api", "webhook", "forged"]))
            if kind == "tick":
                headers = dict(invoker)
                for name in data.draw(st.sets(st.sampled_from(["X-CloudScheduler-JobName", "X-CloudScheduler-ScheduleTime", "X-Crontick-Source", "Content-Type", "X-CloudScheduler"]))):
                    headers[name] = data.draw(HEADER_TEXT | st.sampled_from(["projects/p/locations/l/jobs/tick", "2026-11-22T12:00:00Z", "cloud_scheduler", "legacy", "manual"]))
                status, body = send(ticks.url, "POST", "/cron/tick", headers, data.draw(st.binary(max_size=100)))
                if status == 200:
                    tick_results.append(json.loads(body))
                expected = {200, 400}  # gunicorn itself refuses header values it cannot parse
            elif kind == "api":
                method, path, headers, body = data.draw(api_request())
                status, body = send(api.url, method, path, admin | headers, body)
                expected = {200, 201, 308, 400, 404, 405, 409, 415}  # 308: werkzeug merges the slashes of a "%2F" id
            elif kind == "webhook":
                status, body = send(api.url, "POST", "/webhook", chat | {"Content-Type": "application/json"}, data.draw(chat_event()))
                expected = {200}
            else:
                name = data.draw(st.sampled_from(sorted(forged)))
                target = data.draw(st.sampled_from(range(len(targets))))
                kind, status, body, expected = try_forged(name, target, data.draw(st.binary(max_size=100)))
            statuses[(kind.split()[0], status)] += 1
            assert status < 500, (kind, status, body[:300])
            assert status in expected, (kind, status, body[:300])

        targets = [(ticks, "POST", "/cron/tick"), (api, "GET", "/api/v1/jobs"), (api, "POST", "/api/v1/jobs"), (api, "DELETE", "/api/v1/jobs/seed-pending"), (api, "GET", "/api/v1/status"), (api, "POST", "/webhook")]

        def try_forged(name: str, target: int, body: bytes) -> tuple[str, int, bytes, set[int]]:
            value, tick_status = forged[name]
            server, method, path = targets[target]
            status, answer = send(server.url, method, path, {"Authorization": value, "Content-Type": "application/json"}, body)
            if path == "/webhook":
                expected = {401, 403}  # every forged token also has the wrong audience for Chat
            elif path.startswith("/api/v1") and name == "the admin calling /cron/tick":
                expected = {200, 201, 400}  # the admin's own token is valid there
            else:
                expected = {tick_status}
            return f"forged {name}", status, answer, expected

        # Every forged kind on every protected endpoint once, then generated requests.
        for name in forged:
            for target in range(len(targets)):
                if name == "the admin calling /cron/tick" and targets[target][1] == "DELETE":
                    continue  # a valid admin call: it would cancel the job
                kind, status, body, expected = try_forged(name, target, _body({"job_type": "log", "cron": "* * * * *"}))
                assert status in expected, (kind, targets[target][1:], status, body[:300])
        status, body = send(api.url, "GET", "/api/v1/jobs/seed-pending", admin, b"")
        assert status == 200 and json.loads(body)["status"] == "pending"  # the forged DELETEs cancelled nothing
        assert tick_results == [] and read_ledger(ledger) == []  # the forged ticks ran nothing
        one_request()
        # One more valid tick runs whatever the generated ticks had not reached yet.
        status, body = send(ticks.url, "POST", "/cron/tick", invoker, b"")
        assert status == 200, body
        tick_results.append(json.loads(body))
    finally:
        api.stop()
        ticks.stop()
    for server in (api, ticks):
        assert "Unhandled error" not in server.log(), server.log()[-3000:]
    assert sum(statuses.values()) >= REQUESTS
    assert {k for k, _ in statuses} >= {"tick", "api", "webhook", "forged"}
    rows = read_ledger(ledger)
    assert len(rows) == TICK_JOBS and set(Counter(r[0] for r in rows).values()) == {1}  # forged ticks ran nothing
    assert sum(r.get("jobs_succeeded", 0) for r in tick_results if not r.get("duplicate")) == TICK_JOBS
