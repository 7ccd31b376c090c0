"""One validation of a job behind every door (issue: hardening).

Each finding that a 201 used to let in is refused here, through the real app,
with a 400 whose ``error.field`` names the culprit; the same rules refuse a
snapshot import as a whole, listing every problem.
"""

from __future__ import annotations

import json
import random

import pytest

from main import create_app
from scheduler import jobspec
from scheduler.errors import ValidationError
from scheduler.jobspec import JobLimits, check_payload, job_problems
from scheduler.model import JobStatus, to_iso
from scheduler.snapshot import SnapshotError, build_snapshot, checksum, import_snapshot, parse_snapshot
from storage.memory import MemoryStore
from tests.support.clock import T0
from tests.support.jobs import make_job

API = "/api/v1"


@pytest.fixture
def app(config, clock, registry):
    return create_app(config, store=MemoryStore(), clock=clock, registry=registry, rng=random.Random(1))


@pytest.fixture
def api(app):
    return app.test_client()


def post_raw(api, text: str):
    return api.post(f"{API}/jobs", data=text.encode("utf-8", "surrogatepass"), content_type="application/json")


def refused(response, field: str) -> str:
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])
    error = response.get_json()["error"]
    assert error["field"] == field, error
    return error["message"]


def nested(depth: int) -> str:
    return "[" * (depth - 1) + "]" * (depth - 1)


@pytest.mark.parametrize("depth", [33, 975, 980, 5000])
def test_deep_payloads_are_refused_naming_payload(api, depth):
    body = '{"job_type": "log", "interval_seconds": 60, "payload": {"x": ' + nested(depth) + "}}"
    response = post_raw(api, body)
    if depth > 900:  # the body parser refuses what it cannot parse before any field is read
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] in ("payload", "body")
    else:
        assert "nested more than 32 levels" in refused(response, "payload")


def test_payload_at_the_depth_limit_is_accepted(api):
    payload = {"x": json.loads(nested(31))}  # the object is level 1, the arrays levels 2..32
    check_payload(payload)
    response = api.post(f"{API}/jobs", json={"job_type": "log", "interval_seconds": 60, "payload": payload})
    assert response.status_code == 201, response.get_json()


def test_payload_size_limit(api):
    fits = {"text": "x" * (jobspec.MAX_PAYLOAD_BYTES - len('{"text":""}'))}
    assert api.post(f"{API}/jobs", json={"job_type": "log", "interval_seconds": 60, "payload": fits}).status_code == 201
    over = {"text": fits["text"] + "x"}
    message = refused(api.post(f"{API}/jobs", json={"job_type": "log", "interval_seconds": 60, "payload": over}), "payload")
    assert f"{jobspec.MAX_PAYLOAD_BYTES + 1} bytes" in message


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_non_finite_numbers_are_refused(api, number):
    message = refused(post_raw(api, '{"job_type": "log", "interval_seconds": 60, "payload": {"x": ' + number + "}}"), "payload")
    assert "non-finite" in message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_not_json(api, constant):
    refused(post_raw(api, '{"job_type": "log", "interval_seconds": 60, "payload": {"x": ' + constant + "}}"), "body")


@pytest.mark.parametrize(
    "body, field",
    [
        ('{"job_type": "log", "interval_seconds": 60, "payload": {"x": "\\ud800"}}', "payload"),
        ('{"job_type": "log", "interval_seconds": 60, "payload": {"\\udfff": 1}}', "payload"),
        ('{"job_type": "log", "interval_seconds": 60, "idempotency_key": "k\\ud800"}', "idempotency_key"),
    ],
)
def test_lone_surrogates_are_refused(api, body, field):
    assert "lone surrogate" in refused(post_raw(api, body), field)


@pytest.mark.parametrize("name", ["A" * 256, "Europe/" + "x" * 300, "../../etc/passwd", "Europe/Paris\x00"])
def test_time_zones_that_are_not_iana_names(api, name):
    response = api.post(f"{API}/jobs", json={"job_type": "log", "cron": "0 9 * * *", "timezone": name})
    assert "time zone" in refused(response, "timezone")


@pytest.mark.parametrize(
    "fields, field, words",
    [
        ({"max_attempts": 10**9}, "max_attempts", "between 1 and 100"),
        ({"interval_seconds": 10**12}, "interval_seconds", "between 1 and 31622400"),
        ({"timeout_seconds": 1e9}, "timeout_seconds", "SCHEDULER_DISPATCH=cloud_tasks"),
        ({"timeout_seconds": 3600}, "timeout_seconds", "below 150"),
        ({"timeout_seconds": 150}, "timeout_seconds", "below 150"),
        ({"cron": "0 0 30 2 *", "interval_seconds": None}, "cron", "never fires"),
        ({"schedule_at": "0001-01-01T00:00:00Z", "interval_seconds": None}, "schedule_at", "years 1970 to 9999"),
    ],
)
def test_limits_are_refused_naming_the_field(api, fields, field, words):
    body = {k: v for k, v in ({"job_type": "log", "interval_seconds": 60} | fields).items() if v is not None}
    assert words in refused(api.post(f"{API}/jobs", json=body), field)


def test_timeout_up_to_the_tasks_deadline_in_cloud_tasks_mode():
    limits = JobLimits("cloud_tasks", jobspec.MAX_TIMEOUT_SECONDS_TASKS)
    assert limits.timeout_problem(1800) is None
    assert "between" in limits.timeout_problem(1800.5)
    inline = JobLimits("inline", 150.0)
    assert inline.timeout_problem(149.9) is None
    assert "SCHEDULER_DISPATCH=cloud_tasks" in inline.timeout_problem(150)


def test_a_paused_job_cannot_be_patched_to_a_never_firing_cron(api):
    job = api.post(f"{API}/jobs", json={"job_type": "log", "cron": "0 9 * * *"}).get_json()
    assert api.post(f"{API}/jobs/{job['id']}:pause").status_code == 200
    refused(api.patch(f"{API}/jobs/{job['id']}", json={"cron": "0 0 30 2 *"}), "cron")
    after = api.get(f"{API}/jobs/{job['id']}").get_json()
    assert after["cron"] == "0 9 * * *" and after["status"] == "paused"
    assert api.post(f"{API}/jobs/{job['id']}:resume").status_code == 200


def test_patch_runs_the_same_payload_checks(api):
    job = api.post(f"{API}/jobs", json={"job_type": "log", "interval_seconds": 60}).get_json()
    refused(post_patch := api.patch(f"{API}/jobs/{job['id']}", data=b'{"payload": {"x": 1e999}}', content_type="application/json"), "payload")
    assert post_patch.status_code == 400
    refused(api.patch(f"{API}/jobs/{job['id']}", json={"timeout_seconds": 3600}), "timeout_seconds")


def test_job_problems_lists_every_problem_with_its_field():
    bad = make_job("bad", payload={"x": float("inf")}, max_attempts=10**9, timezone="X" * 300, timeout_seconds=1e9)
    fields = [problem.field for problem in job_problems(bad)]
    assert fields == ["payload", "timezone", "max_attempts", "timeout_seconds"]
    assert job_problems(make_job("good")) == []


# -- import -------------------------------------------------------------------------
def _document(jobs) -> bytes:
    document = {"format": "crontick-snapshot", "version": 1, "exported_at": to_iso(T0), "store": "memory", "with_history": False, "jobs": jobs}
    document["checksum"] = checksum(document)
    return json.dumps(document).encode()


def test_a_poisoned_import_is_refused_as_a_whole_listing_every_problem():
    ordinary = [make_job(f"ok-{n}").to_dict() for n in range(5)]
    never = make_job("never", schedule_at=None, cron="0 0 30 2 *", misfire="run_all").to_dict()
    huge = make_job("huge", schedule_at=None, interval_seconds=10**12).to_dict()
    tz = make_job("tz", schedule_at=None, cron="0 9 * * *", timezone="Z" * 300).to_dict()
    many = make_job("many", max_attempts=10**9, timeout_seconds=1e9).to_dict()
    store = MemoryStore()
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(_document(ordinary + [never, huge, tz, many]))
    problems = caught.value.problems
    assert any("'never'" in p and "cron" in p and "never fires" in p for p in problems), problems
    assert any("'huge'" in p and "interval_seconds" in p for p in problems), problems
    assert any("'tz'" in p and "timezone" in p for p in problems), problems
    assert any("'many'" in p and "max_attempts" in p for p in problems), problems
    assert any("'many'" in p and "timeout_seconds" in p for p in problems), problems
    assert len(problems) == 5
    assert store.count_by_status()[JobStatus.PENDING.value] == 0  # nothing written


def test_whatever_the_api_accepts_exports_and_imports_back(api, app):
    for body in (
        {"job_type": "log", "interval_seconds": 60, "payload": {"x": 1.5e300, "s": "é😀", "n": [[[]]]}},
        {"job_type": "log", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "timeout_seconds": 149},
    ):
        assert api.post(f"{API}/jobs", json=body).status_code == 201
    store = app.extensions["crontick"].store
    document, _ = build_snapshot(store, now=T0)
    snapshot = parse_snapshot(json.dumps(document).encode())
    target = MemoryStore()
    summary = import_snapshot(target, snapshot)
    assert summary.created == 2
    assert {j.id: j for j in target.list_jobs()} == {j.id: j for j in store.list_jobs()}


def test_check_payload_never_recurses():
    deep: dict = {}
    cursor = deep
    for _ in range(100_000):
        cursor["x"] = {}
        cursor = cursor["x"]
    with pytest.raises(ValidationError, match="nested more than 32"):
        check_payload(deep)
