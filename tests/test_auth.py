"""Authentication of ``POST /cron/tick``, end to end and unmocked.

Tokens are RS256 JWTs signed with a key generated for the session; its cert is
served over real HTTP on loopback by ``CertServer``, so google-auth's signature
and claim checks and the CacheControl cert session run as in production. Each
test builds a fresh app, hence a fresh cert cache.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from main import create_app
from scheduler.errors import ConfigError
from web.auth import is_allowed
from tests.support.oidc import (  # noqa: F401 - fixtures are used by name
    AUDIENCE,
    INVOKER,
    OMIT,
    CertServer,
    TokenFactory,
    cert_server,
    impostor_factory,
    oidc_config,
    oidc_env,
    token_factory,
)

MakeApp = Callable[..., Flask]


@pytest.fixture
def make_app(cert_server: CertServer) -> MakeApp:
    """``make_app(**env_overrides)``: a fresh app (fresh cert cache) against ``cert_server``."""

    def make(**overrides: str) -> Flask:
        return create_app(oidc_env(cert_server.url, **overrides))

    return make


@pytest.fixture
def tick(make_app: MakeApp) -> Callable[..., Any]:
    """``tick(authorization)`` posts to one fresh oidc app and returns the response."""
    client = make_app().test_client()

    def post(authorization: str | None):
        headers = {} if authorization is None else {"Authorization": authorization}
        return client.post("/cron/tick", headers=headers)

    return post


def bearer(token: str) -> str:
    return f"Bearer {token}"


def assert_ok(response) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body["tick_id"], str) and body["tick_id"]
    assert body["jobs_due"] == 0
    return body


def assert_refused(response, status: int, code: str, *fragments: str) -> str:
    """The uniform JSON error; each of ``fragments`` appears in its message."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code
    assert body["error"]["field"] is None
    message = body["error"]["message"]
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return message


def tamper_payload(token: str, **changes: Any) -> str:
    """Rewrite claims of a signed token, keeping its (now wrong) signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    new_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{new_payload}.{signature}"


# --- oidc: accepted ----------------------------------------------------------


def test_valid_token_runs_the_tick(tick, token_factory: TokenFactory, cert_server: CertServer) -> None:
    assert_ok(tick(bearer(token_factory.token())))
    assert cert_server.requests == 1


def test_scheme_is_case_insensitive(tick, token_factory: TokenFactory) -> None:
    assert_ok(tick(f"bearer {token_factory.token()}"))


def test_token_expired_within_the_clock_skew_is_accepted(tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    assert_ok(tick(bearer(token_factory.token(iat=now - 3610, exp=now - 10))))


def test_token_issued_slightly_in_the_future_is_accepted(tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    assert_ok(tick(bearer(token_factory.token(iat=now + 10, exp=now + 3610))))


def test_short_issuer_form_is_accepted(tick, token_factory: TokenFactory) -> None:
    assert_ok(tick(bearer(token_factory.token(iss="accounts.google.com"))))


def test_allow_list_is_case_insensitive(tick, token_factory: TokenFactory) -> None:
    assert_ok(tick(bearer(token_factory.token(email=INVOKER.upper()))))


# --- oidc: 401 for every forgery ----------------------------------------------


def test_missing_authorization_header(tick) -> None:
    assert_refused(tick(None), 401, "unauthenticated", "missing Authorization header")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer   ", "BearerX abc"])
def test_non_bearer_scheme(tick, header: str) -> None:
    assert_refused(tick(header), 401, "unauthenticated", "must be 'Bearer")


def test_valid_token_under_another_scheme_is_refused(tick, token_factory: TokenFactory) -> None:
    assert_refused(tick(f"JWT {token_factory.token()}"), 401, "unauthenticated", "must be 'Bearer")


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("garbage", "wrong number of segments"),
        ("a.b.c", "invalid token"),
        ("e30.e30.", "invalid token"),  # {}.{} and no signature: no alg at all
        ("W10.e30.c2ln", "header segment should be a json object"),  # header is []
        ("eyJhbGciOg.e30.c2ln", "can't parse segment"),  # header is '{"alg":' (bad JSON is 401, not a certs outage)
        ("%%%.%%%.%%%", "invalid token"),
    ],
)
def test_garbage_token(tick, token: str, fragment: str) -> None:
    assert_refused(tick(bearer(token)), 401, "unauthenticated", fragment)


def test_alg_none_token(tick, token_factory: TokenFactory) -> None:
    token = token_factory.sign(token_factory.valid_claims(), alg="none")
    assert token.endswith(".")
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "unsupported signature algorithm none")


def test_hs256_keyed_with_the_public_cert(tick, token_factory: TokenFactory) -> None:
    """Algorithm confusion: HMAC keyed with the (public) cert must not verify."""
    token = token_factory.sign(token_factory.valid_claims(), alg="HS256")
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "unsupported signature algorithm HS256")


def test_token_signed_by_another_key_with_the_same_kid(tick, token_factory: TokenFactory, impostor_factory: TokenFactory) -> None:
    assert impostor_factory.kid == token_factory.kid
    token = impostor_factory.token()
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "could not verify token signature")


def test_token_signed_with_our_kid_header_but_another_key(tick, token_factory: TokenFactory, impostor_factory: TokenFactory) -> None:
    token = token_factory.sign(token_factory.valid_claims(), key=impostor_factory.key)
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "could not verify token signature")


def test_tampered_payload(tick, token_factory: TokenFactory) -> None:
    token = tamper_payload(token_factory.token(email="nobody@example.com"), email=INVOKER)
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "could not verify token signature")


def test_unknown_kid(tick, token_factory: TokenFactory) -> None:
    token = token_factory.sign(token_factory.valid_claims(), kid="rotated-away")
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "key id rotated-away not found")


def test_wrong_audience(tick, token_factory: TokenFactory) -> None:
    token = token_factory.token(audience="https://other-service.example.run.app")
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "wrong audience")


def test_missing_audience(tick, token_factory: TokenFactory) -> None:
    assert_refused(tick(bearer(token_factory.token(aud=OMIT))), 401, "unauthenticated", "wrong audience")


@pytest.mark.parametrize("issuer", ["https://evil.example.com", "https://securetoken.google.com/proj", "accounts.google.com.evil"])
def test_wrong_issuer(tick, token_factory: TokenFactory, issuer: str) -> None:
    assert_refused(tick(bearer(token_factory.token(iss=issuer))), 401, "unauthenticated", "issuer must be one of")


def test_missing_issuer(tick, token_factory: TokenFactory) -> None:
    assert_refused(tick(bearer(token_factory.token(iss=OMIT))), 401, "unauthenticated", "issuer must be one of")


def test_expired_beyond_the_clock_skew(tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    token = token_factory.token(iat=now - 3700, exp=now - 45)
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "token expired")


def test_long_expired(tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    token = token_factory.token(iat=now - 86400 * 30, exp=now - 86400 * 30 + 3600)
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "token expired")


def test_issued_far_in_the_future(tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    token = token_factory.token(iat=now + 3600, exp=now + 7200)
    assert_refused(tick(bearer(token)), 401, "unauthenticated", "token used too early")


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_missing_time_claim(tick, token_factory: TokenFactory, claim: str) -> None:
    token = token_factory.token(**{claim: OMIT})
    assert_refused(tick(bearer(token)), 401, "unauthenticated", f"required claim {claim}")


@pytest.mark.parametrize("claims", [{"exp": "tomorrow"}, {"iat": "now"}, {"iat": None}, {"exp": [1]}])
def test_signed_token_with_malformed_time_claims(tick, token_factory: TokenFactory, claims: dict[str, Any]) -> None:
    """Well signed but unusable: a 401, not a crash inside google-auth's checks."""
    assert_refused(tick(bearer(token_factory.token(**claims))), 401, "unauthenticated", "invalid token")


# --- oidc: 403 for a valid token of someone not allowed ------------------------


def test_unverified_email(tick, token_factory: TokenFactory) -> None:
    token = token_factory.token(email_verified=False)
    assert_refused(tick(bearer(token)), 403, "permission_denied", f"email {INVOKER} is not verified")


@pytest.mark.parametrize("value", ["true", 1, OMIT])
def test_email_verified_must_be_boolean_true(tick, token_factory: TokenFactory, value: Any) -> None:
    token = token_factory.token(email_verified=value)
    assert_refused(tick(bearer(token)), 403, "permission_denied", "is not verified")


def test_email_not_in_the_allow_list(tick, token_factory: TokenFactory) -> None:
    token = token_factory.token(email="intruder@proj.iam.gserviceaccount.com")
    assert_refused(tick(bearer(token)), 403, "permission_denied", "intruder@proj.iam.gserviceaccount.com is not allowed")


def test_token_without_email(tick, token_factory: TokenFactory) -> None:
    token = token_factory.token(email=OMIT)
    assert_refused(tick(bearer(token)), 403, "permission_denied", "no email claim")


@pytest.mark.parametrize(
    ("email", "status"),
    [
        ("invoker@proj.iam.gserviceaccount.com", 200),
        ("another-sa@proj.iam.gserviceaccount.com", 200),
        ("Mixed.Case@PROJ.iam.gserviceaccount.com", 200),
        ("sa@other-proj.iam.gserviceaccount.com", 403),
        ("sa@sub.proj.iam.gserviceaccount.com", 403),
        ("sa@proj.iam.gserviceaccount.com.attacker.example", 403),
        ("proj.iam.gserviceaccount.com", 403),  # no local part, no "@"
        ("@proj.iam.gserviceaccount.com", 403),  # empty local part
        ("eve@evil.example@proj.iam.gserviceaccount.com", 403),  # two "@": not one address of that domain
        ("ops@example.com@proj.iam.gserviceaccount.com", 403),
        ("sa@", 403),
    ],
)
def test_domain_entry_admits_any_email_of_that_domain(make_app: MakeApp, token_factory: TokenFactory, email: str, status: int) -> None:
    client = make_app(OIDC_ALLOWED_EMAILS="ops@example.com, @proj.iam.gserviceaccount.com").test_client()
    response = client.post("/cron/tick", headers={"Authorization": bearer(token_factory.token(email=email))})
    if status == 200:
        assert_ok(response)
    else:
        assert_refused(response, 403, "permission_denied", "is not allowed")


ALLOWED = frozenset({"ops@example.com", "@corp.example"})


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("ops@example.com", True),
        ("OPS@Example.COM", True),
        ("eve@corp.example", True),
        ("EVE@Corp.Example", True),
        ("a.b+tag@corp.example", True),
        ("a@b@corp.example", False),
        ("eve@evil.example@corp.example", False),
        ("ops@example.com@corp.example", False),
        ("@corp.example", False),
        ("corp.example", False),
        ("eve@corp.example.evil", False),
        ("eve@sub.corp.example", False),
        ("eve@corp.exampl", False),
        ("eve@", False),
        ("@", False),
        ("", False),
        ("other@example.com", False),
    ],
)
def test_is_allowed_parses_one_address(email: str, allowed: bool) -> None:
    assert is_allowed(email, ALLOWED) is allowed


# --- oidc: the certs endpoint ------------------------------------------------


def test_certs_fetched_once_for_several_verifications(tick, token_factory: TokenFactory, cert_server: CertServer) -> None:
    for _ in range(5):
        assert_ok(tick(bearer(token_factory.token())))
    assert cert_server.requests == 1


def test_cached_certs_outlive_the_certs_server(tick, token_factory: TokenFactory, cert_server: CertServer) -> None:
    assert_ok(tick(bearer(token_factory.token())))
    cert_server.stop()
    assert_ok(tick(bearer(token_factory.token())))
    assert_refused(tick(bearer(token_factory.token(audience="https://other.example"))), 401, "unauthenticated", "wrong audience")
    assert cert_server.requests == 1


def test_certs_server_error_is_503_then_recovers(make_app: MakeApp, token_factory: TokenFactory, cert_server: CertServer) -> None:
    client = make_app().test_client()
    headers = {"Authorization": bearer(token_factory.token())}
    cert_server.fail(500)
    assert_refused(client.post("/cron/tick", headers=headers), 503, "unavailable", "cannot fetch the token signing certificates")
    assert cert_server.requests == 1
    # The error was not cached: the same app asks again and serves once the certs are back.
    cert_server.recover()
    assert_ok(client.post("/cron/tick", headers=headers))
    assert cert_server.requests == 2
    assert_ok(client.post("/cron/tick", headers=headers))
    assert cert_server.requests == 2


def test_certs_server_down_is_503_then_recovers(make_app: MakeApp, token_factory: TokenFactory, cert_server: CertServer) -> None:
    client = make_app().test_client()
    headers = {"Authorization": bearer(token_factory.token())}
    cert_server.stop()
    assert_refused(client.post("/cron/tick", headers=headers), 503, "unavailable", "cannot fetch the token signing certificates")
    assert cert_server.requests == 0
    cert_server.start()  # same port
    assert_ok(client.post("/cron/tick", headers=headers))
    assert cert_server.requests == 1


def test_certs_body_that_is_not_json_is_503_then_recovers(make_app: MakeApp, token_factory: TokenFactory, cert_server: CertServer) -> None:
    """A proxy's HTML page answered with 200 is a certs outage, not a bad token."""
    client = make_app().test_client()
    headers = {"Authorization": bearer(token_factory.token())}
    cert_server.serve_raw(b"<html><body>Service temporarily unavailable</body></html>")
    assert_refused(client.post("/cron/tick", headers=headers), 503, "unavailable", "cannot fetch the token signing certificates")
    cert_server.recover()
    assert_ok(client.post("/cron/tick", headers=headers))


def test_certs_unreachable_beats_a_forged_token(make_app: MakeApp, cert_server: CertServer) -> None:
    """With no certs nothing can be verified: the answer is 503 (retry), not 401."""
    cert_server.stop()
    response = make_app().test_client().post("/cron/tick", headers={"Authorization": bearer("garbage")})
    assert_refused(response, 503, "unavailable")


def test_hanging_certs_server_times_out_as_503(make_app: MakeApp, token_factory: TokenFactory, cert_server: CertServer) -> None:
    client = make_app(OIDC_CERTS_TIMEOUT_SECONDS="0.3").test_client()
    headers = {"Authorization": bearer(token_factory.token())}
    cert_server.hang()
    started = time.monotonic()
    assert_refused(client.post("/cron/tick", headers=headers), 503, "unavailable")
    assert time.monotonic() - started < 5
    cert_server.recover()
    assert_ok(client.post("/cron/tick", headers=headers))


def test_certs_rotation_is_picked_up_by_a_fresh_app(make_app: MakeApp, token_factory: TokenFactory, impostor_factory: TokenFactory, cert_server: CertServer) -> None:
    """Sanity check of the server itself: it serves whatever certs it is given."""
    cert_server.certs = impostor_factory.certs
    assert_ok(make_app().test_client().post("/cron/tick", headers={"Authorization": bearer(impostor_factory.token())}))
    response = make_app().test_client().post("/cron/tick", headers={"Authorization": bearer(token_factory.token())})
    assert_refused(response, 401, "unauthenticated", "could not verify token signature")


# --- iam: Cloud Run verified the signature; only the claims are checked ---------


@pytest.fixture
def iam_tick(make_app: MakeApp):
    client = make_app(AUTH_MODE="iam").test_client()

    def post(token: str | None):
        headers = {} if token is None else {"Authorization": bearer(token)}
        return client.post("/cron/tick", headers=headers)

    return post


def test_iam_accepts_a_broken_signature_with_right_claims(iam_tick, token_factory: TokenFactory, impostor_factory: TokenFactory, cert_server: CertServer) -> None:
    assert_ok(iam_tick(impostor_factory.token()))
    header, payload, _ = token_factory.token().split(".")
    assert_ok(iam_tick(f"{header}.{payload}.SIGNATURE_REMOVED_BY_CLOUD_RUN"))
    assert cert_server.requests == 0


def test_iam_wrong_audience(iam_tick, token_factory: TokenFactory) -> None:
    assert_refused(iam_tick(token_factory.token(audience="https://other.example")), 401, "unauthenticated", "wrong audience")


def test_iam_accepts_audience_list_containing_ours(iam_tick, token_factory: TokenFactory) -> None:
    assert_ok(iam_tick(token_factory.token(aud=["https://other.example", AUDIENCE])))


def test_iam_expired(iam_tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    assert_refused(iam_tick(token_factory.token(iat=now - 3700, exp=now - 45)), 401, "unauthenticated", "expired")


def test_iam_expired_within_skew_is_accepted(iam_tick, token_factory: TokenFactory) -> None:
    now = int(time.time())
    assert_ok(iam_tick(token_factory.token(iat=now - 3610, exp=now - 10)))


@pytest.mark.parametrize("exp", [OMIT, "9999999999", None])
def test_iam_exp_must_be_a_number(iam_tick, token_factory: TokenFactory, exp: Any) -> None:
    assert_refused(iam_tick(token_factory.token(exp=exp)), 401, "unauthenticated", "expired or without exp")


def test_iam_other_email(iam_tick, token_factory: TokenFactory) -> None:
    assert_refused(iam_tick(token_factory.token(email="intruder@proj.iam.gserviceaccount.com")), 403, "permission_denied", "is not allowed")


def test_iam_unverified_email(iam_tick, token_factory: TokenFactory) -> None:
    assert_refused(iam_tick(token_factory.token(email_verified=False)), 403, "permission_denied", "is not verified")


def test_iam_wrong_issuer(iam_tick, token_factory: TokenFactory) -> None:
    assert_refused(iam_tick(token_factory.token(iss="https://evil.example.com")), 401, "unauthenticated", "issuer")


@pytest.mark.parametrize("token", [None, "garbage", "a.b.c", "W10.W10.x"])
def test_iam_missing_or_garbage_token(iam_tick, token: str | None) -> None:
    assert_refused(iam_tick(token), 401, "unauthenticated")


# --- configuration ------------------------------------------------------------


def test_disabled_auth_is_refused_in_production(cert_server: CertServer) -> None:
    with pytest.raises(ConfigError, match="AUTH_MODE=disabled"):
        create_app(oidc_env(cert_server.url, AUTH_MODE="disabled", ENVIRONMENT="production"))


def test_disabled_auth_lets_everyone_in_outside_production(make_app: MakeApp) -> None:
    assert_ok(make_app(AUTH_MODE="disabled").test_client().post("/cron/tick"))


@pytest.mark.parametrize("mode", ["oidc", "iam"])
def test_audience_is_required(cert_server: CertServer, mode: str) -> None:
    env = oidc_env(cert_server.url, AUTH_MODE=mode)
    del env["OIDC_AUDIENCE"]
    with pytest.raises(ConfigError, match="OIDC_AUDIENCE"):
        create_app(env)


def test_blank_audience_is_refused(cert_server: CertServer) -> None:
    with pytest.raises(ConfigError, match="OIDC_AUDIENCE"):
        create_app(oidc_env(cert_server.url, OIDC_AUDIENCE="  "))


def test_allow_list_is_required(cert_server: CertServer) -> None:
    with pytest.raises(ConfigError, match="OIDC_ALLOWED_EMAILS"):
        create_app(oidc_env(cert_server.url, OIDC_ALLOWED_EMAILS=" , "))


def test_unknown_auth_mode_is_refused(cert_server: CertServer) -> None:
    with pytest.raises(ConfigError, match="AUTH_MODE"):
        create_app(oidc_env(cert_server.url, AUTH_MODE="none"))
