"""web/errors.py: what is left of a request body is read after the response
(drain_unread_body), and a streamed body over its limit is refused for its size (read_body)."""

from __future__ import annotations

import io

import pytest
from flask import Flask

from web import errors

TERMINATED = {"wsgi.input_terminated": True}


class Streamed:
    """A body of unknown length, as a chunked one is (the test client measures a BytesIO
    and declares its length)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def streamed(data: bytes) -> dict:
    return {"wsgi.input": Streamed(data), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}


class Disconnects(Streamed):
    """Gives its bytes, then fails as a socket whose client went away does."""

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        if not chunk:
            raise ConnectionResetError("peer went away")
        return chunk


def test_reads_what_is_left_to_the_end_of_the_stream():
    body = io.BytesIO(b"x" * 300_000)
    body.read(1_000)  # what the app read
    assert errors.drain_unread_body(TERMINATED | {"wsgi.input": body, "CONTENT_LENGTH": "300000"}) == 299_000


def test_only_when_the_server_terminates_the_stream():
    # Another server's wsgi.input may be the raw socket: reading to its end would block.
    body = io.BytesIO(b"x" * 100)
    assert errors.drain_unread_body({"wsgi.input": body, "CONTENT_LENGTH": "100"}) == 0
    assert body.tell() == 0


def test_a_body_declared_over_the_drain_limit_is_not_read():
    body = io.BytesIO(b"x" * 100)
    assert errors.drain_unread_body(TERMINATED | {"wsgi.input": body, "CONTENT_LENGTH": str(errors.MAX_DRAIN_BYTES + 1)}) == 0
    assert body.tell() == 0


def test_a_streamed_body_is_read_up_to_the_drain_limit(monkeypatch):
    monkeypatch.setattr(errors, "MAX_DRAIN_BYTES", 200_000)
    body = io.BytesIO(b"x" * 1_000_000)
    read = errors.drain_unread_body(TERMINATED | {"wsgi.input": body, "HTTP_TRANSFER_ENCODING": "chunked"})
    assert 200_000 <= read < 200_000 + errors._DRAIN_CHUNK


def test_a_client_that_goes_away_ends_the_drain_quietly():
    assert errors.drain_unread_body(TERMINATED | {"wsgi.input": Disconnects(b"x" * 70_000), "CONTENT_LENGTH": "1000000"}) == 70_000


def test_a_malformed_length_or_no_stream_reads_nothing():
    assert errors.drain_unread_body(TERMINATED | {"wsgi.input": io.BytesIO(b"x"), "CONTENT_LENGTH": "lots"}) == 0
    assert errors.drain_unread_body(TERMINATED) == 0


def test_the_drain_stops_at_its_deadline(monkeypatch):
    clock = iter([0.0, 0.0, errors.DRAIN_SECONDS + 1])  # the deadline, one chunk, then past it
    monkeypatch.setattr(errors.time, "monotonic", lambda: next(clock))
    read = errors.drain_unread_body(TERMINATED | {"wsgi.input": io.BytesIO(b"x" * 1_000_000), "CONTENT_LENGTH": "1000000"})
    assert read == errors._DRAIN_CHUNK


def _app(limit: int = 100) -> Flask:
    app = Flask(__name__)
    errors.register_body_limit(app, 1 << 20)
    errors.register_error_handlers(app)

    @app.post("/echo")
    def echo():
        return {"bytes": len(errors.read_body(limit))}

    @app.post("/early")
    def early():
        return {"read": False}  # answers without reading the body

    return app


def test_the_app_drains_after_its_response_what_a_view_left_unread():
    app = _app()
    body = io.BytesIO(b"y" * 50_000)
    environ = {"wsgi.input_terminated": True}
    response = app.test_client().post("/early", input_stream=body, content_length=50_000, environ_overrides=environ)
    assert response.status_code == 200 and response.get_json() == {"read": False}
    assert body.tell() == 0  # not before the server closes the response...
    response.close()
    assert body.read() == b""  # ...then all of it, read and dropped


def test_a_streamed_body_over_the_limit_is_413_for_its_size_not_400_for_its_json():
    app = _app(limit=100)
    client = app.test_client()
    for size, status in ((100, 200), (101, 413), (5_000, 413)):
        response = client.post("/echo", environ_overrides=streamed(b"z" * size))
        assert response.status_code == status, (size, response.get_json())
        if status == 413:
            assert response.get_json()["error"]["message"] == "the body is over 100 bytes; this endpoint takes at most 100"
        else:
            assert response.get_json() == {"bytes": 100}


def test_a_declared_body_over_the_limit_is_413_before_reading():
    response = _app(limit=100).test_client().post("/echo", data=b"z" * 101)
    assert response.status_code == 413
    assert response.get_json()["error"]["message"] == "the body is 101 bytes; this endpoint takes at most 100"


@pytest.mark.parametrize("size", [0, 10])
def test_a_request_without_a_body_is_not_wrapped(size):
    calls = []
    app = errors._draining(lambda environ, start_response: calls.append(environ) or [b"ok"])
    environ = {"CONTENT_LENGTH": str(size) if size else "", "wsgi.input": io.BytesIO(b"q" * size), "wsgi.input_terminated": True}
    result = app(environ, lambda *a: None)
    assert (result == [b"ok"]) is (size == 0)


def test_a_client_gone_after_exactly_the_limit_sent_the_whole_body():
    # read_body asks for one byte more; a client that went away sent no more.
    environ = {"wsgi.input": Disconnects(b"z" * 100), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    response = _app(limit=100).test_client().post("/echo", environ_overrides=environ)
    assert response.status_code == 200 and response.get_json() == {"bytes": 100}
