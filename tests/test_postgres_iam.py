"""Cloud SQL IAM database authentication (SCHEDULER_POSTGRES_IAM_AUTH): the store logs in
with an access token as its password. The token provider against stand-in credentials
(the only part that needs Google: the metadata server), and the login itself against the
real PostgreSQL 15 server, with a role that only a password (scram-sha-256) lets in."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from scheduler.errors import ConfigError, StoreUnavailable
from scheduler.settings import Settings
from storage.postgres import PostgresStore
from storage.postgres_iam import REFRESH_MARGIN, SCOPE, IamTokenPassword
from tests.support.jobs import make_job

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


class StandInCredentials:
    """google.auth credentials as the metadata server's behave: ``refresh`` fetches a token
    valid for an hour (naive UTC ``expiry``, as google-auth keeps it)."""

    def __init__(self, tokens: list[str], clock) -> None:
        self.tokens = list(tokens)
        self.clock = clock
        self.token: str | None = None
        self.expiry: datetime | None = None
        self.requests: list[object] = []
        self.fail: Exception | None = None

    def refresh(self, request) -> None:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        self.token = self.tokens.pop(0)
        self.expiry = (self.clock() + timedelta(hours=1)).replace(tzinfo=None)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# -- the token --------------------------------------------------------------------------------


def test_a_token_is_fetched_once_and_again_only_near_its_expiry():
    clock = Clock(NOW)
    credentials = StandInCredentials(["tok-1", "tok-2"], clock)
    password = IamTokenPassword(credentials, request="req", clock=clock)
    assert [password(), password()] == ["tok-1", "tok-1"] and password.refreshes == 1
    clock.now = NOW + timedelta(hours=1) - REFRESH_MARGIN - timedelta(seconds=1)
    assert password() == "tok-1"  # still more than the margin left
    clock.now += timedelta(seconds=2)
    assert password() == "tok-2" and password.refreshes == 2 and credentials.requests == ["req", "req"]


def test_credentials_without_an_expiry_are_refreshed_only_when_they_have_no_token():
    credentials = StandInCredentials(["tok-1"], Clock(NOW))
    credentials.refresh(None)
    credentials.expiry = None
    password = IamTokenPassword(credentials, request="req", clock=Clock(NOW + timedelta(days=2)))
    assert password() == "tok-1" and password.refreshes == 0


def test_a_failed_refresh_is_a_store_outage_that_says_why_and_is_logged(caplog):
    credentials = StandInCredentials([], Clock(NOW))
    credentials.fail = RuntimeError("metadata server unreachable")
    password = IamTokenPassword(credentials, request="req", clock=Clock(NOW))
    with caplog.at_level(logging.WARNING, logger="storage.postgres_iam"), pytest.raises(StoreUnavailable, match=r"no access token for the service account \(RuntimeError: metadata server unreachable\)"):
        password()
    assert [r.json_fields["action"] for r in caplog.records] == ["postgres_iam_token_failed"]


def test_without_credentials_google_auth_default_is_asked_for_the_sqlservice_login_scope(monkeypatch):
    import google.auth

    asked: list[list[str]] = []
    credentials = StandInCredentials(["tok-1"], Clock(NOW))

    def default(scopes):
        asked.append(scopes)
        return credentials, "project"

    monkeypatch.setattr(google.auth, "default", default)
    password = IamTokenPassword(request="req", clock=Clock(NOW))
    assert password() == "tok-1" and password() == "tok-1" and asked == [[SCOPE]]


# -- the settings -------------------------------------------------------------------------------


BASE = {"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "postgres", "SCHEDULER_POSTGRES_IAM_AUTH": "true"}


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://svc%40p.iam:secret@/crontick?host=/cloudsql/p:r:i", "must carry no password with SCHEDULER_POSTGRES_IAM_AUTH=true"),
        ("postgresql://svc%40p.iam@/crontick?host=/cloudsql/p:r:i&password=secret", "must carry no password"),
        ("postgresql:///crontick?host=/cloudsql/p:r:i", "must name the IAM database user"),
    ],
)
def test_iam_login_refuses_a_url_with_a_password_or_without_a_user(dsn, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(BASE | {"SCHEDULER_POSTGRES_DSN": dsn})


def test_the_setting_gives_the_store_a_token_provider_and_asks_nothing_at_start():
    settings = Settings.from_env(BASE | {"SCHEDULER_POSTGRES_DSN": "postgresql://svc%40p.iam@/crontick?host=/cloudsql/p:r:i"})
    store = PostgresStore.from_settings(settings)
    assert isinstance(store.password, IamTokenPassword) and store.password.refreshes == 0
    assert PostgresStore.from_settings(Settings.from_env(BASE | {"SCHEDULER_POSTGRES_IAM_AUTH": "false", "SCHEDULER_POSTGRES_DSN": "postgresql://u:p@h/db"})).password is None


# -- the login, on the real server ---------------------------------------------------------------------


@pytest.fixture
def iam_role(postgres_server):
    """A role named like a Cloud SQL IAM user, owning a fresh database, that the server lets
    in over TCP only with its password (scram-sha-256; every other role keeps trust)."""
    import psycopg

    server = postgres_server.server
    role = f"svc-{uuid.uuid4().hex[:8]}@project.iam"
    database = f"crontick_iam_{uuid.uuid4().hex[:8]}"
    hba = server.data / "pg_hba.conf"
    before = hba.read_text()
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'tok-1'")
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
        hba.write_text(f'host all "{role}" 127.0.0.1/32 scram-sha-256\n' + before)
        conn.execute("SELECT pg_reload_conf()")
    dsn = f"postgresql://{quote(role, safe='')}@127.0.0.1:{server.port}/{database}"
    try:
        yield role, dsn
    finally:
        hba.write_text(before)
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.postgres
def test_the_store_logs_in_with_the_token_and_a_new_connection_gets_a_fresh_one(iam_role, postgres_server):
    import psycopg

    role, dsn = iam_role
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(dsn, connect_timeout=5).close()  # no password, no login: the role really needs one
    clock = Clock(datetime.now(timezone.utc))
    credentials = StandInCredentials(["tok-1", "tok-2", "tok-wrong"], clock)
    password = IamTokenPassword(credentials, request="req", clock=clock)
    store = PostgresStore(dsn, pool_size=1, migrate_at_start=True, password=password)
    try:
        store.open()  # migrations applied as the IAM role
        store.add_job(make_job("iam-1"))
        assert store.get_job("iam-1").id == "iam-1" and password.refreshes == 1
    finally:
        store.close()
    # An hour later the server wants the next token (Cloud SQL checks each at login only).
    with psycopg.connect(postgres_server.server.dsn(), autocommit=True) as conn:
        conn.execute(f"ALTER ROLE \"{role}\" PASSWORD 'tok-2'")
    clock.now += timedelta(hours=1)
    again = PostgresStore(dsn, pool_size=1, migrate_at_start=False, password=password)
    try:
        again.open()
        assert again.get_job("iam-1").id == "iam-1" and password.refreshes == 2
    finally:
        again.close()
    # A token the server refuses is an outage (503) naming the pool's wait, never a crash.
    clock.now += timedelta(hours=1)
    refused = PostgresStore(dsn, pool_size=1, connect_timeout=1.0, migrate_at_start=False, password=password)
    try:
        with pytest.raises(StoreUnavailable, match="no connection within 1 s"):
            refused.open()
    finally:
        refused.close()
