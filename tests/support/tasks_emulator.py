"""The tests' Cloud Tasks emulator: the session fixture ``tasks_emulator``.

The emulator itself (the PyPI ``gcloud-tasks-emulator`` in ``.venv-tasks``, started on
loopback, and its known gaps: no task-name dedup, no OIDC token, one delivery at a time
per queue, retries without backoff) is :class:`web.local_tasks.TasksEmulator`, which
``make run`` uses too; its names are re-exported here for the tests.

The session fixture ``tasks_emulator`` starts one for the test session with the
queue :data:`QUEUE`; without ``.venv-tasks`` (:data:`VENV`, read when the fixture runs)
it skips with the reason, unless ``REQUIRE_TASKS_EMULATOR=1``, when it fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from web.local_tasks import (  # noqa: F401 - re-exported for the tests
    LAUNCHER,
    LOCATION,
    PROJECT,
    QUEUE,
    REPO,
    START_TIMEOUT,
    VENV,
    TasksEmulator,
    TasksEmulatorUnavailable,
    emulator_command,
    emulator_python,
    free_port,
)


@pytest.fixture(scope="session")
def tasks_emulator() -> Iterator[TasksEmulator]:
    """The session's Cloud Tasks emulator, with the queue :data:`QUEUE` created."""
    emulator = TasksEmulator(venv=VENV)
    try:
        emulator_python(emulator.venv)
    except TasksEmulatorUnavailable as exc:
        if os.environ.get("REQUIRE_TASKS_EMULATOR") == "1":
            pytest.fail(f"{exc} (REQUIRE_TASKS_EMULATOR=1)")
        pytest.skip(str(exc))
    emulator.start()
    try:
        emulator.create_queue(QUEUE)
        yield emulator
    finally:
        emulator.stop()
