"""Real processes for end-to-end tests: gunicorn serving crontick, and the flask CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(**settings: str) -> dict[str, str]:
    """The test process's environment minus crontick settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEDULER_", "AUTH_", "OIDC_", "FIRESTORE_", "ENVIRONMENT"))}
    env.update(PYTHONPATH=str(REPO), ENVIRONMENT="test", AUTH_MODE="disabled", LOG_LEVEL="INFO")
    env.update(settings)
    return env


class Gunicorn:
    """``gunicorn main:app`` on a free loopback port; stdout/stderr go to ``log_path``.

    ``command`` runs another gunicorn command line instead (the Dockerfile's CMD), which
    binds the port named by ``env["PORT"]``.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        workers: int = 2,
        threads: int = 4,
        extra_args: tuple[str, ...] = (),
        command: list[str] | None = None,
    ) -> None:
        self.port = int(env["PORT"]) if command else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        argv = command or ["gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(threads), "--timeout", "0", *extra_args, "main:app"]
        self.proc = subprocess.Popen([sys.executable, "-m", *argv], env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise RuntimeError("gunicorn did not become healthy")

    def post(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method="POST", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "main", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def make_dry_run(*targets: str) -> subprocess.CompletedProcess:
    """``make --dry-run TARGET...`` in the repository, as a fresh shell would run it: not as
    a sub-make of ``make test`` (whose MAKEFLAGS/MAKELEVEL would add "Entering directory" lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(["make", "--no-print-directory", "--dry-run", *targets], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
