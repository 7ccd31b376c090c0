"""Shared fixtures: a fake clock, the app factory, and stores for the contract suite.

``make_store`` is parametrised over every store kind; each call returns a new
store instance over the *same* backing data (the same JSON file, the same
Firestore collections), the way separate processes see one store.
"""

from __future__ import annotations

import os

# No cloud is reachable here: google-auth and gcloud must never probe the GCE
# metadata server (169.254.169.254). Set before google.auth is imported anywhere;
# subprocesses (gunicorn, workers) inherit it.
os.environ.update(NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:1", GCE_METADATA_IP="127.0.0.1:1", CLOUDSDK_CORE_CHECK_GCE_METADATA="false")

import random  # noqa: E402
from collections.abc import Callable, Iterator

import pytest

from handlers import build_registry
from handlers.registry import HandlerRegistry
from storage.base import JobStore
from storage.jsonfile import JsonFileStore
from storage.memory import MemoryStore
from tests.support import handlers as test_handlers
from tests.support.clock import FakeClock
from tests.support.firestore_emulator import firestore_emulator  # noqa: F401 - session fixture
from tests.support.postgres_server import postgres_server  # noqa: F401 - session fixture

STORE_KINDS = ["memory", "json", "firestore", "postgres"]
STORE_MARKS = {"firestore": pytest.mark.firestore, "postgres": pytest.mark.postgres}

BASE_CONFIG = {
    "ENVIRONMENT": "test",
    "AUTH_MODE": "disabled",
    "SCHEDULER_STORAGE": "memory",
    "SCHEDULER_RETRY_BASE_SECONDS": "10",
    "SCHEDULER_RETRY_MAX_SECONDS": "600",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> HandlerRegistry:
    registry = build_registry()
    test_handlers.register(registry)
    return registry


@pytest.fixture(params=[pytest.param(k, marks=STORE_MARKS[k]) if k in STORE_MARKS else k for k in STORE_KINDS])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(store_kind: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[Callable[[], JobStore]]:
    created: list[JobStore] = []
    memory = MemoryStore(history_limit=5)
    if store_kind == "firestore":
        emulator = request.getfixturevalue("firestore_emulator")
        emulator.clear()
    if store_kind == "postgres":
        postgres = request.getfixturevalue("postgres_server")
        postgres.clear()

    def factory() -> JobStore:
        if store_kind == "memory":
            store: JobStore = memory
        elif store_kind == "json":
            store = JsonFileStore(tmp_path / "jobs.json", history_limit=5)
        elif store_kind == "firestore":
            from storage.firestore import FirestoreStore

            store = FirestoreStore(project=emulator.project, history_limit=5)
        elif store_kind == "postgres":
            from storage.postgres import PostgresStore

            store = PostgresStore(postgres.dsn, history_limit=5, pool_size=2)
        else:
            raise AssertionError(store_kind)
        store.open()
        created.append(store)
        return store

    yield factory
    for store in created:
        store.close()


@pytest.fixture
def store(make_store) -> JobStore:
    return make_store()


@pytest.fixture
def config(tmp_path) -> dict[str, str]:
    return BASE_CONFIG | {"SCHEDULER_JSON_PATH": str(tmp_path / "jobs.json")}


@pytest.fixture
def app(config, clock, registry):
    from main import create_app

    return create_app(config, clock=clock, registry=registry, rng=random.Random(7))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ct(app):
    """The wired objects of ``app`` (settings, store, engine, service, ...)."""
    return app.extensions["crontick"]
