"""Cloud SQL IAM database authentication for the PostgreSQL store: the password is a token.

With ``SCHEDULER_POSTGRES_IAM_AUTH=true`` crontick logs in as the IAM database user of
the service's runtime service account (``SA@PROJECT.iam``, named in
``SCHEDULER_POSTGRES_DSN`` without a password) and gives an OAuth2 access token of that
account, scope ``sqlservice.login``, as the password: Cloud SQL's *manual* IAM database
authentication, which works through Cloud Run's built-in Cloud SQL connection (the
``/cloudsql`` socket) with no sidecar and no password to store. The Cloud SQL Python
Connector does the same, but it speaks pg8000 or asyncpg, not psycopg, and imports
aiohttp: a token from google-auth (already a dependency) is all psycopg needs.

A token is asked for only when the pool opens a connection (the server checks it at
login only; an open connection outlives its token) and reused until
:data:`REFRESH_MARGIN` before it expires (an hour after it was issued). On Cloud Run
the credentials come from the metadata server (``google.auth.default``).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from scheduler.errors import StoreUnavailable

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/sqlservice.login"
REFRESH_MARGIN = timedelta(minutes=5)


class IamTokenPassword:
    """A callable returning a valid access token for ``credentials`` (by default the
    runtime's, from ``google.auth.default``), refreshed when it has less than
    :data:`REFRESH_MARGIN` left. Thread-safe: the pool connects from its own threads."""

    def __init__(self, credentials: Any = None, *, request: Any = None, clock: Any = None) -> None:
        self._credentials = credentials
        self._request = request
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self.refreshes = 0  # tokens fetched (tests read it)

    def __call__(self) -> str:
        with self._lock:
            credentials = self._credentials_or_default()
            if self._stale(credentials):
                try:
                    credentials.refresh(self._request_or_default())
                except Exception as exc:  # google.auth's RefreshError, TransportError...: the pool retries
                    log.warning(
                        "Cloud SQL IAM login: no access token",
                        extra={"json_fields": {"action": "postgres_iam_token_failed", "error": f"{type(exc).__name__}: {exc}"}},
                    )
                    raise StoreUnavailable(f"Cloud SQL IAM login: no access token for the service account ({type(exc).__name__}: {exc})") from exc
                self.refreshes += 1
            return str(credentials.token)

    def _stale(self, credentials: Any) -> bool:
        if not credentials.token:
            return True
        expiry = credentials.expiry  # google-auth: a naive datetime in UTC, or None (never expires)
        if expiry is None:
            return False
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=timezone.utc)
        return expiry - self._clock() < REFRESH_MARGIN

    def _credentials_or_default(self) -> Any:
        if self._credentials is None:
            import google.auth

            try:
                self._credentials, _ = google.auth.default(scopes=[SCOPE])
            except Exception as exc:  # DefaultCredentialsError: not on Google Cloud and no ADC file
                raise StoreUnavailable(f"Cloud SQL IAM login: no Google credentials found ({exc})") from exc
        return self._credentials

    def _request_or_default(self) -> Any:
        if self._request is None:
            from google.auth.transport.requests import Request

            self._request = Request()
        return self._request
