"""``SCHEDULER_DISPATCH=cloud_tasks make run``: the devserver runs jobs through the real Cloud Tasks emulator.

The devserver is started for real (``python -m web.devserver``, which starts the
emulator from ``.venv-tasks`` and gunicorn itself) with a 1 s local tick. The demo
job (``idempotency_key: local-demo-heartbeat``) is planted due now, so the first tick
dispatches it: the tick's log line says one run dispatched and none executed, and the
execution record (``GET /api/v1/executions``) has ``source: cloud_tasks`` and the
task headers the emulator sent to ``/tasks/run``. After SIGTERM no emulator process
is left; neither after a SIGKILL of the devserver (the launcher watches its parent).
Without ``.venv-tasks`` the emulator tests skip, unless ``REQUIRE_TASKS_EMULATOR=1``.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from scheduler.clock import utc_now
from storage.jsonfile import JsonFileStore
from tests.support.jobs import make_job
from tests.test_devserver import Devserver
from web.local_tasks import QUEUE, VENV, TasksEmulatorUnavailable, emulator_python

DEMO_KEY = "local-demo-heartbeat"


@pytest.fixture
def tasks_venv() -> Path:
    try:
        emulator_python(VENV)
    except TasksEmulatorUnavailable as exc:
        if os.environ.get("REQUIRE_TASKS_EMULATOR") == "1":
            pytest.fail(f"{exc} (REQUIRE_TASKS_EMULATOR=1)")
        pytest.skip(str(exc))
    return VENV


def plant_due_demo_job(tmp_path: Path) -> str:
    """The devserver's demo job, due a second ago (its own would wait for the next minute)."""
    store = JsonFileStore(tmp_path / "data" / "jobs.json")
    store.open()
    now = utc_now()
    job = make_job("demo-heartbeat", now=now, schedule_at=None, cron="* * * * *", idempotency_key=DEMO_KEY, payload={"message": "crontick heartbeat"})
    store.add_job(job)
    store.close()
    return job.id


def emulator_processes(port: int) -> list[int]:
    """Pids of live processes running the emulator launcher on ``port`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = next((line for line in (entry / "status").read_text().splitlines() if line.startswith("State:")), "")
        except OSError:
            continue
        if "zombie" in state:
            continue
        if f"--port={port}".encode() in argv and any(b"gcloud_tasks_emulator" in arg for arg in argv):
            pids.append(int(entry.name))
    return pids


def wait_for(predicate, timeout: float, what: str, server: Devserver):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        assert server.proc.poll() is None, f"devserver exited {server.proc.returncode} while waiting for {what}: {server.stderr()[-2000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout:g} s; devserver stdout tail: {server.stdout_path.read_text(errors='replace')[-3000:]}")


def executions(base: str, job_id: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/executions?job_id={job_id}", timeout=5) as response:
        return json.loads(response.read())["executions"]


def start(tmp_path: Path, **extra: str) -> tuple[Devserver, dict, int]:
    settings = {"AUTH_MODE": "disabled", "SCHEDULER_DISPATCH": "cloud_tasks", "SCHEDULER_LOCAL_TICK_SECONDS": "1", "CRONTICK_DEMO_JOB": "true", "LOG_FORMAT": "json"}
    server = Devserver(tmp_path, **(settings | extra))
    serving = server.wait_serving()
    host = serving["tasks_emulator"]
    port = int(host.rpartition(":")[2])
    return server, serving, port


def test_make_run_dispatches_the_demo_job_through_the_emulator_and_stops_it(tmp_path, tasks_venv):
    job_id = plant_due_demo_job(tmp_path)
    server, serving, emulator_port = start(tmp_path)
    try:
        base = serving["url"]
        assert serving["dispatch"] == "cloud_tasks"
        assert serving["queue"] == QUEUE
        assert serving["target_url"] == f"http://127.0.0.1:{server.port}/tasks/run"
        assert serving["tasks_emulator"] == f"127.0.0.1:{emulator_port}"
        [emulator_pid] = emulator_processes(emulator_port)
        started = [r for r in server.records() if r.get("action") == "tasks_emulator_started"]
        assert [r["pid"] for r in started] == [emulator_pid]

        rows = wait_for(lambda: [e for e in executions(base, job_id) if e["outcome"] == "succeeded"], 30, "succeeded execution of the demo job", server)
        first = rows[0]
        assert first["source"] == "cloud_tasks"
        assert first["task"]["name"].startswith("run-") and first["task"]["retry_count"] == 0 and first["task"]["execution_count"] == 0
        records = server.records()
        demo = [r for r in records if r.get("message") == "demo job"]
        assert [(r["job_id"], r["created"]) for r in demo] == [(job_id, False)]  # the planted job, found by its key
        ticks = [r for r in records if r.get("action") == "tick_completed" and r.get("jobs_dispatched")]
        assert ticks and ticks[0]["jobs_dispatched"] == 1 and ticks[0]["jobs_executed"] == 0 and ticks[0]["jobs_dispatch_failed"] == 0
        settled = [r for r in records if r.get("action") == "job_settled" and r.get("job_id") == job_id]
        assert settled and settled[0]["tick_id"] == ticks[0]["tick_id"] == first["tick_id"] and settled[0]["outcome"] == "succeeded"
        handler_lines = [r for r in records if r.get("message") == "crontick heartbeat" or (r.get("payload") or {}).get("message") == "crontick heartbeat"]
        assert handler_lines, "the log handler's line for the demo job"
    finally:
        code = server.stop()
    assert code == 0, server.stderr()[-2000:]
    assert emulator_processes(emulator_port) == []
    stopped = [r for r in server.records() if r.get("action") == "tasks_emulator_stopped"]
    assert [r["pid"] for r in stopped] == [emulator_pid]


def test_a_killed_devserver_takes_the_emulator_with_it(tmp_path, tasks_venv):
    server, serving, emulator_port = start(tmp_path, CRONTICK_DEMO_JOB="false")
    [emulator_pid] = emulator_processes(emulator_port)
    gunicorn_pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == server.proc.pid and b"gunicorn" in _cmdline(p)]
    try:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        end = time.monotonic() + 10
        while emulator_processes(emulator_port) and time.monotonic() < end:
            time.sleep(0.1)
        assert emulator_processes(emulator_port) == [], f"emulator {emulator_pid} outlived its devserver"
    finally:
        for pid in gunicorn_pids:  # the devserver could not stop its gunicorn: we do
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in emulator_processes(emulator_port):
            os.killpg(pid, signal.SIGKILL)
    assert len(gunicorn_pids) == 1


def test_cloud_tasks_make_run_refuses_auth_on_naming_auth_mode(tmp_path):
    server = Devserver(tmp_path, AUTH_MODE="oidc", SCHEDULER_DISPATCH="cloud_tasks", OIDC_AUDIENCE="https://crontick.example", OIDC_ALLOWED_EMAILS="a@example.com")
    code = server.proc.wait(60)
    assert code == 1
    assert "ConfigError: AUTH_MODE=oidc: SCHEDULER_DISPATCH=cloud_tasks with make run needs AUTH_MODE=disabled" in server.stderr()
    assert not any(r.get("action") == "tasks_emulator_started" for r in server.records())


def _parent(proc: Path) -> int | None:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
