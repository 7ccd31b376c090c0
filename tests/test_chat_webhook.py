"""``POST /webhook`` end to end: Chat-shaped events, real tokens, a real store and tick.

Chat's tokens are RS256 JWTs signed by a key generated for the session and
served over loopback by ``CertServer`` (one server standing in for
``CHAT_CERTS_URL``, another for Google's ``OIDC_CERTS_URL``), so google-auth's
verification runs as in production. Jobs are created through the app built by
``create_app`` with a ``FakeClock``, and ``remind`` jobs post, on the next
``POST /cron/tick``, to ``ChatStandIn``, a loopback server recording what the
Chat API would receive.
"""

from __future__ import annotations

import io
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from main import create_app
from scheduler.model import Job, JobStatus
from scheduler.timing import check_cron
from scheduler.when import STARTS
from tests.support.clock import FakeClock
from tests.support.oidc import (  # noqa: F401 - fixtures are used by name
    OMIT,
    CertServer,
    TokenFactory,
    cert_server,
    impostor_factory,
    oidc_env,
    token_factory,
)
from tests.test_chat_message import STATIC_TOKEN, ChatStandIn, chat_standin, standin_registry  # noqa: F401

PROJECT = "123456789012"
URL_AUDIENCE = "https://crontick.example.run.app/webhook"
CHAT_ISSUER = "chat@system.gserviceaccount.com"
ANN = "ann@example.com"
BOB = "bob@team.example.com"
BOSS = "boss@example.com"
EVE = "eve@elsewhere.example"
SPACE = "spaces/AAAAxyz"
THREAD = "spaces/AAAAxyz/threads/TTTT_1"
ID = r"`([0-9a-f]{12})`"


def chat_event(
    text: str,
    sender: str | None = ANN,
    *,
    kind: str = "MESSAGE",
    name: str | None = None,
    space: str = SPACE,
    thread: str | None = THREAD,
) -> dict[str, Any]:
    """An interaction event as Google Chat sends it for '@crontick <text>' in a space."""
    person = {"name": "users/1150", "displayName": "Someone", "type": "HUMAN", "domainId": "c0ffee"}
    if sender is not None:
        person["email"] = sender
    space_obj = {"name": space, "type": "ROOM", "spaceType": "SPACE", "displayName": "Ops"}
    event: dict[str, Any] = {
        "type": kind,
        "eventTime": "2026-01-05T12:00:00.123456Z",
        "user": person,
        "space": space_obj,
        "configCompleteRedirectUrl": "https://chat.google.com/api/bot_config_complete?token=abc",
        "common": {"userLocale": "en", "hostApp": "CHAT"},
    }
    if kind in ("MESSAGE", "ADDED_TO_SPACE_WITH_MESSAGE"):
        event["type"] = "MESSAGE" if kind == "MESSAGE" else "ADDED_TO_SPACE"
        event["message"] = {
            "name": name or f"{space}/messages/{uuid.uuid4().hex[:11]}.{uuid.uuid4().hex[:11]}",
            "sender": person,
            "createTime": "2026-01-05T12:00:00.123456Z",
            "text": f"@crontick {text}",
            "argumentText": f" {text}",
            "annotations": [
                {"type": "USER_MENTION", "startIndex": 0, "length": 9, "userMention": {"user": {"name": "users/app", "displayName": "crontick", "type": "BOT"}, "type": "MENTION"}}
            ],
            "space": space_obj,
        }
        if thread:
            event["message"]["thread"] = {"name": thread, "retentionSettings": {"state": "PERMANENT"}}
    return event


_TOKENS: dict[int, tuple[str, float]] = {}


def _cached(factory: TokenFactory, make: Callable[[], str]) -> str:
    """A valid default token per signing key, reused for 10 minutes: signing loads the PEM key, which is slow."""
    token, made = _TOKENS.get(id(factory), ("", 0.0))
    if time.time() - made > 600:
        token = make()
        _TOKENS[id(factory)] = (token, time.time())
    return token


class Chat:
    """A Chat app client: signs Chat's token, posts events, reads the store."""

    def __init__(self, app, factory: TokenFactory, clock: FakeClock, token_factory: TokenFactory) -> None:
        self.app = app
        self.client = app.test_client()
        self.ct = app.extensions["crontick"]
        self.factory = factory
        self.clock = clock
        self.invoker_tokens = token_factory

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": CHAT_ISSUER, "aud": PROJECT, "iat": now, "exp": now + 3600}
        for key, value in overrides.items():
            if value is OMIT:
                claims.pop(key, None)
            else:
                claims[key] = value
        return self.factory.sign(claims)

    def post(self, event: Any, authorization: str | None | object = ...) -> Any:
        if authorization is ...:
            authorization = f"Bearer {_cached(self.factory, self.token)}"
        headers = {} if authorization is None else {"Authorization": authorization}
        if isinstance(event, (bytes, str)):
            return self.client.post("/webhook", data=event, headers=headers, content_type="application/json")
        return self.client.post("/webhook", json=event, headers=headers)

    def say(self, text: str, sender: str | None = ANN, **event_options: Any) -> str:
        response = self.post(chat_event(text, sender, **event_options))
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert set(body) == {"text"}, body
        return body["text"]

    def create(self, text: str, sender: str = ANN, **event_options: Any) -> tuple[Job, str]:
        reply = self.say(text, sender, **event_options)
        m = re.search(ID, reply)
        assert m, reply
        return self.ct.store.get_job(m.group(1)), reply

    def jobs(self) -> list[Job]:
        return self.ct.store.list_jobs(limit=1000)

    def tick(self) -> dict[str, Any]:
        token = _cached(self.invoker_tokens, self.invoker_tokens.token)
        response = self.client.post("/cron/tick", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


@pytest.fixture(scope="session")
def chat_factory() -> TokenFactory:
    """Chat's signing key (another key than Google's ID-token key)."""
    return TokenFactory(kid="chat-test-key")


@pytest.fixture(scope="module")
def chat_certs(chat_factory: TokenFactory) -> Iterator[CertServer]:
    """Shared by the module (tests must not stop it or change what it serves)."""
    with CertServer(chat_factory.certs) as server:
        yield server


@pytest.fixture
def make_chat(cert_server: CertServer, chat_certs: CertServer, chat_standin: ChatStandIn, chat_factory: TokenFactory, token_factory: TokenFactory, clock: FakeClock) -> Callable[..., Chat]:
    def make(**overrides: str) -> Chat:
        env = oidc_env(
            cert_server.url,
            CHAT_AUTH_AUDIENCE=PROJECT,
            CHAT_CERTS_URL=chat_certs.url,
            CHAT_ALLOWED_SENDERS=f"{ANN}, @team.example.com",
            ADMIN_EMAILS=BOSS,
            CHAT_API_BASE_URL=chat_standin.base_url,
        )
        env.update(overrides)
        app = create_app(env, clock=clock, registry=standin_registry(chat_standin), rng=random.Random(7))
        return Chat(app, chat_factory, clock, token_factory)

    return make


@pytest.fixture
def chat(make_chat) -> Chat:
    return make_chat()


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def assert_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and fragment in body["error"]["message"], body


# --- authentication: project-number audience ---------------------------------------------


def test_chat_token_is_accepted(chat: Chat, chat_certs: CertServer) -> None:
    before = chat_certs.requests
    assert "*crontick* schedules jobs" in chat.say("help")
    assert "*crontick* schedules jobs" in chat.say("help")
    assert chat_certs.requests == before + 1  # fetched once per app, then cached


def test_missing_token_is_401_and_nothing_stored(chat: Chat) -> None:
    assert_error(chat.post(chat_event("remind in 10m x"), authorization=None), 401, "missing Authorization header")
    assert chat.jobs() == []


@pytest.mark.parametrize("header", ["Basic YTpi", "Bearer", "Bearer garbage", "Bearer a.b.c"])
def test_malformed_authorization_is_401(chat: Chat, header: str) -> None:
    assert_error(chat.post(chat_event("remind in 10m x"), authorization=header), 401, "")
    assert chat.jobs() == []


def test_forged_tokens_are_401(chat: Chat, impostor_factory: TokenFactory, chat_factory: TokenFactory) -> None:
    claims = {"iss": CHAT_ISSUER, "aud": PROJECT, "iat": int(time.time()), "exp": int(time.time()) + 3600}
    impostor = TokenFactory(kid=chat_factory.kid)  # another key claiming Chat's kid
    forged = [
        impostor.sign(claims),
        chat_factory.sign(claims, alg="none"),
        chat_factory.sign(claims, alg="HS256"),
        chat_factory.sign(claims, kid="rotated-away"),
    ]
    header, _, signature = chat.token().split(".")
    tampered_payload = impostor.sign(claims | {"exp": claims["exp"] + 86400}).split(".")[1]  # a longer life, Chat's signature
    forged.append(f"{header}.{tampered_payload}.{signature}")
    for token in forged:
        assert_error(chat.post(chat_event("remind in 10m x"), authorization=f"Bearer {token}"), 401, "invalid token")
    assert chat.jobs() == []


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"aud": "999999999999"}, "wrong audience"),
        ({"aud": URL_AUDIENCE}, "wrong audience"),
        ({"aud": OMIT}, "wrong audience"),
        ({"iss": "https://accounts.google.com"}, f"issuer must be one of {CHAT_ISSUER}"),
        ({"iss": "someone@system.gserviceaccount.com"}, f"issuer must be one of {CHAT_ISSUER}"),
        ({"iss": OMIT}, f"issuer must be one of {CHAT_ISSUER}"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
    ],
)
def test_chat_token_with_wrong_claims_is_401(chat: Chat, overrides: dict[str, Any], fragment: str) -> None:
    assert_error(chat.post(chat_event("remind in 10m x"), authorization=f"Bearer {chat.token(**overrides)}"), 401, fragment)
    assert chat.jobs() == []


def test_google_id_token_is_not_a_chat_token(chat: Chat, token_factory: TokenFactory) -> None:
    """A Google-signed ID token (even naming Chat's email and our project) is not verified by Chat's certs."""
    token = token_factory.token(audience=PROJECT, email=CHAT_ISSUER)
    assert_error(chat.post(chat_event("remind in 10m x"), authorization=f"Bearer {token}"), 401, "invalid token")


def test_chat_certs_unreachable_is_503(make_chat, chat_factory: TokenFactory) -> None:
    with CertServer(chat_factory.certs) as down:
        pass  # started and stopped: its port now refuses connections
    chat = make_chat(CHAT_CERTS_URL=down.url)
    assert_error(chat.post(chat_event("help")), 503, "cannot fetch the token signing certificates")


# --- authentication: HTTP endpoint URL audience -----------------------------------------


@pytest.fixture
def url_chat(make_chat) -> Chat:
    return make_chat(CHAT_AUTH_AUDIENCE=URL_AUDIENCE)


def test_url_audience_accepts_a_google_id_token_for_chat(url_chat: Chat, token_factory: TokenFactory, cert_server: CertServer) -> None:
    token = token_factory.token(audience=URL_AUDIENCE, email=CHAT_ISSUER)
    response = url_chat.post(chat_event("help"), authorization=f"Bearer {token}")
    assert response.status_code == 200 and "remind" in response.get_json()["text"]
    assert cert_server.requests == 1


@pytest.mark.parametrize(
    ("claims", "status", "fragment"),
    [
        ({"email": "intruder@proj.iam.gserviceaccount.com"}, 403, "is not allowed"),
        ({"email": ANN}, 403, "is not allowed"),
        ({"email_verified": False}, 403, "is not verified"),
        ({"email": OMIT}, 403, "no email claim"),
        ({"audience": PROJECT}, 401, "wrong audience"),
        ({"iss": "https://evil.example"}, 401, "issuer must be one of"),
    ],
)
def test_url_audience_refuses_other_principals(url_chat: Chat, token_factory: TokenFactory, claims: dict[str, Any], status: int, fragment: str) -> None:
    audience = claims.pop("audience", URL_AUDIENCE)
    email = claims.pop("email", CHAT_ISSUER)
    token = token_factory.token(audience=audience, email=email, **claims)
    assert_error(url_chat.post(chat_event("remind in 10m x"), authorization=f"Bearer {token}"), status, fragment)
    assert url_chat.jobs() == []


def test_url_audience_refuses_a_project_number_style_token(url_chat: Chat) -> None:
    token = url_chat.token(aud=URL_AUDIENCE)  # Chat's JWT, signed by Chat's key: not in Google's ID-token certs
    assert_error(url_chat.post(chat_event("help"), authorization=f"Bearer {token}"), 401, "invalid token")


def test_unconfigured_audience_refuses_everything(make_chat) -> None:
    chat = make_chat(CHAT_AUTH_AUDIENCE="")
    assert_error(chat.post(chat_event("help")), 401, "CHAT_AUTH_AUDIENCE")


def test_auth_disabled_admits_without_token(make_chat) -> None:
    chat = make_chat(AUTH_MODE="disabled")
    response = chat.post(chat_event("remind in 10m x"), authorization=None)
    assert response.status_code == 200 and "Scheduled" in response.get_json()["text"]


# --- who may use it ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender", [EVE, "eve@example.com.attacker.example", "team.example.com", "@team.example.com", "eve@evil.example@team.example.com", f"{EVE}@{ANN}", "", None]
)
def test_unlisted_sender_is_refused_politely_and_nothing_stored(chat: Chat, sender: str | None) -> None:
    for text in ("remind in 10m x", "schedule every 15m log", "list", "help"):
        reply = chat.say(text, sender)
        assert reply.startswith("Sorry, ") and "not allowed" in reply and "CHAT_ALLOWED_SENDERS" in reply
    assert chat.jobs() == []


@pytest.mark.parametrize("sender", [ANN, "Ann@Example.com", BOB, "carol@TEAM.example.com", BOSS])
def test_listed_senders_domains_and_admins_are_admitted(chat: Chat, sender: str) -> None:
    job, reply = chat.create("remind in 10m x", sender)
    assert reply.startswith(f"Scheduled `{job.id}`")
    assert job.created_by == sender


# --- events -------------------------------------------------------------------------------


def test_added_to_space_says_hello(chat: Chat) -> None:
    response = chat.post(chat_event("", kind="ADDED_TO_SPACE"))
    assert response.status_code == 200
    assert response.get_json()["text"].startswith("Hello! I schedule jobs and reminders.\n*crontick* schedules jobs from Chat.")


def test_added_to_space_with_a_message_runs_it(chat: Chat) -> None:
    job, reply = chat.create("remind in 10m x", kind="ADDED_TO_SPACE_WITH_MESSAGE")
    assert job.payload["text"] == "x"


def test_removed_from_space_answers_empty(chat: Chat) -> None:
    response = chat.post(chat_event("", kind="REMOVED_FROM_SPACE"))
    assert response.status_code == 200 and response.get_json() == {}


def test_card_clicked_is_explained(chat: Chat) -> None:
    response = chat.post(chat_event("", kind="CARD_CLICKED"))
    assert response.status_code == 200 and "not understood: buttons are not supported" in response.get_json()["text"]


@pytest.mark.parametrize(
    "event",
    [
        b"this is not json",
        b"",
        b"[1, 2]",
        b"null",
        {"type": "MESSAGE"},
        {"type": "MESSAGE", "message": "text"},
        {"type": "MESSAGE", "message": {"text": "remind in 10m x", "sender": {"email": 42}}},
        {"type": "MESSAGE", "message": {"text": "remind in 10m x", "sender": {"email": ANN}}},  # no space
        {"type": "MESSAGE", "message": {"text": "remind in 10m x", "sender": {"email": ANN}}, "space": {"name": "rooms/x"}},
        {"type": "MESSAGE", "message": {"text": "remind in 10m x", "sender": {"email": ANN}, "name": ["x"]}, "space": {"name": 7}},
        {"type": "WIDGET_UPDATED", "user": {"email": ANN}},
        {"type": ["MESSAGE"], "user": {"email": ANN}},
        {"message": {"text": "help", "sender": {"email": ANN}}},
        {"type": "MESSAGE", "message": {"text": "remind in 10m " + "x" * 100_000, "sender": {"email": ANN}}, "space": {"name": SPACE}},
    ],
)
def test_odd_events_get_a_200_text_and_store_nothing(chat: Chat, event: Any) -> None:
    response = chat.post(event)
    assert response.status_code == 200, response.get_data(as_text=True)
    text = response.get_json()["text"]
    assert text.startswith("Sorry, ") and ("not understood" in text or "not allowed" in text), text
    assert "something went wrong" not in text
    assert chat.jobs() == []


@pytest.mark.parametrize("message", [{"text": 5}, {"argumentText": ["remind"], "text": None}, {"text": "   "}])
def test_a_message_without_text_gets_the_help(chat: Chat, message: dict[str, Any]) -> None:
    response = chat.post({"type": "MESSAGE", "message": {**message, "sender": {"email": ANN}}, "space": {"name": SPACE}})
    assert response.status_code == 200 and response.get_json()["text"].startswith("*crontick* schedules jobs from Chat.")
    assert chat.jobs() == []


# --- bodies: bounded size, pathological nesting ------------------------------------------------

BODY_LIMIT = 256 * 1024


def event_of_size(size: int, text: str = "remind in 10m x") -> bytes:
    """A valid Chat event serialised to exactly ``size`` bytes (padded in an extra field)."""
    event = chat_event(text)
    base = len(json.dumps(event | {"padding": ""}).encode("utf-8"))
    body = json.dumps(event | {"padding": "x" * (size - base)}).encode("utf-8")
    assert len(body) == size
    return body


def assert_too_large(response) -> None:
    assert response.status_code == 413, response.get_data(as_text=True)
    assert response.get_json() == {
        "error": {"code": "request_entity_too_large", "message": f"the Chat event body is over {BODY_LIMIT} bytes (256 KiB)", "field": "body"}
    }


def test_a_body_at_the_limit_is_read(chat: Chat) -> None:
    response = chat.post(event_of_size(BODY_LIMIT))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["text"].startswith("Scheduled `")
    assert len(chat.jobs()) == 1


def test_a_body_over_the_limit_is_413_and_nothing_stored(chat: Chat) -> None:
    assert_too_large(chat.post(event_of_size(BODY_LIMIT + 1)))
    assert_too_large(chat.post(event_of_size(4 * BODY_LIMIT)))
    assert chat.jobs() == []


class _Streamed:
    """A body of unknown length, as a chunked one is: the test client measures a BytesIO
    and declares its length, which would test the Content-Length path instead."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def test_a_chunked_body_over_the_limit_is_413(chat: Chat) -> None:
    """No Content-Length (chunked, a server that terminates the stream): read up to the
    limit, and refused for its size when there is more (not as a body that is not JSON)."""
    headers = {"Authorization": f"Bearer {_cached(chat.factory, chat.token)}", "Content-Type": "application/json"}
    for size, status in ((BODY_LIMIT, 200), (BODY_LIMIT + 1, 413), (4 * BODY_LIMIT, 413)):
        streamed = {"wsgi.input": _Streamed(event_of_size(size)), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
        response = chat.client.post("/webhook", headers=headers, environ_overrides=streamed)
        assert "CONTENT_LENGTH" not in response.request.environ or not response.request.environ["CONTENT_LENGTH"]
        if status == 413:
            assert_too_large(response)
        else:
            assert response.status_code == 200, response.get_data(as_text=True)
    assert len(chat.jobs()) == 1


def test_an_oversized_body_without_a_token_is_401(chat: Chat) -> None:
    assert_error(chat.post(event_of_size(BODY_LIMIT + 1), authorization=None), 401, "missing Authorization header")


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_body_is_a_400_on_body(chat: Chat, depth: int) -> None:
    body = b'{"type": "MESSAGE", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = chat.post(body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json() == {"error": {"code": "invalid_argument", "message": "the Chat event body is nested too deeply", "field": "body"}}
    assert chat.jobs() == []


# --- remind ---------------------------------------------------------------------------------


def test_remind_in_10m(chat: Chat) -> None:
    event = chat_event("remind in 10m stretch your legs")
    response = chat.post(event)
    reply = response.get_json()["text"]
    [job] = chat.jobs()
    assert reply == (
        f"Scheduled `{job.id}` (chat_message): once, on Mon 2026-01-05 at 12:10 UTC.\n"
        "Message: stretch your legs\n"
        "Next run (UTC):\n"
        "• Mon 2026-01-05 12:10 UTC"
    )
    assert job.job_type == "chat_message"
    assert job.payload == {"text": "stretch your legs", "space": SPACE, "thread": THREAD}
    assert (job.schedule_at, job.next_run_at, job.status) == (at(2026, 1, 5, 12, 10), at(2026, 1, 5, 12, 10), JobStatus.PENDING)
    assert job.created_by == ANN
    assert job.idempotency_key == f"chat:{ANN}:{event['message']['name']}"


@pytest.mark.parametrize(
    ("when", "extra", "schedule", "lines"),
    [
        ("in 2h30m", {}, {"schedule_at": at(2026, 1, 5, 14, 30)}, ["• Mon 2026-01-05 14:30 UTC"]),
        ("at 2026-12-01 09:00 tz=Europe/Paris", {}, {"schedule_at": at(2026, 12, 1, 8, 0), "timezone": "Europe/Paris"}, ["• Tue 2026-12-01 09:00 CET (08:00 UTC)"]),
        ("at 2026-12-01 09:00", {"CHAT_DEFAULT_TIMEZONE": "America/New_York"}, {"schedule_at": at(2026, 12, 1, 14, 0)}, ["• Tue 2026-12-01 09:00 EST (14:00 UTC)"]),
        ("tomorrow 9:00", {}, {"schedule_at": at(2026, 1, 6, 9, 0)}, ["• Tue 2026-01-06 09:00 UTC"]),
        ("tomorrow 9:00", {"CHAT_DEFAULT_TIMEZONE": "Asia/Tokyo"}, {"schedule_at": at(2026, 1, 6, 0, 0)}, ["• Tue 2026-01-06 09:00 JST (00:00 UTC)"]),
        ("tomorrow 8:00", {"CHAT_DEFAULT_TIMEZONE": "Asia/Tokyo"}, {"schedule_at": at(2026, 1, 5, 23, 0)}, ["• Tue 2026-01-06 08:00 JST (2026-01-05 23:00 UTC)"]),
        ("tz=America/Los_Angeles tomorrow 9:00", {}, {"schedule_at": at(2026, 1, 6, 17, 0)}, ["• Tue 2026-01-06 09:00 PST (17:00 UTC)"]),
        (
            "every weekday at 9:00",
            {},
            {"cron": "0 9 * * 1-5", "next_run_at": at(2026, 1, 6, 9)},
            ["• Tue 2026-01-06 09:00 UTC", "• Wed 2026-01-07 09:00 UTC", "• Thu 2026-01-08 09:00 UTC"],
        ),
        (
            "every 15m",
            {},
            {"interval_seconds": 900, "next_run_at": at(2026, 1, 5, 12, 15)},
            ["• Mon 2026-01-05 12:15 UTC", "• Mon 2026-01-05 12:30 UTC", "• Mon 2026-01-05 12:45 UTC"],
        ),
        (
            'cron "0 9 * * 1-5" tz=Europe/Paris',
            {},
            {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "next_run_at": at(2026, 1, 6, 8)},
            ["• Tue 2026-01-06 09:00 CET (08:00 UTC)", "• Wed 2026-01-07 09:00 CET (08:00 UTC)", "• Thu 2026-01-08 09:00 CET (08:00 UTC)"],
        ),
    ],
)
def test_remind_when_forms(make_chat, when: str, extra: dict[str, str], schedule: dict[str, Any], lines: list[str]) -> None:
    chat = make_chat(**extra)
    job, reply = chat.create(f"remind {when} water the plants")
    assert job.payload["text"] == "water the plants"
    for field, value in schedule.items():
        assert getattr(job, field) == value, (field, getattr(job, field))
    assert reply.endswith("\n".join(lines)), reply
    head = reply.splitlines()[0]
    assert head.startswith(f"Scheduled `{job.id}` (chat_message): ")


def test_remind_tz_at_the_end_of_the_command(chat: Chat) -> None:
    job, reply = chat.create("remind every weekday at 9:00 stand-up tz=Europe/Berlin")
    assert (job.cron, job.timezone, job.payload["text"]) == ("0 9 * * 1-5", "Europe/Berlin", "stand-up")
    assert "every weekday (Monday to Friday) at 09:00 (Europe/Berlin time)" in reply


def test_remind_keeps_the_text_verbatim(chat: Chat) -> None:
    text = "deploy *v2*\n  then `make check` <users/123> 🎉"
    job, _ = chat.create(f"remind in 1h {text}")
    assert job.payload["text"] == text


def test_remind_in_a_space_without_thread(chat: Chat) -> None:
    job, _ = chat.create("remind in 10m x", thread=None)
    assert job.payload == {"text": "x", "space": SPACE}


def test_remind_ignores_a_thread_of_another_space(chat: Chat) -> None:
    job, _ = chat.create("remind in 10m x", thread="spaces/OTHER/threads/T")
    assert job.payload == {"text": "x", "space": SPACE}


def test_every_day_at_2_30_in_berlin_across_the_spring_switch(chat: Chat, clock: FakeClock) -> None:
    clock.set(at(2026, 3, 27, 12, 0))
    job, reply = chat.create("remind every day at 2:30 tz=Europe/Berlin coffee")
    assert (job.cron, job.timezone) == ("30 2 * * *", "Europe/Berlin")
    assert reply.splitlines()[0] == f"Scheduled `{job.id}` (chat_message): every day at 02:30 (Europe/Berlin time)."
    assert reply.splitlines()[2:] == [
        "Next 3 runs (Europe/Berlin / UTC):",
        "• Sat 2026-03-28 02:30 CET (01:30 UTC)",
        "• Sun 2026-03-29 03:00 CEST (01:00 UTC) (DST: no 02:30 that day, run at the end of the gap)",
        "• Mon 2026-03-30 02:30 CEST (00:30 UTC)",
    ]


def test_every_day_at_2_30_in_berlin_across_the_autumn_switch(chat: Chat, clock: FakeClock) -> None:
    clock.set(at(2026, 10, 23, 12, 0))
    _, reply = chat.create("remind every day at 2:30 tz=Europe/Berlin coffee")
    assert reply.splitlines()[-3:] == [
        "• Sat 2026-10-24 02:30 CEST (00:30 UTC)",
        "• Sun 2026-10-25 02:30 CEST (00:30 UTC) (DST: the first of two 02:30s)",  # once
        "• Mon 2026-10-26 02:30 CET (01:30 UTC)",
    ]


def test_one_off_in_the_spring_gap(chat: Chat) -> None:
    job, reply = chat.create("remind at 2026-03-29 02:30 tz=Europe/Berlin x")
    assert job.schedule_at == at(2026, 3, 29, 1, 0)
    assert reply.endswith("• Sun 2026-03-29 03:00 CEST (01:00 UTC)")


# --- the reminder is posted on the next tick ----------------------------------------------------


def test_remind_posts_the_text_on_the_next_tick(chat: Chat, clock: FakeClock, chat_standin: ChatStandIn) -> None:
    job, _ = chat.create("remind in 10m stretch your legs")
    clock.advance(minutes=5)
    assert chat.tick()["jobs_due"] == 0
    assert chat_standin.received == []

    clock.advance(minutes=5)
    outcome = chat.tick()
    assert (outcome["jobs_due"], outcome["jobs_succeeded"]) == (1, 1)
    [got] = chat_standin.received
    assert got.path == f"/v1/{SPACE}/messages"
    assert got.query["messageReplyOption"] == ["REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"]
    assert got.query["requestId"][0].startswith("crontick-")
    assert got.headers["authorization"] == f"Bearer {STATIC_TOKEN}"
    assert got.body == b'{"text": "stretch your legs", "thread": {"name": "spaces/AAAAxyz/threads/TTTT_1"}}'
    assert chat.ct.store.get_job(job.id).status is JobStatus.COMPLETED

    clock.advance(minutes=10)
    chat.tick()
    assert len(chat_standin.received) == 1
    assert f"• Mon 2026-01-05 12:10 UTC, attempt 1: succeeded" in chat.say(f"history {job.id}")


def test_recurring_reminder_fires_after_the_berlin_gap(chat: Chat, clock: FakeClock, chat_standin: ChatStandIn) -> None:
    clock.set(at(2026, 3, 28, 12, 0))
    job, _ = chat.create("remind every day at 2:30 tz=Europe/Berlin coffee", thread=None)
    clock.set(at(2026, 3, 29, 0, 59))
    chat.tick()
    assert chat_standin.received == []
    clock.set(at(2026, 3, 29, 1, 0))
    assert chat.tick()["jobs_succeeded"] == 1
    [got] = chat_standin.received
    assert got.json == {"text": "coffee"}
    assert chat.ct.store.get_job(job.id).next_run_at == at(2026, 3, 30, 0, 30)


# --- schedule ---------------------------------------------------------------------------------


def test_schedule_log_with_payload(chat: Chat) -> None:
    job, reply = chat.create('schedule every 15m log {"note": "hello", "n": 1}')
    assert (job.job_type, job.payload, job.interval_seconds) == ("log", {"note": "hello", "n": 1}, 900)
    assert reply.splitlines()[0] == f"Scheduled `{job.id}` (log): every 15 minutes."


def test_schedule_cron_without_payload(chat: Chat) -> None:
    job, reply = chat.create('schedule cron "0 9 * * 1-5" log')
    assert (job.cron, job.payload) == ("0 9 * * 1-5", {})
    assert reply.endswith("• Tue 2026-01-06 09:00 UTC\n• Wed 2026-01-07 09:00 UTC\n• Thu 2026-01-08 09:00 UTC")


def test_schedule_payload_in_a_code_block(chat: Chat) -> None:
    job, _ = chat.create('schedule tomorrow 9:00 log ```json\n{"a": [1, 2]}\n```')
    assert job.payload == {"a": [1, 2]}


def test_schedule_chat_message_defaults_to_this_space(chat: Chat) -> None:
    job, _ = chat.create('schedule every day at 9:00 chat_message {"text": "good morning"}')
    assert job.payload == {"text": "good morning", "space": SPACE, "thread": THREAD}


def test_schedule_other_types_needs_an_admin(chat: Chat) -> None:
    body = '{"url": "https://internal.example/run", "oidc_audience": "https://internal.example"}'
    reply = chat.say(f"schedule every 15m http_request {body}", ANN)
    assert reply.startswith("Sorry, only an administrator can schedule 'http_request' jobs")
    reply = chat.say('schedule every 15m chat_message {"text": "x", "space": "spaces/OTHER"}', ANN)
    assert "can only post into this space" in reply
    reply = chat.say('schedule every 15m chat_message {"text": "x", "webhook_url": "https://x.example/hook"}', ANN)
    assert "can only post into this space" in reply
    assert chat.jobs() == []
    job, _ = chat.create(f"schedule every 15m http_request {body}", BOSS)
    assert job.job_type == "http_request" and job.created_by == BOSS


# --- redelivery -------------------------------------------------------------------------------


def test_redelivered_message_schedules_one_job(chat: Chat) -> None:
    event = chat_event("remind every weekday at 9:00 stand-up")
    first = chat.post(event).get_json()["text"]
    second = chat.post(event).get_json()["text"]
    [job] = chat.jobs()
    assert first.startswith(f"Scheduled `{job.id}`")
    assert second.startswith(f"This message was already scheduled as `{job.id}` (chat_message): every weekday")
    assert second.endswith("• Thu 2026-01-08 09:00 UTC")
    chat.say("remind every weekday at 9:00 stand-up")  # the same words in a new message: a new job
    assert len(chat.jobs()) == 2


@pytest.mark.parametrize("name", [f"{SPACE}/messages/abc.def", f"{SPACE}/messages/" + "m" * 600], ids=["short", "600-chars"])
def test_the_redelivery_key_is_scoped_to_the_sender(chat: Chat, name: str) -> None:
    """Another sender's event carrying the same message name is not a redelivery: it neither
    reuses (nor reveals) the first sender's job."""
    ann_first = chat.say("remind in 10m ann's", ANN, name=name)
    ann_again = chat.say("remind in 10m ann's", "Ann@Example.com", name=name)
    bob = chat.say("remind in 10m bob's", BOB, name=name)
    bob_again = chat.say("remind in 10m bob's", BOB, name=name)
    assert len(chat.jobs()) == 2
    jobs = {job.created_by.lower(): job for job in chat.jobs()}
    assert sorted(jobs) == [ANN, BOB]
    ann_job, bob_job = jobs[ANN], jobs[BOB]
    assert ann_first.startswith(f"Scheduled `{ann_job.id}`") and ann_again.startswith(f"This message was already scheduled as `{ann_job.id}`")
    assert bob.startswith(f"Scheduled `{bob_job.id}`") and bob_again.startswith(f"This message was already scheduled as `{bob_job.id}`")
    assert (ann_job.payload["text"], bob_job.payload["text"]) == ("ann's", "bob's")
    if len(name) < 400:
        assert (ann_job.idempotency_key, bob_job.idempotency_key) == (f"chat:{ANN}:{name}", f"chat:{BOB}:{name}")
    else:  # over the 500-character idempotency_key limit: hashed, still per sender
        assert re.fullmatch(r"chat:sha256:[0-9a-f]{64}", ann_job.idempotency_key) and re.fullmatch(r"chat:sha256:[0-9a-f]{64}", bob_job.idempotency_key)
        assert ann_job.idempotency_key != bob_job.idempotency_key


# --- list / show / history --------------------------------------------------------------------


def test_list_shows_own_jobs_and_all_for_admins(chat: Chat) -> None:
    ann_job, _ = chat.create("remind in 10m ann's", ANN)
    bob_job, _ = chat.create("remind every 15m bob's", BOB)
    ann_list = chat.say("list", ANN)
    assert ann_list.splitlines()[0] == "Your active jobs (1):"
    assert ann_job.id in ann_list and bob_job.id not in ann_list
    assert f"• `{ann_job.id}` chat_message [pending]: once, on Mon 2026-01-05 at 12:10 UTC, next Mon 2026-01-05 12:10 UTC \"ann's\"" in ann_list
    boss_list = chat.say("LIST", BOSS)
    assert boss_list.splitlines()[0] == "All active jobs (2):"
    assert f"by {ANN}" in boss_list and f"by {BOB}" in boss_list
    assert chat.say("list", "dave@team.example.com") == "You have no active jobs. Try `remind in 10m stretch`."


def test_list_all_includes_finished_jobs(chat: Chat) -> None:
    job, _ = chat.create("remind in 10m x")
    chat.say(f"cancel {job.id}")
    assert chat.say("list") == "You have no active jobs. Try `remind in 10m stretch`."
    assert f"`{job.id}` chat_message [cancelled]" in chat.say("list all")


def test_list_in_another_zone(chat: Chat) -> None:
    chat.create("remind in 10m x")
    assert "next Mon 2026-01-05 13:10 CET (12:10 UTC)" in chat.say("list tz=Europe/Paris")


def test_show(chat: Chat) -> None:
    job, _ = chat.create("remind every weekday at 9:00 tz=Europe/Paris stand-up")
    reply = chat.say(f"show {job.id}")
    assert reply.splitlines() == [
        f"`{job.id}` (chat_message) is pending: every weekday (Monday to Friday) at 09:00 (Europe/Paris time).",
        "Message: stand-up",
        "Next 3 runs (Europe/Paris / UTC):",
        "• Tue 2026-01-06 09:00 CET (08:00 UTC)",
        "• Wed 2026-01-07 09:00 CET (08:00 UTC)",
        "• Thu 2026-01-08 09:00 CET (08:00 UTC)",
        f"Created by {ANN} on Mon 2026-01-05 13:00 CET (12:00 UTC)",
        f'Payload: `{{"text": "stand-up", "space": "{SPACE}", "thread": "{THREAD}"}}`',
    ]
    assert chat.say(f"show `{job.id}` tz=UTC").splitlines()[3] == "• Tue 2026-01-06 08:00 UTC"


def test_history_lists_runs(chat: Chat, clock: FakeClock, chat_standin: ChatStandIn) -> None:
    job, _ = chat.create("remind every 15m x")
    assert chat.say(f"history {job.id}") == f"`{job.id}` (chat_message) has not run yet. Every 15 minutes."
    chat_standin.statuses = [500]
    clock.advance(minutes=15)
    chat.tick()
    reply = chat.say(f"history {job.id}")
    assert reply.splitlines()[0] == f"Last 1 runs of `{job.id}` (chat_message), newest first:"
    assert reply.splitlines()[1].startswith("• Mon 2026-01-05 12:15 UTC, attempt 1: failed (")
    assert "HTTP 500" in reply


# --- pause / resume / run / cancel ------------------------------------------------------------


def test_pause_resume_run_cancel(chat: Chat, clock: FakeClock) -> None:
    job, _ = chat.create("remind every weekday at 9:00 stand-up")

    reply = chat.say(f"pause {job.id}")
    assert reply.splitlines()[0] == f"Paused `{job.id}` (chat_message): every weekday (Monday to Friday) at 09:00 (UTC)."
    assert reply.splitlines()[2] == "Next runs once resumed (UTC):"
    assert chat.ct.store.get_job(job.id).status is JobStatus.PAUSED

    clock.set(at(2026, 1, 8, 12, 0))
    reply = chat.say(f"Resume {job.id}")
    assert reply.startswith(f"Resumed `{job.id}`")
    assert reply.endswith("• Fri 2026-01-09 09:00 UTC\n• Mon 2026-01-12 09:00 UTC\n• Tue 2026-01-13 09:00 UTC")
    assert chat.ct.store.get_job(job.id).status is JobStatus.PENDING

    reply = chat.say(f"run {job.id}")
    assert reply.startswith(f"Run at the next tick requested for `{job.id}`")
    assert "• Thu 2026-01-08 12:00 UTC" in reply
    assert chat.ct.store.get_job(job.id).next_run_at == at(2026, 1, 8, 12, 0)

    reply = chat.say(f"cancel {job.id}")
    assert reply.splitlines()[0] == f"Cancelled `{job.id}` (chat_message): every weekday (Monday to Friday) at 09:00 (UTC)."
    assert reply.splitlines()[-1] == "No further runs."
    assert chat.ct.store.get_job(job.id).status is JobStatus.CANCELLED

    assert chat.say(f"resume {job.id}").startswith(f"Sorry, job {job.id} is cancelled; only paused or failed jobs can be resumed")


@pytest.mark.parametrize("verb", ["show", "history", "pause", "resume", "run", "cancel"])
def test_only_the_creator_or_an_admin_may_act(chat: Chat, verb: str) -> None:
    job, _ = chat.create("remind every 15m x", ANN)
    if verb == "resume":
        chat.say(f"pause {job.id}", ANN)
    before = chat.ct.store.get_job(job.id)
    reply = chat.say(f"{verb} {job.id}", BOB)
    assert reply.startswith(f"Sorry, `{job.id}` was created by someone else; only its creator or an administrator can {verb} it")
    assert chat.ct.store.get_job(job.id) == before
    assert not chat.say(f"{verb} {job.id}", BOSS).startswith("Sorry")


def test_unknown_job(chat: Chat) -> None:
    assert chat.say("pause 0123456789ab").startswith("Sorry, there is no job `0123456789ab`")


# --- times at the calendar's ends --------------------------------------------------------------

LAST = at(9999, 12, 31, 23, 50)  # a Friday; east of UTC it is already year 10000


def test_a_reminder_at_the_end_of_the_calendar_is_listed_and_shown_in_any_zone(make_chat, clock: FakeClock, chat_standin: ChatStandIn) -> None:
    chat = make_chat(CHAT_DEFAULT_TIMEZONE="Pacific/Kiritimati")
    job, reply = chat.create("remind at 9999-12-31 23:50 tz=UTC last call")
    assert (job.schedule_at, job.timezone) == (LAST, "UTC")
    assert reply.endswith("Next run (UTC):\n• Fri 9999-12-31 23:50 UTC")
    beyond = "Fri 9999-12-31 23:50 UTC (beyond the calendar in Pacific/Kiritimati)"
    line = f'• `{job.id}` chat_message [pending]: once, on Fri 9999-12-31 at 23:50 UTC, next {beyond} "last call"'
    assert chat.say("list") == f"Your active jobs (1):\n{line}"
    assert chat.say("list", BOSS) == f"All active jobs (1):\n{line}, by {ANN}".replace(f' "last call", by {ANN}', f', by {ANN} "last call"')
    assert chat.say(f"show {job.id}").splitlines()[2:5] == [
        "Next run (Pacific/Kiritimati / UTC):",
        f"• {beyond}",
        f"Created by {ANN} on Tue 2026-01-06 02:00 +14 (2026-01-05 12:00 UTC)",
    ]
    assert chat.say(f"show {job.id} tz=America/Adak").splitlines()[3] == "• Fri 9999-12-31 13:50 HST (23:50 UTC)"

    clock.set(LAST)
    assert chat.tick()["jobs_succeeded"] == 1
    assert len(chat_standin.received) == 1
    shown = chat.say(f"show {job.id} tz=Pacific/Kiritimati").splitlines()
    assert shown[-1] == f"Last run {beyond}: succeeded"
    history = chat.say(f"history {job.id}").splitlines()
    assert history[1].startswith(f"• {beyond}, attempt 1: succeeded (")
    assert f"`{job.id}` chat_message [completed]: once, on Fri 9999-12-31 at 23:50 UTC" in chat.say("list all", BOSS)


def test_a_one_off_job_whose_own_zone_is_beyond_the_calendar(chat: Chat) -> None:
    """A one-off job kept in a zone east of UTC, at the last UTC minutes: its schedule is described in UTC."""
    job, created = chat.ct.service.create(
        {"job_type": "log", "schedule_at": "9999-12-31T23:50:00Z", "timezone": "Pacific/Kiritimati", "payload": {}}, created_by=ANN
    )
    assert created
    described = "once, on Fri 9999-12-31 at 23:50 UTC (beyond the calendar in Pacific/Kiritimati)"
    assert chat.say("list") == f"Your active jobs (1):\n• `{job.id}` log [pending]: {described}, next Fri 9999-12-31 23:50 UTC (beyond the calendar in Pacific/Kiritimati)"
    assert chat.say(f"show {job.id}").splitlines()[:3] == [
        f"`{job.id}` (log) is pending: {described}.",
        "Next run (Pacific/Kiritimati / UTC):",
        "• Fri 9999-12-31 23:50 UTC (beyond the calendar in Pacific/Kiritimati)",
    ]
    assert chat.say(f"history {job.id}") == f"`{job.id}` (log) has not run yet. {described[0].upper()}{described[1:]}."


def test_a_recurring_job_whose_later_runs_are_beyond_the_calendar(chat: Chat, clock: FakeClock) -> None:
    clock.set(at(9999, 6, 1, 12, 0))
    job, reply = chat.create("remind every 100d tz=Europe/Paris x")
    assert job.next_run_at == at(9999, 9, 9, 12, 0)
    runs = ["• Thu 9999-09-09 14:00 CEST (12:00 UTC)", "• Sat 9999-12-18 13:00 CET (12:00 UTC)", "Later runs would be beyond the calendar (year 9999)."]
    assert reply.splitlines()[2:] == ["Next 2 runs (Europe/Paris / UTC):", *runs]
    assert chat.say(f"pause {job.id}").splitlines()[2:] == ["Next runs once resumed (Europe/Paris / UTC):", *runs]
    clock.set(at(9999, 12, 18, 11, 0))  # resumed before its last run in the calendar
    assert chat.tick()["jobs_due"] == 0  # paused
    reply = chat.say(f"resume {job.id}")
    assert reply.splitlines()[2:] == ["Next run (Europe/Paris / UTC):", "• Sat 9999-12-18 13:00 CET (12:00 UTC)", "Later runs would be beyond the calendar (year 9999)."]


def test_an_interval_whose_first_run_is_beyond_the_calendar_is_refused(chat: Chat, clock: FakeClock) -> None:
    clock.set(at(9999, 12, 31, 12, 0))
    reply = chat.say("remind every 1d x")
    assert reply.startswith('Sorry, not understood: "every 1d" - its first run would be beyond the calendar (after 9999-12-31)'), reply
    assert chat.jobs() == []


def test_times_at_the_start_of_the_epoch_west_of_utc(make_chat, clock: FakeClock) -> None:
    clock.set(at(1970, 1, 1, 0, 5))
    chat = make_chat(CHAT_DEFAULT_TIMEZONE="America/Adak")
    job, reply = chat.create("remind in 10m tz=UTC first")
    assert job.schedule_at == at(1970, 1, 1, 0, 15)
    shown = chat.say(f"show {job.id}").splitlines()
    assert shown[2:5] == [
        "Next run (America/Adak / UTC):",
        "• Wed 1969-12-31 13:15 BST (1970-01-01 00:15 UTC)",
        f"Created by {ANN} on Wed 1969-12-31 13:05 BST (1970-01-01 00:05 UTC)",
    ]
    assert "next Wed 1969-12-31 13:15 BST (1970-01-01 00:15 UTC)" in chat.say("list", BOSS)


LONG_ZONE = "Europe/" + "x" * 293  # 300 characters: tzdata's own lookup would fail with ENAMETOOLONG


@pytest.mark.parametrize(
    "text",
    [f"remind in 1h tz={LONG_ZONE} x", f"remind tz={LONG_ZONE} in 1h x", f"remind in 1h x tz={LONG_ZONE}", f"schedule in 1h tz={LONG_ZONE} log"],
)
def test_a_300_character_zone_is_not_understood(chat: Chat, text: str) -> None:
    reply = chat.say(text)
    assert reply.startswith(f'Sorry, not understood: "tz={LONG_ZONE[:54]}..." - unknown time zone; use an IANA name such as Europe/Paris'), reply
    assert "something went wrong" not in reply
    assert chat.jobs() == []


@pytest.mark.parametrize("verb", ["list", "show", "history"])
def test_a_300_character_display_zone_is_not_understood(chat: Chat, verb: str) -> None:
    job, _ = chat.create("remind in 10m x")
    target = "" if verb == "list" else f" {job.id}"
    reply = chat.say(f"{verb}{target} tz={LONG_ZONE}")
    assert reply.startswith(f'Sorry, not understood: "tz={LONG_ZONE[:54]}..." - unknown time zone'), reply


@pytest.mark.parametrize(
    ("when", "tz_name", "text"),
    [
        (datetime.max.replace(tzinfo=timezone.utc), "Pacific/Kiritimati", "Fri 9999-12-31 23:59 UTC (beyond the calendar in Pacific/Kiritimati)"),
        (datetime.max.replace(tzinfo=timezone.utc), "America/Adak", "Fri 9999-12-31 13:59 HST (23:59 UTC)"),
        # Kiritimati's local mean time was UTC-10:29 (it was west of the date line until 1995),
        # Adak's UTC+12:13 (Alaska was Russian): the ends of the calendar flip with them.
        (datetime.min.replace(tzinfo=timezone.utc), "Pacific/Kiritimati", "Mon 0001-01-01 00:00 UTC (beyond the calendar in Pacific/Kiritimati)"),
        (datetime.min.replace(tzinfo=timezone.utc), "America/Los_Angeles", "Mon 0001-01-01 00:00 UTC (beyond the calendar in America/Los_Angeles)"),
        (datetime.min.replace(tzinfo=timezone.utc), "America/Adak", "Mon 0001-01-01 12:13 LMT (00:00 UTC)"),
        (datetime.min.replace(tzinfo=timezone.utc), "UTC", "Mon 0001-01-01 00:00 UTC"),
        (at(1970, 1, 1), "Pacific/Kiritimati", "Wed 1969-12-31 13:20 -1040 (1970-01-01 00:00 UTC)"),
    ],
)
def test_fmt_is_total_at_both_ends(when: datetime, tz_name: str, text: str) -> None:
    from web.chat_commands import _fmt

    assert _fmt(when, tz_name) == text


# --- help and refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["help", "HELP", "?", ""])
def test_help_lists_commands_with_examples(chat: Chat, text: str) -> None:
    reply = chat.say(text)
    for fragment in (
        "`remind <when> <text> [options]`", "`schedule <when> <job_type> [json payload] [options]`", "`list`", "`show <id>`", "`history <id>`",
        "`pause <id> [note]`", "`resume <id> [note]`", "`run <id>`", "`cancel <id>`", "`backfill <id> from <time> to <time> [runs=N]`", "`in 10m`",
        'cron "0 9 * * 1-5"', "tz=Europe/Paris", "`jitter=30s`", "`overlap=skip|buffer_one|buffer_all|replace`", "`dst=shift|skip`",
        "`dst_repeat=first|second|both`", "`starting=<time>`", "`until=<time>`", "`runs=N`", "`pause-on-failure`", "`3d ago`",
    ):  # fmt: skip
        assert fragment in reply


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("remind tomorow 9:00 x", ['not understood: "tomorow" - a time starts with one of', "Example: `remind tomorrow 9:00 send the report`"]),
        ("remind in 10 x", ['not understood: "in 10" - expected a duration']),
        ("remind at 25:00 x", ['not understood: "at 25:00" - not a time of day']),
        ("remind in 10m", ["not understood: what should I post in 10m?"]),
        ("remind every 30s x", ['not understood: "every 30s" - the shortest interval is 1 minute']),
        ('remind cron "0 9 * *" x', ['not understood: "cron 0 9 * *" - cron expression']),
        ("remind at 2025-01-01 10:00 x", ["in the past (it is now 2026-01-05 12:00 UTC)"]),
        ("remind in 10m x tz=Mars/Base", ['not understood: "tz=Mars/Base" - unknown time zone']),
        ("schedule every 15m", ['not understood: the job type is missing after "every 15m"; registered types: chat_message, http_request, log']),
        ("schedule every 15m nosuch", ['not understood: unknown job type "nosuch"; registered types:', "Example: `schedule every weekday at 9:00 log"]),
        ("schedule every 15m log {bad json", ['not understood: the payload "{bad json" is not valid JSON']),
        ("schedule every 15m log [1, 2]", ["not understood: the payload must be a JSON object {...}, not list"]),
        ('schedule every 15m http_request {"url": "ftp://x"}', []),  # refused (admin-only) before validation
        ("frobnicate the widgets", ['not understood: "frobnicate" is not a command']),
        ("show", ["not understood: show needs a job id"]),
        ("show ../../etc/passwd", ['not understood: "../../etc/passwd" is not a job id']),
        ("cancel abc def", ['not understood: "def" after the job id']),
        ("list everything", ['not understood: "everything" after list']),
    ],
)
def test_not_understood_replies(chat: Chat, text: str, fragments: list[str]) -> None:
    reply = chat.say(text)
    assert reply.startswith("Sorry, "), reply
    for fragment in fragments:
        assert fragment in reply, reply
    assert chat.jobs() == []


def test_admin_payload_validation_error_is_explained(chat: Chat) -> None:
    reply = chat.say('schedule every 15m http_request {"url": "ftp://x"}', BOSS)
    assert "not understood: http_request needs payload.url, an absolute http(s) URL" in reply
    assert chat.jobs() == []


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        ('{"x": 1e999}', "1e999"),
        ('{"x": -1E+400}', "-1E+400"),
        ('{"x": [1, {"y": 2e308}]}', "2e308"),
        ('{"x": NaN}', "NaN"),
        ('{"x": Infinity}', "Infinity"),
        ('{"x": -Infinity}', "-Infinity"),
    ],
)
@pytest.mark.parametrize("sender", [ANN, BOSS])
def test_non_finite_numbers_are_refused_by_chat_itself(chat: Chat, payload: str, shown: str, sender: str) -> None:
    reply = chat.say(f"schedule in 1h log {payload}", sender)
    assert reply.startswith(f'Sorry, not understood: the payload "{payload}" is not valid JSON ({shown} is not a finite number; JSON has no Infinity or NaN)'), reply
    assert chat.jobs() == []


def test_json_payload_refuses_non_finite_numbers_before_the_service() -> None:
    from web.chat_commands import NotUnderstood, _json_payload

    assert _json_payload('{"x": 1e308, "y": -0.0, "z": 12345678901234567890}') == {"x": 1e308, "y": -0.0, "z": 12345678901234567890}
    for text in ('{"x": 1e999}', '{"x": NaN}', '{"x": -Infinity}'):
        with pytest.raises(NotUnderstood, match=r"is not a finite number; JSON has no Infinity or NaN"):
            _json_payload(text)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ('{"url": "https://x.example/hook", "bogus": 1}', "not understood: http_request payload has unknown field 'bogus'; allowed: "),
        ('{"x": ' + "[" * 40 + "]" * 40 + "}", "not understood: payload is nested more than 32 levels deep"),
        ('{"x": "\\ud800"}', "not understood: payload contains a lone surrogate"),
    ],
)
def test_a_validation_error_from_the_service_names_the_field(chat: Chat, payload: str, fragment: str) -> None:
    job_type = "http_request" if "url" in payload else "log"
    reply = chat.say(f"schedule in 1h {job_type} {payload}", BOSS)
    assert reply.startswith(f"Sorry, {fragment}"), reply
    field = "payload.bogus" if job_type == "http_request" else "payload"
    assert f"(field {field})" in reply or reply.startswith(f"Sorry, not understood: {field} "), reply
    assert "something went wrong" not in reply
    assert chat.jobs() == []


def test_store_outage_is_a_200_apology(chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler.errors import StoreUnavailable

    def down(*args: Any, **kwargs: Any):
        raise StoreUnavailable("firestore unreachable")

    monkeypatch.setattr(chat.ct.store, "add_job", down)
    reply = chat.say("remind in 10m x")
    assert reply == "Sorry, the job store is unavailable right now, so nothing was changed. Please try again in a minute."


# --- property: malformed and hostile texts ----------------------------------------------------

COMMANDS = {"help", "?", "remind", "schedule", "list", "jobs", "show", "history", "pause", "resume", "run", "cancel", "backfill"}
HOSTILE = st.sampled_from(
    [
        "💥", "\u202e\u202d", "\x00", "'; DROP TABLE jobs;--", "${jndi:ldap://x/a}", "{{7*7}}", "<script>alert(1)</script>",
        "%s%s%n", "../../etc/passwd", "\\", '"', "'", "`", "\ufeff", "ｒｅｍｉｎｄ", "NaN", "-1", "1e309", "[]", "{}",
        "<users/123>", "@all", "\t\n", "tz=", "tz=Mars/Olympus", "cron", "every", "at", "in", "🕘", "9:00", "∞",
    ]
)  # fmt: skip
JUNK = st.one_of(st.text(max_size=60), HOSTILE, st.builds(lambda a, b: f"{a} {b}", HOSTILE, st.text(max_size=30)))
SYMBOLS = st.text(alphabet=st.characters(blacklist_categories=("L", "N", "Z", "C")), min_size=1, max_size=8)
NOT_A_START = st.one_of(
    st.sampled_from(["tomorow", "yesterday", "soon", "now", "later", "next", "asap", "9:00", "2026-12-01", "in10m", "@9", "-5m", "at9"]),
    SYMBOLS,
    st.text(alphabet=st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=12),
).filter(lambda w: w.lower() not in STARTS and not w.lower().startswith(("tz=", "timezone=")))
BAD_ID_CHARS = "/\\%$#@!{}<>|;:,?*&^~=+()[]é💥"


def _not_json_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return True


MALFORMED = st.one_of(
    JUNK.filter(lambda t: bool(t.split()) and t.split()[0].lower() not in COMMANDS),
    st.builds(lambda cmd, w, rest: f"{cmd} {w} {rest}", st.sampled_from(["remind", "schedule"]), NOT_A_START, JUNK),
    st.builds(lambda cmd, kw, w, rest: f"{cmd} {kw} {w} {rest}", st.sampled_from(["remind", "schedule"]), st.sampled_from(["in", "at", "every", "on", "tomorrow", "today", "daily"]), SYMBOLS, JUNK),
    st.text(max_size=30).filter(lambda e: '"' not in e and check_cron(" ".join(e.split()) or "x") is not None).map(lambda e: f'remind cron "{e}" text'),
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(lambda t: t not in ("log", "chat_message", "http_request")).map(lambda t: f"schedule in 10m {t} {{}}"),
    st.one_of(st.text(max_size=40).map(lambda t: "{" + t), st.sampled_from(["[1,2]", "3", "null", '"x"', "true"]))
    .filter(lambda t: "tz=" not in t.lower() and "timezone=" not in t.lower() and _not_json_object(t.strip()))
    .map(lambda t: f"schedule in 10m log {t}"),
    st.builds(
        lambda verb, a, bad, b: f"{verb} {a}{bad}{b}",
        st.sampled_from(["show", "history", "pause", "resume", "run", "cancel", "backfill"]),
        st.from_regex(r"[A-Za-z0-9]{0,5}", fullmatch=True),
        st.sampled_from(list(BAD_ID_CHARS)),
        st.from_regex(r"[A-Za-z0-9]{0,5}", fullmatch=True),
    ),
    # (pause and resume take a note after the id: "pause <id> <words>" is well formed)
    st.builds(lambda verb, a, b: f"{verb} {a} {b}", st.sampled_from(["show", "history", "cancel"]), st.from_regex(r"[a-f0-9]{12}", fullmatch=True), SYMBOLS),
    st.builds(lambda a, b: f"remind every day at 9:00 x {a}={b}", st.from_regex(r"[a-su-z][a-z_-]{0,10}", fullmatch=True).filter(lambda k: k.replace("-", "_").lower() not in ("jitter", "overlap", "dst", "dst_gap", "dst_repeat", "starting", "until", "runs", "tz", "timezone", "pause_on_failure")), JUNK.map(lambda t: "".join(t.split())[:20])),
    st.builds(lambda w: f"list {w}", SYMBOLS),
    st.just("remind in 10m").map(lambda t: t + " " * 3),
)


def test_malformed_and_hostile_texts_are_explained(make_chat) -> None:
    chat = make_chat()
    seen: list[str] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], database=None)
    @given(MALFORMED)
    def check(text: str) -> None:
        seen.append(text)
        response = chat.post(chat_event(text))
        assert response.status_code == 200, (text, response.get_data(as_text=True))
        body = response.get_json()
        assert set(body) == {"text"}
        assert body["text"].startswith("Sorry, ") and "not understood" in body["text"], (text, body["text"])
        assert chat.jobs() == [], text

    check()
    assert len(seen) >= 200


# --- options of remind and schedule: the job schema's new fields -------------------------------


@pytest.mark.parametrize(
    ("text", "fields", "message"),
    [
        (
            "remind every day at 9:00 stand-up jitter=2m overlap=buffer_one dst=skip dst_repeat=both runs=10 pause-on-failure until=2026-06-30 starting=2026-02-01",
            {"cron": "0 9 * * *", "jitter_seconds": 120, "overlap": "buffer_one", "dst_gap": "skip", "dst_repeat": "both", "max_runs": 10,
             "pause_on_failure": True, "ends_at": at(2026, 6, 30), "starts_at": at(2026, 2, 1)},
            "stand-up",
        ),
        (  # right after the <when>, a value with spaces in quotes
            'remind every weekday at 9:00 tz=Europe/Paris jitter=30s until="2026-06-30 18:00" stand-up at 9:05',
            {"timezone": "Europe/Paris", "jitter_seconds": 30, "ends_at": at(2026, 6, 30, 16), "starts_at": None},
            "stand-up at 9:05",
        ),
        (  # names: any case, '-' or '_', dst_gap= for dst=; pause_on_failure=no
            "remind every day at 9:00 Jitter=90 DST-Repeat=second dst_gap=skip Pause_On_Failure=no x",
            {"jitter_seconds": 90, "dst_repeat": "second", "dst_gap": "skip", "pause_on_failure": False},
            "x",
        ),
        (  # a tz= among the options after the <when> reads the <when> in that zone
            "remind at 9:00 jitter=0 tz=Asia/Tokyo water",
            {"timezone": "Asia/Tokyo", "schedule_at": at(2026, 1, 6, 0, 0), "jitter_seconds": 0},
            "water",
        ),
        (  # Chat's typographic quotes, a relative time, timezone= for tz=
            "remind every day at 9:00 x until=\u201cin 30d\u201d timezone=Europe/Berlin",
            {"timezone": "Europe/Berlin", "ends_at": at(2026, 2, 4, 12)},
            "x",
        ),
        ('schedule every 15m log {"note": "x=1"} runs=3 jitter=1m', {"payload": {"note": "x=1"}, "max_runs": 3, "jitter_seconds": 60, "interval_seconds": 900}, None),
        ('schedule every 15m overlap=replace log {"note": "hi"}', {"payload": {"note": "hi"}, "overlap": "replace"}, None),
    ],
)  # fmt: skip
def test_options_set_the_new_fields(chat: Chat, text: str, fields: dict[str, Any], message: str | None) -> None:
    job, _ = chat.create(text)
    for field, value in fields.items():
        assert getattr(job, field) == value, (field, getattr(job, field))
    if message is not None:
        assert job.payload["text"] == message


def test_the_reply_lists_the_options_set(chat: Chat) -> None:
    job, reply = chat.create("remind every day at 9:00 stand-up jitter=2m overlap=buffer_one runs=10 pause-on-failure until=2026-06-30 starting=2026-02-01 tz=Europe/Paris")
    assert reply.splitlines()[:7] == [
        f"Scheduled `{job.id}` (chat_message): every day at 09:00 (Europe/Paris time).",
        "Message: stand-up",
        "Options: jitter=2m overlap=buffer_one pause-on-failure",
        "Starting Sun 2026-02-01 00:00 CET (2026-01-31 23:00 UTC)",
        "Until Tue 2026-06-30 00:00 CEST (2026-06-29 22:00 UTC)",
        "Runs remaining: 10 of 10",
        "Next 3 runs (Europe/Paris / UTC):",
    ]
    # jittered (by up to 2 minutes, derived from the job id and the fire time), from starting= on
    runs = [line for line in reply.splitlines() if line.startswith("• ")]
    assert [line[:17] for line in runs] == ["• Sun 2026-02-01 ", "• Mon 2026-02-02 ", "• Tue 2026-02-03 "]
    assert all(line[17:22] in ("09:00", "09:01", "09:02") for line in runs), runs


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("remind in 10m x mode=fast", 'not understood: unknown option "mode=fast"; the options are `jitter=`, `overlap=`, `dst=`, `dst_repeat=`, `starting=`, `until=`, `runs=`, `pause-on-failure`, `tz=`\nExample: `remind every weekday at 9:00 stand-up jitter=2m until=2026-06-30`'),
        ("remind every day at 9:00 x overlap=queue", 'not understood: "overlap=queue" - overlap= is one of skip, buffer_one, buffer_all, replace'),
        ("remind every day at 9:00 x dst=never", 'not understood: "dst=never" - dst= is one of shift, skip'),
        ("remind every day at 9:00 x dst_repeat=3", 'not understood: "dst_repeat=3" - dst_repeat= is one of first, second, both'),
        ("remind every 15m x dst=skip", 'not understood: dst= and dst_repeat= apply to wall-clock schedules ("every day at 2:30", cron), not to "every 15m"'),
        ("remind in 10m x dst_repeat=both", 'not understood: dst= and dst_repeat= apply to wall-clock schedules ("every day at 2:30", cron), not to "in 10m"'),
        ("remind every 15m x jitter=abc", 'not understood: "jitter=abc" - jitter= is seconds or a duration: jitter=30s, jitter=5m, jitter=1h'),
        ("remind every 15m x jitter=", 'not understood: "jitter=" - jitter= is seconds or a duration'),
        ("remind every 15m x jitter=600", "not understood: jitter_seconds (600) must be at most half the period (450 s) (option jitter=)"),
        ("remind every 15m x jitter=2h", "not understood: jitter_seconds must be between 0 and 3600, got 7200 (option jitter=)"),
        ("remind every 15m x runs=ten", 'not understood: "runs=ten" - runs= is a whole number of runs, e.g. runs=10'),
        ("remind every 15m x runs=0", "not understood: max_runs must be between 1 and 1000000000, got 0 (option runs=)"),
        ("remind every day at 9:00 x until=2026-01-01", "not understood: the schedule has no fire time before ends_at (2026-01-01T00:00:00+00:00) (option until=)"),
        ("remind every day at 9:00 x starting=2026-03-01 until=2026-02-01", "not understood: ends_at must be after starts_at (option until=)"),
        ("remind every day at 9:00 x until=soon", 'not understood: until= "soon" - expected a time such as "2026-06-30", "2026-06-30 18:00"'),
        ('remind every day at 9:00 x until="in 2d', "not understood: `until=\"in 2d` has no closing quote"),
        ("remind every day at 9:00 x starting=3d ago", 'not understood: "starting=3d" is in the middle of the text; options go at the end of the command (or right after the time), and a value with spaces goes in quotes'),
        ("remind every day at 9:00 x jitter=1m jitter=2m", "not understood: give jitter= once"),
        ("remind every day at 9:00 x tz=UTC tz=Europe/Paris", "not understood: give one time zone (tz=...)"),
        ("remind every day at 9:00 jitter=1m tz=Asia/Tokyo x tz=UTC", "not understood: give one time zone (tz=...)"),
        ("remind every day at 9:00 x pause-on-failure=maybe", 'not understood: "pause-on-failure=maybe" - write pause-on-failure (or pause-on-failure=no)'),
        ('schedule every 15m log {"a": 1} colour=red', 'not understood: unknown option "colour=red"'),
        ("remind every day at 9:00 x tz=Mars/Base", 'not understood: "tz=Mars/Base" - unknown time zone'),
    ],
)
def test_option_refusals_name_the_option_and_store_nothing(chat: Chat, text: str, fragment: str) -> None:
    reply = chat.say(text)
    assert reply.startswith("Sorry, "), reply
    assert fragment in reply, reply
    assert chat.jobs() == []


def test_a_reminder_text_may_start_with_an_unknown_name_value_word(chat: Chat) -> None:
    job, _ = chat.create("remind in 10m e=mc2 explained")
    assert job.payload["text"] == "e=mc2 explained"


def test_show_lists_the_fields_set_and_marks_what_dst_did(chat: Chat, clock: FakeClock) -> None:
    clock.set(at(2026, 3, 27, 12, 0))
    job, _ = chat.create("remind every day at 2:30 tz=Europe/Berlin coffee dst=skip runs=5 jitter=0")
    assert chat.say(f"show {job.id}").splitlines()[:9] == [
        f"`{job.id}` (chat_message) is pending: every day at 02:30 (Europe/Berlin time).",
        "Message: coffee",
        "Options: dst=skip",
        "Runs remaining: 5 of 5",
        "Next 3 runs (Europe/Berlin / UTC):",
        "• Sat 2026-03-28 02:30 CET (01:30 UTC)",
        "• Sun 2026-03-29 02:30 (Europe/Berlin): not run (DST: no 02:30 that day, dst=skip)",
        "• Mon 2026-03-30 02:30 CEST (00:30 UTC)",
        "• Tue 2026-03-31 02:30 CEST (00:30 UTC)",
    ]
    clock.set(at(2026, 10, 23, 12, 0))
    both, _ = chat.create("remind every day at 2:30 tz=Europe/Berlin coffee dst_repeat=both")
    assert chat.say(f"show {both.id}").splitlines()[2:7] == [
        "Options: dst_repeat=both",
        "Next 3 runs (Europe/Berlin / UTC):",
        "• Sat 2026-10-24 02:30 CEST (00:30 UTC)",
        "• Sun 2026-10-25 02:30 CEST (00:30 UTC) (DST: the first of two 02:30s)",
        "• Sun 2026-10-25 02:30 CET (01:30 UTC) (DST: the second of two 02:30s)",
    ]


def test_pause_and_resume_keep_a_note(chat: Chat) -> None:
    job, _ = chat.create("remind every hour ping runs=5 pause-on-failure")
    reply = chat.say(f"pause {job.id} deploy freeze, back at 14:00 tz=Europe/Paris")
    assert reply.splitlines() == [
        f"Paused `{job.id}` (chat_message): every hour, on the hour (UTC).",
        "Message: ping",
        "Options: pause-on-failure",
        "Runs remaining: 5 of 5",
        "Note: deploy freeze, back at 14:00",
        "Next runs once resumed (Europe/Paris / UTC):",
        "• Mon 2026-01-05 14:00 CET (13:00 UTC)",
        "• Mon 2026-01-05 15:00 CET (14:00 UTC)",
        "• Mon 2026-01-05 16:00 CET (15:00 UTC)",
    ]
    stored = chat.ct.store.get_job(job.id)
    assert (stored.status, stored.note, stored.audit[-1].action, stored.audit[-1].note, stored.audit[-1].actor) == (JobStatus.PAUSED, "deploy freeze, back at 14:00", "pause", "deploy freeze, back at 14:00", ANN)
    assert "Note: deploy freeze, back at 14:00" in chat.say(f"show {job.id}")
    assert "Note: all clear" in chat.say(f"resume {job.id} all clear")
    assert chat.ct.store.get_job(job.id).audit[-1].note == "all clear"
    assert "Note:" not in chat.say(f"pause {job.id}")  # a pause without a note clears the last one
    reply = chat.say(f"resume {job.id} " + "x" * 501)
    assert reply.startswith("Sorry, not understood: note must be at most 500 characters, got 501"), reply
    assert chat.ct.store.get_job(job.id).status is JobStatus.PAUSED


def test_backfill_runs_each_past_fire_time_once(chat: Chat, clock: FakeClock, chat_standin: ChatStandIn) -> None:
    job, _ = chat.create("remind every hour ping", thread=None)
    reply = chat.say(f"backfill {job.id} from 2026-01-05 09:00 to 2026-01-05 11:30")
    assert reply.splitlines() == [
        f"Backfilled `{job.id}` (chat_message): 3 fire time(s) from Mon 2026-01-05 09:00 UTC to Mon 2026-01-05 11:30 UTC; "
        "3 new, 0 already backfilled earlier (not run again). The new ones run at the next tick, oldest first:",
        "• Mon 2026-01-05 09:00 UTC",
        "• Mon 2026-01-05 10:00 UTC",
        "• Mon 2026-01-05 11:00 UTC",
    ]
    again = chat.say(f"backfill {job.id} from 2026-01-05 08:00 to 2026-01-05 11:30 runs=2")
    assert again.splitlines()[1:] == ["• Mon 2026-01-05 08:00 UTC", "• Mon 2026-01-05 09:00 UTC (already backfilled)"]
    assert "2 fire time(s)" in again and "1 new, 1 already backfilled earlier" in again
    assert chat.tick()["jobs_succeeded"] == 4
    assert [got.json for got in chat_standin.received] == [{"text": "ping"}] * 4
    occurrence = f"{job.id}.bf-20260105T080000"
    shown = chat.say(f"show {occurrence}")
    assert shown.splitlines()[:3] == [f"`{occurrence}` (chat_message) is completed: once, on Mon 2026-01-05 at 08:00 UTC.", "Message: ping", f"Backfilled from `{job.id}`"]
    repeat = chat.say(f"backfill {job.id} from 4h ago to now")
    assert "4 fire time(s)" in repeat and "0 new, 4 already backfilled earlier" in repeat
    assert chat.tick()["jobs_executed"] == 0 and len(chat_standin.received) == 4
    assert chat.say(f"backfill {job.id} from 2026-01-05 11:10 to 2026-01-05 11:50") == (
        f"`{job.id}` (chat_message) has no fire time from Mon 2026-01-05 11:10 UTC to Mon 2026-01-05 11:50 UTC: nothing to backfill. "
        "Its schedule: every hour, on the hour (UTC)."
    )


def test_backfill_reads_times_in_the_jobs_zone_or_tz(chat: Chat) -> None:
    job, _ = chat.create("remind every hour tz=Europe/Paris ping")
    reply = chat.say(f"backfill {job.id} from today 10:00 to today 12:00")  # Paris: 09:00 to 11:00 UTC
    assert reply.splitlines()[1:] == ["• Mon 2026-01-05 10:00 CET (09:00 UTC)", "• Mon 2026-01-05 11:00 CET (10:00 UTC)"]
    reply = chat.say(f"backfill {job.id} from today 6:00 to today 8:00 tz=UTC")
    assert reply.splitlines()[1:] == ["• Mon 2026-01-05 06:00 UTC", "• Mon 2026-01-05 07:00 UTC"]


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("backfill {id} from 2026-01-05 07:00 to tomorrow", "Sorry, not understood: end must not be in the future (now is 2026-01-05T12:00:00.000000Z); a backfill replays fire times that passed (to)"),
        ("backfill {id} from 2026-01-05 11:00 to 2026-01-05 10:00", "Sorry, not understood: end must be after start (to)"),
        ("backfill {id} from 2026-01-05 07:00", 'Sorry, not understood: "from 2026-01-05 07:00" - expected "to <time>" after the start'),
        ("backfill {id} since yesterday", 'Sorry, not understood: "since" - expected "from <time> to <time>"'),
        ("backfill {id} from soon to now", 'Sorry, not understood: "soon" - expected a time such as'),
        ("backfill {id}", "Sorry, not understood: backfill needs the range: `backfill <id> from <time> to <time>`\nExample: `backfill 3f2a9c1b7e4d from 2026-01-01 to 2026-01-05`"),
        ("backfill {id} from 3d ago to now jitter=1m", 'Sorry, not understood: "jitter=1m" does not apply to backfill; it takes runs=N and tz=<zone>'),
        ("backfill {id} from 3d ago to now runs=0", "Sorry, not understood: max_runs must be an integer from 1 to 1000 (runs=)"),
        ("backfill {id} from 3d ago to now", "Sorry, not understood: [start, end) holds more than 1000 fire times; narrow it, or pass max_runs to run the oldest ones (to)"),
        ("backfill {once} from 3d ago to now", "Sorry, job {once} is a one-off job; only recurring jobs can be backfilled (use run now)"),
        ("backfill", "Sorry, not understood: backfill needs a job id"),
        ("backfill 0123456789ab from 3d ago to now", "Sorry, there is no job `0123456789ab`"),
    ],
)
def test_backfill_refusals(chat: Chat, command: str, fragment: str) -> None:
    job, _ = chat.create("remind every minute ping")
    once, _ = chat.create("remind in 1h once")
    before = chat.jobs()
    ids = {"id": job.id, "once": once.id}
    reply = chat.say(command.format(**ids))
    assert reply.startswith(fragment.format(**ids)), reply
    assert chat.jobs() == before


def test_only_the_creator_or_an_admin_may_backfill(chat: Chat, chat_standin: ChatStandIn) -> None:
    job, _ = chat.create("remind every hour x", ANN)
    reply = chat.say(f"backfill {job.id} from 2026-01-05 10:00 to now", BOB)
    assert reply.startswith(f"Sorry, `{job.id}` was created by someone else; only its creator or an administrator can backfill it")
    assert len(chat.jobs()) == 1
    assert chat.say(f"backfill {job.id} from 2026-01-05 10:00 to now", BOSS).startswith(f"Backfilled `{job.id}` (chat_message): 2 fire time(s)")
    assert {j.created_by for j in chat.jobs() if j.backfill_of} == {BOSS}


def test_the_option_examples_of_docs_chat_md_schedule_what_they_say(chat: Chat) -> None:
    from tests.support.processes import REPO

    text = (REPO / "docs" / "chat.md").read_text()
    block = text.split("### Options", 1)[1].split("```\n", 2)[1]
    examples = block.strip().splitlines()
    assert len(examples) == 4, examples
    for line in examples:
        job, reply = chat.create(line)
        assert reply.startswith(f"Scheduled `{job.id}`"), (line, reply)
    made = {(j.jitter_seconds, j.dst_gap, j.max_runs, j.pause_on_failure, j.starts_at, j.ends_at) for j in chat.jobs()}
    assert made == {
        (120, "shift", None, False, None, at(2026, 6, 30)),
        (0, "skip", None, False, None, None),
        (0, "shift", 96, True, None, None),
        (0, "shift", None, False, at(2026, 2, 2), at(2026, 6, 30, 18)),
    }
