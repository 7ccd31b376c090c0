"""storage/flock.py: the JSON store's cross-process lock, with real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from storage import flock

HOLD = "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(float(sys.argv[2]))"


def _holder(path: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_creates_the_lock_file_and_leaves_it(tmp_path):
    path = str(tmp_path / "jobs.json.lock")
    with flock.hold(path, timeout=1):
        pass
    assert (tmp_path / "jobs.json.lock").exists()
    assert (tmp_path / "jobs.json.lock").stat().st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_times_out_naming_the_file_while_another_process_holds_it(tmp_path):
    path = str(tmp_path / "jobs.json.lock")
    holder = _holder(path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(flock.LockTimeout, match=r"could not lock .*jobs\.json\.lock within 0\.3 s") as info:
            with flock.hold(path, timeout=0.3):
                pytest.fail("the lock was taken while another process held it")
        waited = time.monotonic() - started
        assert info.value.path == path and info.value.timeout == 0.3
        assert 0.3 <= waited < 5
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL: the holder's files were closed, so the kernel released its lock.
    with flock.hold(path, timeout=1):
        pass


def test_waits_for_a_holder_that_lets_go_within_the_timeout(tmp_path):
    path = str(tmp_path / "jobs.json.lock")
    holder = _holder(path, 0.3)  # holds it for 0.3 s more, then exits
    try:
        started = time.monotonic()
        with flock.hold(path, timeout=10):
            waited = time.monotonic() - started
        assert waited >= 0.25  # not before the holder let go
    finally:
        holder.kill()
        holder.wait()


def test_excludes_other_threads_of_the_same_process(tmp_path):
    path = str(tmp_path / "jobs.json.lock")
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most_inside
        for _ in range(20):
            with flock.hold(path, timeout=10):
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                time.sleep(0.001)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1


def test_released_when_the_block_raises(tmp_path):
    path = str(tmp_path / "jobs.json.lock")
    with pytest.raises(RuntimeError):
        with flock.hold(path, timeout=1):
            raise RuntimeError("boom")
    with flock.hold(path, timeout=0):  # free at once: no wait at all
        pass


def test_a_lock_file_that_cannot_be_opened_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with flock.hold(str(tmp_path / "missing" / "jobs.json.lock"), timeout=1):
            pass
