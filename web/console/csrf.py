"""Cross-site request forgery protection for every console POST.

A console session is a random id in the ``crontick_console`` cookie (HttpOnly,
SameSite=Strict, Secure over https). Each page's forms carry a token: the session
id and the signed-in email, signed with itsdangerous (``CONSOLE_SECRET_KEY``, the
same on every instance; a random per-process key when unset, local use only) and
valid for :data:`MAX_AGE_SECONDS`. A POST is refused (403) unless its token is
genuine, fresh, and names this request's session and person, and unless its
``Origin`` (when sent) is this host. Another site can neither read the token nor
send the cookie.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

from flask import Request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

COOKIE = "crontick_console"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
MAX_AGE_SECONDS = 12 * 3600
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class CsrfError(Exception):
    pass


class Csrf:
    def __init__(self, secret: str | None) -> None:
        self.serializer = URLSafeTimedSerializer(secret or secrets.token_urlsafe(32), salt="crontick-console-csrf")

    @staticmethod
    def session_id(request: Request) -> tuple[str, bool]:
        """This browser's session id, and whether it is new (the cookie must then be set)."""
        sid = request.cookies.get(COOKIE, "")
        if _SESSION_ID.fullmatch(sid):
            return sid, False
        return secrets.token_urlsafe(18), True

    def token(self, sid: str, email: str) -> str:
        return self.serializer.dumps({"sid": sid, "who": email})

    def check(self, request: Request, sid: str, email: str) -> None:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            raise CsrfError(f"the form was sent from another site ({origin})")
        sent = request.form.get(FIELD) or request.headers.get(HEADER)
        if not sent:
            raise CsrfError(f"the form has no {FIELD}; reload the page and try again")
        try:
            data = self.serializer.loads(sent, max_age=MAX_AGE_SECONDS)
        except SignatureExpired:
            raise CsrfError("the page is too old; reload it and try again") from None
        except BadSignature:
            raise CsrfError(f"the form's {FIELD} is not valid; reload the page and try again") from None
        if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("sid")), sid) or data.get("who") != email:
            raise CsrfError(f"the form's {FIELD} belongs to another session; reload the page and try again")
