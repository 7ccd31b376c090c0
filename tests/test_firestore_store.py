"""The Firestore store against the real emulator: races, leases, outages, RPC cost, indexes.

The contract suite (tests/contract) runs on Firestore too; this module adds what
only a shared, networked store can show.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from handlers.registry import HandlerRegistry
from main import create_app
from scheduler.engine import TickEngine
from scheduler.errors import StoreCorrupt, StoreUnavailable
from scheduler.model import JobStatus, Outcome, RunRef, Settlement, Source, TickRecord
from scheduler.settings import Settings
from storage.firestore import QUERY_SHAPES, FirestoreStore, QueryShape, _job_fields
from tests.support.clock import T0, FakeClock
from tests.support.handlers import read_ledger
from tests.support.jobs import make_job
from tests.support.tick_worker import start_together
from tests.support.processes import REPO, service_env

pytestmark = pytest.mark.firestore



@pytest.fixture
def emulator(firestore_emulator):
    firestore_emulator.clear()
    return firestore_emulator


@pytest.fixture
def new_store(emulator):
    created: list[FirestoreStore] = []

    def factory(**options) -> FirestoreStore:
        store = FirestoreStore(project=emulator.project, **options)
        store.open()
        created.append(store)
        return store

    yield factory
    for store in created:
        store.close()


def seed(store: FirestoreStore, jobs) -> None:
    """Write many jobs fast: parallel BatchWrite RPCs of 500 (add_job is one RPC each)."""
    from google.cloud.firestore_v1 import _helpers
    from google.cloud.firestore_v1.types import document as document_pb
    from google.cloud.firestore_v1.types import write as write_pb

    prefix = store._col("jobs").document("x")._document_path[: -len("x")]
    writes = [write_pb.Write(update=document_pb.Document(name=prefix + job.id, fields=_helpers.encode_dict(_job_fields(job) | {"history": []}))) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        for codes, _, _ in pool.map(lambda start: store._batch_write(writes[start : start + 500], "seed"), range(0, len(writes), 500)):
            assert set(codes) == {0}


def settings(**changes) -> Settings:
    base = Settings(environment="test", auth_mode="disabled", storage="firestore", lease_seconds=60, tick_budget_seconds=30, job_timeout_seconds=10)
    return base.replace(**changes)


def noop_registry(**extra) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("log", lambda job, ctx: None)
    for name, handler in extra.items():
        registry.register(name, handler)
    return registry


def app_env(emulator, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {
        "SCHEDULER_STORAGE": "firestore",
        "GOOGLE_CLOUD_PROJECT": emulator.project,
        "FIRESTORE_EMULATOR_HOST": emulator.host,
        "SCHEDULER_HANDLER_MODULES": "tests.support.handlers",
        "SCHEDULER_CLAIM_BATCH_SIZE": "40",
        "CRONTICK_TEST_LEDGER": str(tmp_path / "ledger.txt"),
        "LOG_LEVEL": "WARNING",
    }
    return service_env(**(defaults | extra))


# -- construction -----------------------------------------------------------


def test_the_client_is_created_on_first_use_with_a_demo_project_on_the_emulator(monkeypatch):
    import storage.firestore as module

    store = FirestoreStore.from_settings(settings(firestore_jobs_collection="jobs_x", history_limit=7, history_days=3))
    assert store._client is None  # constructing connects to nothing
    assert (store.collections["jobs"], store.history_limit, store.history_days) == ("jobs_x", 7, 3)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens: creating a client does not connect
    assert store.client.project == module.EMULATOR_PROJECT
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert FirestoreStore().client.project == "from-env"
    assert FirestoreStore(project="explicit").client.project == "explicit"


# -- races ------------------------------------------------------------------


def test_8_threads_and_4_processes_run_1000_due_jobs_each_exactly_once(new_store, emulator, tmp_path):
    from scheduler.clock import utc_now

    store = new_store()
    now = utc_now()
    ledger = tmp_path / "ledger.txt"
    seed(store, [make_job(f"j{i:04d}", now=now, due_in=-1 - i % 50, job_type="ledger", payload={"ledger": str(ledger), "until_pids": 2}) for i in range(1000)])
    start = tmp_path / "go"
    # Batches of 10: a hundred claims to share between the 12 tickers.
    env = app_env(emulator, tmp_path, CRONTICK_TEST_START=str(start), SCHEDULER_CLAIM_BATCH_SIZE="10")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.support.tick_worker"], env=env, cwd=REPO) for _ in range(4)]
    errors: list[BaseException] = []
    threads = []
    for _ in range(8):
        app = create_app(env)  # each thread: its own app, store and Firestore client
        ct = app.extensions["crontick"]

        def loop(ct=ct):
            try:
                while not start.exists():
                    time.sleep(0.005)
                idle = 0
                while idle < 3:
                    outcome = ct.engine.run_tick(now=ct.clock(), tick_id=uuid.uuid4().hex)
                    idle = idle + 1 if outcome.tick.metrics.jobs_due == 0 else 0  # as tests/support/tick_worker.py
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads.append(threading.Thread(target=loop))
    for t in threads:
        t.start()
    start_together(start, workers=4)  # every worker has built its app and waits on the start file
    for t in threads:
        t.join(150)
    assert [p.wait(150) for p in procs] == [0, 0, 0, 0]
    assert errors == []
    rows = read_ledger(ledger)
    counts = Counter(row[0] for row in rows)
    assert len(rows) == 1000 and len(counts) == 1000 and set(counts.values()) == {1}
    assert len({row[3] for row in rows}) >= 2  # more than one process really took part
    assert store.count_by_status()["completed"] == 1000
    assert store.count_due(utc_now()) == 0


def test_threads_racing_on_one_idempotency_key_create_one_job(new_store):
    stores = [new_store() for _ in range(8)]
    barrier = threading.Barrier(8)
    results = []

    def add(i: int) -> None:
        barrier.wait()
        results.append(stores[i].add_job(make_job(f"k{i}", idempotency_key="same-key")))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [job for job, was_created in results if was_created]
    assert len(created) == 1
    assert {job.id for job, _ in results} == {created[0].id}
    assert [j.id for j in stores[0].list_jobs()] == [created[0].id]


# -- leases -----------------------------------------------------------------


def test_a_lease_that_expires_mid_run_is_recovered_and_the_stale_settle_refused(new_store):
    store_a, store_b = new_store(), new_store()
    store_a.add_job(make_job("slow", job_type="hold"))
    entered, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def hold(job, ctx):
        runs.append(ctx.tick_id)
        if ctx.tick_id == "tick-a":
            entered.set()
            assert release.wait(10)

    conf = settings(lease_seconds=5, tick_budget_seconds=4, job_timeout_seconds=3)
    engine_a = TickEngine(store_a, noop_registry(hold=hold), conf)
    engine_b = TickEngine(store_b, noop_registry(hold=hold), conf)
    outcome_a = {}
    thread = threading.Thread(target=lambda: outcome_a.update(out=engine_a.run_tick(now=T0, tick_id="tick-a")))
    thread.start()
    assert entered.wait(10)
    # tick-a is still running the handler when its lease (5 s) has expired for tick-b.
    outcome_b = engine_b.run_tick(now=T0 + timedelta(seconds=6), tick_id="tick-b")
    assert (outcome_b.tick.metrics.jobs_recovered, outcome_b.tick.metrics.jobs_succeeded) == (1, 1)
    after_b = store_a.get_job("slow")
    release.set()
    thread.join(10)
    tick_a = outcome_a["out"].tick
    assert tick_a.metrics.lease_lost == 1
    assert runs == ["tick-a", "tick-b"]
    assert store_a.get_job("slow") == after_b  # tick-a's late settle changed nothing
    assert after_b.status is JobStatus.COMPLETED and after_b.lease_epoch == 2 and after_b.attempts == 0
    history = store_a.list_executions(job_id="slow")
    assert sorted((e.tick_id, e.outcome) for e in history) == [("tick-a", Outcome.LEASE_LOST), ("tick-b", Outcome.SUCCEEDED)]
    assert {t.tick_id: t.metrics.lease_lost for t in store_a.recent_ticks()} == {"tick-a": 1, "tick-b": 0}


def test_a_settle_racing_a_new_claim_is_decided_again_not_blindly_applied(new_store):
    """The settle reads the job, then another claimer takes it before the settle's write:
    the update_time precondition fails, the job is re-read and the settle is lost."""
    store, rival = new_store(), new_store()
    store.add_job(make_job("a1"))
    tick = TickRecord("tick-a", T0, Source.MANUAL)
    job = store.claim_due_jobs(now=T0, tick=tick, lease_seconds=1, limit=10).claimed[0]
    original = store._get_all

    def read_then_rival_claims(refs):
        snaps = original(refs)
        if not getattr(read_then_rival_claims, "done", False):
            read_then_rival_claims.done = True
            assert rival.claim_due_jobs(now=T0 + timedelta(seconds=2), tick=TickRecord("tick-b", T0, Source.MANUAL), lease_seconds=60, limit=10).recovered == {"a1"}
        return snaps

    store._get_all = read_then_rival_claims
    done = job.replace(status=JobStatus.COMPLETED, next_run_at=None, lease_owner=None, lease_until=None)
    result = store.settle_jobs([Settlement(done, "tick-a", job.lease_epoch, ())], tick=tick)
    assert result.lost == ["a1"] and result.applied == []
    stored = rival.get_job("a1")
    assert (stored.status, stored.lease_owner, stored.lease_epoch) == (JobStatus.RUNNING, "tick-b", 2)


# -- outages ----------------------------------------------------------------


def test_emulator_stopped_mid_tick_gives_503_and_every_job_runs_after_restart(emulator, tmp_path):
    from google.cloud import firestore  # noqa: F401 - imported before the outage, as in a warm instance

    clock = FakeClock()
    ran: Counter[str] = Counter()
    lock = threading.Lock()
    stopped = threading.Event()

    def record(job, ctx):
        with lock:
            ran[job.id] += 1

    def stop_emulator(job, ctx):
        record(job, ctx)
        if not stopped.is_set():
            stopped.set()
            emulator.stop(keep_data=True)  # mid-tick: the claim is stored, the settle is not

    registry = noop_registry(record=record, stop_emulator=stop_emulator)
    env = app_env(emulator, tmp_path, SCHEDULER_LEASE_SECONDS="60", SCHEDULER_TICK_BUDGET_SECONDS="30", SCHEDULER_JOB_TIMEOUT_SECONDS="20")
    app = create_app(env, registry=registry, clock=clock)
    store = app.extensions["crontick"].store
    for i in range(6):
        store.add_job(make_job(f"r{i}", job_type="record"))
    store.add_job(make_job("stopper", job_type="stop_emulator", due_in=-2))
    client = app.test_client()
    try:
        t0 = time.monotonic()
        response = client.post("/cron/tick")
        assert response.status_code == 503, response.json
        assert response.json["error"]["code"] == "store_unavailable"
        assert response.headers["Retry-After"] == "30"
        assert set(ran) == {"stopper", *(f"r{i}" for i in range(6))}
        # While it is down, every verb fails fast with StoreUnavailable: no hang, no other error.
        t1 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.count_due(clock())
        assert time.monotonic() - t1 < 8
        assert client.post("/cron/tick").status_code == 503
        assert time.monotonic() - t0 < 40
    finally:
        emulator.start()
    # Back up, with the data it had: the claimed jobs wait for their lease, then all run.
    assert {j.status for j in store.list_jobs()} == {JobStatus.RUNNING}
    assert client.post("/cron/tick").json["jobs_due"] == 0  # leases still live
    clock.advance(61)
    body = client.post("/cron/tick").json
    assert (body["jobs_recovered"], body["jobs_succeeded"]) == (7, 7)
    assert {j.status for j in store.list_jobs()} == {JobStatus.COMPLETED}
    assert ran == Counter({job_id: 2 for job_id in ["stopper", *(f"r{i}" for i in range(6))]})


def test_a_corrupt_job_document_stops_start_up(new_store, emulator):
    store = new_store()
    store._col("jobs").document("bad").set({"status": "nonsense"})
    with pytest.raises(StoreCorrupt, match="bad"):
        FirestoreStore(project=emulator.project).open()


# -- cost -------------------------------------------------------------------


def _tick_cost(store: FirestoreStore, n_due: int, *, key: str | None = None) -> tuple[int, int, dict[str, int]]:
    engine = TickEngine(store, noop_registry(), settings(claim_batch_size=500, max_concurrency=8))
    store.reset_counters()
    outcome = engine.run_tick(now=T0, tick_id=uuid.uuid4().hex, occurrence_key=key)
    assert outcome.tick.metrics.jobs_succeeded == n_due
    return store.rpc_count, store.docs_read, dict(store.rpc_counts)


def test_rpcs_per_tick_do_not_grow_with_the_number_of_due_jobs(new_store, emulator):
    costs = {}
    for n in (10, 100, 500):
        emulator.clear()
        store = new_store()
        seed(store, [make_job(f"j{i:04d}", due_in=-1 - i) for i in range(n)] + [make_job(f"f{i:03d}", due_in=3600) for i in range(50)])
        costs[n] = _tick_cost(store, n)
        assert store.count_by_status()["completed"] == n
    # 2 due queries + 1 BatchWrite to claim; 1 BatchGetDocuments + 1 BatchWrite to settle.
    expected = {"run_query": 2, "batch_write": 2, "batch_get_documents": 1}
    assert {n: (rpcs, by_method) for n, (rpcs, _, by_method) in costs.items()} == {n: (5, expected) for n in costs}
    assert {n: docs for n, (_, docs, _) in costs.items()} == {10: 20, 100: 200, 500: 1000}  # each due job read twice
    # A Cloud Scheduler tick (with an occurrence key) adds one commit: the occurrence marker.
    emulator.clear()
    store = new_store()
    seed(store, [make_job(f"j{i:04d}") for i in range(10)])
    rpcs, _, by_method = _tick_cost(store, 10, key="projects/p/jobs/tick@2026-01-05T12:00:00Z")
    assert (rpcs, by_method) == (6, expected | {"commit": 1})


def test_an_idle_tick_over_10000_future_jobs_reads_no_job_document(new_store):
    store = new_store()
    seed(store, [make_job(f"f{i:05d}", due_in=60 + i) for i in range(10_000)])
    rpcs, docs, by_method = _tick_cost(store, 0)
    assert (rpcs, docs, by_method) == (2, 0, {"run_query": 2})
    store.reset_counters()
    assert store.count_due(T0) == 0 and store.docs_read == 0
    assert store.count_due(T0 + timedelta(seconds=70)) == 11


def test_extending_10_leases_costs_one_read_and_one_batch_write(new_store):
    store = new_store()
    seed(store, [make_job(f"j{i:02d}") for i in range(10)])
    claimed = store.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=10).claimed
    runs = [RunRef.of(job) for job in claimed]
    store.reset_counters()
    result = store.extend_leases(runs, now=T0 + timedelta(seconds=30), lease_seconds=60)
    assert len(result.extended) == 10 and result.lost == []
    assert (store.rpc_count, dict(store.rpc_counts), store.docs_read) == (2, {"batch_get_documents": 1, "batch_write": 1}, 10)
    assert {job.lease_until for job in store.list_jobs()} == {T0 + timedelta(seconds=90)}
    # Nothing to move (leases already further out): the read only. An empty batch: no RPC.
    store.reset_counters()
    assert len(store.extend_leases(runs, now=T0, lease_seconds=60).extended) == 10
    assert dict(store.rpc_counts) == {"batch_get_documents": 1}
    store.reset_counters()
    assert store.extend_leases([], now=T0, lease_seconds=60).extended == [] and store.rpc_count == 0


def test_restoring_jobs_costs_one_read_and_one_batch_write_per_500_writes(new_store):
    store = new_store()
    seed(store, [make_job(f"j{i:03d}") for i in range(300)])
    given = [make_job(f"j{i:03d}", payload={"restored": i}) for i in range(300)] + [make_job(f"n{i:03d}") for i in range(300)]
    store.reset_counters()
    result = store.restore_jobs(given)
    assert (len(result.created), len(result.updated), result.unchanged) == (300, 300, [])
    assert dict(store.rpc_counts) == {"batch_get_documents": 1, "batch_write": 2}
    assert store.get_job("j007").payload == {"restored": 7} and store.get_job("j007").lease_epoch == 1


def test_an_extend_whose_job_changed_after_the_read_counts_as_lost(new_store):
    store, other = new_store(), new_store()
    store.add_job(make_job("a1"))
    job = store.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=10).claimed[0]
    real_get_all = store._get_all

    def read_then_race(refs):
        snaps = real_get_all(refs)
        # Another writer touches the job between the heartbeat's read and its write.
        other.update_job("a1", lambda j: j.replace(payload={"edited": True}))
        return snaps

    store._get_all = read_then_race
    result = store.extend_leases([RunRef.of(job)], now=T0 + timedelta(seconds=30), lease_seconds=60)
    assert (result.extended, result.lost) == ([], ["a1"])
    assert other.get_job("a1").lease_until == T0 + timedelta(seconds=60)


# -- indexes ----------------------------------------------------------------

_OPS_EQUAL = {"EQUAL"}


def _shape(request, collections: dict[str, str]) -> QueryShape:
    """The QueryShape of a RunQuery/RunAggregationQuery request as sent on the wire."""
    if "structured_aggregation_query" in request:
        query = request["structured_aggregation_query"].structured_query
    else:
        query = request["structured_query"]
    by_name = {name: key for key, name in collections.items()}
    (selector,) = query.from_
    filters = []
    where = query.where
    if where.composite_filter.filters:
        filters = [f.field_filter for f in where.composite_filter.filters]
    elif where.field_filter.field.field_path:
        filters = [where.field_filter]
    equality = tuple(sorted(f.field.field_path for f in filters if f.op.name in _OPS_EQUAL))
    order = [(o.field.field_path, "DESCENDING" if o.direction.name == "DESCENDING" else "ASCENDING") for o in query.order_by]
    for f in filters:  # Firestore orders by an inequality field first when the query does not
        if f.op.name not in _OPS_EQUAL and f.field.field_path not in [field for field, _ in order]:
            order.insert(0, (f.field.field_path, "ASCENDING"))
    return QueryShape(by_name[selector.collection_id], equality, tuple(order))


def _index_file() -> dict:
    return json.loads((REPO / "firestore.indexes.json").read_text())


def _covered(shape: QueryShape, collections: dict[str, str], indexes: list[dict]) -> bool:
    wanted_eq = set(shape.equality)
    rest = [(f, d) for f, d in shape.order if f != "__name__"]
    for index in indexes:
        if index["collectionGroup"] != collections[shape.collection] or index["queryScope"] != "COLLECTION":
            continue
        fields = [(f["fieldPath"], f.get("order")) for f in index["fields"] if f["fieldPath"] != "__name__"]
        head, tail = fields[: len(wanted_eq)], fields[len(wanted_eq) :]
        if {f for f, _ in head} == wanted_eq and tail == rest:
            return True
    return False


def test_every_query_the_store_sends_is_declared_and_indexed(new_store):
    store = new_store()
    sent: list[QueryShape] = []
    api = store.client._firestore_api
    for name in ("run_query", "run_aggregation_query"):
        inner = getattr(api, name)

        def recording(*args, _inner=inner, **kwargs):
            sent.append(_shape(kwargs["request"], store.collections))
            return _inner(*args, **kwargs)

        setattr(api, name, recording)
    store.add_job(make_job("a1"))
    store.open()
    for status in (None, JobStatus.PENDING):
        for job_type in (None, "log"):
            for after in (None, "a0"):
                store.list_jobs(status=status, job_type=job_type, after_id=after)
    store.count_due(T0)
    store.count_by_status()
    tick = TickRecord("t1", T0, Source.MANUAL)
    store.claim_due_jobs(now=T0, tick=tick, lease_seconds=60, limit=10)
    for job_id in (None, "a1"):
        for outcome in (None, "failed"):
            for since, until in ((None, None), (T0, None), (None, T0), (T0, T0 + timedelta(1))):
                store.list_executions(job_id=job_id, outcome=outcome, since=since, until=until)
    store.recent_ticks()
    store.delete_finished_jobs(before=T0, limit=10)

    declared = set(QUERY_SHAPES)
    assert set(sent) - declared == set(), "a query the store sends is missing from QUERY_SHAPES"
    assert declared - set(sent) == set(), "QUERY_SHAPES lists a query the store never sends"
    indexes = _index_file()["indexes"]
    missing = [s for s in declared if s.needs_composite_index() and not _covered(s, store.collections, indexes)]
    assert missing == [], "composite queries without an index in firestore.indexes.json"
    # ...and the file declares no index the store does not use.
    used = [s for s in declared if s.needs_composite_index()]
    for index in indexes:
        assert any(_covered(s, store.collections, [index]) for s in used), f"unused index {index}"


def test_the_index_file_sets_ttl_on_expire_at_and_exempts_big_fields():
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in _index_file()["fieldOverrides"]}
    for group in ("scheduler_executions", "scheduler_ticks", "scheduler_ticks_occurrences", "scheduler_jobs"):
        assert overrides[(group, "expire_at")]["ttl"] is True
    assert overrides[("scheduler_jobs", "payload")]["indexes"] == []


# -- retention ----------------------------------------------------------------


def _raw_fields(store: FirestoreStore, job_id: str) -> dict:
    return store._get(store._path("jobs", job_id)).to_dict()


def test_a_finished_job_carries_expire_at_for_the_ttl_and_loses_it_when_it_runs_again(new_store):
    store = new_store(retention_days=7)
    store.add_job(make_job("a1"))
    store.add_job(make_job("c1"))
    assert "expire_at" not in _raw_fields(store, "a1")
    job = store.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=1).claimed[0]
    assert "expire_at" not in _raw_fields(store, "a1")  # running
    completed = job.replace(status=JobStatus.COMPLETED, next_run_at=None, lease_owner=None, lease_until=None, updated_at=T0 + timedelta(seconds=5))
    store.settle_jobs([Settlement(completed, "t1", job.lease_epoch, ())], tick=None)
    assert _raw_fields(store, "a1")["expire_at"] == T0 + timedelta(days=7, seconds=5)
    store.update_job("c1", lambda j: j.replace(status=JobStatus.CANCELLED, updated_at=T0 + timedelta(hours=1)))
    assert _raw_fields(store, "c1")["expire_at"] == T0 + timedelta(days=7, hours=1)
    store.restore_jobs([make_job("a1", payload={"again": True})])  # pending again: the TTL must not delete it
    assert "expire_at" not in _raw_fields(store, "a1")
    off = new_store(retention_days=0)  # retention off: no expire_at is written
    off.update_job("c1", lambda j: j.replace(note="touched"))
    assert "expire_at" not in _raw_fields(off, "c1")


def test_a_key_whose_job_the_ttl_deleted_can_be_used_again(new_store):
    """Firestore's TTL deletes the job document only: its idempotency marker stays behind."""
    store = new_store()
    store.add_job(make_job("old", idempotency_key="nightly"))
    store._col("jobs").document("old").delete()  # what the TTL policy does
    job, created = store.add_job(make_job("new", idempotency_key="nightly"))
    assert created and job.id == "new"
    again, created_again = store.add_job(make_job("newer", idempotency_key="nightly"))
    assert (again.id, created_again) == ("new", False)


def test_deleting_finished_jobs_costs_two_queries_and_a_commit_per_500_writes(new_store):
    store = new_store(history_limit=5)
    day = timedelta(days=1)
    store.restore_jobs([make_job(f"c{i:02d}", status=JobStatus.COMPLETED, next_run_at=None, updated_at=T0 - day, idempotency_key=f"k{i}") for i in range(20)])
    store.reset_counters()
    assert store.delete_finished_jobs(before=T0, limit=100) == 20
    assert dict(store.rpc_counts) == {"run_query": 2, "commit": 1}
    assert store.list_jobs() == []
    # 120 jobs of 5 executions and a marker (7 writes each): 500 writes per commit, whole jobs each.
    store.restore_jobs([make_job(f"h{i:03d}", status=JobStatus.COMPLETED, next_run_at=None, updated_at=T0 - day, idempotency_key=f"h{i}") for i in range(120)])
    seed_history = []
    for i in range(120):
        doc = store._col("jobs").document(f"h{i:03d}")
        ids = [f"h{i:03d}~e{n}" for n in range(5)]
        doc.update({"history": ids})
        seed_history += ids
    for exec_id in seed_history:
        store._col("executions").document(exec_id).set({"job_id": exec_id.split("~")[0]})
    store.reset_counters()
    assert store.delete_finished_jobs(before=T0, limit=1000) == 120
    assert store.rpc_counts["commit"] == 2  # 71 jobs (497 writes), then 49
    assert store.list_executions(limit=1000) == [] and store.list_jobs() == []


def test_a_finished_job_that_changes_before_its_delete_is_left_with_its_history(new_store):
    store, other = new_store(), new_store()
    store.restore_jobs([make_job(f"c{i}", status=JobStatus.COMPLETED, next_run_at=None, updated_at=T0 - timedelta(days=1)) for i in range(3)])
    real_commit = store._commit
    touched = []

    def commit_after_an_edit(writes, what, **kwargs):
        if what == "delete_finished_jobs" and not touched:
            touched.append(other.update_job("c1", lambda j: j.replace(status=JobStatus.PENDING, next_run_at=T0)))  # resumed meanwhile
        return real_commit(writes, what, **kwargs)

    store._commit = commit_after_an_edit
    store.reset_counters()
    assert store.delete_finished_jobs(before=T0, limit=10) == 2
    assert [j.id for j in store.list_jobs()] == ["c1"]
    assert store.rpc_counts["commit"] == 4  # all three refused together, then one each


# -- payloads Firestore cannot hold as a map --------------------------------------------------
def _nested_maps(levels: int) -> dict:
    payload: dict = {"leaf": 1}
    for _ in range(levels - 1):
        payload = {"m": payload}
    return payload


# What the API accepts (any JSON object within its limits) and Firestore refuses as a map value.
PAYLOADS_NOT_MAPS = {
    "array-in-array": {"points": [[48.85, 2.35], [51.5, -0.12]], "empty": [[]]},
    "empty-key": {"": 1},
    "reserved-key": {"__name__": "x"},
    "long-key": {"k" * 1501: 1},
    "int-past-int64": {"n": 2**70, "m": -(2**63) - 1},
    "21-levels": _nested_maps(21),
}


@pytest.mark.parametrize("name", sorted(PAYLOADS_NOT_MAPS))
def test_a_payload_firestore_cannot_hold_as_a_map_is_stored_as_json_text_and_runs(new_store, emulator, name):
    """Before, such a job got a 503 (Firestore refused the write: "Cannot convert an array
    value in an array value") or a 500 (an int past int64); a settle carrying one failed
    its whole batch. Now it is stored as JSON text, reads back equal, and ticks."""
    payload = PAYLOADS_NOT_MAPS[name]
    store = new_store()
    env = service_env(SCHEDULER_STORAGE="firestore", GOOGLE_CLOUD_PROJECT=emulator.project, FIRESTORE_EMULATOR_HOST=emulator.host, AUTH_MODE="disabled")
    client = create_app(env, store=store).test_client()
    created = client.post("/api/v1/jobs", json={"id": "p1", "job_type": "log", "interval_seconds": 60, "payload": payload})
    assert created.status_code == 201, created.get_data(as_text=True)[:300]
    assert client.get("/api/v1/jobs/p1").get_json()["payload"] == payload
    assert isinstance(store._col("jobs").document("p1").get().to_dict()["payload"], str)
    store.add_job(make_job("p2", payload=payload))
    engine = TickEngine(store, noop_registry(), settings())
    metrics = engine.run_tick(now=T0 + timedelta(days=3650), tick_id="t1").tick.metrics
    assert metrics.jobs_succeeded == 2 and metrics.jobs_failed == 0
    assert store.get_job("p1").payload == payload and store.get_job("p2").payload == payload
    assert store.get_job("p2").status is JobStatus.COMPLETED and store.get_job("p1").run_count == 1


def test_a_payload_firestore_can_hold_stays_a_map(new_store):
    """The wire format of every payload Firestore can hold is unchanged: a map."""
    store = new_store()
    payload = {"a": [{"b": [1, "x", None]}], "n": 2**63 - 1, "m": -(2**63), "deep": _nested_maps(19), "___": True, "a.b/c": 1.5}
    store.add_job(make_job("m1", payload=payload))
    assert store._col("jobs").document("m1").get().to_dict()["payload"] == payload
    assert store.get_job("m1").payload == payload
