"""setup-scheduler.sh with CONSOLE_AUTH=iap: IAP on the console's own Cloud Run service
and roles/iap.httpsResourceAccessor for the console's people, against the recording gcloud;
the flags it emits checked against the real gcloud's help."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import PROJECT, REGION, SERVICE, Cloud

P = f"--project={PROJECT}"
NUMBER = "123456789012"
CONSOLE = f"{SERVICE}-console"
CONSOLE_URL = "https://crontick-console-abc-uc.a.run.app"
AUDIENCE = f"/projects/{NUMBER}/locations/{REGION}/services/{CONSOLE}"
IAP_ENV = {"CONSOLE_AUTH": "iap", "CONSOLE_ADMIN_EMAILS": "ann@example.com, @corp.example", "CONSOLE_VIEWER_EMAILS": "robot@proj-1.iam.gserviceaccount.com,Ann@Example.com"}


def access(member: str) -> list[str]:
    return [
        "beta", "iap", "web", "add-iam-policy-binding", "--resource-type=cloud-run", f"--service={CONSOLE}", f"--region={REGION}",
        P, f"--member={member}", "--role=roles/iap.httpsResourceAccessor", "--condition=None",
    ]


IAP_CALLS = [
    ["beta", "services", "identity", "create", "--service=iap.googleapis.com", P],
    [
        "run", "services", "add-iam-policy-binding", CONSOLE, P, f"--region={REGION}",
        f"--member=serviceAccount:service-{NUMBER}@gcp-sa-iap.iam.gserviceaccount.com", "--role=roles/run.invoker", "--condition=None",
    ],
    ["beta", "run", "services", "update", CONSOLE, P, f"--region={REGION}", "--iap"],
    access("user:ann@example.com"),
    access("domain:corp.example"),
    access("serviceAccount:robot@proj-1.iam.gserviceaccount.com"),
]


@pytest.fixture
def cloud(cloud: Cloud) -> Cloud:
    """The deployment of setup-scheduler's tests plus the console's service (same image and store)."""
    cloud.state["services"][CONSOLE] = {"url": CONSOLE_URL, "revisions": ["crontick-console-00001-aaa"]}
    cloud.save()
    return cloud


def iap_part(calls: list[list[str]]) -> list[list[str]]:
    start = calls.index(IAP_CALLS[0])
    return calls[start : start + len(IAP_CALLS)]


def test_iap_is_turned_on_and_the_consoles_people_let_through(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=IAP_ENV | {"IAP_AUDIENCE": AUDIENCE})
    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    assert calls[0] == ["services", "enable", "run.googleapis.com", "cloudscheduler.googleapis.com", "iamcredentials.googleapis.com", "iap.googleapis.com", P]
    assert ["projects", "describe", PROJECT, "--format=value(projectNumber)"] in calls
    assert ["run", "services", "describe", CONSOLE, P, f"--region={REGION}", "--format=value(status.url)"] in calls
    assert iap_part(calls) == IAP_CALLS  # Ann once, though listed twice in two spellings
    assert calls[-1][:4] == ["scheduler", "jobs", "create", "http"]  # the job last, as without IAP
    assert cloud.load()["scheduler_jobs"]["crontick-tick"]["--uri"] == "https://crontick-abc-uc.a.run.app/cron/tick"  # ticks skip IAP
    state = cloud.load()
    assert state["services"][CONSOLE]["iap"] is True and "iap" not in state["services"][SERVICE]
    assert len(state["iap_bindings"]) == 3
    assert not [call for call in calls if "add-iam-policy-binding" in call and SERVICE in call and "roles/iap.httpsResourceAccessor" in " ".join(call)]
    assert "deploy crontick-console with IAP_AUDIENCE" not in result.stderr
    assert f"IAP is on for crontick-console ({CONSOLE_URL}): 3 principal(s) may pass it" in result.stderr


def test_a_second_run_grants_nothing_twice_and_says_which_audience_to_deploy(cloud: Cloud) -> None:
    for _ in range(2):
        result = cloud.run("setup-scheduler.sh", "setup", env=IAP_ENV)
        assert result.returncode == 0, result.stderr
        assert f"deploy crontick-console with IAP_AUDIENCE={AUDIENCE}, the audience IAP signs for" in result.stderr
    assert len(cloud.load()["iap_bindings"]) == 3


def test_the_console_service_can_be_named(cloud: Cloud) -> None:
    cloud.state["services"]["ops-ui"] = {"url": "https://ops-ui-abc-uc.a.run.app", "revisions": ["ops-ui-00001-aaa"]}
    cloud.save()
    result = cloud.run("setup-scheduler.sh", "setup", env=IAP_ENV | {"CONSOLE_SERVICE_NAME": "ops-ui", "IAP_AUDIENCE": f"/projects/{NUMBER}/locations/{REGION}/services/ops-ui"})
    assert result.returncode == 0, result.stderr
    assert cloud.load()["services"]["ops-ui"]["iap"] is True
    assert {b[0] for b in cloud.load()["iap_bindings"]} == {"ops-ui"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"IAP_AUDIENCE": "/projects/999/global/backendServices/1"}, f"IAP_AUDIENCE=/projects/999/global/backendServices/1 but IAP signs for {AUDIENCE}; every console page would get 401"),
        ({"CONSOLE_ADMIN_EMAILS": "", "CONSOLE_VIEWER_EMAILS": ""}, "CONSOLE_AUTH=iap needs CONSOLE_ADMIN_EMAILS or CONSOLE_VIEWER_EMAILS: nobody could open the console"),
        ({"CONSOLE_ADMIN_EMAILS": "ann@example.com,bob"}, "CONSOLE_ADMIN_EMAILS: 'bob' is neither an email nor an @domain entry"),
        ({"CONSOLE_SERVICE_NAME": SERVICE}, "CONSOLE_SERVICE_NAME=crontick is the service Cloud Scheduler calls: IAP in front of it would refuse every tick"),
        ({"CONSOLE_SERVICE_NAME": "nowhere"}, "cannot find the console's service nowhere in us-central1 (see above); deploy it first: SERVICE_NAME=nowhere ./deploy.sh deploy, with CONSOLE_AUTH=iap"),
    ],
)
def test_settings_the_app_would_not_agree_with_are_refused_before_any_change(cloud: Cloud, changes: dict, message: str) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=IAP_ENV | changes)
    assert result.returncode == 1
    assert f"setup-scheduler.sh: error: {message}" in result.stderr
    changed = [call for call in cloud.calls() if call[:2] != ["services", "enable"] and not {"describe"} & set(call[:3])]
    assert changed == []
    assert "iap_bindings" not in cloud.load() and "iap" not in cloud.load()["services"][CONSOLE]


def test_without_console_auth_iap_nothing_of_iap_is_touched(cloud: Cloud) -> None:
    for env in ({}, {"CONSOLE_AUTH": "disabled", "CONSOLE_ADMIN_EMAILS": "ann@example.com"}):
        cloud.clear_calls()
        assert cloud.run("setup-scheduler.sh", "setup", env=env).returncode == 0
        assert not [call for call in cloud.calls() if "iap" in " ".join(call) or call[:1] == ["beta"]]


def test_iap_settings_come_from_the_env_file_too(cloud: Cloud) -> None:
    cloud.env_file.write_text("CONSOLE_AUTH=IAP\nCONSOLE_VIEWER_EMAILS=@corp.example\n")
    result = cloud.run("setup-scheduler.sh", "setup")
    assert result.returncode == 0, result.stderr
    assert [b[1] for b in cloud.load()["iap_bindings"]] == ["domain:corp.example"]


def test_every_iap_flag_exists_in_the_real_gcloud(cloud: Cloud, tmp_path: Path) -> None:
    gcloud = next((p for p in (shutil.which("gcloud", path="/usr/bin:/usr/local/bin:/opt/google-cloud-sdk/bin"),) if p), None)
    if gcloud is None:
        if os.environ.get("CI"):
            pytest.fail("the real gcloud is not installed, and CI requires it")
        pytest.skip("the real gcloud is not installed")
    assert cloud.run("setup-scheduler.sh", "setup", env=IAP_ENV).returncode == 0
    commands = {
        ("services", "enable"): None,
        ("projects", "describe"): None,
        ("beta", "services", "identity", "create"): None,
        ("run", "services", "add-iam-policy-binding"): None,
        ("beta", "run", "services", "update"): None,
        ("beta", "iap", "web", "add-iam-policy-binding"): None,
    }
    flags: dict[tuple[str, ...], set[str]] = {}
    for call in cloud.calls():
        for command in commands:
            if tuple(call[: len(command)]) == command:
                flags.setdefault(command, set()).update(arg.split("=", 1)[0] for arg in call if arg.startswith("--"))
    assert set(flags) == set(commands)
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud-config"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true", "PAGER": "cat", "TERM": "dumb",
    }
    missing = {}
    for command, used in flags.items():
        result = subprocess.run([gcloud, *command, "--help"], env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"gcloud {' '.join(command)} --help: {result.stderr}"
        text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
        if command[:4] == ("beta", "iap", "web", "add-iam-policy-binding"):
            assert "cloud-run" in text  # the resource type this gcloud knows
        absent = sorted(flag for flag in used - {"--project", "--format"} if not re.search(re.escape(flag) + r"\b", text))
        if absent:
            missing[" ".join(command)] = absent
    assert missing == {}
