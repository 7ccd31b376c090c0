"""web/errors.py drain_refused_body: how much of a refused body is read before the 413."""

from __future__ import annotations

import io

from web import errors


class Stalling(io.BytesIO):
    """Gives its bytes, then fails as a socket whose client went away does."""

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        if not chunk:
            raise ConnectionResetError("peer went away")
        return chunk


def test_reads_the_declared_length_and_no_more():
    body = io.BytesIO(b"x" * 300_000 + b"NEXT REQUEST")
    assert errors.drain_refused_body({"wsgi.input": body}, 300_000) == 300_000
    assert body.read() == b"NEXT REQUEST"


def test_stops_at_the_end_of_a_shorter_body():
    assert errors.drain_refused_body({"wsgi.input": io.BytesIO(b"x" * 10)}, 1_000) == 10


def test_a_body_declared_over_the_drain_limit_is_not_read():
    body = io.BytesIO(b"x" * 100)
    assert errors.drain_refused_body({"wsgi.input": body}, errors.MAX_DRAIN_BYTES + 1) == 0
    assert body.tell() == 0
    assert errors.drain_refused_body({"wsgi.input": io.BytesIO(b"x" * 100)}, errors.MAX_DRAIN_BYTES) == 100


def test_a_client_that_goes_away_ends_the_drain_quietly():
    assert errors.drain_refused_body({"wsgi.input": Stalling(b"x" * 70_000)}, 1_000_000) == 70_000


def test_no_input_stream_reads_nothing():
    assert errors.drain_refused_body({}, 100) == 0


def test_the_drain_stops_at_its_deadline(monkeypatch):
    clock = iter([0.0, 0.0, errors.DRAIN_SECONDS + 1])  # the deadline, one chunk, then past it
    monkeypatch.setattr(errors.time, "monotonic", lambda: next(clock))
    read = errors.drain_refused_body({"wsgi.input": io.BytesIO(b"x" * 1_000_000)}, 1_000_000)
    assert read == errors._DRAIN_CHUNK
