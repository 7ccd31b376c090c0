"""Who may call crontick: Google-signed OIDC tokens checked with google-auth.

``oidc``: the bearer token's signature is verified against the certs at
``certs_url`` (fetched through a CacheControl session, so Google's
``Cache-Control: max-age`` is honoured and certs are not fetched per request),
then ``aud``, ``iss``, ``exp`` (30 s skew), ``email_verified`` and the email
allow-list. ``iam``: Cloud Run has verified the signature already (and may have
stripped it), so only the claims are checked. ``disabled``: everyone is
``local``; settings refuse it in production.

Missing or bad token -> 401; a valid token of someone not allowed -> 403; the
certs cannot be fetched -> 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: its email and the token's claims."""

    email: str
    claims: dict[str, Any]


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError(401, "missing Authorization header; expected 'Bearer <Google ID token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "Authorization header must be 'Bearer <Google ID token>'")
    return token.strip()


class TokenVerifier:
    """Verifies Google-signed ID tokens for one audience and one allow-list.

    ``allowed`` holds emails and ``@domain`` entries; ``None`` allows any verified
    email (callers that check the principal themselves, such as the Chat webhook).
    """

    def __init__(
        self,
        *,
        mode: str,
        audience: str | None,
        allowed: Collection[str] | None,
        certs_url: str,
        certs_timeout: float = 5.0,
        issuers: Collection[str] = GOOGLE_ISSUERS,
        require_email_verified: bool = True,
        issuer_is_identity: bool = False,
    ) -> None:
        self.mode = mode
        self.audience = audience
        self.allowed = None if allowed is None else frozenset(a.lower() for a in allowed)
        self.certs_url = certs_url
        self.certs_timeout = certs_timeout
        self.issuers = tuple(issuers)
        self.require_email_verified = require_email_verified
        # Tokens a Google service signs as itself (Chat's, for a project-number
        # audience) carry no email: the verified issuer is the caller.
        self.issuer_is_identity = issuer_is_identity
        self._request = None
        self._lock = threading.Lock()

    def _transport(self):
        # Deferred and cached: the first authenticated request builds the session.
        with self._lock:
            if self._request is None:
                import cachecontrol
                import google.auth.transport.requests
                import requests

                session = cachecontrol.CacheControl(requests.Session())
                default_timeout = self.certs_timeout

                class _Request(google.auth.transport.requests.Request):
                    # google-auth fetches certs with a 120 s default; a tick cannot wait that long.
                    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
                        return super().__call__(url, method=method, body=body, headers=headers, timeout=timeout or default_timeout, **kwargs)

                self._request = _Request(session)
            return self._request

    def verify(self, authorization: str | None) -> Identity:
        if self.mode == "disabled":
            return Identity(email="local", claims={})
        if not self.audience:
            # google-auth checks no audience when given none: refuse rather than accept any.
            raise AuthError(403, "this endpoint has no token audience configured; every token is refused")
        token = bearer_token(authorization)
        claims = self._verified_claims(token) if self.mode == "oidc" else self._decoded_claims(token)
        return Identity(email=self._check_principal(claims), claims=claims)

    def _verified_claims(self, token: str) -> dict[str, Any]:
        from google.auth import exceptions
        from google.oauth2 import id_token

        try:
            claims = id_token.verify_token(
                token,
                self._transport(),
                audience=self.audience,
                certs_url=self.certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        except (exceptions.TransportError, json.JSONDecodeError) as exc:
            # JSONDecodeError only escapes verify_token from parsing the certs body (a token's
            # own segments fail as MalformedError): a 200 that is not the certs is an outage too.
            log.error("OIDC certs unreachable", extra={"json_fields": {"certs_url": self.certs_url, "error": str(exc)}})
            raise AuthError(503, "cannot fetch the token signing certificates; try again") from None
        except (ValueError, TypeError, exceptions.GoogleAuthError) as exc:
            # TypeError: google-auth does arithmetic on exp/iat as given, e.g. a string.
            raise AuthError(401, f"invalid token: {_short(exc)}") from None
        return dict(claims)

    def _decoded_claims(self, token: str) -> dict[str, Any]:
        from google.auth import jwt

        try:
            claims = dict(jwt.decode(token, verify=False))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad token
            raise AuthError(401, f"invalid token: {_short(exc)}") from None
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if self.audience not in audiences:
            raise AuthError(401, "invalid token: wrong audience")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp + CLOCK_SKEW_SECONDS < time.time():
            raise AuthError(401, "invalid token: expired or without exp")
        return claims

    def _check_principal(self, claims: dict[str, Any]) -> str:
        if claims.get("iss") not in self.issuers:
            raise AuthError(401, f"invalid token: issuer must be one of {', '.join(self.issuers)}")
        if self.issuer_is_identity:
            return claims["iss"]
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise AuthError(403, "token has no email claim")
        if self.require_email_verified and claims.get("email_verified") is not True:
            raise AuthError(403, f"email {email} is not verified")
        if self.allowed is not None and not is_allowed(email, self.allowed):
            raise AuthError(403, f"{email} is not allowed to call this endpoint")
        return email


def is_allowed(email: str, allowed: Collection[str]) -> bool:
    """``email`` is listed, or its whole ``@domain`` is (``allowed`` holds lower-cased
    entries; ``email`` is compared case-insensitively).

    Only an address of exactly one ``@`` with a non-empty local part and domain
    qualifies: without an ``@`` the whole string would be taken for the domain
    (``example.com`` passing an ``@example.com`` entry), and with two the local part
    would carry another address (``eve@evil.example@corp.example`` passing ``@corp.example``).
    """
    email = email.lower()
    local, at, domain = email.partition("@")
    if not (local and at and domain) or "@" in domain:
        return False
    return email in allowed or f"@{domain}" in allowed


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
