"""``POST /webhook``: crontick as a Google Chat app (HTTP endpoint).

Google Chat POSTs interaction events (``MESSAGE``, ``ADDED_TO_SPACE``,
``REMOVED_FROM_SPACE``, ``CARD_CLICKED``) with a bearer token; the answer is the
synchronous reply ``{"text": ...}`` Chat posts back in the same thread.

Authentication follows the app's *Authentication audience* setting:

* ``CHAT_AUTH_AUDIENCE`` all digits (the project number): the token is a JWT
  issued *and* signed by ``chat@system.gserviceaccount.com`` with
  ``aud`` = project number and no email claim, verified against
  ``CHAT_CERTS_URL``;
* ``CHAT_AUTH_AUDIENCE`` a URL (the HTTP endpoint URL): the token is a Google ID
  token (``iss`` accounts.google.com) whose verified ``email`` is
  ``chat@system.gserviceaccount.com``, ``aud`` = that URL, verified against
  ``OIDC_CERTS_URL``.

``AUTH_MODE=disabled`` admits every request (local use only; settings refuse it
in production). A request that is not from Chat is refused with the JSON error
(401; 403 for a valid Google token of another principal; 503 when the certs
cannot be fetched). Then the body is read up to :data:`MAX_BODY_BYTES` (413 past
it) and parsed (400 naming ``body`` when nested too deeply to parse; not JSON at
all is answered as text). From there on every answer is 200 with a text: a sender
not in ``CHAT_ALLOWED_SENDERS`` (or ``ADMIN_EMAILS``) gets a polite refusal,
anything not understood gets an explanation and an example, never a 5xx.

Commands (what an event's text asks for, and the reply) are ``web/chat_commands.py``,
loaded by the first event, not at start; see also ``docs/chat.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from scheduler.errors import StoreError
from scheduler.settings import Settings
from web.auth import GOOGLE_ISSUERS, AuthError, TokenVerifier
from web.context import crontick
from web.errors import error_response, read_body

log = logging.getLogger(__name__)

bp = Blueprint("chat", __name__)

CHAT_ISSUER = "chat@system.gserviceaccount.com"
EXTENSION = "crontick.chat"
# Chat events are a few KiB (a message is at most 32,000 characters); anything far larger is not Chat.
MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ChatConfig:
    """The webhook's settings, resolved once at registration: who may send, who is admin."""

    verifier: TokenVerifier | None  # None: CHAT_AUTH_AUDIENCE unset, every request refused
    allowed: frozenset[str]
    admins: frozenset[str]
    default_timezone: str


def build_chat_verifier(settings: Settings) -> TokenVerifier | None:
    if settings.auth_mode == "disabled":
        return TokenVerifier(mode="disabled", audience=None, allowed=None, certs_url="")
    audience = settings.chat_auth_audience
    if not audience:
        return None
    if audience.isdigit():
        # The project-number audience: Chat signs its own JWT (iss = chat@system...), without email.
        return TokenVerifier(
            mode="oidc",
            audience=audience,
            allowed=None,
            certs_url=settings.chat_certs_url,
            certs_timeout=settings.oidc_certs_timeout_seconds,
            issuers=(CHAT_ISSUER,),
            issuer_is_identity=True,
        )
    return TokenVerifier(
        mode="oidc",
        audience=audience,
        allowed=(CHAT_ISSUER,),
        certs_url=settings.oidc_certs_url,
        certs_timeout=settings.oidc_certs_timeout_seconds,
        issuers=GOOGLE_ISSUERS,
    )


@bp.record_once
def _configure(state) -> None:
    settings: Settings = state.app.extensions["crontick"].settings
    state.app.extensions[EXTENSION] = ChatConfig(
        verifier=build_chat_verifier(settings),
        allowed=frozenset(a.lower() for a in (*settings.chat_allowed_senders, *settings.admin_emails)),
        admins=frozenset(a.lower() for a in settings.admin_emails),
        default_timezone=settings.chat_default_timezone,
    )


@bp.post("/webhook")
def webhook():
    config: ChatConfig = current_app.extensions[EXTENSION]
    if config.verifier is None:
        log.warning("Chat event refused: CHAT_AUTH_AUDIENCE is not set")
        raise AuthError(401, "the Chat webhook is not configured: set CHAT_AUTH_AUDIENCE to the Chat app's authentication audience")
    config.verifier.verify(request.headers.get("Authorization"))
    event = _read_event()
    if isinstance(event, Response):
        return event
    try:
        # The commands (their parsing, natural-language times and replies: web/chat_commands.py,
        # scheduler/when.py) load with the first event, not at start: 5-6 ms of every cold
        # start, for a webhook that many deployments never enable.
        from web.chat_commands import Conversation

        reply = Conversation(crontick(), config, event).answer()
    except StoreError as exc:
        log.error("Chat command failed: store unavailable", extra={"json_fields": {"error": str(exc)}})
        reply = {"text": "Sorry, the job store is unavailable right now, so nothing was changed. Please try again in a minute."}
    except Exception:  # noqa: BLE001 - a Chat user gets an answer, the log gets the trace
        log.exception("Chat command failed")
        reply = {"text": "Sorry, something went wrong on my side while handling that (the service log has the details). Please try again."}
    return jsonify(reply)


def _read_event() -> Any:
    """The JSON body, ``None`` when it is not JSON (answered with a "not understood" text),
    or an error response: 413 over :data:`MAX_BODY_BYTES` (or a smaller app-wide
    ``MAX_CONTENT_LENGTH``), 400 naming ``body`` when nested too deeply to parse.

    The limit is enforced here, on its own (web/errors.py ``read_body``): a declared
    ``Content-Length`` is refused before reading, and a body without one (chunked) is
    read up to the limit and refused when there is more.
    """
    if not request.is_json:
        return None
    app_limit = request.max_content_length
    limit = MAX_BODY_BYTES if app_limit is None else min(app_limit, MAX_BODY_BYTES)

    def too_large() -> Response:
        log.warning("Chat event refused: body too large", extra={"json_fields": {"action": "chat_body_too_large", "limit_bytes": limit, "content_length": request.content_length}})
        return error_response(413, "request_entity_too_large", f"the Chat event body is over {limit} bytes ({limit / 1024:g} KiB)", "body")

    try:
        raw = read_body(limit)
    except RequestEntityTooLarge:
        return too_large()
    try:
        return json.loads(raw)
    except RecursionError:
        log.warning("Chat event refused: body nested too deeply", extra={"json_fields": {"action": "chat_body_too_deep", "bytes": len(raw)}})
        return error_response(400, "invalid_argument", "the Chat event body is nested too deeply", "body")
    except ValueError:  # not JSON (or not UTF-8/16/32): answered as "not a Chat event"
        return None
