"""The PostgreSQL store beyond the contract suite, on a real PostgreSQL 15 server:
migrations (racing runners, checksums, ``db upgrade``), statements per tick, the partial
indexes, an outage, rows this version cannot decode, retention, export/import between
store kinds, the settings, and that the JSON store never loads psycopg."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from handlers.registry import HandlerRegistry
from scheduler.engine import TickEngine
from scheduler.errors import ConfigError, StoreCorrupt, StoreError, StoreUnavailable
from scheduler.model import Execution, JobStatus, Outcome, Settlement, Source, TickRecord
from scheduler.settings import Settings
from scheduler.snapshot import build_snapshot, import_snapshot, parse_snapshot
from storage.jsonfile import JsonFileStore
from storage.postgres import PostgresStore, apply_migrations, load_migrations
from tests.support.clock import T0
from tests.support.jobs import make_job
from tests.support.processes import REPO, flask_cli, service_env

pytestmark = pytest.mark.postgres

SETTINGS = Settings(auth_mode="disabled", claim_batch_size=1000, lease_seconds=300, tick_budget_seconds=150, job_timeout_seconds=60)


@pytest.fixture
def pg(postgres_server):
    postgres_server.clear()
    return postgres_server


@pytest.fixture
def fresh_db(pg):
    """A new, empty database (no schema) on the session's server; dropped afterwards."""
    dsn = pg.server.create_database()
    yield dsn
    pg.server.drop_database(dsn.rsplit("/", 1)[1])


@pytest.fixture
def store(pg):
    s = PostgresStore(pg.dsn, history_limit=5, pool_size=2)
    s.open()
    yield s
    s.close()


def noop_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("log", lambda job, ctx: None)
    return registry


# -- migrations ------------------------------------------------------------------------------


def test_racing_runners_apply_each_migration_once(fresh_db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    # 0001 is slow, so every runner arrives while the first still holds the lock; 0002 would
    # leave a second row if it ran twice.
    (folder / "0001_slow.sql").write_text("CREATE TABLE probe (n int); SELECT pg_sleep(0.5);")
    (folder / "0002_row.sql").write_text("INSERT INTO probe VALUES (1); -- 100 % once\n")
    barrier = threading.Barrier(4)
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def runner() -> None:
        barrier.wait()
        try:
            applied.append(apply_migrations(fresh_db, folder=folder))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(applied) == [[], [], [], ["0001_slow.sql", "0002_row.sql"]]
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM probe").fetchone()[0] == 1
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")] == ["0001_slow.sql", "0002_row.sql"]
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0  # released
    # An applied file edited afterwards is refused, naming it.
    (folder / "0002_row.sql").write_text("INSERT INTO probe VALUES (2);\n")
    with pytest.raises(StoreError, match="migration 0002_row.sql was changed after it was applied"):
        apply_migrations(fresh_db, folder=folder)


def test_a_failed_migration_leaves_neither_its_changes_nor_its_record(fresh_db, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (n int);")
    (folder / "0002_bad.sql").write_text("CREATE TABLE b (n int); SELECT * FROM no_such_table;")
    with pytest.raises(StoreError, match="no_such_table"):
        apply_migrations(fresh_db, folder=folder)
    import psycopg

    with psycopg.connect(fresh_db) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations")] == ["0001_ok.sql"]
        assert conn.execute("SELECT to_regclass('b')").fetchone()[0] is None


def test_open_refuses_a_schema_without_the_migrations_and_db_upgrade_applies_them(fresh_db):
    with pytest.raises(StoreError, match="lacks migration\\(s\\) 0001_init.sql; run `flask --app main db upgrade`"):
        PostgresStore(fresh_db, migrate_at_start=False).open()
    env = service_env(SCHEDULER_STORAGE="postgres", SCHEDULER_POSTGRES_DSN=fresh_db, SCHEDULER_POSTGRES_MIGRATE_AT_START="false", ENVIRONMENT="production", AUTH_MODE="oidc", OIDC_AUDIENCE="https://x.example", OIDC_ALLOWED_EMAILS="a@x.example")
    first = flask_cli(env, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["applied 0001_init.sql", f"schema up to date: {len(load_migrations())} migration(s), 1 applied now"]
    again = flask_cli(env, "db", "upgrade")
    assert again.returncode == 0 and again.stdout.splitlines() == [f"schema up to date: {len(load_migrations())} migration(s), 0 applied now"]
    PostgresStore(fresh_db, migrate_at_start=False).open()
    refused = flask_cli(service_env(SCHEDULER_STORAGE="json", SCHEDULER_JSON_PATH="/tmp/crontick-db-upgrade-json.json"), "db", "upgrade")
    assert refused.returncode == 1 and "db upgrade needs SCHEDULER_STORAGE=postgres" in refused.stderr


def test_migration_files_are_versioned_and_ordered():
    names = [m.name for m in load_migrations()]
    assert names[0] == "0001_init.sql" and names == sorted(names)
    assert [m.version for m in load_migrations()] == [f"{i:04d}" for i in range(1, len(names) + 1)]


# -- the tick -------------------------------------------------------------------------------------


@pytest.mark.parametrize("due", [10, 100, 1000])
def test_statements_per_tick_do_not_grow_with_the_due_jobs(store, due):
    store.restore_jobs([make_job(f"j{i:04d}", due_in=-1 - i % 7) for i in range(due)])
    engine = TickEngine(store, noop_registry(), SETTINGS, rng=random.Random(1))
    store.reset_counters()
    metrics = engine.run_tick(now=T0, tick_id=f"tick-{due}", occurrence_key=f"job@{due}").tick.metrics
    assert (metrics.jobs_due, metrics.jobs_succeeded) == (due, due)
    assert store.statements == Counter({"claim_due_jobs": 1, "settle_jobs": 1})
    store.reset_counters()
    idle = engine.run_tick(now=T0, tick_id=f"idle-{due}", occurrence_key=f"job@idle-{due}").tick.metrics
    assert idle.jobs_due == 0 and store.statements == Counter({"claim_due_jobs": 1})
    assert store.count_by_status()["completed"] == due
    assert len(store.list_executions(limit=5000)) == due and store.recent_ticks(5)[0].tick_id == f"tick-{due}"


def test_the_due_query_reads_the_partial_indexes(store):
    import psycopg

    store.restore_jobs([make_job(f"f{i:05d}", due_in=3600 + i) for i in range(5000)])
    with psycopg.connect(store.dsn, autocommit=True) as conn:
        conn.execute("ANALYZE crontick_jobs")
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN SELECT id FROM crontick_jobs WHERE (status = 'pending' AND next_run_at <= %(now)s) "
            "OR (status = 'running' AND (lease_until IS NULL OR lease_until <= %(now)s))", {"now": T0}))
    assert "crontick_jobs_pending_due" in plan and "crontick_jobs_running_lease" in plan, plan
    assert "Seq Scan" not in plan, plan
    store.reset_counters()
    result = store.claim_due_jobs(now=T0, tick=TickRecord("idle", T0, Source.MANUAL), lease_seconds=60, limit=500)
    assert (result.claimed, result.checked, store.statement_count) == ([], 0, 1)


def test_an_outage_is_503_and_the_pool_recovers_after_the_restart(pg):
    store = PostgresStore(pg.dsn, pool_size=2, connect_timeout=1.0)
    store.open()
    store.add_job(make_job("a1"))
    pg.server.stop(immediate=True)
    try:
        for call in (lambda: store.get_job("a1"), lambda: store.claim_due_jobs(now=T0, tick=TickRecord("t", T0, Source.MANUAL), lease_seconds=60, limit=10)):
            with pytest.raises(StoreUnavailable, match="PostgreSQL"):
                call()
    finally:
        pg.server.start()
    assert store.get_job("a1").status is JobStatus.PENDING  # the first call after the restart
    assert [j.id for j in store.claim_due_jobs(now=T0, tick=TickRecord("t", T0, Source.MANUAL), lease_seconds=60, limit=10).claimed] == ["a1"]
    store.close()


def test_a_row_that_fails_to_decode_after_the_claim_is_put_back_and_the_batch_filled(store, caplog):
    for i in range(4):
        store.add_job(make_job(f"ok{i}", due_in=-5))
    store.add_job(make_job("bad-audit", due_in=-50))
    with store._connection("plant") as conn:  # passes the SQL check, fails AuditEntry.from_dict
        conn.execute("UPDATE crontick_jobs SET extra = '{\"audit\": [{\"actor\": \"x\"}]}' WHERE id = 'bad-audit'")
    with caplog.at_level("ERROR"):
        store.reset_counters()
        result = store.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=3)
    assert [j.id for j in result.claimed] == ["ok0", "ok1", "ok2"] and result.more_due
    assert result.unreadable == ["bad-audit"]
    assert store.statements["claim_due_jobs"] == 3  # claim, put back, claim the rest
    logged = [r.json_fields for r in caplog.records if getattr(r, "json_fields", {}).get("action") == "stored_job_unreadable"]
    assert [f["job_id"] for f in logged] == ["bad-audit"] and "KeyError" in logged[0]["error"]
    with store._connection("check") as conn:
        row = conn.execute("SELECT status, lease_owner, lease_until, lease_epoch, attempts FROM crontick_jobs WHERE id = 'bad-audit'").fetchone()
    assert row == ("pending", None, None, 0, 0)  # as it was before the claim
    with pytest.raises(StoreCorrupt, match="bad-audit"):
        store.get_job("bad-audit")
    again = store.claim_due_jobs(now=T0, tick=TickRecord("t2", T0, Source.MANUAL), lease_seconds=60, limit=10)
    assert [j.id for j in again.claimed] == ["ok3"] and again.unreadable == ["bad-audit"] and not again.more_due


def test_free_text_postgres_cannot_hold_is_stored_with_a_replacement_character(store):
    store.add_job(make_job("a1"))
    job = store.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=1).claimed[0]
    failed = job.replace(status=JobStatus.PENDING, lease_owner=None, lease_until=None, last_error="boom\x00 \ud800")
    execution = Execution("a1", job.fire_at, 1, "t1", Outcome.FAILED, T0, 1.0, "boom\x00", Source.MANUAL)
    assert store.settle_jobs([Settlement(failed, "t1", job.lease_epoch, (execution,))], tick=None).applied == ["a1"]
    assert store.get_job("a1").last_error == "boom\ufffd ?"
    assert store.list_executions(job_id="a1")[0].error == "boom\ufffd"



@pytest.mark.parametrize("text", ['NULL', 'say "hi", {then} \\ back', "  padded  ", "", "ünïcødé ✓", "a\tb\nc"])
def test_settled_text_round_trips_exactly_through_the_array_parameters(store, text):
    """The settle sends its rows as binary arrays: no quoting of its own (a text array
    literal's NULL, quotes, braces, backslashes and spaces all mean something)."""
    store.add_jobs([make_job("a1"), make_job("a2")])
    claimed = store.claim_due_jobs(now=T0, tick=TickRecord("t1", T0, Source.MANUAL), lease_seconds=60, limit=2).claimed
    a1, a2 = claimed
    failed = a1.replace(status=JobStatus.PENDING, lease_owner=None, lease_until=None, last_error=text, lease_epoch=2**40)
    plain = a2.replace(status=JobStatus.COMPLETED, lease_owner=None, lease_until=None, last_error=None)
    execution = Execution("a1", a1.fire_at, 1, "t1", Outcome.FAILED, T0, 1.5, text, Source.MANUAL, {"name": text})
    result = store.settle_jobs([Settlement(failed, "t1", a1.lease_epoch, (execution,)), Settlement(plain, "t1", a2.lease_epoch)], tick=None)
    assert sorted(result.applied) == ["a1", "a2"]
    stored = store.get_job("a1")
    assert stored.last_error == text and stored.lease_epoch == 2**40 and stored.lease_owner is None
    assert store.get_job("a2").last_error is None and store.get_job("a2").status is JobStatus.COMPLETED
    [recorded] = store.list_executions(job_id="a1")
    assert recorded.error == text and recorded.task == {"name": text} and recorded.duration_ms == 1.5
    assert store.settle_jobs([], tick=TickRecord("t2", T0, Source.MANUAL)).applied == []  # empty arrays


# -- retention -------------------------------------------------------------------------------------


def test_prune_deletes_old_ticks_and_history_in_bounded_batches(store):
    store.add_job(make_job("a1"))
    old, new = T0 - timedelta(days=40), T0
    with store._connection("seed") as conn:
        conn.execute(
            "INSERT INTO crontick_ticks (tick_id, started_at, source, metrics) SELECT 'old-' || n, %s, 'manual', '{}' FROM generate_series(1, 25) n", (old,))
        conn.execute("INSERT INTO crontick_ticks (tick_id, started_at, source, metrics) VALUES ('new', %s, 'manual', '{}')", (new,))
        conn.execute(
            "INSERT INTO crontick_executions (job_id, fire_at, attempt, tick_id, outcome, started_at, duration_ms, source) "
            "SELECT 'a1', %s, n, 't', 'succeeded', %s + n * interval '1 second', 1, 'manual' FROM generate_series(1, 12) n", (new, new))
    store.reset_counters()
    deleted = store.prune(now=T0, batch=10, rounds=2)
    # 25 old ticks: 2 rounds of 10 this time; 12 executions, limit 5: 7 beyond it (one round of 7).
    assert deleted == {"ticks": 20, "occurrences": 0, "old_executions": 0, "excess_executions": 7}
    assert store.statements["prune"] == 2 + 1 + 1 + 1  # ticks: 2 full batches; each other kind one
    assert [e.attempt for e in store.list_executions(job_id="a1")] == [12, 11, 10, 9, 8]
    assert store.prune(now=T0, batch=10, rounds=2)["ticks"] == 5
    assert [t.tick_id for t in store.recent_ticks(50)] == ["new"]


# -- export / import ---------------------------------------------------------------------------------


def test_json_to_postgres_to_json_keeps_every_job_and_the_counts(store, tmp_path):
    source = JsonFileStore(tmp_path / "source.json")
    source.open()
    source.restore_jobs([
        make_job("p1"), make_job("p2", cron="*/5 * * * *", schedule_at=None, timezone="Europe/Paris", idempotency_key="k-2"),
        make_job("paused", status=JobStatus.PAUSED, payload={"deep": [1, {"x": 1.5e308}], "s": "é😀"}),
        make_job("done", status=JobStatus.COMPLETED, next_run_at=None, last_outcome="succeeded"),
        make_job("run", status=JobStatus.RUNNING, lease_owner="t", lease_until=T0, lease_epoch=3, attempts=1),
    ])
    exported, summary = build_snapshot(source, now=T0)
    into_pg = import_snapshot(store, parse_snapshot(json.dumps(exported).encode()))
    assert (into_pg.created, into_pg.updated, into_pg.unchanged) == (5, 0, 0)
    assert into_pg.after == summary.by_status
    again, pg_summary = build_snapshot(store, now=T0)
    assert again["jobs"] == exported["jobs"] and pg_summary.by_status == summary.by_status
    target = JsonFileStore(tmp_path / "target.json")
    target.open()
    back = import_snapshot(target, parse_snapshot(json.dumps(again).encode()))
    assert back.created == 5 and back.after == summary.by_status
    assert [j.to_dict() for j in target.list_jobs()] == [j.to_dict() for j in source.list_jobs()]
    # Importing again changes nothing in Postgres.
    rerun = import_snapshot(store, parse_snapshot(json.dumps(exported).encode()))
    assert (rerun.created, rerun.updated, rerun.unchanged) == (0, 0, 5)


# -- settings and imports -----------------------------------------------------------------------------


def test_settings_require_a_libpq_url():
    with pytest.raises(ConfigError, match="SCHEDULER_POSTGRES_DSN is required with SCHEDULER_STORAGE=postgres"):
        Settings.from_env({"AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "postgres"})
    with pytest.raises(ConfigError, match="SCHEDULER_POSTGRES_DSN must be a libpq URL starting with postgresql:// \\(got mysql://...\\)"):
        Settings.from_env({"AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "postgres", "SCHEDULER_POSTGRES_DSN": "mysql://u:secret@h/db"})
    with pytest.raises(ConfigError, match="SCHEDULER_POSTGRES_POOL_SIZE='0': must be at least 1"):
        Settings.from_env({"AUTH_MODE": "disabled", "SCHEDULER_POSTGRES_POOL_SIZE": "0"})
    ok = Settings.from_env({"AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "postgres", "SCHEDULER_POSTGRES_DSN": "postgresql://u@/db?host=/cloudsql/p:r:i"})
    assert PostgresStore.from_settings(ok).migrate_at_start is True  # ENVIRONMENT=local
    assert PostgresStore.from_settings(ok.replace(environment="staging")).migrate_at_start is False
    assert PostgresStore.from_settings(ok.replace(environment="staging", postgres_migrate_at_start=True)).migrate_at_start is True


@pytest.mark.parametrize("storage", ["json", "postgres"])
def test_only_the_postgres_store_loads_psycopg(storage, pg, tmp_path):
    code = (
        "import sys; from main import create_app; "
        f"app = create_app({{'AUTH_MODE': 'disabled', 'SCHEDULER_STORAGE': {storage!r}, 'SCHEDULER_JSON_PATH': {str(tmp_path / 'j.json')!r}, "
        f"'SCHEDULER_POSTGRES_DSN': {pg.dsn!r}}}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool'))[:2])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=service_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip().splitlines()[-1]  # after the app's own log lines
    assert loaded == ("[]" if storage == "json" else "['psycopg', 'psycopg._acompat']"), out.stdout
