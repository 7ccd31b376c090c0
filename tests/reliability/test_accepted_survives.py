"""Property: whatever the API accepts survives a restart, an export, an import into
every store kind and a tick, as the same job; whatever it refuses is a 4xx naming
the field (hardening issue).

Generated bodies mix valid and hostile values: nested and wide payloads, huge and
non-finite numbers, lone surrogates, real and made-up time zones, never-firing
crons, out-of-range limits. ``make test`` runs it on the JSON store;
``make drills`` (``CRONTICK_DRILLS=long``) on the memory, JSON, Firestore and PostgreSQL
stores with more examples.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from main import create_app
from scheduler.jobspec import check_payload
from scheduler.model import JobStatus, to_iso
from scheduler.snapshot import build_snapshot, import_snapshot, parse_snapshot
from storage.jsonfile import JsonFileStore
from storage.memory import MemoryStore
from tests.conftest import BASE_CONFIG
from tests.reliability.conftest import LONG
from tests.support.clock import FakeClock
from tests.support.handlers import register as register_test_handlers

EXAMPLES = 300 if LONG else 60
TARGET_KINDS = ["memory", "json", "firestore", "postgres"] if LONG else ["json"]
KIND_MARKS = {"firestore": pytest.mark.firestore, "postgres": pytest.mark.postgres}

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Kiritimati", "Etc/GMT+12", "Mars/Olympus", "A" * 300, "../../etc/passwd", "", "Europe/Berlin\x00", "\ud800"]
CRONS = ["* * * * *", "30 2 * * *", "0 0 29 2 *", "0 0 30 2 *", "@daily", "61 * * * *", "* * * *", "0 9 * * 1-5"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "é😀"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=30)


@st.composite
def deep(draw):
    depth = draw(st.integers(min_value=1, max_value=60))
    value: object = draw(scalars)
    for _ in range(depth):
        value = [value]
    return value


bodies = st.fixed_dictionaries(
    {"job_type": st.just("log")},
    optional={
        "payload": st.one_of(st.dictionaries(st.text(max_size=8), st.one_of(json_values, deep()), max_size=5), json_values),
        "cron": st.sampled_from(CRONS),
        "interval_seconds": st.one_of(st.integers(min_value=-5, max_value=10**13), st.floats(allow_nan=True)),
        "schedule_at": st.sampled_from(["2026-01-05T12:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-01-05T12:00:00", "soon"]),
        "timezone": st.sampled_from(ZONES),
        "misfire": st.sampled_from(["run_once", "skip", "run_all", "bogus"]),
        "overlap": st.sampled_from(["skip", "buffer_one", "buffer_all", "replace", "bogus"]),
        "max_attempts": st.one_of(st.integers(min_value=-2, max_value=10**10), st.floats(allow_nan=True)),
        "timeout_seconds": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-1, max_value=10**10)),
        "misfire_grace_seconds": st.integers(min_value=-1, max_value=10**10),
        "idempotency_key": st.one_of(st.text(max_size=10), st.just("k\ud800"), st.just("x" * 501)),
    },
)


def _target(kind: str, tmp_path, request):
    if kind == "memory":
        return MemoryStore()
    if kind == "json":
        return JsonFileStore(tmp_path / f"target-{uuid.uuid4().hex}.json")
    if kind == "postgres":
        from storage.postgres import PostgresStore

        return PostgresStore(request.getfixturevalue("postgres_server").server.create_database())
    emulator = request.getfixturevalue("firestore_emulator")
    from storage.firestore import FirestoreStore

    return FirestoreStore(project=emulator.project, jobs_collection=f"jobs_{uuid.uuid4().hex[:8]}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", [pytest.param(k, marks=KIND_MARKS[k]) if k in KIND_MARKS else k for k in TARGET_KINDS])
def test_whatever_is_accepted_survives_restart_export_import_and_a_tick(tmp_path, request, kind):
    clock = FakeClock()
    path = tmp_path / "jobs.json"
    config = BASE_CONFIG | {"SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(path)}

    def app_for():
        from handlers import build_registry

        registry = build_registry()
        register_test_handlers(registry)
        return create_app(config, store=JsonFileStore(path), clock=clock, registry=registry, rng=random.Random(1))

    app = app_for()
    client = app.test_client()
    accepted: dict[str, dict] = {}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(body=bodies)
    @example(body={"job_type": "log", "interval_seconds": 60, "payload": {"x": 1.5e308, "s": "é😀", "deep": [[[[1]]]]}, "overlap": "buffer_all"})
    @example(body={"job_type": "log", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "misfire": "run_all", "timeout_seconds": 149.5})
    @example(body={"job_type": "log", "schedule_at": "2026-01-05T12:00:00Z", "max_attempts": 100, "idempotency_key": "k"})
    def one(body):
        raw = json.dumps(body, ensure_ascii=True, allow_nan=True)  # lone surrogates as \\udXXX, inf as Infinity
        response = client.post("/api/v1/jobs", data=raw, content_type="application/json")
        assert response.status_code in (200, 201, 400), (response.status_code, raw[:200])
        answer = response.get_json()
        if response.status_code == 400:
            assert answer["error"]["field"] and answer["error"]["message"], answer
            return
        check_payload(answer["payload"])  # what came back is itself valid
        accepted[answer["id"]] = answer

    one()
    assert len(accepted) >= 3  # the explicit examples at least
    # A restart: a new app and store over the same file.
    restarted = app_for().test_client()
    for job_id, before in accepted.items():
        response = restarted.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200 and response.get_json() == before
    # Export, then import into another store of the kind under test.
    document, summary = build_snapshot(JsonFileStore(path), now=clock())
    assert summary.jobs == len(accepted)
    snapshot = parse_snapshot(json.dumps(document, allow_nan=False).encode("utf-8"))
    target = _target(kind, tmp_path, request)
    target.open()
    import_snapshot(target, snapshot)
    for job_id, before in accepted.items():
        assert target.get_job(job_id).to_dict() == before
    # A tick far enough ahead that every accepted job is due: it answers 200, claims and settles each one.
    clock.advance(timedelta(days=400).total_seconds())
    tick = restarted.post("/cron/tick")
    assert tick.status_code == 200, tick.get_data(as_text=True)[:500]
    now = to_iso(clock())
    due = sum(1 for job in accepted.values() if job["status"] == JobStatus.PENDING.value and job["next_run_at"] <= now)
    assert tick.get_json()["jobs_due"] == due
    leftover = [job.id for job in JsonFileStore(path).list_jobs(status=JobStatus.RUNNING)]
    assert leftover == []
