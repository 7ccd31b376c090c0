"""A real PostgreSQL server (Debian's ``postgresql-15``) for the test session and the benchmark.

:class:`PostgresServer` runs ``initdb`` in a temporary folder and starts ``postgres``
on a free loopback port (its unix socket in the same folder). PostgreSQL refuses to
run as root, so when this process is root the server runs as the unprivileged
``postgres`` system user (``runuser -u postgres --``; the user is created with
``useradd --system`` when missing) and the folder is chowned to it. The cluster has
one superuser, ``crontick``, with ``trust`` authentication on loopback only.

``stop()``/``start()`` take the server down and bring it back on the *same* port with
its data (the outage drill); ``stop(immediate=True)`` is a crash-like shutdown.
``create_database(name)`` makes a database and returns its DSN; ``truncate(dsn)``
empties crontick's tables between tests.

The ``postgres_server`` session fixture starts one for the whole session (lazily:
only when a Postgres test asks for it) and stops it at the end. Without the binaries
(``/usr/lib/postgresql/15/bin``, or ``PG_BIN``) it skips the test with a one-line
reason, unless ``REQUIRE_POSTGRES=1``, when it fails instead (CI).

Runnable on its own for manual work and the benchmark::

    python -m tests.support.postgres_server   # prints the DSN; Ctrl-C stops it
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
SUPERUSER = "crontick"
SERVER_USER = "postgres"
START_TIMEOUT = 60.0
TABLES = ("crontick_jobs", "crontick_executions", "crontick_ticks", "crontick_tick_occurrences")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are not installed: no server can be started here."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_dir() -> Path:
    """The folder holding ``initdb`` and ``postgres``; raises PostgresUnavailable."""
    candidates = [os.environ.get("PG_BIN"), DEFAULT_BIN]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    raise PostgresUnavailable(f"PostgreSQL 15 unavailable: {DEFAULT_BIN}/initdb not found (apt-get install postgresql-15, or set PG_BIN)")


def _server_user() -> str | None:
    """The user the server runs as: None (this one) unless we are root, then ``postgres``
    (created as a system user if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER], check=True, capture_output=True)
    return SERVER_USER


def _as_server_user(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, served on a fixed loopback port."""

    def __init__(self, *, port: int | None = None, durable: bool = False, root: str | os.PathLike[str] | None = None) -> None:
        self.bin = bin_dir()
        self.port = port or free_port()
        self.durable = durable  # fsync on (benchmark); off for tests, where only processes are killed
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="crontick-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.user = _server_user()
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialised = False

    # -- addresses ------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------
    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, self.user)
            shutil.chown(self.socket_dir, self.user)
        if not (self.data / "PG_VERSION").exists():
            result = subprocess.run(
                _as_server_user(self.user, [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        self._initialised = True

    def start(self, timeout: float = START_TIMEOUT) -> PostgresServer:
        if self.running:
            return self
        if not self._initialised:
            self._init()
        settings = [
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "max_connections=200", "-c", "shared_buffers=128MB",
        ]
        if not self.durable:
            # No fsync: a killed server loses nothing (the OS keeps its writes), only a machine crash would.
            # synchronous_commit stays on, so a commit is in the WAL before it is acknowledged.
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        argv = _as_server_user(self.user, [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), *settings])
        log = open(self.log_path, "ab")
        try:
            # A new session, so that stop() can signal runuser and the server as one group.
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._proc.returncode}; see {self.log_path}: {self.log_tail()}")
            if self.answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections on 127.0.0.1:{self.port} within {timeout:g} s; see {self.log_path}")

    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, *, immediate: bool = False, timeout: float = 30.0) -> None:
        """Stop the server: a fast shutdown (SIGINT), or with ``immediate`` a crash-like one
        (SIGQUIT: no checkpoint; recovery at the next start). The data stays."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGQUIT if immediate else signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        # The postmaster is gone once its pid file is; the port is free again for a restart.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.data / "postmaster.pid").exists():
            time.sleep(0.05)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------
    def create_database(self, name: str | None = None) -> str:
        """Create database ``name`` (default: a fresh unique name); return its DSN."""
        import psycopg

        name = name or f"crontick_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @staticmethod
    def truncate(dsn: str) -> None:
        """Empty crontick's tables (the schema and ``schema_migrations`` stay)."""
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            present = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename = ANY(%s)", (list(TABLES),))]
            if present:
                conn.execute(f"TRUNCATE {', '.join(present)} RESTART IDENTITY")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


class SessionPostgres:
    """What the session fixture hands out: the server and the session's test database."""

    def __init__(self, server: PostgresServer, dsn: str) -> None:
        self.server = server
        self.dsn = dsn

    def clear(self) -> None:
        PostgresServer.truncate(self.dsn)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[SessionPostgres]:
    """The session's PostgreSQL 15 server with one database (migrated once), stopped at the end."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{exc} (REQUIRE_POSTGRES=1)")
        pytest.skip(str(exc))
    try:
        server.start()
        dsn = server.create_database("crontick_test")
        from storage.postgres import apply_migrations

        apply_migrations(dsn)
        yield SessionPostgres(server, dsn)
    finally:
        server.destroy()


if __name__ == "__main__":
    with PostgresServer() as pg:
        print(f"SCHEDULER_POSTGRES_DSN={pg.dsn()}  (log: {pg.log_path}; Ctrl-C stops it)", flush=True)
        try:
            while pg.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
