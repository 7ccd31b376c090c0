"""One JSON error shape for every refusal: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import ClosingIterator

from scheduler.errors import ConflictError, JobNotFound, StoreError, ValidationError
from web.auth import AuthError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None):
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="crontick"'
    return response


def register_body_limit(app: Flask, max_bytes: int) -> None:
    """Refuse a declared body over ``max_bytes`` on every endpoint with 413, before any
    view runs (Flask's ``MAX_CONTENT_LENGTH`` alone applies only to views that read the
    body; a chunked body is cut at the same limit when it is read, see :func:`read_body`).

    And after every response to a request that sent a body, read and drop what the app
    left unread (:func:`drain_unread_body`), so that the client gets the answer."""
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.wsgi_app = _draining(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def _limit_body() -> None:
        length = request.content_length
        if length is not None and length > max_bytes:
            raise RequestEntityTooLarge(f"the body is {length} bytes; every endpoint takes at most {max_bytes}")


def read_body(limit: int) -> bytes:
    """The request body; ``RequestEntityTooLarge`` naming ``limit`` when it is longer.

    A declared length over the limit is refused before reading. A body sent without one
    (chunked) is read up to the limit, and then one more byte is asked of the stream:
    Werkzeug stops at ``max_content_length`` and returns what it read as if it were the
    whole body, which would parse as truncated JSON and be refused for the wrong reason."""
    length = request.content_length
    if length is not None and length > limit:
        raise RequestEntityTooLarge(f"the body is {length} bytes; this endpoint takes at most {limit}")
    request.max_content_length = limit
    raw = request.get_data(cache=True)
    if length is None and len(raw) >= limit and _more(request.environ):
        raise RequestEntityTooLarge(f"the body is over {limit} bytes; this endpoint takes at most {limit}")
    return raw


def _more(environ: dict[str, Any]) -> bool:
    """Whether the request stream holds another byte (which is then consumed)."""
    try:
        return bool(environ["wsgi.input"].read(1))
    except (OSError, ValueError):  # the client went away: it sent no more
        return False


# A body left unread is read after the response up to this size: Cloud Run's own limit on
# an HTTP/1 request, so every body it lets through is drained.
MAX_DRAIN_BYTES = 32 << 20
DRAIN_SECONDS = 5.0  # and for no longer than this
_DRAIN_CHUNK = 64 << 10


def _draining(wsgi_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``wsgi_app``, with :func:`drain_unread_body` run once the response to a request
    that sent a body is written (the server calls the response's ``close()`` before it
    closes the connection)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = wsgi_app(environ, start_response)
        if environ.get("CONTENT_LENGTH", "") in ("", "0") and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return response  # no body: nothing to drain (and a file response keeps its sendfile)
        return ClosingIterator(response, lambda: drain_unread_body(environ))

    return app


def drain_unread_body(environ: dict[str, Any]) -> int:
    """Read and drop what is left of the request body; returns how many bytes that was.

    Why: an answer given before the body was read (413 for its size, 401 for its token,
    404 for its path), followed by closing the connection, leaves the rest of the body
    unread in the server's socket, and closing a socket with unread data resets the
    connection. A client still sending then sees a broken pipe instead of the answer:
    through gunicorn here, 100 of 100 POSTs of 4 MB refused with 413, 3 in 200 of
    1 MiB + 9 bytes, and 2 in 60 of 1 MB to a 404 or a 405.

    Only when the server terminates the input stream (``wsgi.input_terminated``, which
    gunicorn sets): reading to the end is then safe, where another server's raw socket
    would block. Not for a body declared over :data:`MAX_DRAIN_BYTES` (its client gets
    the reset, as from any server), and for no longer than :data:`DRAIN_SECONDS`."""
    stream = environ.get("wsgi.input")
    if stream is None or not environ.get("wsgi.input_terminated"):
        return 0
    try:
        if int(environ.get("CONTENT_LENGTH") or 0) > MAX_DRAIN_BYTES:
            return 0
    except ValueError:
        return 0
    deadline = time.monotonic() + DRAIN_SECONDS
    read = 0
    try:
        while read < MAX_DRAIN_BYTES and time.monotonic() < deadline:
            chunk = stream.read(_DRAIN_CHUNK)
            if not chunk:
                break
            read += len(chunk)
    except (OSError, ValueError):  # the client went away: no one is left to answer
        pass
    return read


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return error_response(400, "invalid_argument", exc.message, exc.field)

    @app.errorhandler(JobNotFound)
    def _not_found(exc: JobNotFound):
        return error_response(404, "not_found", str(exc), "id")

    @app.errorhandler(ConflictError)
    def _conflict(exc: ConflictError):
        return error_response(409, "conflict", str(exc))

    @app.errorhandler(AuthError)
    def _auth(exc: AuthError):
        code = {401: "unauthenticated", 403: "permission_denied"}.get(exc.status, "unavailable")
        return error_response(exc.status, code, exc.message)

    @app.errorhandler(StoreError)
    def _store(exc: StoreError):
        log.error("Store unavailable", extra={"json_fields": {"action": "store_unavailable", "error": str(exc), "error_type": type(exc).__name__}})
        response = error_response(503, "store_unavailable", f"the job store is unavailable: {exc}")
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("Unhandled error")
        return error_response(500, "internal", "internal error; see the service log")
