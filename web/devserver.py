"""`make run`: gunicorn serving crontick, plus a local ticker standing in for Cloud Scheduler.

gunicorn binds ``HOST:PORT`` (default ``127.0.0.1:8080``): loopback, because ``make
run`` disables auth. ``HOST=0.0.0.0`` (or any non-loopback address) serves the network,
and with ``AUTH_MODE=disabled`` that start is announced by a WARNING
(``action: auth_disabled_on_network``, see web/exposure.py) in the log and on stderr.

The ticker POSTs to the service's own ``/cron/tick`` every
``SCHEDULER_LOCAL_TICK_SECONDS`` (default 60), so jobs run with no cloud at all.
A ``log`` heartbeat job is added once (idempotently) so that a fresh checkout
shows jobs running; set ``CRONTICK_DEMO_JOB=false`` to skip it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from scheduler.settings import Settings
from web.exposure import format_address, warn_if_exposed
from web.logs import configure_logging

log = logging.getLogger("crontick.devserver")


def _post_tick(url: str) -> None:
    request = urllib.request.Request(url, data=b"", method="POST", headers={"X-Crontick-Source": "manual"})
    try:
        with urllib.request.urlopen(request, timeout=200) as response:
            body = json.loads(response.read())
            log.info("local tick", extra={"json_fields": {"status": response.status, "jobs_executed": body.get("jobs_executed")}})
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("local tick failed", extra={"json_fields": {"error": str(exc)}})


def _wait_healthy(base: str, server: subprocess.Popen, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    return False


def _add_demo_job() -> None:
    from main import create_app

    app = create_app()
    service = app.extensions["crontick"].service
    job, created = service.create(
        {"job_type": "log", "cron": "* * * * *", "payload": {"message": "crontick heartbeat"}, "idempotency_key": "local-demo-heartbeat"},
        created_by="make run",
    )
    log.info("demo job", extra={"json_fields": {"job_id": job.id, "created": created, "cron": job.cron}})


def _local_url(host: str, port: int) -> str:
    """Where this process reaches the server: a wildcard bind is reached on loopback."""
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{format_address(connect, port)}"


def main() -> int:
    settings = Settings.from_env(os.environ)  # fail fast on a bad setting, before starting anything
    configure_logging(settings)
    port = int(os.environ.get("PORT", "8080"))
    bind = format_address(settings.host, port)
    base = _local_url(settings.host, port)
    warn_if_exposed(settings, [bind])
    if os.environ.get("CRONTICK_DEMO_JOB", "true").lower() not in ("0", "false", "no"):
        _add_demo_job()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", "1", "--threads", "8", "--timeout", "0", "main:app"],
    )
    stop = threading.Event()

    def _stop(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if not _wait_healthy(base, server):
            log.error("gunicorn did not become healthy")
            return 1
        log.info("crontick serving", extra={"json_fields": {"url": base, "bind": bind, "auth_mode": settings.auth_mode, "tick_every_seconds": settings.local_tick_seconds}})
        while not stop.is_set() and server.poll() is None:
            _post_tick(f"{base}/cron/tick")
            stop.wait(settings.local_tick_seconds)
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    return server.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
