"""Real OIDC plumbing for tests: tokens signed by a key the tests generate, and
a loopback HTTP server publishing its certificate the way Google does.

Nothing here is mocked: ``TokenFactory`` makes RS256 JWTs with google-auth's own
signer (or by hand, for the forgeries google-auth refuses to make), and
``CertServer`` answers ``GET /certs`` over real HTTP in Google's v1 format
(``{"kid": "-----BEGIN CERTIFICATE-----..."}``, ``Cache-Control: public,
max-age=3600``), so the service's google-auth verification and CacheControl
session run exactly as in production.

Fixtures (import them into a test module or conftest):

``token_factory``        session-wide ``TokenFactory`` (one RSA-2048 key, kid ``crontick-test-key``)
``impostor_factory``     session-wide ``TokenFactory`` with *another* key and the *same* kid
``cert_server``          a started ``CertServer`` publishing ``token_factory``'s cert
``oidc_config``          env mapping for ``create_app`` in ``AUTH_MODE=oidc`` against ``cert_server``
``oidc_auth``            ``oidc_auth(**claim_overrides) -> {"Authorization": "Bearer ..."}`` for INVOKER
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

GOOGLE_ISSUER = "https://accounts.google.com"
AUDIENCE = "https://crontick.example.run.app"
INVOKER = "invoker@proj.iam.gserviceaccount.com"
DEFAULT_KID = "crontick-test-key"

_DEFAULT = object()
OMIT = object()
"""Pass as a claim override to leave that claim out of ``valid_claims``."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_segment(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def self_signed_cert(key: rsa.RSAPrivateKey, common_name: str) -> str:
    """A PEM X.509 certificate for ``key``, valid from yesterday for a year."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


class TokenFactory:
    """One freshly generated RSA-2048 key, its self-signed cert, and a JWT signer."""

    def __init__(self, kid: str = DEFAULT_KID) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = _private_pem(self.key)
        self.cert_pem = self_signed_cert(self.key, kid)

    @property
    def certs(self) -> dict[str, str]:
        """What Google's v1 certs endpoint would publish for this key."""
        return {self.kid: self.cert_pem}

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        kid: Any = _DEFAULT,
        key: rsa.RSAPrivateKey | None = None,
        alg: str = "RS256",
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT of ``claims``.

        ``kid`` defaults to this factory's kid (``None`` leaves it out); ``key``
        signs instead of this factory's key (the header still names ``kid``).
        ``alg``: ``RS256`` is signed by google-auth; ``none`` (empty signature)
        and ``HS256`` (HMAC keyed with the public cert, the classic algorithm
        confusion) are built by hand since google-auth will not make them.
        ``headers`` are merged into the JWT header last, so they can override anything.
        """
        kid = self.kid if kid is _DEFAULT else kid
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            header["kid"] = kid
        header.update(headers or {})
        if header["alg"] == "RS256":
            from google.auth import crypt, jwt

            pem = self.private_pem if key is None else _private_pem(key)
            signer = crypt.RSASigner.from_string(pem, header.get("kid"))
            return jwt.encode(signer, dict(claims), header=header).decode("ascii")
        return self._hand_signed(claims, header, key)

    def _hand_signed(self, claims: Mapping[str, Any], header: Mapping[str, Any], key: rsa.RSAPrivateKey | None) -> str:
        signing_input = f"{_json_segment(header)}.{_json_segment(claims)}"
        alg = str(header.get("alg", "")).upper()
        if alg == "NONE":
            signature = b""
        elif alg == "HS256":
            signature = hmac.new(self.cert_pem.encode("ascii"), signing_input.encode("ascii"), hashlib.sha256).digest()
        elif alg == "RS256":
            signature = (key or self.key).sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        else:
            raise ValueError(f"TokenFactory cannot sign alg {alg!r}")
        return f"{signing_input}.{_b64(signature)}"

    def valid_claims(self, audience: str = AUDIENCE, email: str = INVOKER, **overrides: Any) -> dict[str, Any]:
        """Claims shaped like a Google-issued ID token for a service account,
        issued now and expiring in an hour. ``overrides`` replace claims
        (``OMIT`` removes one)."""
        now = int(time.time())
        sub = str(100000000000000000000 + zlib.crc32(str(email).encode("utf-8")))
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": sub,
            "email": email,
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": GOOGLE_ISSUER,
            "sub": sub,
        }
        for name, value in {"aud": audience, "email": email, **overrides}.items():
            if value is OMIT:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, audience: str = AUDIENCE, email: str = INVOKER, **overrides: Any) -> str:
        """Shorthand: a correctly signed token of ``valid_claims(...)``."""
        return self.sign(self.valid_claims(audience, email, **overrides))


class CertServer:
    """``GET /certs`` on 127.0.0.1 over real HTTP, in Google's v1 format.

    ``requests`` counts the GETs of ``/certs`` served (whatever the status).
    Set ``status`` to make it answer an error (500 by default for ``fail()``),
    ``stop()`` to close the port (``start()`` binds the same port again), or
    ``hang()`` to accept the connection but answer nothing until ``stop()``,
    or ``serve_raw(body)`` to answer 200 with a body that is not the certs.
    """

    def __init__(self, certs: Mapping[str, str], *, max_age: int = 3600, port: int = 0) -> None:
        self.certs = dict(certs)
        self.max_age = max_age
        self.status = 200
        self.raw_body: bytes | None = None
        self.port = port
        self.requests = 0
        self._count_lock = threading.Lock()
        self._release = threading.Event()
        self._hanging = False
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/certs"

    @property
    def running(self) -> bool:
        return self._server is not None

    def fail(self, status: int = 500) -> None:
        self.status = status

    def serve_raw(self, body: bytes) -> None:
        self.raw_body = body

    def recover(self) -> None:
        self.status = 200
        self.raw_body = None
        self._hanging = False
        self._release.set()

    def hang(self) -> None:
        self._release.clear()
        self._hanging = True

    def _count(self) -> None:
        with self._count_lock:
            self.requests += 1

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so stop() leaves no keep-alive threads behind.
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/certs":
                    self._send(404, {"error": "not found"}, cache=False)
                    return
                owner._count()
                if owner._hanging:
                    owner._release.wait(timeout=30)
                    return
                if owner.status != 200:
                    self._send(owner.status, {"error": "certs unavailable"}, cache=False)
                    return
                self._send(200, owner.certs if owner.raw_body is None else owner.raw_body, cache=owner.raw_body is None)

            def _send(self, status: int, body: Mapping[str, Any] | bytes, *, cache: bool) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                if cache:
                    self.send_header("Cache-Control", f"public, max-age={owner.max_age}")
                else:
                    self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                pass

        return Handler

    def start(self) -> CertServer:
        if self._server is not None:
            return self
        # ThreadingHTTPServer sets SO_REUSEADDR, so a restart can take the same port back.
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="cert-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CertServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def oidc_env(certs_url: str, **overrides: str) -> dict[str, str]:
    """Environment strings for ``create_app`` with real OIDC against ``certs_url``.
    Overrides use the variable names (``AUTH_MODE="iam"``); ``""`` unsets one."""
    env = {
        "ENVIRONMENT": "test",
        "SCHEDULER_STORAGE": "memory",
        "AUTH_MODE": "oidc",
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_ALLOWED_EMAILS": INVOKER,
        "OIDC_CERTS_URL": certs_url,
        "OIDC_CERTS_TIMEOUT_SECONDS": "5",
    }
    env.update(overrides)
    return env


# --- pytest fixtures -------------------------------------------------------


@pytest.fixture(scope="session")
def token_factory() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="session")
def impostor_factory(token_factory: TokenFactory) -> TokenFactory:
    """Another RSA key that claims the same kid as ``token_factory``."""
    return TokenFactory(kid=token_factory.kid)


@pytest.fixture
def cert_server(token_factory: TokenFactory) -> Iterator[CertServer]:
    with CertServer(token_factory.certs) as server:
        yield server


@pytest.fixture
def oidc_config(cert_server: CertServer) -> dict[str, str]:
    return oidc_env(cert_server.url)


@pytest.fixture
def oidc_auth(token_factory: TokenFactory) -> Callable[..., dict[str, str]]:
    def auth(**claim_overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_factory.token(**claim_overrides)}"}

    return auth
