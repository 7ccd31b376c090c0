"""The registry and the built-in handlers, against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from handlers import build_registry
from handlers.registry import HandlerRegistry
from scheduler.errors import HandlerRegistryError, ValidationError


class Recorder(BaseHTTPRequestHandler):
    status = 200
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append({"path": self.path, "body": json.loads(body or b"null"), "headers": dict(self.headers)})
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"nope" if type(self).status >= 300 else b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def target():
    Recorder.received = []
    Recorder.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", Recorder
    server.shutdown()


def test_registering_a_name_twice_is_an_error():
    registry = HandlerRegistry()
    registry.register("x", lambda job, ctx: None)
    with pytest.raises(HandlerRegistryError, match="already registered"):
        registry.register("x", lambda job, ctx: None)


def test_handler_modules_are_loaded_by_name():
    registry = build_registry(["tests.support.handlers"])
    assert {"log", "http_request", "ledger", "ledger_then_hang"} <= set(registry.names())
    with pytest.raises(HandlerRegistryError, match="cannot import 'no.such.module'"):
        build_registry(["no.such.module"])
    with pytest.raises(HandlerRegistryError, match="has no register"):
        build_registry(["json"])


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "payload.url"),
        ({"url": "ftp://x"}, "payload.url"),
        ({"url": "http://x", "method": "BREW"}, "payload.method"),
        ({"url": "http://x", "headers": {"a": 1}}, "payload.headers"),
        ({"url": "http://x", "timeout_seconds": 0}, "payload.timeout_seconds"),
        ({"url": "http://x", "extra": 1}, "payload.extra"),
    ],
)
def test_http_request_payloads_are_checked_at_creation(ct, payload, field):
    with pytest.raises(ValidationError) as excinfo:
        ct.service.create({"job_type": "http_request", "cron": "* * * * *", "payload": payload})
    assert excinfo.value.field == field


def test_http_request_calls_the_url_with_an_idempotency_key(client, ct, clock, target):
    base, server = target
    job, _ = ct.service.create({"job_type": "http_request", "schedule_at": clock().isoformat(), "payload": {"url": f"{base}/hook", "json": {"a": 1}, "headers": {"X-Team": "ops"}}})
    assert client.post("/cron/tick").json["jobs_succeeded"] == 1
    [call] = server.received
    assert call["path"] == "/hook" and call["body"] == {"a": 1} and call["headers"]["X-Team"] == "ops"
    assert call["headers"]["Idempotency-Key"] == f"{job.id}@{clock().isoformat()}"


def test_http_request_non_2xx_is_a_failed_attempt(client, ct, clock, target):
    base, server = target
    server.status = 500
    job, _ = ct.service.create({"job_type": "http_request", "schedule_at": clock().isoformat(), "payload": {"url": f"{base}/hook"}})
    assert client.post("/cron/tick").json["jobs_failed"] == 1
    assert ct.store.get_job(job.id).last_error == f"RuntimeError: {base}/hook answered HTTP 500: nope"
