"""scheduler/snapshot.py on every store kind: export, whole-file validation, idempotent import."""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta

import pytest

from handlers import build_registry
from scheduler import snapshot as snap
from scheduler.engine import TickEngine
from scheduler.model import JobStatus, Settlement, Source, TickRecord
from scheduler.service import JobService
from scheduler.settings import Settings
from storage.jsonfile import JsonFileStore
from storage.memory import MemoryStore
from tests.support.clock import T0, FakeClock


def _boom(job, ctx):
    raise RuntimeError("boom")


@pytest.fixture
def handlers():
    registry = build_registry()
    registry.register("boom", _boom)
    return registry


def populate(store, handlers, clock: FakeClock) -> None:
    """Jobs in every status, with some history."""
    service = JobService(store, handlers, clock)
    past = (T0 - timedelta(minutes=1)).isoformat()
    service.create({"id": "a-done", "job_type": "log", "schedule_at": past, "payload": {"n": 1, "nested": {"x": [1, 2]}}})
    service.create({"id": "b-dead", "job_type": "boom", "schedule_at": past, "max_attempts": 1})
    service.create({"id": "c-cron", "job_type": "log", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "idempotency_key": "key-c"})
    engine = TickEngine(store, handlers, Settings(retry_base_seconds=10, retry_max_seconds=60), rng=random.Random(1))
    engine.run_tick(now=clock(), tick_id="tick-1", source=Source.MANUAL)
    service.create({"id": "d-paused", "job_type": "log", "interval_seconds": 600})
    service.pause("d-paused")
    service.create({"id": "e-cancel", "job_type": "log", "interval_seconds": 60})
    service.cancel("e-cancel")
    service.create({"id": "f-running", "job_type": "log", "schedule_at": past})
    store.claim_due_jobs(now=clock(), tick=TickRecord("tick-2", clock(), Source.MANUAL), lease_seconds=300, limit=10)


def all_jobs(store) -> list[dict]:
    return [job.to_dict() for job in snap.iter_jobs(store)]


def resealed(document: dict) -> dict:
    """A document edited on purpose, with a checksum that matches the edit."""
    document = dict(document)
    document["checksum"] = snap.checksum(document)
    return document


def test_export_holds_every_job_and_a_checksum_over_everything(make_store, handlers):
    clock = FakeClock()
    store = make_store()
    populate(store, handlers, clock)
    document, summary = snap.build_snapshot(store, now=clock(), with_history=True)
    assert document["format"] == "crontick-snapshot" and document["version"] == 1
    assert document["store"] == store.kind and document["exported_at"] == "2026-01-05T12:00:00.000000Z"
    assert [job["id"] for job in document["jobs"]] == ["a-done", "b-dead", "c-cron", "d-paused", "e-cancel", "f-running"]
    assert summary.by_status == {"pending": 1, "running": 1, "paused": 1, "completed": 1, "failed": 1, "cancelled": 1}
    assert sorted((e["job_id"], e["outcome"]) for e in document["executions"]) == [("a-done", "succeeded"), ("b-dead", "failed")]
    assert document["checksum"].startswith("sha256:") and len(document["checksum"]) == 7 + 64
    assert snap.checksum(document) == document["checksum"]
    parsed = snap.parse_snapshot(json.dumps(document))
    assert [job.to_dict() for job in parsed.jobs] == all_jobs(store)
    assert len(parsed.executions) == 2

    without, _ = snap.build_snapshot(store, now=clock())
    assert "executions" not in without and without["with_history"] is False


def test_paging_covers_more_jobs_than_a_page(make_store, handlers):
    store = make_store()
    service = JobService(store, handlers, FakeClock())
    for i in range(23):
        service.create({"id": f"job-{i:02d}", "job_type": "log", "interval_seconds": 60 + i})
    assert [job.id for job in snap.iter_jobs(store, page_size=5)] == [f"job-{i:02d}" for i in range(23)]
    assert [job.id for job in snap.iter_jobs(store, page_size=23)] == [f"job-{i:02d}" for i in range(23)]


@pytest.mark.parametrize("target_kind", ["memory", "json"])
def test_import_into_another_store_gives_equal_jobs_and_counts_and_is_idempotent(make_store, handlers, tmp_path, target_kind):
    clock = FakeClock()
    source = make_store()
    populate(source, handlers, clock)
    document, _ = snap.build_snapshot(source, now=clock())
    target = MemoryStore() if target_kind == "memory" else JsonFileStore(tmp_path / "restored.json")
    target.open()

    first = snap.import_snapshot(target, snap.parse_snapshot(json.dumps(document)), known_types=handlers.names())
    assert (first.created, first.updated, first.unchanged, first.untouched) == (6, 0, 0, 0)
    assert first.before == dict.fromkeys(first.before, 0)
    assert first.after == source.count_by_status() == target.count_by_status()
    assert all_jobs(target) == all_jobs(source)

    second = snap.import_snapshot(target, snap.parse_snapshot(json.dumps(document)), known_types=handlers.names())
    assert (second.created, second.updated, second.unchanged) == (0, 0, 6)
    assert second.before == second.after == first.after
    assert all_jobs(target) == all_jobs(source)
    # The restored store works: its running job's lease is the snapshot's, recovered once it expires.
    claim = target.claim_due_jobs(now=clock() + timedelta(seconds=301), tick=TickRecord("t-new", clock(), Source.MANUAL), lease_seconds=60, limit=10)
    assert "f-running" in claim.recovered


def test_import_overwrites_changed_jobs_fences_their_ticks_and_leaves_others_alone(make_store, handlers):
    clock = FakeClock()
    store = make_store()
    populate(store, handlers, clock)
    document, _ = snap.build_snapshot(store, now=clock())
    backup = all_jobs(store)

    # After the backup: a job is changed, one is added, and a tick holds a job.
    service = JobService(store, handlers, clock)
    service.patch("d-paused", {"payload": {"changed": True}})
    service.create({"id": "z-new", "job_type": "log", "interval_seconds": 60})
    service.resume("d-paused")
    clock.advance(600)
    claim = store.claim_due_jobs(now=clock(), tick=TickRecord("tick-late", clock(), Source.MANUAL), lease_seconds=300, limit=10)
    assert sorted(job.id for job in claim.claimed) == ["d-paused", "f-running", "z-new"]
    held = next(job for job in claim.claimed if job.id == "d-paused")
    z_before = store.get_job("z-new")

    summary = snap.import_snapshot(store, snap.parse_snapshot(json.dumps(document)))
    assert (summary.created, summary.updated, summary.unchanged, summary.untouched) == (0, 2, 4, 1)
    restored = store.get_job("d-paused")
    assert restored.status is JobStatus.PAUSED and restored.payload == {}
    assert restored.lease_epoch > held.lease_epoch
    assert store.get_job("z-new") == z_before  # not in the snapshot: untouched
    # The tick that held d-paused cannot settle over the restored state.
    settle = store.settle_jobs([Settlement(job=held.replace(status=JobStatus.PENDING, lease_owner=None), expected_owner=held.lease_owner, expected_epoch=held.lease_epoch)], tick=TickRecord("tick-late", clock(), Source.MANUAL))
    assert settle.lost == ["d-paused"]
    by_id = {job["id"]: job for job in all_jobs(store)}
    for job in backup:
        ours = by_id[job["id"]]
        assert {k: v for k, v in ours.items() if k != "lease_epoch"} == {k: v for k, v in job.items() if k != "lease_epoch"}

    again = snap.import_snapshot(store, snap.parse_snapshot(json.dumps(document)))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 6)
    assert again.after == summary.after


def _broken_documents(document: dict) -> dict[str, bytes]:
    jobs = document["jobs"]

    def with_jobs(new_jobs):
        return json.dumps(resealed(document | {"jobs": new_jobs})).encode()

    bad_cron = [dict(jobs[0])] + [dict(jobs[2], cron="61 * * * *")] + jobs[3:]
    return {
        "bad-checksum": json.dumps(document | {"checksum": "sha256:" + "0" * 64}).encode(),
        "edited-after-export": json.dumps(document | {"jobs": [dict(jobs[0], max_attempts=99)] + jobs[1:]}).encode(),
        "no-checksum": json.dumps({k: v for k, v in document.items() if k != "checksum"}).encode(),
        "unknown-version": json.dumps(resealed(document | {"version": 2})).encode(),
        "version-as-string": json.dumps(resealed(document | {"version": "1"})).encode(),
        "wrong-format": json.dumps(resealed(document | {"format": "something-else"})).encode(),
        "truncated": json.dumps(document).encode()[:-40],
        "not-an-object": b"[]",
        "empty": b"",
        "bad-cron-late-in-the-file": with_jobs(bad_cron),
        "duplicate-id": with_jobs(jobs + [jobs[0]]),
        "unknown-status": with_jobs([dict(jobs[0], status="sleeping")] + jobs[1:]),
        "two-schedules": with_jobs([dict(jobs[0], cron="* * * * *")] + jobs[1:]),
        "naive-timestamp": with_jobs([dict(jobs[0], created_at="2026-01-05T12:00:00")] + jobs[1:]),
        "year-3": with_jobs([dict(jobs[0], created_at="0003-01-05T12:00:00Z")] + jobs[1:]),
        "missing-field": with_jobs([{k: v for k, v in jobs[0].items() if k != "created_at"}] + jobs[1:]),
        "bad-zone": with_jobs([dict(jobs[2], timezone="Mars/Olympus")] + jobs[1:2] + jobs[3:]),
        "pending-without-next-run": with_jobs([dict(jobs[2], next_run_at=None)] + jobs[3:]),
        "bad-id": with_jobs([dict(jobs[0], id="a/b")]),
        "bool-attempts": with_jobs([dict(jobs[0], max_attempts=True)]),
        "shared-idempotency-key": with_jobs(jobs + [dict(jobs[2], id="c-copy")]),
        "bad-execution": json.dumps(resealed(document | {"executions": [{"job_id": "x"}]})).encode(),
    }


def test_a_bad_snapshot_is_refused_whole_and_nothing_is_written(make_store, handlers):
    clock = FakeClock()
    source = MemoryStore()
    populate(source, handlers, clock)
    document, _ = snap.build_snapshot(source, now=clock())
    target = make_store()
    JobService(target, handlers, clock).create({"id": "existing", "job_type": "log", "interval_seconds": 60})
    before = all_jobs(target)
    for name, raw in _broken_documents(document).items():
        with pytest.raises(snap.SnapshotError) as caught:
            snap.import_snapshot(target, snap.parse_snapshot(raw))
        assert "nothing was written" in str(caught.value), name
        assert all_jobs(target) == before, name
    version_error = pytest.raises(snap.SnapshotError, snap.parse_snapshot, json.dumps(resealed(document | {"version": 2})))
    assert "unsupported snapshot version 2" in str(version_error.value)
    checksum_error = pytest.raises(snap.SnapshotError, snap.parse_snapshot, json.dumps(document | {"checksum": "sha256:00"}))
    assert "checksum mismatch" in str(checksum_error.value)


def test_every_problem_is_listed(handlers):
    source = MemoryStore()
    populate(source, handlers, FakeClock())
    document, _ = snap.build_snapshot(source, now=T0)
    jobs = document["jobs"]
    raw = json.dumps(resealed(document | {"jobs": [dict(jobs[0], cron="x"), dict(jobs[1], timezone="Nowhere")]}))
    with pytest.raises(snap.SnapshotError) as caught:
        snap.parse_snapshot(raw)
    assert len(caught.value.problems) == 3  # two schedules + bad cron on a-done, bad zone on b-dead
    assert all(p.startswith(("jobs[0] ('a-done')", "jobs[1] ('b-dead')")) for p in caught.value.problems)


def test_an_idempotency_key_held_by_another_job_in_the_store_refuses_the_import(make_store, handlers):
    clock = FakeClock()
    source = MemoryStore()
    populate(source, handlers, clock)
    document, _ = snap.build_snapshot(source, now=clock())
    target = make_store()
    JobService(target, handlers, clock).create({"id": "other", "job_type": "log", "interval_seconds": 60, "idempotency_key": "key-c"})
    before = all_jobs(target)
    with pytest.raises(snap.SnapshotError, match="held by job 'other'"):
        snap.import_snapshot(target, snap.parse_snapshot(json.dumps(document)))
    assert all_jobs(target) == before


def test_dry_run_counts_and_writes_nothing(make_store, handlers):
    source = MemoryStore()
    populate(source, handlers, FakeClock())
    document, _ = snap.build_snapshot(source, now=T0)
    target = make_store()
    summary = snap.import_snapshot(target, snap.parse_snapshot(json.dumps(document)), dry_run=True)
    assert (summary.created, summary.updated, summary.unchanged) == (6, 0, 0)
    assert all_jobs(target) == [] and summary.after == summary.before


def test_unknown_job_types_are_reported(handlers):
    source = MemoryStore()
    populate(source, handlers, FakeClock())
    document, _ = snap.build_snapshot(source, now=T0)
    summary = snap.import_snapshot(MemoryStore(), snap.parse_snapshot(json.dumps(document)), known_types=["log"])
    assert summary.unknown_types == ["boom"]


def test_write_snapshot_is_atomic_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "backup.json"
    snap.write_snapshot({"a": 1}, target)
    with pytest.raises(FileExistsError):
        snap.write_snapshot({"a": 2}, target)
    assert json.loads(target.read_text()) == {"a": 1}
    snap.write_snapshot({"a": 2}, target, overwrite=True)
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.json"]


def _document_of(jobs) -> dict:
    document = {"format": snap.FORMAT, "version": snap.VERSION, "exported_at": "2026-01-05T12:00:00.000000Z", "store": "memory", "with_history": False, "jobs": [job.to_dict() for job in jobs]}
    return resealed(document)


def test_importing_10000_jobs_into_a_json_store_rewrites_the_file_once_per_batch(tmp_path):
    from tests.support.jobs import make_job

    jobs = [make_job(f"job-{i:05d}", due_in=60 + i, payload={"i": i}) for i in range(10_000)]
    snapshot = snap.parse_snapshot(json.dumps(_document_of(jobs)))
    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    seen: list[tuple[int, int]] = []
    summary = snap.import_snapshot(store, snapshot, progress=lambda done, total: seen.append((done, total)))
    assert (summary.created, summary.updated, summary.unchanged) == (10_000, 0, 0)
    assert store.fsynced_writes == math.ceil(10_000 / snap.IMPORT_BATCH) == 10
    assert seen == [(n, 10_000) for n in range(1000, 10_001, 1000)]
    reopened = JsonFileStore(tmp_path / "jobs.json")
    reopened.open()
    assert reopened.count_by_status()["pending"] == 10_000
    assert all_jobs(reopened) == [job.to_dict() for job in jobs]
    # Importing it again writes nothing.
    again = snap.import_snapshot(store, snapshot)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 10_000) and store.fsynced_writes == 10


def test_a_batch_that_fails_leaves_the_earlier_batches_and_a_rerun_completes(tmp_path, monkeypatch):
    from scheduler.errors import StoreUnavailable
    from tests.support.jobs import make_job

    monkeypatch.setattr(snap, "IMPORT_BATCH", 3)
    jobs = [make_job(f"job-{i}", due_in=60) for i in range(7)]
    snapshot = snap.parse_snapshot(json.dumps(_document_of(jobs)))
    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    real = store.restore_jobs
    calls = []

    def flaky(batch):
        calls.append([job.id for job in batch])
        if len(calls) == 2:
            raise StoreUnavailable("disk went away")
        return real(batch)

    monkeypatch.setattr(store, "restore_jobs", flaky)
    with pytest.raises(StoreUnavailable):
        snap.import_snapshot(store, snapshot)
    assert [job.id for job in snap.iter_jobs(store)] == ["job-0", "job-1", "job-2"]
    summary = snap.import_snapshot(store, snapshot)
    assert (summary.created, summary.unchanged) == (4, 3)
    assert calls[2:] == [["job-0", "job-1", "job-2"], ["job-3", "job-4", "job-5"], ["job-6"]]
