"""One JSON error shape for every refusal: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging

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
    body; a chunked body is cut at the same limit when it is read)."""
    app.config["MAX_CONTENT_LENGTH"] = max_bytes

    @app.before_request
    def _limit_body() -> None:
        length = request.content_length
        if length is not None and length > max_bytes:
            raise RequestEntityTooLarge(f"the body is {length} bytes; every endpoint takes at most {max_bytes}")


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
