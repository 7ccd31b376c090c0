"""The gunicorn worker's garbage-collector settings (web/worker_gc.py, gunicorn.conf.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO, Gunicorn, free_port, service_env
from web import worker_gc

# Each check runs in a fresh interpreter: freezing or re-tuning the collector of the
# test process would change every test after it.
_PROBE = """
import gc, json, sys
from web import worker_gc
gc.enable()
worker_gc.before_app_load()
during = gc.isenabled()
objects = [{"n": i} for i in range(1000)]  # something loaded while the collector is off
worker_gc.after_app_load()
print(json.dumps({"during": during, "after": gc.isenabled(), "frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold()}))
"""


def _probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE], env=service_env(**env), cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_collector_is_off_while_the_app_loads_then_frozen_and_tuned():
    state = _probe()
    assert state["during"] is False
    assert state["after"] is True
    assert state["frozen"] > 1000  # the interpreter's own objects and the 1,000 dicts made while off
    assert state["thresholds"][0] == worker_gc.YOUNG_THRESHOLD


@pytest.mark.parametrize("value", ["off", "false", "0", "no", " OFF "])
def test_tuning_off_keeps_the_defaults_and_the_collector_on(value):
    state = _probe(CRONTICK_GC_TUNING=value)
    assert state == {"during": True, "after": True, "frozen": 0, "thresholds": [700, 10, 10]}


def test_enabled_reads_the_setting():
    assert worker_gc.enabled({}) is True
    assert worker_gc.enabled({"CRONTICK_GC_TUNING": "on"}) is True
    assert worker_gc.enabled({"CRONTICK_GC_TUNING": "Off"}) is False


def _worker_gc_records(tmp_path, **env: str) -> list[dict]:
    port = free_port()
    environ = service_env(AUTH_MODE="disabled", SCHEDULER_STORAGE="memory", PORT=str(port), **env)
    environ.pop("GUNICORN_CMD_ARGS", None)
    # No -c: gunicorn reads the repository's gunicorn.conf.py, as the image's CMD does.
    server = Gunicorn(environ, tmp_path / "gunicorn.log", command=["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2", "main:app"])
    assert server.stop() == 0  # started: /health answered 200
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{") and '"worker_gc_set"' in line]


def test_a_gunicorn_worker_freezes_its_loaded_app(tmp_path):
    (record,) = _worker_gc_records(tmp_path)
    assert record["tuned"] is True
    assert record["frozen_objects"] > 20_000  # Flask, crontick and the app: about 39,000 here
    assert record["thresholds"][0] == worker_gc.YOUNG_THRESHOLD


def test_a_gunicorn_worker_with_tuning_off(tmp_path):
    (record,) = _worker_gc_records(tmp_path, CRONTICK_GC_TUNING="off")
    assert (record["tuned"], record["frozen_objects"], record["thresholds"]) == (False, 0, [700, 10, 10])
