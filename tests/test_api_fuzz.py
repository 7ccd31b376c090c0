"""Fuzz /api/v1 with schemathesis against the real app and its own OpenAPI document.

For every documented operation, schemathesis generates requests that fit the
document (positive) and requests that break it (negative); each is sent to the
app through WSGI and its response checked: never a 5xx, a documented status,
a body matching the documented schema, documented headers and content type,
and, for negative requests, a 4xx refusal.

Bounded and reproducible: ``CRONTICK_FUZZ_EXAMPLES`` examples per operation and
mode (default 50), derandomized (the same inputs on every run) and without the
example database. ``CRONTICK_FUZZ_EXAMPLES=1000 make test`` digs deeper.

Path ids are drawn half from the generator and half from jobs seeded in every
status, so that the state-dependent branches (409s, previews, history) are hit.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from main import create_app
from scheduler.model import Source, TickRecord
from storage.memory import MemoryStore
from tests.conftest import BASE_CONFIG
from tests.support.clock import T0, FakeClock
from web.openapi import build_openapi

EXAMPLES = int(os.environ.get("CRONTICK_FUZZ_EXAMPLES", "50"))
SPEC_PATH = "/api/v1/openapi.json"
SEEDED_IDS = ["fz-pending", "fz-paused", "fz-running", "fz-expired", "fz-completed", "fz-failed", "fz-cancelled", "fz-once"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]
_PATHS = build_openapi(["log"])["paths"]
OPERATIONS = [(method.upper(), path) for path, item in _PATHS.items() for method in item if method in ("get", "post", "patch", "delete")]
# Negative cases need something to break: a parameter or a body (GET openapi.json has neither).
CASES = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or _PATHS[path].get("parameters")
    or _PATHS[path][method.lower()].get("parameters")
    or _PATHS[path][method.lower()].get("requestBody")
]
RUN_COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    from tests.support import handlers as test_handlers
    from handlers import build_registry

    registry = build_registry()
    test_handlers.register(registry)  # log, ledger..., and "boom", which always fails
    clock = FakeClock()
    store = MemoryStore(history_limit=5)
    config = BASE_CONFIG | {"SCHEDULER_JSON_PATH": str(tmp_path_factory.mktemp("fuzz") / "jobs.json")}
    app = create_app(config, store=store, clock=clock, registry=registry, rng=random.Random(7))
    client = app.test_client()

    def make(job_id: str, **fields):
        response = client.post("/api/v1/jobs", json={"id": job_id, "job_type": "log", **fields})
        assert response.status_code == 201, response.get_json()

    past = (T0 - timedelta(minutes=5)).isoformat()
    make("fz-completed", schedule_at=past)
    make("fz-failed", job_type="boom", schedule_at=past, max_attempts=1)
    assert client.post("/cron/tick").get_json()["jobs_executed"] == 2
    make("fz-running", schedule_at=past)
    make("fz-expired", schedule_at=past)
    store.claim_due_jobs(now=T0, tick=TickRecord("fz-tick-1", T0, Source.MANUAL), lease_seconds=30, limit=1)
    store.claim_due_jobs(now=T0, tick=TickRecord("fz-tick-2", T0, Source.MANUAL), lease_seconds=3600, limit=1)
    make("fz-pending", cron="*/5 * * * *", timezone="Europe/Berlin", idempotency_key="fz-key")
    make("fz-paused", interval_seconds=600)
    client.post("/api/v1/jobs/fz-paused:pause")
    make("fz-cancelled", cron="0 9 * * 1-5")
    client.delete("/api/v1/jobs/fz-cancelled")
    make("fz-once", schedule_at=(T0 + timedelta(days=1)).isoformat())
    clock.advance(60)  # fz-expired's 30 s lease has run out
    yield app
    if os.environ.get("CRONTICK_FUZZ_REPORT"):
        print("\nfuzz examples run:", sum(RUN_COUNTS.values()), RUN_COUNTS)


@pytest.fixture(scope="module")
def schema(fuzz_app):
    return schemathesis.openapi.from_wsgi(SPEC_PATH, fuzz_app)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_api_matches_its_openapi_document(schema, method, path, mode):
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if "{job_id}" in path:
        seeded = st.one_of(*(operation.as_strategy(generation_mode=mode, path_parameters={"job_id": job_id}) for job_id in SEEDED_IDS))
        strategy = st.one_of(strategy, seeded)
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    label = f"{mode.value} {method} {path}"
    RUN_COUNTS[label] = 0

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=strategy)
    def run(case):
        RUN_COUNTS[label] += 1
        response = case.call()
        case.validate_response(response, checks=checks)

    run()
    assert RUN_COUNTS[label] > 0


def test_every_api_route_is_documented(fuzz_app):
    """The document names every /api/v1 route the app serves (and no other)."""
    documented = {path.replace("{job_id}", "<job_id>") for path in build_openapi([])["paths"]}
    served = {rule.rule for rule in fuzz_app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")}
    # The actions share one route that parses "<id>:<action>".
    actions = {p for p in documented if p.startswith("/api/v1/jobs/<job_id>:")}
    assert served == (documented - actions) | {"/api/v1/jobs/<target>"}
    assert {p.rsplit(":", 1)[1] for p in actions} == {"pause", "resume", "run", "release", "backfill"}


def test_the_job_schema_names_every_job_field(fuzz_app):
    import dataclasses

    from scheduler.model import Job

    job_schema = build_openapi([])["components"]["schemas"]["Job"]
    fields = {f.name for f in dataclasses.fields(Job)} | {"runs_remaining"}  # the one derived key
    assert set(job_schema["properties"]) == fields == set(job_schema["required"])
