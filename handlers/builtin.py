"""Built-in job types: ``log`` and ``http_request``."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlparse

from handlers.registry import HandlerContext, HandlerRegistry
from scheduler.errors import ValidationError
from scheduler.model import Job

log = logging.getLogger(__name__)

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HTTP_FIELDS = frozenset({"url", "method", "json", "headers", "timeout_seconds", "oidc_audience"})


def log_payload(job: Job, ctx: HandlerContext) -> None:
    log.info(
        "log job ran",
        extra={"json_fields": {"job_id": job.id, "tick_id": ctx.tick_id, "attempt": ctx.attempt, "payload": job.payload}},
    )


def validate_http_request(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - HTTP_FIELDS)
    if unknown:
        raise ValidationError(f"http_request payload has unknown field {unknown[0]!r}; allowed: {', '.join(sorted(HTTP_FIELDS))}", f"payload.{unknown[0]}")
    url = payload.get("url")
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValidationError("http_request needs payload.url, an absolute http(s) URL", "payload.url")
    method = payload.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise ValidationError(f"payload.method must be one of {', '.join(HTTP_METHODS)}", "payload.method")
    headers = payload.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValidationError("payload.headers must be an object of string values", "payload.headers")
    timeout = payload.get("timeout_seconds", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 900:
        raise ValidationError("payload.timeout_seconds must be a number in (0, 900]", "payload.timeout_seconds")
    audience = payload.get("oidc_audience")
    if audience is not None and (not isinstance(audience, str) or not audience):
        raise ValidationError("payload.oidc_audience must be a non-empty string", "payload.oidc_audience")


class HttpRequestHandler:
    """Calls ``payload.url``; any non-2xx answer or network error fails the attempt."""

    def __init__(self) -> None:
        self._session = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _http(self):
        import requests  # deferred: only services that run http_request jobs pay for it

        with self._lock:
            if self._session is None:
                self._session = requests.Session()
            return self._session

    def _id_token(self, audience: str) -> str:
        """A Google ID token for ``audience``, reused until a minute before it expires."""
        with self._lock:
            cached = self._tokens.get(audience)
            if cached and cached[1] - 60 > time.time():
                return cached[0]
        import google.auth.transport.requests
        from google.auth import jwt
        from google.oauth2 import id_token

        token = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
        expiry = float(jwt.decode(token, verify=False).get("exp", time.time() + 300))
        with self._lock:
            self._tokens[audience] = (token, expiry)
        return token

    def __call__(self, job: Job, ctx: HandlerContext) -> None:
        payload = job.payload
        headers = dict(payload.get("headers", {}))
        headers.setdefault("Idempotency-Key", ctx.idempotency_key(job))
        if payload.get("oidc_audience"):
            headers["Authorization"] = f"Bearer {self._id_token(payload['oidc_audience'])}"
        timeout = min(float(payload.get("timeout_seconds", 30)), max(ctx.deadline - time.monotonic(), 0.1))
        response = self._http().request(
            payload.get("method", "POST").upper(),
            payload["url"],
            json=payload.get("json"),
            headers=headers,
            timeout=timeout,
        )
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"{payload['url']} answered HTTP {response.status_code}: {response.text[:200]}")


def register_builtins(registry: HandlerRegistry) -> None:
    registry.register("log", log_payload)
    registry.register("http_request", HttpRequestHandler(), validate=validate_http_request)
