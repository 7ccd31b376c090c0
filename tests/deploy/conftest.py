"""Run deploy.sh / setup-scheduler.sh against the stand-in gcloud in tests/deploy/bin.

``Cloud`` owns one test's fake-gcloud state file and call log, runs a script
with a clean environment (only what the test gives it, PATH with the fake
first, and an ENV_FILE of the test's own so a developer's .env never leaks in),
and returns the calls it made as argv lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_BIN = Path(__file__).resolve().parent / "bin"
FIXTURES = Path(__file__).resolve().parent

PROJECT = "proj-1"
REGION = "us-central1"
SERVICE = "crontick"
SERVICE_URL = "https://crontick-abc-uc.a.run.app"
INVOKER = f"crontick-invoker@{PROJECT}.iam.gserviceaccount.com"
RUNTIME_SA = f"crontick-run@{PROJECT}.iam.gserviceaccount.com"

BASE_ENV = {
    "PROJECT_ID": PROJECT,
    "REGION": REGION,
    "SERVICE_NAME": SERVICE,
}


@dataclass
class Cloud:
    tmp: Path
    state: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_path = self.tmp / "gcloud-state.json"
        self.log_path = self.tmp / "gcloud-calls.jsonl"
        self.env_file = self.tmp / "test.env"
        self.state.setdefault("project", PROJECT)
        self.state.setdefault("services", {SERVICE: {"url": SERVICE_URL, "revisions": ["crontick-00001-aaa"]}})
        self.save()

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=1))

    def load(self) -> dict:
        return json.loads(self.state_path.read_text())

    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def clear_calls(self) -> None:
        self.log_path.unlink(missing_ok=True)

    def run(self, script: str, *args: str, env: dict[str, str] | None = None, base: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {
            "PATH": f"{FAKE_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.tmp),
            "LANG": "C.UTF-8",
            "FAKE_GCLOUD_STATE": str(self.state_path),
            "FAKE_GCLOUD_LOG": str(self.log_path),
            "FAKE_GCLOUD_PYTHON": sys.executable,
            "ENV_FILE": str(self.env_file),
        }
        environ |= BASE_ENV if base is None else base
        environ |= env or {}
        environ = {k: v for k, v in environ.items() if v is not None}
        return subprocess.run(
            ["bash", str(ROOT / script), *args],
            cwd=self.tmp,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def cloud(tmp_path: Path) -> Cloud:
    return Cloud(tmp_path)


class _HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        server.requests.append((self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        status = server.status  # type: ignore[attr-defined]
        body = json.dumps({"status": "ok" if status == 200 else "broken"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class HealthServer:
    server: ThreadingHTTPServer

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.server.requests  # type: ignore[attr-defined]

    def answer(self, status: int) -> None:
        self.server.status = status  # type: ignore[attr-defined]


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    """A real HTTP server on loopback standing in for a tagged revision's URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    server.requests = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HealthServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
