"""deploy.sh: the exact gcloud calls, the health gate before traffic moves, and refusals."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import PROJECT, REGION, RUNTIME_SA, SERVICE, SERVICE_URL, Cloud, HealthServer

P = f"--project={PROJECT}"
R = f"--region={REGION}"
DESCRIBE_JSON = ["run", "services", "describe", SERVICE, P, R, "--format=json"]
TOKEN = ["auth", "print-identity-token"]

APP_ENV = {
    "RUNTIME_SERVICE_ACCOUNT": RUNTIME_SA,
    "ENVIRONMENT": "production",
    "AUTH_MODE": "oidc",
    "OIDC_AUDIENCE": SERVICE_URL,
    "OIDC_ALLOWED_EMAILS": f"crontick-invoker@{PROJECT}.iam.gserviceaccount.com,ops@example.com",
    "SCHEDULER_STORAGE": "firestore",
    "FIRESTORE_DATABASE": "(default)",
}
ENV_VARS_FLAG = (
    "--set-env-vars=^|^ENVIRONMENT=production|AUTH_MODE=oidc|OIDC_AUDIENCE=https://crontick-abc-uc.a.run.app"
    f"|OIDC_ALLOWED_EMAILS=crontick-invoker@{PROJECT}.iam.gserviceaccount.com,ops@example.com"
    f"|GOOGLE_CLOUD_PROJECT={PROJECT}|SCHEDULER_STORAGE=firestore|FIRESTORE_DATABASE=(default)"
)


def deploy_call(*extra: str, source: str = "--source=.") -> list[str]:
    return [
        "run", "deploy", SERVICE, P, R, source, "--no-allow-unauthenticated",
        f"--service-account={RUNTIME_SA}", ENV_VARS_FLAG, "--timeout=300", "--concurrency=8", *extra, "--quiet",
    ]


def update_traffic(flag: str) -> list[str]:
    return ["run", "services", "update-traffic", SERVICE, P, R, flag]


def with_tag(cloud: Cloud, url: str, *, tag: str = "canary", tagged: str = "crontick-00003-ccc", latest: str | None = None,
             serving: str = "crontick-00002-bbb") -> None:
    """The service serves `serving`; `tagged` has no traffic and answers at `url`."""
    cloud.state["services"][SERVICE] = {
        "url": SERVICE_URL,
        "latestReadyRevisionName": latest or tagged,
        "traffic": [
            {"revisionName": serving, "percent": 100},
            {"revisionName": tagged, "percent": 0, "tag": tag, "url": url},
        ],
        "revisions": ["crontick-00003-ccc", "crontick-00002-bbb", "crontick-00001-aaa"],
    }
    cloud.save()


# deploy / deploy-tag


def test_deploy_builds_from_source_with_service_account_and_env(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy", env=APP_ENV)

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [deploy_call()]
    assert "+ gcloud run deploy crontick --project=proj-1 --region=us-central1 --source=. --no-allow-unauthenticated" in result.stderr


def test_deploy_an_image_and_extra_flags(cloud: Cloud) -> None:
    env = APP_ENV | {"IMAGE": "us-docker.pkg.dev/proj-1/crontick/crontick:abc123", "DEPLOY_EXTRA_FLAGS": "--min-instances=1 --no-cpu-throttling"}

    result = cloud.run("deploy.sh", "deploy", env=env)

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [
        deploy_call("--min-instances=1", "--no-cpu-throttling", source="--image=us-docker.pkg.dev/proj-1/crontick/crontick:abc123")
    ]


def test_deploy_tag_gets_no_traffic(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy-tag", "canary", env=APP_ENV)

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [deploy_call("--no-traffic", "--tag=canary")]


def test_deploy_forwards_exactly_the_variables_settings_py_reads(cloud: Cloud) -> None:
    settings = cloud.tmp / "settings.py"
    settings.write_text(
        "from typing import Any\n"
        "_VARIABLES: dict[str, tuple[str, Any, dict]] = {\n"
        '    "environment": ("ENVIRONMENT", str.lower, {}),\n'
        '    "shadow_mode": ("SCHEDULER_SHADOW_MODE", bool, {}),\n'
        '    "legacy_interval": ("SCHEDULER_LEGACY_INTERVAL_SECONDS", float, {"minimum": 1}),\n'
        '    "log_level": ("LOG_LEVEL", str.upper, {}),\n'
        "}\n"
    )
    env = APP_ENV | {
        "APP_SETTINGS_FILE": str(settings),
        "SCHEDULER_SHADOW_MODE": "true",
        "SCHEDULER_LEGACY_INTERVAL_SECONDS": "60",
        "LOG_LEVEL": "",  # empty: not forwarded
        "SCHEDULER_CADENCE": "* * * * *",  # setup-scheduler.sh's, not the service's
    }

    result = cloud.run("deploy.sh", "deploy", env=env)

    assert result.returncode == 0, result.stderr
    (flag,) = [a for a in cloud.calls()[0] if a.startswith("--set-env-vars=")]
    assert flag == "--set-env-vars=^|^ENVIRONMENT=production|SCHEDULER_SHADOW_MODE=true|SCHEDULER_LEGACY_INTERVAL_SECONDS=60"


def test_deploy_refuses_when_settings_py_lists_no_variables(cloud: Cloud) -> None:
    (cloud.tmp / "settings.py").write_text("X = 1\n")

    result = cloud.run("deploy.sh", "deploy", env=APP_ENV | {"APP_SETTINGS_FILE": str(cloud.tmp / "settings.py")})

    assert result.returncode == 1
    assert "no _VARIABLES found in" in result.stderr
    assert cloud.calls() == []


def test_deploy_reads_env_file_and_environment_wins(cloud: Cloud) -> None:
    cloud.env_file.write_text(
        "\n".join(f"{k}={v}" for k, v in APP_ENV.items()) + "\nREGION=europe-west1\nSERVICE_NAME=from-file\nENVIRONMENT=staging\n"
    )

    result = cloud.run("deploy.sh", "deploy", base={"PROJECT_ID": PROJECT, "ENVIRONMENT": "production"})

    assert result.returncode == 0, result.stderr
    (call,) = cloud.calls()
    assert call[:6] == ["run", "deploy", "from-file", P, "--region=europe-west1", "--source=."]
    assert "ENVIRONMENT=production|" in call[8]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RUNTIME_SERVICE_ACCOUNT": None}, "RUNTIME_SERVICE_ACCOUNT"),
        ({"OIDC_AUDIENCE": None}, "OIDC_AUDIENCE"),
        ({"OIDC_AUDIENCE": None, "OIDC_ALLOWED_EMAILS": None, "AUTH_MODE": None}, "OIDC_AUDIENCE OIDC_ALLOWED_EMAILS"),
        ({"REGION": None, "SERVICE_NAME": None}, "REGION SERVICE_NAME"),
        ({"PROJECT_ID": None}, "PROJECT_ID"),
    ],
)
def test_deploy_refuses_missing_settings_without_calling_gcloud(cloud: Cloud, env: dict, named: str) -> None:
    result = cloud.run("deploy.sh", "deploy-tag", "canary", env=APP_ENV | env)

    assert result.returncode == 1
    assert f"deploy.sh: error: missing required setting(s): {named} " in result.stderr
    assert cloud.calls() == []


def test_deploy_refuses_disabled_auth_in_production(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy", env=APP_ENV | {"AUTH_MODE": "disabled"})

    assert result.returncode == 1
    assert "AUTH_MODE=disabled is refused" in result.stderr
    assert cloud.calls() == []


def test_deploy_refuses_a_value_holding_the_separator(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy", env=APP_ENV | {"SCHEDULER_HANDLER_MODULES": "a|b"})

    assert result.returncode == 1
    assert "SCHEDULER_HANDLER_MODULES contains '|'" in result.stderr
    assert cloud.calls() == []


@pytest.mark.parametrize("verb", ["status", "rollback", "check canary", "promote canary"])
def test_every_verb_refuses_missing_project_without_calling_gcloud(cloud: Cloud, verb: str) -> None:
    result = cloud.run("deploy.sh", *verb.split(), base={"REGION": REGION, "SERVICE_NAME": SERVICE})

    assert result.returncode == 1
    assert "missing required setting(s): PROJECT_ID" in result.stderr
    assert cloud.calls() == []


# check / promote


def test_check_gets_health_with_an_identity_token(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url)

    result = cloud.run("deploy.sh", "check", "canary")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, TOKEN]
    assert health_server.requests == [("/health", "Bearer fake-identity-token")]
    assert "tag canary is healthy" in result.stderr
    assert f"+ curl --silent --show-error --fail --max-time 30 --header 'Authorization: Bearer <identity token>' {health_server.url}/health" in result.stderr
    assert "fake-identity-token" not in result.stderr


def test_check_fails_on_500(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url)
    health_server.answer(500)

    result = cloud.run("deploy.sh", "check", "canary")

    assert result.returncode == 1
    assert "health check of tag 'canary' failed" in result.stderr


def test_promote_checks_health_then_moves_part_of_the_traffic(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url)

    result = cloud.run("deploy.sh", "promote", "canary", "10")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, TOKEN, update_traffic("--to-tags=canary=10")]
    assert health_server.requests == [("/health", "Bearer fake-identity-token")]
    assert "to go back: ./deploy.sh rollback crontick-00002-bbb" in result.stderr


def test_promote_the_latest_revision_fully_serves_latest(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url)

    result = cloud.run("deploy.sh", "promote", "canary")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, TOKEN, update_traffic("--to-latest")]


def test_promote_an_older_revision_fully_pins_the_tag(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url, latest="crontick-00004-ddd")

    result = cloud.run("deploy.sh", "promote", "canary", "100")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, TOKEN, update_traffic("--to-tags=canary=100")]


def test_failed_health_check_moves_no_traffic(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url)
    health_server.answer(500)

    result = cloud.run("deploy.sh", "promote", "canary", "50")

    assert result.returncode == 1
    assert "health check of tag 'canary' failed" in result.stderr
    assert "traffic left as it was" in result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, TOKEN]
    assert health_server.requests == [("/health", "Bearer fake-identity-token")]


def test_unreachable_tag_url_moves_no_traffic(cloud: Cloud, health_server: HealthServer) -> None:
    url = health_server.url
    health_server.server.shutdown()
    health_server.server.server_close()
    with_tag(cloud, url)

    result = cloud.run("deploy.sh", "promote", "canary")

    assert result.returncode == 1
    assert cloud.calls() == [DESCRIBE_JSON, TOKEN]


def test_promote_of_an_unknown_tag_moves_no_traffic(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url, tag="other")

    result = cloud.run("deploy.sh", "promote", "canary")

    assert result.returncode == 1
    assert "has no traffic tag 'canary'" in result.stderr
    assert cloud.calls() == [DESCRIBE_JSON]
    assert health_server.requests == []


@pytest.mark.parametrize("args", [("canary", "0"), ("canary", "101"), ("canary", "ten"), ("Bad_Tag",)])
def test_promote_refuses_bad_arguments_without_calling_gcloud(cloud: Cloud, args: tuple[str, ...]) -> None:
    result = cloud.run("deploy.sh", "promote", *args)

    assert result.returncode == 1
    assert "deploy.sh: error:" in result.stderr
    assert cloud.calls() == []


def test_failed_describe_stops_before_the_health_check(cloud: Cloud, health_server: HealthServer) -> None:
    with_tag(cloud, health_server.url)
    cloud.state["fail"] = ["--format=json"]
    cloud.save()

    result = cloud.run("deploy.sh", "promote", "canary")

    assert result.returncode == 1
    assert "PERMISSION_DENIED" in result.stderr
    assert cloud.calls() == [DESCRIBE_JSON]


# rollback / status

REVISIONS_LIST = [
    "run", "revisions", "list", P, R, f"--service={SERVICE}", "--sort-by=~metadata.creationTimestamp", "--format=value(metadata.name)",
]


def test_rollback_sends_all_traffic_to_the_previous_revision(cloud: Cloud) -> None:
    cloud.state["services"][SERVICE] = {
        "url": SERVICE_URL,
        "traffic": [{"revisionName": "crontick-00003-ccc", "percent": 100, "latestRevision": True}],
        "revisions": ["crontick-00003-ccc", "crontick-00002-bbb", "crontick-00001-aaa"],
    }
    cloud.save()

    result = cloud.run("deploy.sh", "rollback")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, REVISIONS_LIST, update_traffic("--to-revisions=crontick-00002-bbb=100")]
    assert "rolling back from crontick-00003-ccc to crontick-00002-bbb" in result.stderr


def test_rollback_of_a_canary_returns_traffic_to_the_revision_before_it(cloud: Cloud) -> None:
    cloud.state["services"][SERVICE] = {
        "url": SERVICE_URL,
        "traffic": [
            {"revisionName": "crontick-00002-bbb", "percent": 90},
            {"revisionName": "crontick-00003-ccc", "percent": 10, "tag": "canary", "url": "http://127.0.0.1:9"},
        ],
        "revisions": ["crontick-00003-ccc", "crontick-00002-bbb", "crontick-00001-aaa"],
    }
    cloud.save()

    result = cloud.run("deploy.sh", "rollback")

    assert result.returncode == 0, result.stderr
    assert cloud.calls()[-1] == update_traffic("--to-revisions=crontick-00002-bbb=100")


def test_rollback_with_no_older_revision_changes_nothing(cloud: Cloud) -> None:
    cloud.state["services"][SERVICE] = {
        "url": SERVICE_URL,
        "traffic": [{"revisionName": "crontick-00001-aaa", "percent": 100}],
        "revisions": ["crontick-00001-aaa"],
    }
    cloud.save()

    result = cloud.run("deploy.sh", "rollback")

    assert result.returncode == 1
    assert "no revision older than crontick-00001-aaa" in result.stderr
    assert cloud.calls() == [DESCRIBE_JSON, REVISIONS_LIST]


def test_rollback_to_a_named_revision(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "rollback", "crontick-00001-aaa")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [update_traffic("--to-revisions=crontick-00001-aaa=100")]


def test_status(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "status")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [
        ["run", "services", "describe", SERVICE, P, R, "--format=yaml(status.url,status.latestReadyRevisionName,status.traffic)"],
        ["run", "revisions", "list", P, R, f"--service={SERVICE}", "--sort-by=~metadata.creationTimestamp", "--limit=5"],
    ]


@pytest.mark.parametrize("args", [(), ("bogus",), ("deploy-tag",), ("check",), ("status", "extra")])
def test_usage_errors_call_no_gcloud(cloud: Cloud, args: tuple[str, ...]) -> None:
    result = cloud.run("deploy.sh", *args, env=APP_ENV)

    assert result.returncode == 2
    assert "deploy.sh deploy" in result.stderr
    assert cloud.calls() == []


# SCHEDULER_DISPATCH=cloud_tasks

TASKS_QUEUE = f"projects/{PROJECT}/locations/{REGION}/queues/crontick-runs"
TASKS_SA = f"crontick-tasks@{PROJECT}.iam.gserviceaccount.com"
TASKS_APP_ENV = APP_ENV | {
    "SCHEDULER_DISPATCH": "cloud_tasks",
    "CLOUD_TASKS_QUEUE": TASKS_QUEUE,
    "CLOUD_TASKS_TARGET_URL": f"{SERVICE_URL}/tasks/run",
    "CLOUD_TASKS_SERVICE_ACCOUNT": TASKS_SA,
    "TASKS_ALLOWED_EMAILS": f"{TASKS_SA},ops@example.com",
    "SCHEDULER_DISPATCH_CONCURRENCY": "32",
    "SCHEDULER_DISPATCH_LEASE_SECONDS": "900",
}


def test_cloud_tasks_deploy_passes_the_dispatch_settings_and_a_30_minute_timeout(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy", env=TASKS_APP_ENV)

    assert result.returncode == 0, result.stderr
    (call,) = cloud.calls()
    (flag,) = [a for a in call if a.startswith("--set-env-vars=")]
    assert flag == (
        ENV_VARS_FLAG + "|SCHEDULER_DISPATCH=cloud_tasks|SCHEDULER_DISPATCH_LEASE_SECONDS=900|SCHEDULER_DISPATCH_CONCURRENCY=32"
        f"|CLOUD_TASKS_QUEUE={TASKS_QUEUE}|CLOUD_TASKS_TARGET_URL={SERVICE_URL}/tasks/run|CLOUD_TASKS_SERVICE_ACCOUNT={TASKS_SA}"
        f"|TASKS_ALLOWED_EMAILS={TASKS_SA},ops@example.com"
    )
    assert call == [*deploy_call()[:7], f"--service-account={RUNTIME_SA}", flag, "--timeout=1800", "--concurrency=8", "--quiet"]


def test_inline_deploy_keeps_the_5_minute_timeout(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy", env=APP_ENV | {"SCHEDULER_DISPATCH": "inline"})

    assert result.returncode == 0, result.stderr
    (call,) = cloud.calls()
    assert "--timeout=300" in call
    assert any(a.endswith("|SCHEDULER_DISPATCH=inline") for a in call)


@pytest.mark.parametrize("unset", ["CLOUD_TASKS_QUEUE", "CLOUD_TASKS_TARGET_URL", "CLOUD_TASKS_SERVICE_ACCOUNT"])
def test_cloud_tasks_deploy_refuses_missing_settings_without_calling_gcloud(cloud: Cloud, unset: str) -> None:
    result = cloud.run("deploy.sh", "deploy", env=TASKS_APP_ENV | {unset: None})  # type: ignore[dict-item]

    assert result.returncode == 1
    assert f"deploy.sh: error: missing required setting(s): {unset}" in result.stderr
    assert cloud.calls() == []


def test_deploy_refuses_an_unknown_dispatch_mode(cloud: Cloud) -> None:
    result = cloud.run("deploy.sh", "deploy", env=APP_ENV | {"SCHEDULER_DISPATCH": "pubsub"})

    assert result.returncode == 1
    assert "SCHEDULER_DISPATCH=pubsub: must be inline or cloud_tasks" in result.stderr
    assert cloud.calls() == []
