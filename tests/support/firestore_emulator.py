"""The official Firestore emulator, started on a free loopback port for the test session.

:class:`FirestoreEmulator` runs the emulator jar directly with Java (found under
the Cloud SDK: ``gcloud info --format='value(installation.sdk_root)'``, or
``/usr/lib/google-cloud-sdk``), falling back to ``gcloud emulators firestore
start``. Its output goes to a log file; it is ready when ``GET /`` answers
``Ok``. ``clear()`` deletes every document of the project between tests;
``stop()``/``start()`` take it down and bring it back on the *same* port (the
outage tests), so clients that know ``FIRESTORE_EMULATOR_HOST`` reconnect;
``stop(keep_data=True)`` exports the documents first and the next ``start()``
imports them (the emulator keeps data in memory only).

The ``firestore_emulator`` session fixture starts one for the whole session
(lazily: only when a Firestore test asks for it), sets
``FIRESTORE_EMULATOR_HOST``, and stops it at the end. Without Java or the jar
it skips the test with a one-line reason, unless ``REQUIRE_FIRESTORE_EMULATOR=1``,
when it fails instead.

Runnable on its own for manual work and the benchmark::

    python -m tests.support.firestore_emulator   # prints FIRESTORE_EMULATOR_HOST=..., Ctrl-C stops it

No orphaned Java process: the emulator runs in a session (process group) of its own,
which ``stop()`` signals whole (gcloud, when it is the launcher, starts java as a child);
the process started is told by the kernel to stop when its parent dies
(``PR_SET_PDEATHSIG``), so a test run or a runner killed with SIGKILL takes it down too
(through gcloud, a shell wrapper passes that on to the whole group); and the runner
above stops it on SIGTERM and SIGHUP as on Ctrl-C.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_SDK_ROOT = "/usr/lib/google-cloud-sdk"
JAR_RELATIVE = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
PROJECT = "demo-crontick-test"
START_TIMEOUT = 60.0


class EmulatorUnavailable(RuntimeError):
    """Java, the jar and gcloud are all missing: the emulator cannot be started here."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sdk_root() -> str | None:
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True, text=True, timeout=30, check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out
    return DEFAULT_SDK_ROOT if Path(DEFAULT_SDK_ROOT).is_dir() else None


def emulator_command(port: int) -> list[str]:
    """The command that starts the emulator on 127.0.0.1:``port``; raises EmulatorUnavailable."""
    java = shutil.which("java")
    candidates = [Path(DEFAULT_SDK_ROOT) / JAR_RELATIVE]
    root = _sdk_root()
    if root:
        candidates.insert(0, Path(root) / JAR_RELATIVE)
    jar = next((c for c in candidates if c.is_file()), None)
    if java and jar:
        return [java, "-cp", str(jar), MAIN_CLASS, "start", "--host=127.0.0.1", f"--port={port}"]
    gcloud = shutil.which("gcloud")
    if gcloud and java:
        # gcloud starts java as its child and does not pass a SIGTERM on: the shell sends it
        # to the whole group (gcloud and java) when it gets one (stop(), or its parent died).
        return ["bash", "-c", 'trap "trap - TERM; kill -TERM 0" TERM; "$@" & wait', "firestore-emulator", gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"]
    missing = "java" if not java else f"the emulator jar ({candidates[-1]}) and gcloud"
    raise EmulatorUnavailable(f"Firestore emulator unavailable: {missing} not found")


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _stop_with_parent() -> None:
    """Run in the child before exec: SIGTERM when the parent dies (Linux), so that a killed
    test run leaves no emulator behind. Tied to the thread that started it: start() from
    the main thread (the fixture, the benchmark, the runner below)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class FirestoreEmulator:
    """One emulator process on a fixed loopback port (chosen free at construction)."""

    def __init__(self, *, port: int | None = None, project: str = PROJECT, log_path: str | os.PathLike[str] | None = None) -> None:
        self.port = port or free_port()
        self.project = project
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"firestore-emulator-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._import: Path | None = None  # an export to load at the next start (stop(keep_data=True))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> FirestoreEmulator:
        if self.running:
            return self
        command = emulator_command(self.port)
        if self._import is not None:
            command.append(f"--import-data={self._import}")
            self._import = None
        with open(self.log_path, "ab") as log:
            # A new session, so that stop() can end the whole group (gcloud starts java as a child).
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_stop_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the Firestore emulator exited with {self._proc.returncode}; see {self.log_path}")
            if self.answers():
                self._warm_up(deadline)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the Firestore emulator did not answer on {self.host} within {timeout:g} s; see {self.log_path}")

    def _warm_up(self, deadline: float) -> None:
        """The emulator answers ``GET /`` before it serves documents, and its first
        document request takes seconds; make that request here, not in a test."""
        url = f"http://{self.host}/v1/projects/{self.project}/databases/(default)/documents/warmup/none"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    response.read()
                return
            except urllib.error.HTTPError:
                return  # 404: it is serving documents
            except OSError:
                time.sleep(0.1)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as response:
                return response.read().strip() == b"Ok"
        except (OSError, urllib.error.URLError):
            return False

    def export(self, directory: str | os.PathLike[str]) -> Path:
        """Export every document of the project to ``directory``; returns the metadata file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"database": f"projects/{self.project}/databases/(default)", "export_directory": str(directory)}).encode()
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{self.project}:export", data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        found = sorted(directory.glob("*/*.overall_export_metadata"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise RuntimeError(f"the emulator exported nothing to {directory}")
        return found[-1]

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the emulator. With ``keep_data`` its documents are exported first and
        loaded again by the next :meth:`start` (the emulator itself keeps nothing)."""
        if keep_data and self.running:
            self._import = self.export(tempfile.mkdtemp(prefix="firestore-export-"))
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we created in start()
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        # The port must be free again before a restart binds it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.answers():
            time.sleep(0.1)

    def restart(self, *, keep_data: bool = True) -> FirestoreEmulator:
        self.stop(keep_data=keep_data)
        return self.start()

    def clear(self, project: str | None = None, database: str = "(default)") -> None:
        """Delete every document of ``project`` (default: this emulator's project)."""
        url = f"http://{self.host}/emulator/v1/projects/{project or self.project}/databases/{database}/documents"
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def __enter__(self) -> FirestoreEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    """The session's emulator, with FIRESTORE_EMULATOR_HOST set while it lives."""
    emulator = FirestoreEmulator()
    try:
        emulator.start()
    except EmulatorUnavailable as exc:
        if os.environ.get("REQUIRE_FIRESTORE_EMULATOR") == "1":
            pytest.fail(f"{exc} (REQUIRE_FIRESTORE_EMULATOR=1)")
        pytest.skip(str(exc))
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


def _exit_on_signal(signum: int, frame: object) -> None:  # noqa: ARG001
    raise SystemExit(128 + signum)  # unwinds through the with-block below, which stops the emulator


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    with FirestoreEmulator() as emu:
        print(f"FIRESTORE_EMULATOR_HOST={emu.host}  (log: {emu.log_path}; Ctrl-C stops it)", flush=True)
        try:
            while emu.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
