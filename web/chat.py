"""``POST /webhook``: the Google Chat app endpoint (being built; answers 501 for now)."""

from __future__ import annotations

from flask import Blueprint

from web.errors import error_response

bp = Blueprint("chat", __name__)


@bp.post("/webhook")
def webhook():
    return error_response(501, "unimplemented", "the Chat webhook is not implemented yet")
