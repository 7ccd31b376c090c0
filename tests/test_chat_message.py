"""The ``chat_message`` built-in, against a real loopback HTTP server standing in for
the Chat API and for a space's incoming webhook.

``ChatStandIn`` records every POST it receives (path, query, headers, exact JSON
body) and answers with the statuses it is told to. The Chat API path runs
through google-auth's ``AuthorizedSession`` with static-token credentials, so no
metadata server is involved and the ``Authorization`` header can be asserted.
"""

from __future__ import annotations

import http.server
import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from google.oauth2.credentials import Credentials

from handlers import build_registry
from handlers.builtin import register_builtins
from handlers.chat_message import (
    REPLY_OPTION,
    ChatMessageHandler,
    register_chat_message,
    request_id,
    validate_chat_message,
)
from handlers.registry import HandlerContext, HandlerRegistry
from main import create_app
from scheduler.errors import ValidationError
from scheduler.model import JobStatus
from tests.support.clock import T0, FakeClock

STATIC_TOKEN = "static-test-token"
SPACE = "spaces/AAAAxyz"
THREAD = "spaces/AAAAxyz/threads/TTTT_1"


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ChatStandIn:
    """``POST`` anything on 127.0.0.1; each request is recorded in ``received``.

    ``statuses`` is a queue of status codes to answer (200 once it is empty)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                split = urlsplit(self.path)
                with owner._lock:
                    owner.received.append(Received(split.path, parse_qs(split.query), {k.lower(): v for k, v in self.headers.items()}, body))
                    status = owner.statuses.pop(0) if owner.statuses else 200
                answer = json.dumps({"name": f"{SPACE}/messages/m1"} if status == 200 else {"error": {"code": status, "message": "stand-in refused"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        """What CHAT_API_BASE_URL would be."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def webhook_url(self) -> str:
        """Shaped like a space's incoming-webhook URL, key and token in the query."""
        return f"http://127.0.0.1:{self.port}/v1/{SPACE}/messages?key=WEBHOOK_KEY&token=WEBHOOK_TOKEN"

    def start(self) -> ChatStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def chat_standin() -> Iterator[ChatStandIn]:
    server = ChatStandIn().start()
    yield server
    server.stop()


def standin_registry(standin: ChatStandIn) -> HandlerRegistry:
    """The built-ins, with ``chat_message`` pointed at the stand-in and static credentials."""
    registry = HandlerRegistry()
    register_builtins(registry)
    register_chat_message(registry, standin.base_url, credentials=Credentials(token=STATIC_TOKEN))
    return registry


def ctx(fire_at=T0, attempt: int = 1) -> HandlerContext:
    import time

    return HandlerContext(tick_id="tick-1", attempt=attempt, fire_at=fire_at, deadline=time.monotonic() + 30)


class _Job:
    def __init__(self, payload: dict[str, Any], job_id: str = "job1") -> None:
        self.id = job_id
        self.payload = payload


# --- payload validation ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "hi", "space": SPACE},
        {"text": "hi", "space": SPACE, "thread": THREAD},
        {"text": "hi", "webhook_url": "https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t"},
        {"text": "x" * 4096, "space": SPACE},
    ],
)
def test_valid_payloads(payload: dict[str, Any]) -> None:
    validate_chat_message(payload)


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"space": SPACE}, "payload.text", "needs payload.text"),
        ({"text": "   ", "space": SPACE}, "payload.text", "needs payload.text"),
        ({"text": 5, "space": SPACE}, "payload.text", "needs payload.text"),
        ({"text": "x" * 4097, "space": SPACE}, "payload.text", "longer than 4096"),
        ({"text": "hi"}, "payload.space", "exactly one of"),
        ({"text": "hi", "space": SPACE, "webhook_url": "https://x.example"}, "payload.space", "exactly one of"),
        ({"text": "hi", "space": "rooms/AAAA"}, "payload.space", "space name"),
        ({"text": "hi", "space": "spaces/AAAA/../BBBB"}, "payload.space", "space name"),
        ({"text": "hi", "webhook_url": "file:///etc/passwd"}, "payload.webhook_url", "absolute http(s) URL"),
        ({"text": "hi", "space": SPACE, "thread": "threads/x"}, "payload.thread", "thread name"),
        ({"text": "hi", "space": SPACE, "thread": "spaces/OTHER/threads/x"}, "payload.thread", "thread of payload.space"),
        ({"text": "hi", "space": SPACE, "cards": []}, "payload.cards", "unknown field 'cards'"),
    ],
)
def test_invalid_payloads(payload: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_chat_message(payload)
    assert info.value.field == field
    assert fragment in info.value.message


def test_build_registry_registers_chat_message_with_the_base_url() -> None:
    registry = build_registry(chat_api_base_url="https://chat.example/v1/")
    handler = registry.get("chat_message")
    assert isinstance(handler, ChatMessageHandler)
    assert handler.api_base_url == "https://chat.example/v1"
    assert isinstance(build_registry().get("chat_message"), ChatMessageHandler)


# --- the handler, directly ---------------------------------------------------------


def test_chat_api_post_with_thread(chat_standin: ChatStandIn) -> None:
    handler = ChatMessageHandler(chat_standin.base_url, credentials=Credentials(token=STATIC_TOKEN))
    handler(_Job({"text": "Stand-up in 5 minutes", "space": SPACE, "thread": THREAD}), ctx())
    [got] = chat_standin.received
    assert got.path == f"/v1/{SPACE}/messages"
    assert got.query == {"messageReplyOption": [REPLY_OPTION], "requestId": [request_id(f"job1@{T0.isoformat()}")]}
    assert got.headers["authorization"] == f"Bearer {STATIC_TOKEN}"
    assert got.headers["content-type"] == "application/json"
    assert got.json == {"text": "Stand-up in 5 minutes", "thread": {"name": THREAD}}


def test_chat_api_post_without_thread_starts_a_new_one(chat_standin: ChatStandIn) -> None:
    handler = ChatMessageHandler(chat_standin.base_url, credentials=Credentials(token=STATIC_TOKEN))
    handler(_Job({"text": "hello", "space": SPACE}), ctx())
    [got] = chat_standin.received
    assert got.json == {"text": "hello"}
    assert "messageReplyOption" not in got.query


def test_request_id_is_stable_per_occurrence(chat_standin: ChatStandIn) -> None:
    """A retried attempt reuses the requestId, so Chat returns the message instead of posting twice."""
    handler = ChatMessageHandler(chat_standin.base_url, credentials=Credentials(token=STATIC_TOKEN))
    job = _Job({"text": "hello", "space": SPACE})
    handler(job, ctx(attempt=1))
    handler(job, ctx(attempt=2))
    handler(job, ctx(fire_at=T0 + timedelta(days=1)))
    ids = [got.query["requestId"][0] for got in chat_standin.received]
    assert ids[0] == ids[1] != ids[2]
    assert all(i.startswith("crontick-") and i.replace("-", "").isalnum() for i in ids)


def test_incoming_webhook_is_a_plain_post(chat_standin: ChatStandIn) -> None:
    handler = ChatMessageHandler("https://unused.example/v1", credentials=Credentials(token=STATIC_TOKEN))
    handler(_Job({"text": "deploy done", "webhook_url": chat_standin.webhook_url, "thread": THREAD}), ctx())
    [got] = chat_standin.received
    assert got.path == f"/v1/{SPACE}/messages"
    assert got.query == {"key": ["WEBHOOK_KEY"], "token": ["WEBHOOK_TOKEN"], "messageReplyOption": [REPLY_OPTION]}
    assert "authorization" not in got.headers
    assert got.json == {"text": "deploy done", "thread": {"name": THREAD}}


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 503])
def test_non_2xx_raises_without_leaking_the_webhook_token(chat_standin: ChatStandIn, status: int) -> None:
    handler = ChatMessageHandler(chat_standin.base_url, credentials=Credentials(token=STATIC_TOKEN))
    chat_standin.statuses = [status, status]
    with pytest.raises(RuntimeError, match=f"HTTP {status}"):
        handler(_Job({"text": "x", "space": SPACE}), ctx())
    with pytest.raises(RuntimeError, match=f"HTTP {status}") as info:
        handler(_Job({"text": "x", "webhook_url": chat_standin.webhook_url}), ctx())
    assert "WEBHOOK_TOKEN" not in str(info.value) and "WEBHOOK_KEY" not in str(info.value)


def test_unreachable_endpoint_raises(chat_standin: ChatStandIn) -> None:
    chat_standin.stop()
    handler = ChatMessageHandler(chat_standin.base_url, credentials=Credentials(token=STATIC_TOKEN))
    with pytest.raises(Exception):  # noqa: B017 - requests' ConnectionError; any raise fails the attempt
        handler(_Job({"text": "x", "space": SPACE}), ctx())


# --- through the engine: a failed post is a failed attempt, retried ----------------


def test_failed_post_is_retried_by_the_next_tick(chat_standin: ChatStandIn) -> None:
    clock = FakeClock()
    config = {
        "ENVIRONMENT": "test",
        "AUTH_MODE": "disabled",
        "SCHEDULER_STORAGE": "memory",
        "SCHEDULER_RETRY_BASE_SECONDS": "10",
        "SCHEDULER_RETRY_MAX_SECONDS": "600",
    }
    app = create_app(config, clock=clock, registry=standin_registry(chat_standin), rng=random.Random(3))
    ct = app.extensions["crontick"]
    job, _ = ct.service.create(
        {"job_type": "chat_message", "payload": {"text": "backup finished", "space": SPACE}, "schedule_at": (T0 + timedelta(minutes=1)).isoformat()}
    )
    client = app.test_client()
    chat_standin.statuses = [503]

    clock.advance(minutes=1)
    assert client.post("/cron/tick").get_json()["jobs_failed"] == 1
    failed = ct.store.get_job(job.id)
    assert failed.status is JobStatus.PENDING and failed.attempts == 1
    assert "HTTP 503" in failed.last_error

    clock.advance(minutes=15)  # past the backoff (at most 10 s for a first retry)
    assert client.post("/cron/tick").get_json()["jobs_succeeded"] == 1
    assert ct.store.get_job(job.id).status is JobStatus.COMPLETED
    first, second = chat_standin.received
    assert first.json == second.json == {"text": "backup finished"}
    assert first.query["requestId"] == second.query["requestId"]
