"""setup-scheduler.sh: the exact gcloud calls, idempotence, and refusals."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import FIXTURES, INVOKER, PROJECT, REGION, SERVICE, SERVICE_URL, Cloud

P = f"--project={PROJECT}"
APIS = ["services", "enable", "run.googleapis.com", "cloudscheduler.googleapis.com", "iamcredentials.googleapis.com", P]
SA_DESCRIBE = ["iam", "service-accounts", "describe", INVOKER, P]
SA_CREATE = ["iam", "service-accounts", "create", "crontick-invoker", P, "--display-name=Cloud Scheduler invoker of crontick"]
BINDING = [
    "run", "services", "add-iam-policy-binding", SERVICE, P, f"--region={REGION}",
    f"--member=serviceAccount:{INVOKER}", "--role=roles/run.invoker", "--condition=None",
]
URL_DESCRIBE = ["run", "services", "describe", SERVICE, P, f"--region={REGION}", "--format=value(status.url)"]
JOB_DESCRIBE = ["scheduler", "jobs", "describe", "crontick-tick", f"--location={REGION}", P]


def job_flags(url: str = SERVICE_URL, schedule: str = "* * * * *", time_zone: str = "Etc/UTC") -> list[str]:
    return [
        "crontick-tick", f"--location={REGION}", P,
        f"--schedule={schedule}",
        f"--time-zone={time_zone}",
        f"--uri={url}/cron/tick",
        "--http-method=POST",
        f"--oidc-service-account-email={INVOKER}",
        f"--oidc-token-audience={url}",
        "--attempt-deadline=180s",
        "--max-retry-attempts=2",
        "--min-backoff=10s",
        "--max-backoff=60s",
        "--description=crontick: POST /cron/tick of crontick",
    ]


JOB_CREATE = ["scheduler", "jobs", "create", "http", *job_flags()]
JOB_UPDATE = ["scheduler", "jobs", "update", "http", *job_flags()]

INDEX_1 = [
    "firestore", "indexes", "composite", "create",
    "--collection-group=scheduler_jobs", "--database=(default)", "--query-scope=collection",
    "--field-config=field-path=status,order=ascending", "--field-config=field-path=next_run_at,order=ascending", P,
]
INDEX_2 = [
    "firestore", "indexes", "composite", "create",
    "--collection-group=scheduler_executions", "--database=(default)", "--query-scope=collection",
    "--field-config=field-path=job_id,order=ascending", "--field-config=field-path=started_at,order=descending", P,
]


def ttl(group: str, field: str = "expire_at", database: str = "(default)") -> list[str]:
    return ["firestore", "fields", "ttls", "update", field, f"--collection-group={group}", f"--database={database}", "--enable-ttl", P]


def exempt(group: str, field: str) -> list[str]:
    return ["firestore", "indexes", "fields", "update", field, f"--collection-group={group}", "--database=(default)", "--disable-indexes", P]


# The fixture's fieldOverrides: two TTL fields (without single-field indexes) and one exempted field.
FIRESTORE_REST = [
    exempt("scheduler_executions", "expire_at"), exempt("scheduler_ticks", "expire_at"), exempt("scheduler_jobs", "payload"),
    ttl("scheduler_executions"), ttl("scheduler_ticks"),
]
FIRESTORE_ENV = {"SCHEDULER_STORAGE": "firestore", "FIRESTORE_INDEXES_FILE": str(FIXTURES / "firestore.indexes.fixture.json")}


def test_first_setup_creates_everything_with_all_flags(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [APIS, URL_DESCRIBE, SA_DESCRIBE, SA_CREATE, BINDING, JOB_DESCRIBE, JOB_CREATE]
    state = cloud.load()
    assert state["service_accounts"] == [INVOKER]
    assert state["bindings"] == [[SERVICE, f"serviceAccount:{INVOKER}", "roles/run.invoker"]]
    assert list(state["scheduler_jobs"]) == ["crontick-tick"]
    # Each command is printed before it runs, quoted so it can be pasted back.
    assert "+ gcloud scheduler jobs create http crontick-tick --location=us-central1 --project=proj-1 '--schedule=* * * * *'" in result.stderr
    assert result.stderr.index("+ gcloud services enable") < result.stderr.index("+ gcloud scheduler jobs create")


def test_setup_is_the_default_verb(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh")

    assert result.returncode == 0, result.stderr
    assert cloud.calls()[-1] == JOB_CREATE


def test_second_setup_updates_and_creates_nothing_twice(cloud: Cloud) -> None:
    assert cloud.run("setup-scheduler.sh", "setup").returncode == 0
    cloud.clear_calls()

    result = cloud.run("setup-scheduler.sh", "setup")

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [APIS, URL_DESCRIBE, SA_DESCRIBE, BINDING, JOB_DESCRIBE, JOB_UPDATE]
    state = cloud.load()
    assert state["service_accounts"] == [INVOKER]
    assert len(state["bindings"]) == 1
    assert list(state["scheduler_jobs"]) == ["crontick-tick"]


def test_settings_change_cadence_zone_names_and_location(cloud: Cloud) -> None:
    env = {
        "SCHEDULER_CADENCE": "*/5 * * * *",
        "SCHEDULER_TIME_ZONE": "Europe/Berlin",
        "SCHEDULER_JOB_NAME": "qa-tick",
        "SCHEDULER_LOCATION": "europe-west1",
        "INVOKER_SERVICE_ACCOUNT": "ticker@other-proj.iam.gserviceaccount.com",
    }
    cloud.state["service_accounts"] = ["ticker@other-proj.iam.gserviceaccount.com"]
    cloud.save()

    result = cloud.run("setup-scheduler.sh", "setup", env=env)

    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    assert ["iam", "service-accounts", "describe", "ticker@other-proj.iam.gserviceaccount.com", P] in calls
    assert not [c for c in calls if c[:3] == ["iam", "service-accounts", "create"]]
    create = calls[-1]
    assert create[:5] == ["scheduler", "jobs", "create", "http", "qa-tick"]
    assert "--location=europe-west1" in create
    assert "--schedule=*/5 * * * *" in create
    assert "--time-zone=Europe/Berlin" in create
    assert "--oidc-service-account-email=ticker@other-proj.iam.gserviceaccount.com" in create


def test_firestore_creates_indexes_and_ttl_and_tolerates_existing_ones(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=FIRESTORE_ENV)

    assert result.returncode == 0, result.stderr
    apis = [*APIS[:-1], "firestore.googleapis.com", P]
    assert cloud.calls() == [apis, URL_DESCRIBE, SA_DESCRIBE, SA_CREATE, BINDING, INDEX_1, INDEX_2, *FIRESTORE_REST, JOB_DESCRIBE, JOB_CREATE]
    assert len(cloud.load()["indexes"]) == 2

    cloud.clear_calls()
    again = cloud.run("setup-scheduler.sh", "setup", env=FIRESTORE_ENV)

    assert again.returncode == 0, again.stderr
    assert cloud.calls() == [apis, URL_DESCRIBE, SA_DESCRIBE, BINDING, INDEX_1, INDEX_2, *FIRESTORE_REST, JOB_DESCRIBE, JOB_UPDATE]
    assert again.stderr.count("index exists already") == 2
    state = cloud.load()
    assert len(state["indexes"]) == 2
    assert state["ttls"] == [["expire_at", "scheduler_executions"], ["expire_at", "scheduler_ticks"]]
    assert len(state["exemptions"]) == 3


def test_firestore_names_database_and_executions_collection(cloud: Cloud) -> None:
    env = FIRESTORE_ENV | {"FIRESTORE_DATABASE": "crontick-qa", "FIRESTORE_EXECUTIONS_COLLECTION": "qa_executions"}

    result = cloud.run("setup-scheduler.sh", "setup", env=env)

    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    assert all("--database=crontick-qa" in c for c in calls if c[0] == "firestore")
    ttls = [c for c in calls if c[:4] == ["firestore", "fields", "ttls", "update"]]
    # The fixture's scheduler_executions TTL is the configured executions collection's: one TTL, not two.
    assert ttls == [ttl("qa_executions", database="crontick-qa"), ttl("scheduler_ticks", database="crontick-qa")]
    assert cloud.load()["ttls"] == [["expire_at", "qa_executions"], ["expire_at", "scheduler_ticks"]]


CUSTOM_COLLECTIONS = {
    "FIRESTORE_JOBS_COLLECTION": "qa_jobs",
    "FIRESTORE_EXECUTIONS_COLLECTION": "qa_runs",
    "FIRESTORE_TICKS_COLLECTION": "qa_beats",
}


def test_every_index_and_ttl_follows_the_configured_collection_names(cloud: Cloud) -> None:
    """The repository's firestore.indexes.json is a template with the default names; with other
    names configured, every index, exemption and TTL is made for those and none for a default."""
    import json

    from tests.deploy.conftest import ROOT

    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    renamed = {
        "scheduler_jobs": "qa_jobs", "scheduler_executions": "qa_runs",
        "scheduler_ticks": "qa_beats", "scheduler_ticks_occurrences": "qa_beats_occurrences",
    }
    assert {i["collectionGroup"] for i in spec["indexes"]} | {o["collectionGroup"] for o in spec["fieldOverrides"]} <= set(renamed)

    result = cloud.run("setup-scheduler.sh", "setup", env={"SCHEDULER_STORAGE": "firestore", **CUSTOM_COLLECTIONS})

    assert result.returncode == 0, result.stderr
    assert "Firestore collections: jobs=qa_jobs executions=qa_runs ticks=qa_beats (database (default))" in result.stderr
    firestore = [c for c in cloud.calls() if c[0] == "firestore"]
    creates = [c for c in firestore if c[:4] == ["firestore", "indexes", "composite", "create"]]
    exempts = [c for c in firestore if c[:4] == ["firestore", "indexes", "fields", "update"]]
    ttls = [c for c in firestore if c[:4] == ["firestore", "fields", "ttls", "update"]]
    assert len(firestore) == len(creates) + len(exempts) + len(ttls)
    # The same indexes as the template, field for field, on the configured collections.
    assert [(c[4], [a for a in c if a.startswith("--field-config=")]) for c in creates] == [
        (
            f"--collection-group={renamed[i['collectionGroup']]}",
            [f"--field-config=field-path={f['fieldPath']},order={f['order'].lower()}" for f in i["fields"]],
        )
        for i in spec["indexes"]
    ]
    overrides = spec["fieldOverrides"]
    assert exempts == [exempt(renamed[o["collectionGroup"]], o["fieldPath"]) for o in overrides if "indexes" in o]
    assert ttls == [ttl(renamed[o["collectionGroup"]], o["fieldPath"]) for o in overrides if o.get("ttl")]
    assert ttls[0] == ttl("qa_runs")  # execution history always expires
    groups = {a.removeprefix("--collection-group=") for c in firestore for a in c if a.startswith("--collection-group=")}
    assert groups == {"qa_jobs", "qa_runs", "qa_beats", "qa_beats_occurrences"}
    assert not [c for c in firestore if any("scheduler_" in a for a in c)]  # no default name anywhere
    assert not [c for c in firestore if not any(a.startswith("--collection-group=") for a in c)]
    state = cloud.load()
    assert sorted(g for _f, g in state["ttls"]) == ["qa_beats", "qa_beats_occurrences", "qa_jobs", "qa_runs"]  # qa_jobs: finished jobs (retention)


def test_only_the_jobs_collection_renamed_keeps_the_other_defaults(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=FIRESTORE_ENV | {"FIRESTORE_JOBS_COLLECTION": "prod_jobs"})

    assert result.returncode == 0, result.stderr
    calls = cloud.calls()
    index_1 = [*INDEX_1[:4], "--collection-group=prod_jobs", *INDEX_1[5:]]
    rest = [exempt("scheduler_executions", "expire_at"), exempt("scheduler_ticks", "expire_at"), exempt("prod_jobs", "payload"), ttl("scheduler_executions"), ttl("scheduler_ticks")]
    assert [c for c in calls if c[0] == "firestore"] == [index_1, INDEX_2, *rest]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("FIRESTORE_JOBS_COLLECTION", "jobs/sub"), ("FIRESTORE_TICKS_COLLECTION", "my ticks"), ("FIRESTORE_EXECUTIONS_COLLECTION", "__runs__")],
)
def test_an_unusable_collection_name_is_refused_before_any_firestore_change(cloud: Cloud, variable: str, value: str) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=FIRESTORE_ENV | {variable: value})

    assert result.returncode == 1
    assert f"setup-scheduler.sh: error: {variable}={value} is not a usable Firestore collection id" in result.stderr
    assert not [c for c in cloud.calls() if c[0] == "firestore" or c[:3] == ["scheduler", "jobs", "create"]]


def test_firestore_index_failure_other_than_exists_stops(cloud: Cloud) -> None:
    cloud.state["fail"] = ["--collection-group=scheduler_executions --database"]
    cloud.save()

    result = cloud.run("setup-scheduler.sh", "setup", env=FIRESTORE_ENV)

    assert result.returncode != 0
    assert "PERMISSION_DENIED" in result.stderr
    assert cloud.calls()[-1] == INDEX_2
    assert "scheduler_jobs" not in cloud.load()


def test_firestore_without_index_file_is_refused_before_any_index(cloud: Cloud) -> None:
    env = FIRESTORE_ENV | {"FIRESTORE_INDEXES_FILE": str(cloud.tmp / "missing.json")}

    result = cloud.run("setup-scheduler.sh", "setup", env=env)

    assert result.returncode == 1
    assert "missing.json does not exist" in result.stderr
    assert not [c for c in cloud.calls() if c[0] == "firestore" or c[:3] == ["scheduler", "jobs", "create"]]


def test_audience_that_differs_from_the_service_url_is_refused(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env={"OIDC_AUDIENCE": "https://crontick-other.a.run.app"})

    assert result.returncode == 1
    assert "OIDC_AUDIENCE=https://crontick-other.a.run.app" in result.stderr
    assert SERVICE_URL in result.stderr
    assert cloud.calls() == [APIS, URL_DESCRIBE]
    assert "scheduler_jobs" not in cloud.load()


def test_matching_audience_and_domain_allow_list_pass(cloud: Cloud) -> None:
    env = {"OIDC_AUDIENCE": SERVICE_URL + "/", "OIDC_ALLOWED_EMAILS": f"ops@example.com, @{PROJECT}.iam.gserviceaccount.com"}

    result = cloud.run("setup-scheduler.sh", "setup", env=env)

    assert result.returncode == 0, result.stderr
    assert cloud.calls()[-1] == JOB_CREATE


def test_allow_list_without_the_invoker_is_refused(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env={"OIDC_ALLOWED_EMAILS": "someone@example.com"})

    assert result.returncode == 1
    assert f"does not allow the invoker {INVOKER}" in result.stderr
    assert cloud.calls() == [APIS, URL_DESCRIBE]
    assert "scheduler_jobs" not in cloud.load()


def test_missing_service_stops_before_the_job(cloud: Cloud) -> None:
    cloud.state["services"] = {}
    cloud.save()

    result = cloud.run("setup-scheduler.sh", "setup")

    assert result.returncode == 1
    assert "Cannot find service [crontick]" in result.stderr
    assert "deploy it first: ./deploy.sh deploy" in result.stderr
    assert cloud.calls() == [APIS, URL_DESCRIBE]
    assert "scheduler_jobs" not in cloud.load()


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("pause", ["scheduler", "jobs", "pause", "crontick-tick", f"--location={REGION}", P]),
        ("resume", ["scheduler", "jobs", "resume", "crontick-tick", f"--location={REGION}", P]),
        ("run", ["scheduler", "jobs", "run", "crontick-tick", f"--location={REGION}", P]),
        ("status", JOB_DESCRIBE),
    ],
)
def test_job_verbs(cloud: Cloud, verb: str, expected: list[str]) -> None:
    cloud.state["scheduler_jobs"] = {"crontick-tick": {}}
    cloud.save()

    result = cloud.run("setup-scheduler.sh", verb)

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [expected]


def test_run_twice_triggers_two_ticks(cloud: Cloud) -> None:
    """The double-trigger drill: both runs reach Cloud Scheduler; the app deduplicates."""
    cloud.state["scheduler_jobs"] = {"crontick-tick": {}}
    cloud.save()

    assert cloud.run("setup-scheduler.sh", "run").returncode == 0
    assert cloud.run("setup-scheduler.sh", "run").returncode == 0
    assert [c[:3] for c in cloud.calls()] == [["scheduler", "jobs", "run"]] * 2


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("PROJECT_ID", "PROJECT_ID"),
        ("REGION", "REGION"),
        ("SERVICE_NAME", "SERVICE_NAME"),
    ],
)
def test_missing_required_settings_are_refused_without_calling_gcloud(cloud: Cloud, unset: str, named: str) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env={unset: None})  # type: ignore[dict-item]

    assert result.returncode == 1
    assert f"setup-scheduler.sh: error: missing required setting(s): {named}" in result.stderr
    assert cloud.calls() == []


def test_all_settings_missing_are_named_together(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "status", base={})

    assert result.returncode == 1
    assert "missing required setting(s): PROJECT_ID REGION SERVICE_NAME" in result.stderr
    assert cloud.calls() == []


def test_settings_come_from_env_file_and_the_environment_wins(cloud: Cloud) -> None:
    cloud.env_file.write_text(
        "# comment\n"
        "export PROJECT_ID=proj-1\n"
        'REGION="europe-west1"\n'
        "SERVICE_NAME='from-file'\n"
        "SCHEDULER_CADENCE=*/2 * * * *\n"
    )
    cloud.state["services"]["from-env"] = {"url": "https://from-env-abc-ew.a.run.app"}
    cloud.save()

    result = cloud.run("setup-scheduler.sh", "setup", base={"SERVICE_NAME": "from-env"})

    assert result.returncode == 0, result.stderr
    create = cloud.calls()[-1]
    assert create[:5] == ["scheduler", "jobs", "create", "http", "from-env-tick"]
    assert "--location=europe-west1" in create
    assert "--schedule=*/2 * * * *" in create
    assert "--uri=https://from-env-abc-ew.a.run.app/cron/tick" in create


def test_google_cloud_project_stands_for_project_id(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "status", env={"PROJECT_ID": None, "GOOGLE_CLOUD_PROJECT": "proj-9"})  # type: ignore[dict-item]

    assert cloud.calls() == [["scheduler", "jobs", "describe", "crontick-tick", f"--location={REGION}", "--project=proj-9"]]
    assert result.returncode == 1  # the job does not exist in the fake


def test_unknown_verb_is_refused_without_calling_gcloud(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "destroy")

    assert result.returncode == 2
    assert "unknown verb 'destroy'" in result.stderr
    assert cloud.calls() == []


def test_the_repository_index_file_is_understood(cloud: Cloud) -> None:
    """firestore.indexes.json (the store's own file): one create per index, then the TTL."""
    import json

    from tests.deploy.conftest import ROOT

    path = ROOT / "firestore.indexes.json"
    indexes = json.loads(path.read_text())["indexes"]

    result = cloud.run("setup-scheduler.sh", "setup", env={"SCHEDULER_STORAGE": "firestore"})

    assert result.returncode == 0, result.stderr
    creates = [c for c in cloud.calls() if c[:4] == ["firestore", "indexes", "composite", "create"]]
    assert [c[4] for c in creates] == [f"--collection-group={i['collectionGroup']}" for i in indexes]
    assert [len([a for a in c if a.startswith("--field-config=")]) for c in creates] == [len(i["fields"]) for i in indexes]
    ttls = [c[4:6] for c in cloud.calls() if c[:4] == ["firestore", "fields", "ttls", "update"]]
    assert ["expire_at", "--collection-group=scheduler_executions"] in ttls
    expected = {(o["fieldPath"], o["collectionGroup"]) for o in json.loads(path.read_text()).get("fieldOverrides", []) if o.get("ttl")}
    assert {(f, g.removeprefix("--collection-group=")) for f, g in ttls} == expected | {("expire_at", "scheduler_executions")}


def test_unsupported_field_override_is_refused_before_any_firestore_change(cloud: Cloud) -> None:
    spec = cloud.tmp / "indexes.json"
    spec.write_text('{"indexes": [], "fieldOverrides": [{"collectionGroup": "g", "fieldPath": "f", "indexes": [{"order": "ASCENDING"}]}]}')

    result = cloud.run("setup-scheduler.sh", "setup", env=FIRESTORE_ENV | {"FIRESTORE_INDEXES_FILE": str(spec)})

    assert result.returncode == 1
    assert "only index exemptions" in result.stderr
    assert not [c for c in cloud.calls() if c[0] == "firestore" or c[:2] == ["scheduler", "jobs"]]


# SCHEDULER_DISPATCH=cloud_tasks: the queue, its service account and the two bindings.

TASKS_SA = f"crontick-tasks@{PROJECT}.iam.gserviceaccount.com"
RUNTIME = f"crontick-run@{PROJECT}.iam.gserviceaccount.com"
TASKS_QUEUE = f"projects/{PROJECT}/locations/europe-west1/queues/crontick-runs"
TASKS_ENV = {
    "SCHEDULER_DISPATCH": "cloud_tasks",
    "CLOUD_TASKS_QUEUE": TASKS_QUEUE,
    "CLOUD_TASKS_SERVICE_ACCOUNT": TASKS_SA,
    "RUNTIME_SERVICE_ACCOUNT": RUNTIME,
}
TASKS_SA_DESCRIBE = ["iam", "service-accounts", "describe", TASKS_SA, P]
TASKS_SA_CREATE = ["iam", "service-accounts", "create", "crontick-tasks", P, "--display-name=Cloud Tasks invoker of crontick"]
TASKS_INVOKER = [
    "run", "services", "add-iam-policy-binding", SERVICE, P, f"--region={REGION}",
    f"--member=serviceAccount:{TASKS_SA}", "--role=roles/run.invoker", "--condition=None",
]
ACT_AS = [
    "iam", "service-accounts", "add-iam-policy-binding", TASKS_SA, P,
    f"--member=serviceAccount:{RUNTIME}", "--role=roles/iam.serviceAccountUser", "--condition=None",
]
QUEUE_DESCRIBE = ["tasks", "queues", "describe", "crontick-runs", "--location=europe-west1", P]
QUEUE_FLAGS = [
    "crontick-runs", "--location=europe-west1", P, "--max-dispatches-per-second=100", "--max-concurrent-dispatches=100",
    "--max-attempts=5", "--min-backoff=10s", "--max-backoff=300s",
]
ENQUEUER = [
    "tasks", "queues", "add-iam-policy-binding", "crontick-runs", "--location=europe-west1", P,
    f"--member=serviceAccount:{RUNTIME}", "--role=roles/cloudtasks.enqueuer",
]
TASKS_APIS = [*APIS[:-1], "cloudtasks.googleapis.com", P]


def test_cloud_tasks_creates_queue_account_and_bindings(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV)

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [
        TASKS_APIS, URL_DESCRIBE, SA_DESCRIBE, SA_CREATE, BINDING,
        TASKS_SA_DESCRIBE, TASKS_SA_CREATE, TASKS_INVOKER, ACT_AS, QUEUE_DESCRIBE, ["tasks", "queues", "create", *QUEUE_FLAGS],
        ENQUEUER, JOB_DESCRIBE, JOB_CREATE,
    ]
    state = cloud.load()
    assert state["service_accounts"] == [INVOKER, TASKS_SA]
    assert state["bindings"] == [[SERVICE, f"serviceAccount:{INVOKER}", "roles/run.invoker"], [SERVICE, f"serviceAccount:{TASKS_SA}", "roles/run.invoker"]]
    assert state["sa_bindings"] == [[TASKS_SA, f"serviceAccount:{RUNTIME}", "roles/iam.serviceAccountUser"]]
    assert state["queue_bindings"] == [[TASKS_QUEUE, f"serviceAccount:{RUNTIME}", "roles/cloudtasks.enqueuer"]]
    assert state["queues"] == {TASKS_QUEUE: {
        "--max-dispatches-per-second": "100", "--max-concurrent-dispatches": "100", "--max-attempts": "5",
        "--min-backoff": "10s", "--max-backoff": "300s",
    }}
    assert f"deploy with CLOUD_TASKS_TARGET_URL={SERVICE_URL}/tasks/run" in result.stderr


def test_cloud_tasks_second_setup_updates_the_queue_and_creates_nothing_twice(cloud: Cloud) -> None:
    assert cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV).returncode == 0
    cloud.clear_calls()
    env = TASKS_ENV | {
        "TASKS_QUEUE_MAX_DISPATCHES_PER_SECOND": "20", "TASKS_QUEUE_MAX_CONCURRENT_DISPATCHES": "50", "TASKS_QUEUE_MAX_ATTEMPTS": "3",
        "TASKS_QUEUE_MIN_BACKOFF": "5s", "TASKS_QUEUE_MAX_BACKOFF": "60s", "CLOUD_TASKS_TARGET_URL": f"{SERVICE_URL}/tasks/run",
    }

    result = cloud.run("setup-scheduler.sh", "setup", env=env)

    assert result.returncode == 0, result.stderr
    update = [
        "tasks", "queues", "update", "crontick-runs", "--location=europe-west1", P, "--max-dispatches-per-second=20",
        "--max-concurrent-dispatches=50", "--max-attempts=3", "--min-backoff=5s", "--max-backoff=60s",
    ]
    assert cloud.calls() == [TASKS_APIS, URL_DESCRIBE, SA_DESCRIBE, BINDING, TASKS_SA_DESCRIBE, TASKS_INVOKER, ACT_AS, QUEUE_DESCRIBE, update, ENQUEUER, JOB_DESCRIBE, JOB_UPDATE]
    state = cloud.load()
    assert state["service_accounts"] == [INVOKER, TASKS_SA]
    assert len(state["bindings"]) == 2 and len(state["sa_bindings"]) == 1 and len(state["queue_bindings"]) == 1
    assert state["queues"][TASKS_QUEUE]["--max-dispatches-per-second"] == "20"
    assert "deploy with CLOUD_TASKS_TARGET_URL" not in result.stderr


def test_cloud_tasks_reads_the_runtime_account_from_the_service(cloud: Cloud) -> None:
    cloud.state["services"][SERVICE]["serviceAccountName"] = "svc-runtime@proj-1.iam.gserviceaccount.com"
    cloud.save()

    result = cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV | {"RUNTIME_SERVICE_ACCOUNT": None})  # type: ignore[dict-item]

    assert result.returncode == 0, result.stderr
    assert ["run", "services", "describe", SERVICE, P, f"--region={REGION}", "--format=value(spec.template.spec.serviceAccountName)"] in cloud.calls()
    assert cloud.load()["sa_bindings"] == [[TASKS_SA, "serviceAccount:svc-runtime@proj-1.iam.gserviceaccount.com", "roles/iam.serviceAccountUser"]]


def test_cloud_tasks_without_a_runtime_account_stops_before_the_queue(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV | {"RUNTIME_SERVICE_ACCOUNT": None})  # type: ignore[dict-item]

    assert result.returncode == 1
    assert "service crontick names no runtime service account; set RUNTIME_SERVICE_ACCOUNT" in result.stderr
    assert not [c for c in cloud.calls() if c[0] == "tasks" or c[:2] == ["scheduler", "jobs"]]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"CLOUD_TASKS_QUEUE": None}, "missing required setting(s): CLOUD_TASKS_QUEUE"),
        ({"CLOUD_TASKS_SERVICE_ACCOUNT": None}, "missing required setting(s): CLOUD_TASKS_SERVICE_ACCOUNT"),
        ({"CLOUD_TASKS_QUEUE": "crontick-runs"}, "CLOUD_TASKS_QUEUE=crontick-runs: must be a full queue name"),
        ({"CLOUD_TASKS_SERVICE_ACCOUNT": "crontick-tasks"}, "CLOUD_TASKS_SERVICE_ACCOUNT=crontick-tasks: must be a service account email"),
        ({"CLOUD_TASKS_TARGET_URL": "https://elsewhere.example/tasks/run"}, f"but the service's /tasks/run is {SERVICE_URL}/tasks/run"),
        ({"TASKS_ALLOWED_EMAILS": "ops@example.com"}, f"TASKS_ALLOWED_EMAILS=ops@example.com does not allow the tasks account {TASKS_SA}"),
        ({"SCHEDULER_DISPATCH": "pubsub"}, "SCHEDULER_DISPATCH=pubsub: must be inline or cloud_tasks"),
    ],
)
def test_cloud_tasks_settings_the_app_would_not_agree_with_are_refused_before_any_change(cloud: Cloud, changes: dict, message: str) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV | changes)

    assert result.returncode == 1
    assert message in result.stderr
    assert not [c for c in cloud.calls() if "create" in c or "add-iam-policy-binding" in c or c[0] == "tasks"]


def test_cloud_tasks_allow_list_with_the_tasks_domain_passes(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV | {"TASKS_ALLOWED_EMAILS": f"ops@example.com, @{PROJECT}.iam.gserviceaccount.com"})

    assert result.returncode == 0, result.stderr
    assert ["tasks", "queues", "create", *QUEUE_FLAGS] in cloud.calls()


def test_inline_mode_sets_up_no_tasks(cloud: Cloud) -> None:
    result = cloud.run("setup-scheduler.sh", "setup", env=TASKS_ENV | {"SCHEDULER_DISPATCH": "inline"})

    assert result.returncode == 0, result.stderr
    assert cloud.calls() == [APIS, URL_DESCRIBE, SA_DESCRIBE, SA_CREATE, BINDING, JOB_DESCRIBE, JOB_CREATE]
