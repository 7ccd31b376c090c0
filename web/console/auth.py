"""Who is using the console: IAP's signed header, verified, and the role it grants.

``CONSOLE_AUTH=iap``: Identity-Aware Proxy signs every request it lets through with
``X-Goog-IAP-JWT-Assertion``, an ES256 JWT whose ``iss`` is
``https://cloud.google.com/iap``, ``aud`` the IAP resource (``IAP_AUDIENCE``) and
``email`` the signed-in person. It is verified with google-auth against IAP's public
keys (``IAP_CERTS_URL``: ``{kid: PEM public key}``, fetched through the same cached
session as the service's OIDC certs, honouring ``Cache-Control``), with 30 s of
clock skew. The header is checked on every request, so a request that reached the
container without passing IAP (another route to the service) is refused.

Outcomes: no header, a malformed, forged (unknown kid, bad signature, not ES256),
expired, wrong-audience or wrong-issuer assertion -> 401; a valid assertion of an
email in neither ``CONSOLE_ADMIN_EMAILS`` nor ``CONSOLE_VIEWER_EMAILS`` -> 403 page
saying who they are signed in as; the keys cannot be fetched -> 503. Lists hold
emails and ``@domain`` entries (:func:`web.auth.is_allowed`).

``CONSOLE_AUTH=disabled`` (``ENVIRONMENT=local`` only): everyone is ``local``, an admin.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from web.auth import AuthError, TokenVerifier, is_allowed

IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
ADMIN, VIEWER = "admin", "viewer"


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The console's signed-in operator and role."""

    email: str
    role: str  # ADMIN or VIEWER

    @property
    def can_act(self) -> bool:
        return self.role == ADMIN


class ConsoleAuthError(Exception):
    """Refused: ``status`` 401 (not signed in), 403 (``email`` may not use the console), 503."""

    def __init__(self, status: int, message: str, email: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.email = email


class ConsoleAuth:
    def __init__(self, settings, mode: str) -> None:
        self.mode = mode
        self.admins = frozenset(e.lower() for e in settings.console_admin_emails)
        self.viewers = frozenset(e.lower() for e in settings.console_viewer_emails)
        self.verifier = TokenVerifier(
            mode="oidc",
            audience=settings.iap_audience,
            allowed=None,  # roles are decided here, with a page that names the person
            certs_url=settings.iap_certs_url,
            certs_timeout=settings.oidc_certs_timeout_seconds,
            issuers=(IAP_ISSUER,),
            require_email_verified=False,  # IAP asserts no email_verified: it signed the person in itself
        )

    def user(self, assertion: str | None) -> ConsoleUser:
        if self.mode == "disabled":
            return ConsoleUser("local", ADMIN)
        if not assertion:
            raise ConsoleAuthError(401, f"no {IAP_HEADER} header: this console is served only through Identity-Aware Proxy")
        algorithm = _algorithm(assertion)
        if algorithm != "ES256":
            raise ConsoleAuthError(401, f"the IAP assertion must be signed with ES256, not {algorithm!r}")
        try:
            identity = self.verifier.verify(f"Bearer {assertion}")
        except AuthError as exc:
            raise ConsoleAuthError(exc.status, exc.message.replace("invalid token", "invalid IAP assertion")) from None
        email = identity.email
        if is_allowed(email, self.admins):
            return ConsoleUser(email, ADMIN)
        if is_allowed(email, self.viewers):
            return ConsoleUser(email, VIEWER)
        raise ConsoleAuthError(403, f"{email} may not use this console", email=email)


def _algorithm(token: str) -> str | None:
    """The ``alg`` of a JWT's header, unverified (None when it does not parse)."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        return None
    return header.get("alg") if isinstance(header, dict) else None
