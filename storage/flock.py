"""An exclusive lock on a file, shared by every process of one machine (POSIX ``flock``).

The JSON store holds it on ``<file>.lock`` for each read-modify-write of its file.

- **Held by an open file, released by the kernel.** :func:`hold` opens the lock file
  (creating it, mode 0644), takes ``flock(LOCK_EX)`` on that open file and closes it on
  leaving. A process that dies while holding the lock, even by ``SIGKILL``, closes its
  files and so releases it: a crash never leaves the store locked.
- **Between threads too.** Each call opens the file anew, and two opens of one file
  exclude each other under ``flock`` even in one process, so two store instances on one
  file in one process take turns like two processes do.
- **Never a hang.** It polls a non-blocking ``flock`` until ``timeout`` seconds have passed,
  then raises :class:`LockTimeout`; the store turns that into ``StoreUnavailable`` (503).
- **The lock file stays.** Unlinking it on release would let a waiter lock the old,
  unlinked file while a newcomer locks a new one; it is a few bytes, left in place.

Why not the ``filelock`` package, used until now: importing filelock 4 took 11-17 ms of
every worker's cold start here (it loads ``platform``, ``decimal``, ``secrets`` and
asyncio support among others), for what the store used of it: this one lock. (And an
advisory lock has no Windows story to keep: crontick runs on Linux and macOS.)
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

POLL_SECONDS = 0.005  # first wait between tries; doubles up to MAX_POLL_SECONDS
MAX_POLL_SECONDS = 0.05


class LockTimeout(TimeoutError):
    """The lock was held by someone else for the whole timeout."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(f"could not lock {path} within {timeout:g} s")
        self.path = path
        self.timeout = timeout


@contextmanager
def hold(path: str, timeout: float) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` for the ``with`` block.

    Raises :class:`LockTimeout` after ``timeout`` seconds of waiting, and ``OSError`` when
    the lock file cannot be opened or locked (a missing folder, no permission)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, timeout)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = POLL_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(path, timeout) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_POLL_SECONDS)
