"""What a cold start imports: logging costs nothing beyond the standard library and orjson, and a service
on the JSON store loads no Google client library before it serves /health.

Deterministic stand-ins for the timed figure (``make bench``, figure 4): the modules a
fresh process has loaded after ``create_app``, not milliseconds. google-cloud-logging's
import was 200-300 ms of a 0.46-0.75 s start; these keep it, and the other heavy
libraries, off the path to the first /health.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.processes import REPO, service_env

# Needed for ticks, verification or Firestore, never to serve /health on the JSON store.
HEAVY = ("google", "grpc", "requests", "urllib3", "cachecontrol", "opentelemetry", "google.protobuf", "pythonjsonlogger")


def loaded_after(code: str, env: dict[str, str], *, already: str = "") -> list[str]:
    """Modules that ``code`` loads in a fresh process, once ``already`` ran."""
    probe = f"import sys, json\n{already}\nbefore = set(sys.modules)\n{code}\nprint(json.dumps(sorted(set(sys.modules) - before)))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_log_formatter_imports_only_the_standard_library_and_orjson(tmp_path):
    env = service_env(SCHEDULER_JSON_PATH=str(tmp_path / "jobs.json"))
    new = loaded_after("import web.logs", env, already="import scheduler.settings")  # its one crontick import
    # orjson: one compiled extension without dependencies (under 1 ms to import).
    assert {"web", "web.logs", "orjson"} <= set(new) and set(new) - {"web", "web.logs", "orjson", "orjson.orjson"} <= set(sys.stdlib_module_names), new


@pytest.mark.parametrize("auth", [{"AUTH_MODE": "disabled"}, {"AUTH_MODE": "oidc", "OIDC_AUDIENCE": "https://svc.example", "OIDC_ALLOWED_EMAILS": "invoker@p.iam.gserviceaccount.com"}], ids=["disabled", "oidc"])
def test_create_app_on_the_json_store_loads_no_client_library(tmp_path, auth):
    env = service_env(SCHEDULER_STORAGE="json", SCHEDULER_JSON_PATH=str(tmp_path / "jobs.json"), **auth)
    new = loaded_after("import os, main\nmain.create_app(os.environ)", env)
    assert "flask" in new and "storage.jsonfile" in new
    assert [m for m in new if m.split(".")[0] in HEAVY or m in HEAVY] == []


def test_croniter_and_chat_commands_load_on_first_use_not_at_start(tmp_path):
    """croniter with dateutil (about 20 ms of a cold start) loads when a cron expression is
    first read (scheduler/timing.py), Chat's commands with natural-language times (5-6
    ms) with the first Chat event (web/chat.py): neither by create_app or a /health."""
    env = service_env(SCHEDULER_STORAGE="json", SCHEDULER_JSON_PATH=str(tmp_path / "jobs.json"), AUTH_MODE="disabled")  # ENVIRONMENT=test: console off, as in production
    start = "import os, main\napp = main.create_app(os.environ)\nassert app.test_client().get('/health').status_code == 200"
    new = loaded_after(start, env)
    assert "main" in new and "web.chat" in new
    assert [m for m in new if m.split(".")[0] in ("croniter", "dateutil") or m in ("web.chat_commands", "scheduler.when", "scheduler.snapshot")] == []
    later = loaded_after("from scheduler.timing import check_cron\nassert check_cron('*/5 * * * *') is None", env, already=start)
    assert "croniter" in later and "dateutil" in later
    event = {"type": "MESSAGE", "message": {"text": "help", "sender": {"email": "a@example.com"}}, "space": {"name": "spaces/S"}}
    chat = loaded_after(f"assert app.test_client().post('/webhook', json={event!r}).status_code == 200", env, already=start)
    assert "web.chat_commands" in chat and "scheduler.when" in chat
