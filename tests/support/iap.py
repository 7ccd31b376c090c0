"""Identity-Aware Proxy for tests: ES256 assertions signed by keys the tests generate,
and IAP's key endpoint served on loopback.

IAP signs ``X-Goog-IAP-JWT-Assertion`` with ES256 and publishes its public keys at
https://www.gstatic.com/iap/verify/public_key as ``{"<kid>": "-----BEGIN PUBLIC KEY-----..."}``.
``IapKeys`` makes a P-256 key, that mapping, and assertions (signed by google-auth's own
ES256 signer, shaped like IAP's: ``iss`` https://cloud.google.com/iap, ``aud`` the
resource, ``email``, ``sub`` ``accounts.google.com:<id>``, ``hd``). The endpoint is
``tests.support.oidc.CertServer`` serving that mapping (same ``Cache-Control``), so the
console's google-auth verification runs exactly as against Google.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.oidc import OMIT

IAP_ISSUER = "https://cloud.google.com/iap"
IAP_AUDIENCE = "/projects/123456789012/locations/europe-west1/services/crontick"
ADMIN = "ann@example.com"
VIEWER = "victor@viewers.example.com"
STRANGER = "eve@example.net"
SECRET = "test-console-secret-0123456789abcdef"


class IapKeys:
    """One ES256 (P-256) key, its public PEM under ``kid``, and an assertion signer."""

    def __init__(self, kid: str = "iap-test-key") -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.private_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.public_pem = self.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    @property
    def published(self) -> dict[str, str]:
        """What IAP's public_key endpoint would publish for this key."""
        return {self.kid: self.public_pem}

    def claims(self, email: str = ADMIN, audience: str = IAP_AUDIENCE, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "email": email,
            "exp": now + 600,
            "iat": now,
            "iss": IAP_ISSUER,
            "sub": f"accounts.google.com:{100000 + zlib.crc32(email.encode())}",
            "hd": email.rpartition("@")[2],
        }
        for name, value in overrides.items():
            if value is OMIT:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def sign(self, claims: Mapping[str, Any], *, kid: str | None = None) -> str:
        from google.auth import crypt, jwt

        signer = crypt.ES256Signer.from_string(self.private_pem, kid or self.kid)
        return jwt.encode(signer, dict(claims), header={"alg": "ES256", "typ": "JWT", "kid": kid or self.kid}).decode("ascii")

    def assertion(self, email: str = ADMIN, **overrides: Any) -> str:
        return self.sign(self.claims(email, **overrides))

    def headers(self, email: str = ADMIN, **overrides: Any) -> dict[str, str]:
        return {"X-Goog-IAP-JWT-Assertion": self.assertion(email, **overrides)}


def console_env(certs_url: str, **overrides: str) -> dict[str, str]:
    """Settings for an app with the console behind IAP (admins ADMIN, viewers @viewers.example.com)."""
    env = {
        "ENVIRONMENT": "test",
        "AUTH_MODE": "disabled",
        "SCHEDULER_STORAGE": "memory",
        "CONSOLE_AUTH": "iap",
        "IAP_AUDIENCE": IAP_AUDIENCE,
        "IAP_CERTS_URL": certs_url,
        "CONSOLE_ADMIN_EMAILS": ADMIN,
        "CONSOLE_VIEWER_EMAILS": "@viewers.example.com",
        "CONSOLE_SECRET_KEY": SECRET,
        "OIDC_CERTS_TIMEOUT_SECONDS": "5",
    }
    env.update(overrides)
    return env
