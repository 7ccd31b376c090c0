"""One JSON error shape for every refusal: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

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
    body; a chunked body is cut at the same limit when it is read). The refused body is
    read and dropped first (:func:`drain_refused_body`), so the client gets the 413."""
    app.config["MAX_CONTENT_LENGTH"] = max_bytes

    @app.before_request
    def _limit_body() -> None:
        length = request.content_length
        if length is not None and length > max_bytes:
            drain_refused_body(request.environ, length)
            raise RequestEntityTooLarge(f"the body is {length} bytes; every endpoint takes at most {max_bytes}")


# A refused body up to this size is read before the 413: Cloud Run's own limit on an HTTP/1
# request, so every body it lets through gets its answer.
MAX_DRAIN_BYTES = 32 << 20
DRAIN_SECONDS = 5.0  # and for no longer than this
_DRAIN_CHUNK = 64 << 10


def drain_refused_body(environ: dict[str, Any], length: int) -> int:
    """Read and drop up to ``length`` bytes of the request body; returns how many were read.

    Why: answering while the client is still sending, then closing, leaves the unsent
    part unread in the server's socket, and closing a socket with unread data resets the
    connection. The client, still writing, then sees a broken pipe instead of the 413 that
    names the limit: through gunicorn here, 3 requests in 200 of 1 MiB + 10 bytes, and
    every one of 100 of 4 MB. A body declared over :data:`MAX_DRAIN_BYTES` is not read
    (the client of such an upload gets the reset, as from any server), nor is one still
    arriving after :data:`DRAIN_SECONDS`."""
    stream = environ.get("wsgi.input")
    if stream is None or length > MAX_DRAIN_BYTES:
        return 0
    deadline = time.monotonic() + DRAIN_SECONDS
    read = 0
    try:
        while read < length and time.monotonic() < deadline:
            chunk = stream.read(min(length - read, _DRAIN_CHUNK))
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
