"""A real Cloud Tasks server on a free loopback port, for ``make run`` and the tests: the PyPI ``gcloud-tasks-emulator``.

It is a gRPC Cloud Tasks API (CreateQueue, CreateTask, ...) that delivers each HTTP
task as a real request to the task's URL. It pins ``protobuf<5``, which
google-cloud-firestore cannot share, so it lives in its own virtualenv,
``.venv-tasks`` (``make tasks-venv``; ``make test``, and ``make run`` with
``SCHEDULER_DISPATCH=cloud_tasks``, make it), and crontick talks to it over gRPC from
its own venv (``CLOUD_TASKS_EMULATOR_HOST``).

What it is not (read in its source, gcloud_tasks_emulator/server.py, 0.6.2):

- it binds ``[::]:PORT`` (every interface) whatever host it is given; the launcher
  below rewrites that one address to ``127.0.0.1:PORT``, so it listens on loopback only;
- a task name created twice is two tasks, delivered twice (no ALREADY_EXISTS);
- it sends no OIDC token (``oidc_token`` is ignored) and ignores ``dispatch_deadline``
  (its request has no timeout at all);
- it delivers one task at a time per queue (one thread per queue, each request
  waited for before the next), every 0.1 s sweep; a 4xx or 5xx answer puts the task
  at the back of the queue and it is tried again on the next sweep, with no backoff,
  forever unless ``max_retries``;
- its gRPC server has 2 worker threads; an unknown queue answers FAILED_PRECONDITION
  (Google answers NOT_FOUND); tasks live in memory only (a stopped emulator forgets
  its tasks: their runs stay leased until their lease runs out, then a tick recovers them).

:class:`TasksEmulator` starts one (``start()``, ``stop()``, a context manager), waits
until its gRPC port answers, and creates queues with the real client (CreateQueue).
The launcher also ends the emulator when the process that started it is gone (its
parent pid changes), so a ``make run`` killed with SIGKILL leaves no emulator behind.
``web/devserver.py`` uses it for ``SCHEDULER_DISPATCH=cloud_tasks make run``;
``tests/support/tasks_emulator.py`` wraps it in the tests' session fixture.

Runnable on its own::

    .venv/bin/python -m web.local_tasks   # prints CLOUD_TASKS_EMULATOR_HOST and CLOUD_TASKS_QUEUE
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-tasks"
PROJECT = "demo-crontick"
LOCATION = "us-central1"
QUEUE = f"projects/{PROJECT}/locations/{LOCATION}/queues/crontick-runs"
START_TIMEOUT = 30.0

# Run by .venv-tasks/bin/python -c: the emulator's own CLI, with its gRPC server bound to
# loopback instead of [::] (it calls grpc.server(...).add_insecure_port("[::]:PORT")), and a
# watcher that ends the process once its parent is gone (SIGKILL of `make run` or of pytest).
LAUNCHER = """\
import os
import sys
import threading
import time

import grpc

_server = grpc.server


def _loopback_server(*args, **kwargs):
    server = _server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1", 1))
    return server


def _end_with_parent(parent):
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


grpc.server = _loopback_server
threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()
from gcloud_tasks_emulator.__main__ import main

sys.argv[0] = "gcloud-tasks-emulator"
main()
"""


class TasksEmulatorUnavailable(RuntimeError):
    """``.venv-tasks`` (with gcloud-tasks-emulator) is missing: the emulator cannot start here."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator_python(venv: Path = VENV) -> Path:
    """The interpreter of ``venv`` that can import gcloud_tasks_emulator; raises TasksEmulatorUnavailable."""
    python = venv / "bin" / "python"
    if not python.is_file() or not (venv / "bin" / "gcloud-tasks-emulator").is_file():
        raise TasksEmulatorUnavailable(f"Cloud Tasks emulator unavailable: {venv} has no gcloud-tasks-emulator (make tasks-venv)")
    return python


def emulator_command(port: int, *, max_retries: int = -1, venv: Path = VENV) -> list[str]:
    """The command that starts the emulator on 127.0.0.1:``port``."""
    return [str(emulator_python(venv)), "-c", LAUNCHER, "start", f"--port={port}", f"--max-retries={max_retries}"]


class TasksEmulator:
    """One emulator process on a fixed loopback port (chosen free at construction).

    ``max_retries``: how often a task answered 4xx/5xx is delivered again (-1: forever,
    the emulator's default). ``log_path``: the emulator's own output (default a file in
    the temporary directory named after the port).
    """

    def __init__(self, *, port: int | None = None, max_retries: int = -1, venv: Path = VENV, log_path: str | os.PathLike[str] | None = None) -> None:
        self.port = port or free_port()
        self.max_retries = max_retries
        self.venv = venv
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"tasks-emulator-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None
        self.queues: list[str] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The emulator process's id while it runs (also its process group's id)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return emulator_command(self.port, max_retries=self.max_retries, venv=self.venv)

    def start(self, timeout: float = START_TIMEOUT) -> TasksEmulator:
        """Start the process and wait until its gRPC API answers; TasksEmulatorUnavailable without
        the venv, RuntimeError (naming the log file) if it exits or does not answer in ``timeout``."""
        if self.running:
            return self
        command = self.command()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONWARNINGS"] = "ignore::FutureWarning"  # google.api_core's Python-version notices, twice per start
        with open(self.log_path, "ab") as out:
            # A new session, so that stop() ends the whole group, and a Ctrl-C at the terminal
            # reaches only our process, which then stops the emulator itself.
            self._proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the Cloud Tasks emulator exited with {self._proc.returncode}; see {self.log_path}")
            # A TCP connect first: a gRPC channel that met a closed port backs off for seconds.
            if self._port_open() and self.answers(timeout=max(0.05, deadline - time.monotonic())):
                # Queues live in its memory: a restart (the outage tests) brings back the ones we made.
                for queue in self.queues:
                    self._create_queue(queue)
                log.info("Cloud Tasks emulator started", extra={"json_fields": {"action": "tasks_emulator_started", "host": self.host, "pid": self._proc.pid, "log": str(self.log_path)}})
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the Cloud Tasks emulator did not answer on {self.host} within {timeout:g} s; see {self.log_path}")

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether a gRPC call gets an answer (ListQueues) within ``timeout``."""
        from google.api_core import exceptions

        try:
            self.client().list_queues(parent=f"projects/{PROJECT}/locations/{LOCATION}", retry=None, timeout=timeout)
            return True
        except exceptions.GoogleAPICallError:
            return False

    def client(self) -> Any:
        """A CloudTasksClient (crontick's google-cloud-tasks) over plain gRPC to this emulator."""
        if self._client is None:
            import grpc
            from google.cloud import tasks_v2
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            self._client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(self.host)))
        return self._client

    def _create_queue(self, name: str) -> None:
        parent, _, _ = name.rpartition("/queues/")
        self.client().create_queue(parent=parent, queue={"name": name}, timeout=10)

    def create_queue(self, name: str | None = None) -> str:
        """Create a queue (CreateQueue; default: a new name under this project) and return its full name."""
        name = name or f"projects/{PROJECT}/locations/{LOCATION}/queues/q-{uuid.uuid4().hex[:12]}"
        self._create_queue(name)
        if name not in self.queues:
            self.queues.append(name)
        return name

    def list_tasks(self, queue: str) -> list[Any]:
        """The tasks the emulator still holds in ``queue`` (not yet delivered, or to be retried)."""
        return list(self.client().list_tasks(parent=queue, timeout=10))

    def stop(self) -> None:
        """Kill the emulator's process group; its tasks and queues are gone (start() makes the queues again)."""
        if self._client is not None:  # its channel would back off from the closed port after a restart
            self._client.transport.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group start() created
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.info("Cloud Tasks emulator stopped", extra={"json_fields": {"action": "tasks_emulator_stopped", "host": self.host, "pid": proc.pid}})

    def __enter__(self) -> TasksEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _main() -> None:
    import click

    with TasksEmulator() as emu:
        emu.create_queue(QUEUE)
        click.echo(f"CLOUD_TASKS_EMULATOR_HOST={emu.host} CLOUD_TASKS_QUEUE={QUEUE}  (log: {emu.log_path}; Ctrl-C stops it)")
        try:
            while emu.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    _main()
