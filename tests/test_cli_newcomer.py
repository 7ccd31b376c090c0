"""The command line as a newcomer meets it: the ``crontick`` command, run in a fresh shell.

Real processes only: the launcher ``make venv`` writes (web/cli_entry.py), run with an
environment that holds none of crontick's settings, the way a new terminal does after
``make run`` (no AUTH_MODE, so the service's default, oidc, applies), and a JSON store
in a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.errors import ConfigError
from scheduler.model import Source, TickRecord
from scheduler.settings import _VARIABLES, STORAGES, Settings
from storage.jsonfile import JsonFileStore
from tests.support.processes import REPO, make_dry_run
from web.cli_entry import write_launcher

SETTING_NAMES = {env_name for env_name, _cast, _opts in _VARIABLES.values()}


def fresh_shell(**settings: str) -> dict[str, str]:
    """This process's environment without any crontick setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES and not k.startswith(("SCHEDULER_", "OIDC_", "FIRESTORE_", "CLOUD_TASKS_", "K_"))}
    env.pop("PYTHONPATH", None)  # the launcher finds the repository itself
    env.update(settings)
    return env


@pytest.fixture
def crontick(tmp_path):
    """Run ``crontick ARGS`` from ``tmp_path`` (a folder that is not the repository) with a
    JSON store under it; returns the completed process."""
    launcher = tmp_path / "bin" / "crontick"
    launcher.parent.mkdir()
    write_launcher(str(launcher), python=sys.executable)
    base = fresh_shell(SCHEDULER_JSON_PATH=str(tmp_path / "data" / "jobs.json"))

    def run(*args: str, **settings: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(launcher), *args], env=base | settings, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    run.store_path = tmp_path / "data" / "jobs.json"  # type: ignore[attr-defined]
    run.env = base  # type: ignore[attr-defined]
    return run


def test_make_venv_writes_the_crontick_launcher():
    dry = make_dry_run("--always-make", "venv")
    assert dry.returncode == 0, dry.stderr
    assert "-m web.cli_entry --write-launcher .venv/bin/crontick" in dry.stdout


def test_the_launcher_runs_this_interpreter_on_this_repository(tmp_path):
    path = tmp_path / "crontick"
    write_launcher(str(path), python="/opt/py/bin/python")
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/opt/py/bin/python"
    assert f"sys.path.insert(0, {str(REPO)!r})" in lines
    assert os.access(path, os.X_OK)


def test_crontick_works_in_a_fresh_shell_without_any_http_auth_setting(crontick):
    added = crontick("jobs", "add", "--type", "log", "--cron", "*/5 * * * *", "--payload", '{"msg": "hi"}', "--id", "first")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("created first  pending")
    listed = crontick("jobs", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert listed.stdout.splitlines()[-1] == "1 job(s)"
    assert listed.stdout.splitlines()[0].startswith("first  pending")
    # The service's own refusals stay where they belong: serving HTTP.
    with pytest.raises(ConfigError, match="OIDC_AUDIENCE is required with AUTH_MODE=oidc"):
        Settings.from_env({})
    assert Settings.from_env({}, serving=False).auth_mode == "oidc"


SIGNED = {"OIDC_AUDIENCE": "https://svc.example", "OIDC_ALLOWED_EMAILS": "invoker@p.iam.gserviceaccount.com"}
TASKS = {"SCHEDULER_DISPATCH": "cloud_tasks", "CLOUD_TASKS_QUEUE": "projects/proj-1/locations/europe-west1/queues/crontick", "CLOUD_TASKS_TARGET_URL": "https://svc.example/tasks/run", "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9"}


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"AUTH_MODE": "oidc"}, "OIDC_AUDIENCE is required with AUTH_MODE=oidc"),
        ({"AUTH_MODE": "iam", "OIDC_AUDIENCE": "https://svc.example"}, "OIDC_ALLOWED_EMAILS is required with AUTH_MODE=iam"),
        ({"AUTH_MODE": "iam", "CHAT_AUTH_AUDIENCE": "123456"} | SIGNED, "AUTH_MODE=iam with CHAT_AUTH_AUDIENCE='123456'"),
        ({"AUTH_MODE": "disabled", "ENVIRONMENT": "production"}, "AUTH_MODE=disabled is refused when ENVIRONMENT=production"),
        (TASKS | SIGNED, "TASKS_ALLOWED_EMAILS .or CLOUD_TASKS_SERVICE_ACCOUNT, its default. is required"),
    ],
    ids=["oidc-without-audience", "iam-without-emails", "iam-with-project-number-chat", "disabled-in-production", "cloud-tasks-without-callers"],
)
def test_http_auth_settings_do_not_stop_the_cli(crontick, settings, refusal):
    with pytest.raises(ConfigError, match=refusal):
        Settings.from_env(settings)  # what the service refuses at start
    listed = crontick("jobs", "list", **settings)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "0 job(s)\n"


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"SCHEDULER_LEASE_SECONDS": "abc"}, "Error: SCHEDULER_LEASE_SECONDS='abc': must be a number"),
        ({"SCHEDULER_STORAGE": "nosql"}, f"Error: SCHEDULER_STORAGE='nosql': must be one of {', '.join(STORAGES)}"),
        ({"SCHEDULER_TICK_BUDGET_SECONDS": "400"}, "Error: SCHEDULER_TICK_BUDGET_SECONDS (400) must be below SCHEDULER_LEASE_SECONDS (300), or leases could expire while their tick still runs"),
        ({"SCHEDULER_HANDLER_MODULES": "nope_module"}, "Error: SCHEDULER_HANDLER_MODULES: cannot import 'nope_module': No module named 'nope_module'"),
        ({"LOG_FORMAT": "xml"}, "Error: LOG_FORMAT='xml': must be one of auto, text, json"),
    ],
    ids=["bad-number", "bad-choice", "inconsistent", "bad-handler-module", "bad-log-format"],
)
def test_a_configuration_error_is_one_line_naming_the_variable_and_exit_2(crontick, settings, line):
    result = crontick("jobs", "list", **settings)
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")


def test_help_with_a_configuration_error_is_that_one_line_too(crontick):
    """flask's own group prints a traceback when the app fails while listing commands; crontick does not."""
    result = crontick("--help", SCHEDULER_LEASE_SECONDS="-1")
    assert (result.returncode, result.stderr) == (2, "Error: SCHEDULER_LEASE_SECONDS='-1': must be at least 1\n")


def test_flask_app_main_takes_the_same_path(crontick):
    """``flask --app main`` (the form the docs used before ``crontick``) needs no HTTP auth either."""
    env = crontick.env | {"PYTHONPATH": str(REPO)}
    flask = [sys.executable, "-m", "flask", "--app", "main"]
    listed = subprocess.run([*flask, "jobs", "list"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (listed.returncode, listed.stdout) == (0, "0 job(s)\n"), listed.stderr
    bad = subprocess.run([*flask, "jobs", "list"], env=env | {"SCHEDULER_LEASE_SECONDS": "abc"}, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (bad.returncode, bad.stderr) == (2, "Error: SCHEDULER_LEASE_SECONDS='abc': must be a number\n")


def test_cli_logs_go_to_stderr_and_stdout_stays_the_output(crontick):
    crontick("jobs", "add", "--type", "log", "--every", "60", "--id", "beat")
    exported = crontick("export", "-", LOG_LEVEL="INFO", LOG_FORMAT="json")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)  # nothing but the snapshot on stdout
    assert [job["id"] for job in document["jobs"]] == ["beat"]
    records = [json.loads(line) for line in exported.stderr.splitlines() if line.startswith("{")]
    assert [r["action"] for r in records if r.get("action")] == ["json_store_opened"]
    # By default the CLI logs warnings only: its stderr carries the summary lines, no INFO record.
    quiet = crontick("export", "-")
    assert "json_store_opened" not in quiet.stderr and quiet.stderr.startswith("exported 1 job(s)")


def test_release_refusal_names_the_flag(crontick):
    assert crontick("jobs", "add", "--type", "log", "--every", "60", "--id", "held").returncode == 0
    store = JsonFileStore(crontick.store_path)
    store.open()
    job = store.get_job("held")
    now = job.next_run_at + timedelta(seconds=1)
    claimed = store.claim_due_jobs(now=now, tick=TickRecord("tick-1", now, Source.MANUAL), lease_seconds=3600, limit=10)
    assert [j.id for j in claimed.claimed] == ["held"]
    refused = crontick("jobs", "release", "held")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: job held's lease is live until ")
    assert refused.stderr.endswith("; take it anyway with --force (CLI) or force=true (API)\n")
    forced = crontick("jobs", "release", "held", "--force")
    assert forced.returncode == 0 and forced.stdout.startswith("release: held  pending"), forced.stderr


def test_the_crontick_command_equals_flask_app_main(crontick):
    ours = crontick("--help")
    env = crontick.env | {"PYTHONPATH": str(REPO)}
    theirs = subprocess.run([sys.executable, "-m", "flask", "--app", "main", "--help"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ours.returncode == 0 and theirs.returncode == 0, (ours.stderr, theirs.stderr)

    def names(help_text: str) -> list[str]:
        listing = help_text.split("Commands:")[1].splitlines()
        return [line.split()[0] for line in listing if line.startswith("  ") and not line.startswith("   ")]

    ours_names = names(ours.stdout)
    assert ours_names == names(theirs.stdout)
    assert {"jobs", "tick", "status", "executions", "export", "import"} <= set(ours_names)


def test_check_config_checks_what_the_service_checks(crontick):
    """The other commands skip the HTTP auth settings; ``check-config`` is how an operator
    checks an env file before a deploy (docs/rollout.md, Stage 0)."""
    refused = crontick("check-config", AUTH_MODE="oidc", OIDC_AUDIENCE="https://svc.example")
    assert (refused.returncode, refused.stderr) == (2, "Error: OIDC_ALLOWED_EMAILS is required with AUTH_MODE=oidc (the invoker service account)\n")
    ok = crontick("check-config", AUTH_MODE="oidc", OIDC_AUDIENCE="https://svc.example", OIDC_ALLOWED_EMAILS="invoker@p.iam.gserviceaccount.com")
    assert (ok.returncode, ok.stdout) == (0, "settings ok: ENVIRONMENT=local AUTH_MODE=oidc SCHEDULER_STORAGE=json SCHEDULER_DISPATCH=inline\n"), ok.stderr
