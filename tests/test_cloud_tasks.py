"""Cloud Tasks dispatch: its settings, and CloudTasksDispatcher against a real Cloud Tasks
server (the gcloud-tasks-emulator in .venv-tasks) delivering to a real loopback HTTP receiver."""

from __future__ import annotations

import pytest

from scheduler.errors import ConfigError
from scheduler.settings import Settings

QUEUE = "projects/demo-crontick/locations/us-central1/queues/crontick-runs"
TARGET = "https://crontick-abc-uc.a.run.app/tasks/run"
TASKS_SA = "crontick-tasks@demo-crontick.iam.gserviceaccount.com"
CLOUD_TASKS = {
    "AUTH_MODE": "disabled",
    "SCHEDULER_DISPATCH": "cloud_tasks",
    "CLOUD_TASKS_QUEUE": QUEUE,
    "CLOUD_TASKS_TARGET_URL": TARGET,
    "CLOUD_TASKS_SERVICE_ACCOUNT": TASKS_SA,
}


# Settings


def test_inline_is_the_default_and_needs_no_cloud_tasks_settings() -> None:
    settings = Settings.from_env({"AUTH_MODE": "disabled"})

    assert settings.dispatch == "inline"
    assert settings.dispatch_concurrency == 16
    assert settings.dispatch_lease_seconds is None
    assert settings.cloud_tasks_queue is None
    assert settings.tasks_audience is None
    assert settings.tasks_callers == ()


def test_cloud_tasks_settings_are_read_and_defaults_derived() -> None:
    settings = Settings.from_env(CLOUD_TASKS | {"SCHEDULER_DISPATCH": "Cloud_Tasks", "SCHEDULER_DISPATCH_LEASE_SECONDS": "900", "SCHEDULER_DISPATCH_CONCURRENCY": "4"})

    assert settings.dispatch == "cloud_tasks"
    assert settings.dispatch_lease_seconds == 900.0
    assert settings.dispatch_concurrency == 4
    assert settings.cloud_tasks_queue == QUEUE
    assert settings.tasks_audience == "https://crontick-abc-uc.a.run.app"
    assert settings.tasks_callers == (TASKS_SA,)


def test_explicit_audience_and_allowed_emails_win() -> None:
    settings = Settings.from_env(CLOUD_TASKS | {"CLOUD_TASKS_AUDIENCE": "crontick-tasks", "TASKS_ALLOWED_EMAILS": "a@p.iam.gserviceaccount.com, @example.com"})

    assert settings.tasks_audience == "crontick-tasks"
    assert settings.tasks_callers == ("a@p.iam.gserviceaccount.com", "@example.com")


def test_the_emulator_goes_without_a_service_account() -> None:
    settings = Settings.from_env(CLOUD_TASKS | {"CLOUD_TASKS_SERVICE_ACCOUNT": "", "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9022", "CLOUD_TASKS_TARGET_URL": "http://127.0.0.1:8080/tasks/run"})

    assert settings.cloud_tasks_service_account is None
    assert settings.cloud_tasks_emulator_host == "127.0.0.1:9022"
    assert settings.tasks_audience == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SCHEDULER_DISPATCH": "pubsub"}, "SCHEDULER_DISPATCH='pubsub': must be one of inline, cloud_tasks"),
        ({"SCHEDULER_DISPATCH_CONCURRENCY": "0"}, "SCHEDULER_DISPATCH_CONCURRENCY='0': must be at least 1"),
        ({"SCHEDULER_DISPATCH_LEASE_SECONDS": "soon"}, "SCHEDULER_DISPATCH_LEASE_SECONDS='soon': must be a number"),
        ({"CLOUD_TASKS_QUEUE": ""}, "CLOUD_TASKS_QUEUE is required with SCHEDULER_DISPATCH=cloud_tasks"),
        ({"CLOUD_TASKS_QUEUE": "crontick-runs"}, "CLOUD_TASKS_QUEUE='crontick-runs': must be a full queue name"),
        ({"CLOUD_TASKS_QUEUE": QUEUE + "/tasks/x"}, "must be a full queue name"),
        ({"CLOUD_TASKS_QUEUE": QUEUE.replace("crontick-runs", "crontick_runs")}, "must be a full queue name"),
        ({"CLOUD_TASKS_TARGET_URL": ""}, "CLOUD_TASKS_TARGET_URL is required with SCHEDULER_DISPATCH=cloud_tasks"),
        ({"CLOUD_TASKS_TARGET_URL": "crontick-abc-uc.a.run.app/tasks/run"}, "CLOUD_TASKS_TARGET_URL='crontick-abc-uc.a.run.app/tasks/run': must be an http(s) URL"),
        ({"CLOUD_TASKS_TARGET_URL": "https://crontick-abc-uc.a.run.app"}, "CLOUD_TASKS_TARGET_URL='https://crontick-abc-uc.a.run.app': must end with /tasks/run"),
        ({"CLOUD_TASKS_SERVICE_ACCOUNT": ""}, "CLOUD_TASKS_SERVICE_ACCOUNT is required with SCHEDULER_DISPATCH=cloud_tasks"),
        ({"CLOUD_TASKS_SERVICE_ACCOUNT": "crontick-tasks"}, "CLOUD_TASKS_SERVICE_ACCOUNT='crontick-tasks': must be a service account email"),
        ({"CLOUD_TASKS_EMULATOR_HOST": "http://127.0.0.1:9022"}, "CLOUD_TASKS_EMULATOR_HOST='http://127.0.0.1:9022': must be host:port"),
        (
            {"AUTH_MODE": "oidc", "OIDC_AUDIENCE": "https://x", "OIDC_ALLOWED_EMAILS": "a@b.c", "CLOUD_TASKS_SERVICE_ACCOUNT": "", "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9022"},
            "TASKS_ALLOWED_EMAILS (or CLOUD_TASKS_SERVICE_ACCOUNT, its default) is required with SCHEDULER_DISPATCH=cloud_tasks and AUTH_MODE=oidc",
        ),
    ],
)
def test_bad_dispatch_settings_are_refused_naming_the_variable(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(CLOUD_TASKS | changes)

    assert message in str(refused.value)


def test_inline_mode_ignores_incomplete_cloud_tasks_settings_but_not_a_bad_emulator_host() -> None:
    settings = Settings.from_env({"AUTH_MODE": "disabled", "CLOUD_TASKS_QUEUE": "not-a-queue"})
    assert settings.cloud_tasks_queue == "not-a-queue"

    with pytest.raises(ConfigError, match="CLOUD_TASKS_EMULATOR_HOST='localhost': must be host:port"):
        Settings.from_env({"AUTH_MODE": "disabled", "CLOUD_TASKS_EMULATOR_HOST": "localhost"})
