"""The ``chat_message`` built-in: post a text message into Google Chat.

Payload::

    {"text": "Stand-up in 5 minutes",          # required, 1-4096 characters
     "space": "spaces/AAAA",                   # a space the Chat app is a member of ...
     "thread": "spaces/AAAA/threads/BBBB"}     # ... optionally a thread of that space
    {"text": "...", "webhook_url": "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=...&token=..."}

With ``space`` the message goes through the Chat API as the app:
``POST {CHAT_API_BASE_URL}/{space}/messages`` through a google-auth
``AuthorizedSession`` over the service's default credentials (scope
``chat.bot``). A ``thread`` is sent as ``thread.name`` with
``messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD``. The Chat API's
``requestId`` is derived from the occurrence's idempotency key, so a retry of
an attempt whose answer was lost returns the message already created instead
of posting it twice.

With ``webhook_url`` the message is POSTed as is to a space's incoming webhook
(no credentials; the URL carries its own key and token).

Any non-2xx answer or network error raises, so the engine records a failed
attempt and retries it with backoff.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any
from urllib.parse import urlparse

from handlers.registry import HandlerContext, HandlerRegistry
from scheduler.errors import ValidationError
from scheduler.model import Job

CHAT_BOT_SCOPE = "https://www.googleapis.com/auth/chat.bot"
DEFAULT_CHAT_API_BASE_URL = "https://chat.googleapis.com/v1"
REPLY_OPTION = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
MAX_TEXT = 4096
FIELDS = frozenset({"text", "space", "thread", "webhook_url"})
SPACE_RE = re.compile(r"^spaces/[A-Za-z0-9_-]{1,200}$")
THREAD_RE = re.compile(r"^(spaces/[A-Za-z0-9_-]{1,200})/threads/[A-Za-z0-9_.-]{1,200}$")
REQUEST_TIMEOUT_SECONDS = 30.0


def validate_chat_message(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise ValidationError(f"chat_message payload has unknown field {unknown[0]!r}; allowed: {', '.join(sorted(FIELDS))}", f"payload.{unknown[0]}")
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("chat_message needs payload.text, a non-empty string", "payload.text")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"payload.text is longer than {MAX_TEXT} characters", "payload.text")
    space, webhook = payload.get("space"), payload.get("webhook_url")
    if (space is None) == (webhook is None):
        raise ValidationError("chat_message needs exactly one of payload.space ('spaces/...') or payload.webhook_url", "payload.space")
    if webhook is not None:
        parsed = urlparse(webhook) if isinstance(webhook, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValidationError("payload.webhook_url must be an absolute http(s) URL", "payload.webhook_url")
    elif not isinstance(space, str) or not SPACE_RE.match(space):
        raise ValidationError("payload.space must be a space name such as 'spaces/AAAAxyz'", "payload.space")
    thread = payload.get("thread")
    if thread is not None:
        match = THREAD_RE.match(thread) if isinstance(thread, str) else None
        if match is None:
            raise ValidationError("payload.thread must be a thread name such as 'spaces/AAAA/threads/BBBB'", "payload.thread")
        if space is not None and match.group(1) != space:
            raise ValidationError("payload.thread must be a thread of payload.space", "payload.thread")


def request_id(key: str) -> str:
    """A Chat ``requestId`` for an occurrence: stable across retries, URL-safe."""
    return "crontick-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


class ChatMessageHandler:
    """Posts ``payload.text``; see the module docstring.

    ``credentials`` defaults to ``google.auth.default(scopes=[chat.bot])``, resolved
    on the first Chat API call; tests inject static credentials instead.
    """

    def __init__(self, api_base_url: str = DEFAULT_CHAT_API_BASE_URL, *, credentials: Any = None) -> None:
        self.api_base_url = api_base_url.rstrip("/")
        self._credentials = credentials
        self._authed = None
        self._plain = None
        self._lock = threading.Lock()

    def _authorized_session(self):
        with self._lock:
            if self._authed is None:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials = self._credentials
                if credentials is None:
                    credentials, _ = google.auth.default(scopes=[CHAT_BOT_SCOPE])
                self._authed = AuthorizedSession(credentials)
            return self._authed

    def _plain_session(self):
        import requests

        with self._lock:
            if self._plain is None:
                self._plain = requests.Session()
            return self._plain

    def __call__(self, job: Job, ctx: HandlerContext) -> None:
        payload = job.payload
        body: dict[str, Any] = {"text": payload["text"]}
        params: dict[str, str] = {}
        if payload.get("thread"):
            body["thread"] = {"name": payload["thread"]}
            params["messageReplyOption"] = REPLY_OPTION
        timeout = min(REQUEST_TIMEOUT_SECONDS, max(ctx.deadline - time.monotonic(), 0.1))
        if payload.get("webhook_url"):
            url = payload["webhook_url"]
            response = self._plain_session().post(url, json=body, params=params, timeout=timeout)
            where = urlparse(url)._replace(query="").geturl()  # never log the webhook's key and token
        else:
            params["requestId"] = request_id(ctx.idempotency_key(job))
            where = f"{self.api_base_url}/{payload['space']}/messages"
            response = self._authorized_session().post(where, json=body, params=params, timeout=timeout)
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"Chat message to {where} failed: HTTP {response.status_code}: {response.text[:200]}")


def register_chat_message(registry: HandlerRegistry, api_base_url: str = DEFAULT_CHAT_API_BASE_URL, *, credentials: Any = None) -> None:
    registry.register("chat_message", ChatMessageHandler(api_base_url, credentials=credentials), validate=validate_chat_message)
