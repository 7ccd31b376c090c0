"""`make run`: gunicorn serving crontick, plus a local ticker standing in for Cloud Scheduler.

gunicorn binds ``HOST:PORT`` (default ``127.0.0.1:8080``): loopback, because ``make
run`` disables auth. ``HOST=0.0.0.0`` (or any non-loopback address) serves the network,
and with ``AUTH_MODE=disabled`` that start is announced by a WARNING
(``action: auth_disabled_on_network``, see web/exposure.py) in the log and on stderr,
by the repository's gunicorn.conf.py hook, which every gunicorn start runs.

The ticker POSTs to the service's own ``/cron/tick`` every
``SCHEDULER_LOCAL_TICK_SECONDS`` (default 60), so jobs run with no cloud at all.
A ``log`` heartbeat job is added once (idempotently) so that a fresh checkout
shows jobs running; set ``CRONTICK_DEMO_JOB=false`` to skip it.

``SCHEDULER_DISPATCH=cloud_tasks`` runs jobs through a real Cloud Tasks server, the
local emulator (web/local_tasks.py, from ``.venv-tasks``, which ``make run`` creates
in this mode): before gunicorn starts, the emulator is started on a free loopback
port and the queue created, and gunicorn gets ``CLOUD_TASKS_EMULATOR_HOST`` (that
port), ``CLOUD_TASKS_QUEUE`` (kept if set, else :data:`web.local_tasks.QUEUE`) and
``CLOUD_TASKS_TARGET_URL`` (``http://127.0.0.1:$PORT/tasks/run``, the address this
process reaches the server on; a value set before is replaced, and the log says so).
So each tick creates one task per due run and the emulator POSTs it to this
server's ``/tasks/run``. The emulator sends no OIDC token, so this mode needs
``AUTH_MODE=disabled`` (refused otherwise, naming AUTH_MODE). On SIGINT (Ctrl-C) or
SIGTERM gunicorn is stopped, then the emulator (its process group); a devserver
killed outright takes the emulator with it too (the launcher watches its parent).
Tasks live in the emulator's memory only: a run dispatched but not delivered before
the stop stays leased until its lease runs out, and a tick of the next ``make run``
recovers it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, MutableMapping

from scheduler.errors import ConfigError
from scheduler.settings import Settings, parse_bool
from web.exposure import format_address
from web.local_tasks import QUEUE as LOCAL_QUEUE
from web.local_tasks import TasksEmulator, TasksEmulatorUnavailable
from web.logs import configure_logging

DEMO_JOB_SETTING = "CRONTICK_DEMO_JOB"
GUNICORN_CONF = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"  # the exposure warning hook
log = logging.getLogger("crontick.devserver")


def _post_tick(url: str) -> None:
    request = urllib.request.Request(url, data=b"", method="POST", headers={"X-Crontick-Source": "manual"})
    try:
        with urllib.request.urlopen(request, timeout=200) as response:
            body = json.loads(response.read())
            log.info("local tick", extra={"json_fields": {"status": response.status, "jobs_executed": body.get("jobs_executed"), "jobs_dispatched": body.get("jobs_dispatched")}})
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


def _prepare_local_tasks(environ: MutableMapping[str, str], port: int) -> tuple[TasksEmulator | None, dict[str, str]]:
    """With ``SCHEDULER_DISPATCH=cloud_tasks``: an emulator (not started yet: its port is
    chosen) and the CLOUD_TASKS_* settings pointing at it, written into ``environ`` for the
    settings check and for gunicorn. Returns it (None in inline mode) and the settings it
    replaced, by name, with their old values. ConfigError naming AUTH_MODE unless auth is off."""
    if environ.get("SCHEDULER_DISPATCH", "").strip().lower() != "cloud_tasks":
        return None, {}
    auth_mode = environ.get("AUTH_MODE", "").strip().lower()
    if auth_mode != "disabled":
        raise ConfigError(
            f"AUTH_MODE={auth_mode or '(unset)'}: SCHEDULER_DISPATCH=cloud_tasks with make run needs AUTH_MODE=disabled; "
            "the local Cloud Tasks emulator sends no OIDC token, so /tasks/run would refuse every task"
        )
    emulator = TasksEmulator()
    # HOST is checked by Settings.from_env right after this; a wildcard bind is reached on loopback.
    target = _local_url(environ.get("HOST", "").strip() or Settings().host, port) + "/tasks/run"
    wanted = {"CLOUD_TASKS_EMULATOR_HOST": emulator.host, "CLOUD_TASKS_TARGET_URL": target}
    replaced = {name: environ[name] for name, value in wanted.items() if environ.get(name, "").strip() not in ("", value)}
    environ.update(wanted)
    if not environ.get("CLOUD_TASKS_QUEUE", "").strip():
        environ["CLOUD_TASKS_QUEUE"] = LOCAL_QUEUE
    return emulator, replaced


def _start_local_tasks(emulator: TasksEmulator, settings: Settings, replaced: dict[str, str]) -> bool:
    """Start the emulator and create the queue; False (logged, naming the fix) if it cannot."""
    for name, old in replaced.items():
        log.warning("%s replaced for the local Cloud Tasks emulator", name, extra={"json_fields": {"action": "local_tasks_setting_replaced", "variable": name, "was": old, "now": os.environ[name]}})
    try:
        emulator.start()
        emulator.create_queue(settings.cloud_tasks_queue)
    except TasksEmulatorUnavailable as exc:
        log.error("%s; run `make tasks-venv`, or `SCHEDULER_DISPATCH=cloud_tasks make run`, which makes it", exc, extra={"json_fields": {"action": "tasks_emulator_unavailable", "venv": str(emulator.venv)}})
        return False
    except Exception as exc:  # the emulator exited, did not answer, or refused the queue
        log.error("The local Cloud Tasks emulator did not start: %s", exc, extra={"json_fields": {"action": "tasks_emulator_failed", "error": f"{type(exc).__name__}: {exc}", "log": str(emulator.log_path)}})
        return False
    return True


def demo_job_wanted(environ: Mapping[str, str]) -> bool:
    """``CRONTICK_DEMO_JOB``, read as every boolean setting is (scheduler.settings.parse_bool:
    1/true/yes/on, 0/false/no/off); unset or empty: on. Anything else raises ConfigError
    naming the variable, before anything starts."""
    value = environ.get(DEMO_JOB_SETTING, "").strip()
    if not value:
        return True
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise ConfigError(f"{DEMO_JOB_SETTING}={value!r}: {exc} (1/true/yes/on or 0/false/no/off)") from exc


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    emulator, replaced = _prepare_local_tasks(os.environ, port)
    settings = Settings.from_env(os.environ)  # fail fast on a bad setting, before starting anything
    demo_job = demo_job_wanted(os.environ)
    configure_logging(settings)
    bind = format_address(settings.host, port)
    base = _local_url(settings.host, port)
    stop = threading.Event()

    def _stop(signum, frame):  # noqa: ARG001
        stop.set()

    # Before the emulator starts: a Ctrl-C from here on stops it in the finally below.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server: subprocess.Popen[bytes] | None = None
    try:
        if emulator is not None and not _start_local_tasks(emulator, settings, replaced):
            return 1
        if demo_job:
            _add_demo_job()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), "--bind", bind, "--workers", "1", "--threads", "8", "--timeout", "0", "main:app"],
        )
        if not _wait_healthy(base, server):
            log.error("gunicorn did not become healthy")
            return 1
        tasks = {"tasks_emulator": emulator.host, "queue": settings.cloud_tasks_queue, "target_url": settings.cloud_tasks_target_url} if emulator is not None else {}
        log.info("crontick serving", extra={"json_fields": {"url": base, "bind": bind, "auth_mode": settings.auth_mode, "dispatch": settings.dispatch, **tasks, "tick_every_seconds": settings.local_tick_seconds}})
        while not stop.is_set() and server.poll() is None:
            _post_tick(f"{base}/cron/tick")
            stop.wait(settings.local_tick_seconds)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        if emulator is not None:
            emulator.stop()
    return (server.returncode or 0) if server is not None else 0


if __name__ == "__main__":
    sys.exit(main())
