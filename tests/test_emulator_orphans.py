"""Stopping a local Firestore emulator leaves no Java process behind (tests/support/firestore_emulator.py).

Real emulators and real signals: ``stop()`` ends the emulator's whole process group;
the runner (``python -m tests.support.firestore_emulator``) stops it on SIGTERM; and a
runner killed with SIGKILL, which can clean nothing up, takes it down too (the kernel's
parent-death signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.firestore_emulator import EmulatorUnavailable, FirestoreEmulator, emulator_command
from tests.support.processes import REPO

pytestmark = pytest.mark.firestore


@pytest.fixture(autouse=True)
def _needs_emulator():
    try:
        emulator_command(1)
    except EmulatorUnavailable as exc:
        if os.environ.get("REQUIRE_FIRESTORE_EMULATOR") == "1":
            pytest.fail(f"{exc} (REQUIRE_FIRESTORE_EMULATOR=1)")
        pytest.skip(str(exc))


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the state on (the name may hold spaces)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper has stopped)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def processes(*, pgid: int | None = None, ppid: int | None = None) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None and fields[0] != "Z":
            if (pgid is None or int(fields[2]) == pgid) and (ppid is None or int(fields[1]) == ppid):
                found.append(int(entry))
    return found


def is_java(pid: int) -> bool:
    try:
        return b"java" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_stop_ends_the_whole_group(tmp_path):
    emulator = FirestoreEmulator(log_path=tmp_path / "emulator.log").start()
    group = emulator._proc.pid  # its own session: the group id is the first process's pid
    members = processes(pgid=group)
    assert any(is_java(p) for p in members), members
    emulator.stop()
    assert wait_gone(members) == [] and processes(pgid=group) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_runner_leaves_no_java_behind(tmp_path, signum):
    runner = subprocess.Popen(
        [sys.executable, "-m", "tests.support.firestore_emulator"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp_path)),
    )
    try:
        line = runner.stdout.readline()
        assert line.startswith("FIRESTORE_EMULATOR_HOST=127.0.0.1:"), line
        children = processes(ppid=runner.pid)
        assert len(children) == 1, children
        group = processes(pgid=children[0])
        assert any(is_java(p) for p in group), group
        runner.send_signal(signum)
        assert runner.wait(30) == (128 + signum if signum == signal.SIGTERM else -signum)
        assert wait_gone(group) == [], f"left running after {signal.Signals(signum).name} to the runner: {group}"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
