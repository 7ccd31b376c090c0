"""Signing in to the console through IAP, roles, CSRF, security headers and escaping.

Real verification: ES256 assertions signed by test keys, IAP's key endpoint served on
loopback (tests/support/iap.py), google-auth doing the checks.
"""

from __future__ import annotations

import html as html_module
import random
import re
from collections.abc import Iterator

import pytest

from main import create_app
from scheduler.model import JobStatus
from tests.support.clock import T0, FakeClock
from tests.support.console import FakeMonotonic, timed_registry
from tests.support.iap import ADMIN, IAP_AUDIENCE, STRANGER, VIEWER, IapKeys, console_env
from tests.support.oidc import OMIT, CertServer, TokenFactory

HEADER = "X-Goog-IAP-JWT-Assertion"


@pytest.fixture(scope="module")
def iap_keys() -> IapKeys:
    return IapKeys()


@pytest.fixture(scope="module")
def impostor(iap_keys: IapKeys) -> IapKeys:
    return IapKeys(kid=iap_keys.kid)  # another key claiming IAP's kid


@pytest.fixture
def key_server(iap_keys: IapKeys) -> Iterator[CertServer]:
    with CertServer(iap_keys.published) as server:
        yield server


@pytest.fixture
def app(key_server: CertServer):
    monotonic = FakeMonotonic()
    return create_app(console_env(key_server.url, SCHEDULER_MAX_CONCURRENCY="1"), clock=FakeClock(T0), registry=timed_registry(monotonic), rng=random.Random(5), monotonic=monotonic)


@pytest.fixture
def service(app):
    return app.extensions["crontick"].service


def raw(response) -> str:
    return response.get_data(as_text=True)


def page(response) -> str:
    """The page's text with entities decoded (messages quote with ')."""
    return html_module.unescape(raw(response))


def token_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def add_job(service, job_id: str = "j1", **fields):
    body = {"id": job_id, "job_type": "take", "cron": "*/5 * * * *", "payload": {"seconds": 0.01}} | fields
    return service.create(body, created_by=ADMIN)[0]


# -- who gets in --------------------------------------------------------------------------
def test_no_assertion_is_401_with_a_page_not_json(app):
    response = app.test_client().get("/")
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert "Not signed in" in page(response)
    assert f"no {HEADER} header: this console is served only through Identity-Aware Proxy" in page(response)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"exp": 1_000_000, "iat": 999_000}, "invalid IAP assertion: Token expired"),
        ({"aud": "/projects/999/global/backendServices/1"}, "invalid IAP assertion: Token has wrong audience /projects/999/global/backendServices/1"),
        ({"iss": "https://accounts.google.com"}, "invalid IAP assertion: issuer must be one of https://cloud.google.com/iap"),
        ({"aud": OMIT}, "invalid IAP assertion: Token has wrong audience None"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "no-audience"],
)
def test_bad_claims_are_401(app, iap_keys, overrides, fragment):
    response = app.test_client().get("/", headers=iap_keys.headers(ADMIN, **overrides))
    assert response.status_code == 401, page(response)
    assert fragment in page(response)


def test_forged_assertions_are_401(app, iap_keys, impostor):
    client = app.test_client()
    forged = client.get("/", headers=impostor.headers(ADMIN))  # right kid, wrong key
    assert forged.status_code == 401 and "invalid IAP assertion: Could not verify token signature." in page(forged)
    unknown = client.get("/", headers={HEADER: iap_keys.sign(iap_keys.claims(ADMIN), kid="another-kid")})
    assert unknown.status_code == 401 and "Certificate for key id another-kid not found." in page(unknown)
    tampered = iap_keys.assertion(VIEWER).split(".")
    tampered[1] = iap_keys.assertion(ADMIN).split(".")[1]  # an admin's claims under a viewer's signature
    assert client.get("/", headers={HEADER: ".".join(tampered)}).status_code == 401
    rs256 = TokenFactory(kid=iap_keys.kid).sign(iap_keys.claims(ADMIN))
    refused = client.get("/", headers={HEADER: rs256})
    assert refused.status_code == 401 and "the IAP assertion must be signed with ES256, not 'RS256'" in page(refused)
    for garbage in ("x", "a.b.c", "...."):
        assert client.get("/", headers={HEADER: garbage}).status_code == 401


def test_an_unlisted_email_gets_a_403_page_naming_them(app, iap_keys):
    response = app.test_client().get("/jobs", headers=iap_keys.headers(STRANGER))
    assert response.status_code == 403
    html = page(response)
    assert "You are signed in as <strong class=\"email\">eve@example.net</strong>." in html
    assert "eve@example.net may not use this console." in html
    assert "CONSOLE_ADMIN_EMAILS" in html and "CONSOLE_VIEWER_EMAILS" in html


def test_keys_unreachable_is_503_and_keys_are_fetched_once(app, iap_keys, key_server):
    client = app.test_client()
    for _ in range(3):
        assert client.get("/", headers=iap_keys.headers(ADMIN)).status_code == 200
    assert key_server.requests == 1  # cached per Cache-Control, as in production
    fresh = create_app(console_env(key_server.url), clock=FakeClock(T0))
    key_server.fail(500)
    response = fresh.test_client().get("/", headers=iap_keys.headers(ADMIN))
    assert response.status_code == 503 and "cannot fetch the token signing certificates; try again" in page(response)


def test_admins_see_actions_and_viewers_only_look(app, service, iap_keys):
    add_job(service)
    client = app.test_client()
    admin = page(client.get("/jobs/j1", headers=iap_keys.headers(ADMIN)))
    assert sorted(re.findall(r'data-action="(\w+)"', admin)) == ["backfill", "cancel", "pause", "run"]
    assert 'href="/new"' in admin and "Edit</a>" in admin
    for path in ("/", "/jobs", "/jobs/j1", "/executions"):
        response = client.get(path, headers=iap_keys.headers(VIEWER))
        assert response.status_code == 200, path
        html = page(response)
        assert "data-action" not in html and 'method="post"' not in html.replace('method="post" action="/jobs" class="bulk"', "")
        assert 'href="/new"' not in html and "csrf_token" not in html and 'name="ids"' not in html
        assert f"{VIEWER} <span class=\"role role-viewer\">viewer</span>" in html
    assert client.get("/new", headers=iap_keys.headers(VIEWER)).status_code == 200  # the form shows; saving is refused


def test_a_viewers_post_is_refused_even_with_a_valid_token(app, service, iap_keys):
    add_job(service)
    client = app.test_client()
    token = token_of(page(client.get("/new", headers=iap_keys.headers(VIEWER))))
    response = client.post("/jobs/j1/pause", data={"csrf_token": token, "note": "sneaky"}, headers=iap_keys.headers(VIEWER))
    assert response.status_code == 403
    assert f"{VIEWER} may look but not change anything (CONSOLE_VIEWER_EMAILS)" in page(response)
    assert service.get("j1").status is JobStatus.PENDING and len(service.get("j1").audit) == 1


# -- CSRF -----------------------------------------------------------------------------------
def test_posts_without_a_genuine_token_for_this_session_and_person_are_refused(app, service, iap_keys):
    add_job(service)
    client = app.test_client()
    headers = iap_keys.headers(ADMIN)
    token = token_of(page(client.get("/jobs/j1", headers=headers)))
    refusals = {
        "missing": ({}, "the form has no csrf_token; reload the page and try again"),
        "forged": ({"csrf_token": token[:-4] + "AAAA"}, "the form's csrf_token is not valid; reload the page and try again"),
    }
    for name, (data, message) in refusals.items():
        response = client.post("/jobs/j1/pause", data=data, headers=headers)
        assert response.status_code == 403, name
        assert message in page(response), name
    other_browser = app.test_client()  # another session: its cookie does not match the token
    other_browser.get("/", headers=headers)
    response = other_browser.post("/jobs/j1/pause", data={"csrf_token": token}, headers=headers)
    assert response.status_code == 403 and "belongs to another session" in page(response)
    cross_site = client.post("/jobs/j1/pause", data={"csrf_token": token}, headers=headers | {"Origin": "https://evil.example"})
    assert cross_site.status_code == 403 and "the form was sent from another site (https://evil.example)" in page(cross_site)
    assert service.get("j1").status is JobStatus.PENDING
    done = client.post("/jobs/j1/pause", data={"csrf_token": token, "note": "maintenance"}, headers=headers | {"Origin": "http://localhost"})
    assert done.status_code == 303 and done.headers["Location"] == "/jobs/j1?done=pause"
    job = service.get("j1")
    assert job.status is JobStatus.PAUSED and (job.audit[-1].actor, job.audit[-1].action, job.audit[-1].note) == (ADMIN, "pause", "maintenance")


def test_a_token_minted_for_someone_else_is_refused(app, iap_keys):
    admins = [ADMIN, "bob@example.com"]
    env_app = create_app(console_env(app.extensions["crontick"].settings.iap_certs_url, CONSOLE_ADMIN_EMAILS=",".join(admins)), clock=FakeClock(T0), registry=timed_registry(FakeMonotonic()))
    add_job(env_app.extensions["crontick"].service)
    client = env_app.test_client()
    token = token_of(page(client.get("/jobs/j1", headers=iap_keys.headers(ADMIN))))
    response = client.post("/jobs/j1/run", data={"csrf_token": token}, headers=iap_keys.headers("bob@example.com"))
    assert response.status_code == 403 and "belongs to another session" in page(response)


def test_the_session_cookie_is_strict_and_http_only(app, iap_keys):
    response = app.test_client().get("/", headers=iap_keys.headers(ADMIN))
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("crontick_console=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    secure = app.test_client().get("/", headers=iap_keys.headers(ADMIN) | {"X-Forwarded-Proto": "https"})
    assert "Secure" in secure.headers["Set-Cookie"]


# -- headers and escaping ---------------------------------------------------------------------
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


@pytest.mark.parametrize("path", ["/", "/jobs", "/executions", "/new", "/jobs/nope", "/assets/console.css"])
def test_every_response_carries_the_security_headers(app, iap_keys, path):
    response = app.test_client().get(path, headers=iap_keys.headers(ADMIN))
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_refusals_carry_the_security_headers_too(app, iap_keys):
    for response in (app.test_client().get("/"), app.test_client().get("/", headers=iap_keys.headers(STRANGER))):
        assert response.headers["Content-Security-Policy"] == CSP and response.headers["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(app, service, iap_keys):
    add_job(service)
    client = app.test_client()
    for path in ("/", "/jobs", "/jobs/j1", "/jobs/j1/edit", "/new", "/executions"):
        html = raw(client.get(path, headers=iap_keys.headers(ADMIN)))
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all(' src="/assets/' in tag for tag in scripts), path
        assert "<style" not in html and not re.search(r"\sstyle=", html), path
        assert not re.search(r"<[^>]+\son[a-z]+=", html), path
        assert re.findall(r"<script[^>]*>(.*?)</script>", html, re.S) == [""] * len(scripts), path


def test_what_comes_from_a_job_is_escaped(app, service, iap_keys):
    script = "<script>alert('x')</script>"
    add_job(service, "evil", job_type="take_fail", payload={"seconds": 0.01, "error": f"bad {script}", "html": script})
    service.run_now("evil", actor=ADMIN, note=f"note {script}")
    client = app.test_client()
    assert client.post("/cron/tick").get_json()["jobs_failed"] == 1
    for path in ("/", "/jobs", "/jobs/evil", "/executions", "/jobs/evil/edit"):
        html = raw(client.get(path, headers=iap_keys.headers(ADMIN)))
        assert "<script>alert" not in html, path
    detail = raw(client.get("/jobs/evil", headers=iap_keys.headers(ADMIN)))
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in detail
    assert detail.count("RuntimeError: bad &lt;script&gt;") == 2  # the run's error and last_error
    assert "note &lt;script&gt;" in detail


# -- modes ------------------------------------------------------------------------------------
def test_off_serves_nothing_and_disabled_is_local_only(tmp_path):
    off = create_app({"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "memory"})
    response = off.test_client().get("/")
    assert response.status_code == 404 and response.is_json
    local = create_app({"ENVIRONMENT": "local", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "memory"})
    html = page(local.test_client().get("/"))
    assert 'local <span class="role role-admin">admin</span>' in html
    assert IAP_AUDIENCE.startswith("/projects/")
