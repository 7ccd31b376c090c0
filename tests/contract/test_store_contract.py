"""The store contract: every store (memory, JSON file, Firestore) must pass this suite.

Each test states one promise of :class:`storage.base.JobStore`, asserted on
stored state, not on calls.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from scheduler.errors import ConflictError, JobNotFound, StoreCorrupt
from scheduler.model import Execution, Job, JobStatus, Outcome, RunRef, Settlement, Source, TickRecord
from tests.support.clock import T0
from tests.support.jobs import make_job

LEASE = 300.0


def tick(tick_id: str = "tick-a", key: str | None = None, at=T0) -> TickRecord:
    return TickRecord(tick_id=tick_id, started_at=at, source=Source.MANUAL, occurrence_key=key)


def claim(store, tick_id="tick-a", *, now=T0, limit=100, key=None):
    return store.claim_due_jobs(now=now, tick=tick(tick_id, key, now), lease_seconds=LEASE, limit=limit)


def done(job, **changes):
    """A settlement that completes a claimed job."""
    new = job.replace(status=JobStatus.COMPLETED, next_run_at=None, lease_owner=None, lease_until=None, **changes)
    execution = Execution(job.id, job.fire_at, job.attempts, job.lease_owner, Outcome.SUCCEEDED, T0, 1.5, None, Source.MANUAL)
    return Settlement(job=new, expected_owner=job.lease_owner, expected_epoch=job.lease_epoch, executions=(execution,))


# -- jobs -------------------------------------------------------------------


def test_add_then_get_round_trips_every_field(store):
    job = make_job("a1", cron="*/5 * * * *", schedule_at=None, timezone="Europe/Paris", payload={"x": [1, {"y": None}]}, created_by="ops@x", idempotency_key="k1", timeout_seconds=2.5)
    stored, created = store.add_job(job)
    assert created and stored == job
    got = store.get_job("a1")
    assert got == job
    assert got.next_run_at.tzinfo is not None and got.next_run_at.utcoffset() == timedelta(0)


def test_add_with_existing_idempotency_key_returns_the_existing_job(store):
    first, _ = store.add_job(make_job("a1", idempotency_key="same"))
    again, created = store.add_job(make_job("a2", idempotency_key="same"))
    assert not created and again == first
    assert [j.id for j in store.list_jobs()] == ["a1"]


def test_add_with_taken_id_is_a_conflict(store):
    store.add_job(make_job("a1"))
    with pytest.raises(ConflictError):
        store.add_job(make_job("a1", payload={"other": True}))
    assert store.get_job("a1").payload == {"n": "a1"}


def test_get_unknown_job_raises_not_found(store):
    with pytest.raises(JobNotFound):
        store.get_job("nope")


def test_list_filters_and_pages_by_id(store):
    for i in range(7):
        store.add_job(make_job(f"j{i}", job_type="log" if i % 2 else "http_request", status=JobStatus.PAUSED if i == 3 else JobStatus.PENDING))
    assert [j.id for j in store.list_jobs(limit=3)] == ["j0", "j1", "j2"]
    assert [j.id for j in store.list_jobs(limit=3, after_id="j2")] == ["j3", "j4", "j5"]
    assert [j.id for j in store.list_jobs(job_type="log")] == ["j1", "j3", "j5"]
    assert [j.id for j in store.list_jobs(status=JobStatus.PAUSED)] == ["j3"]


def test_update_job_applies_the_change(store):
    store.add_job(make_job("a1"))
    updated = store.update_job("a1", lambda job: job.replace(status=JobStatus.PAUSED, payload={"v": 2}))
    assert updated.status is JobStatus.PAUSED
    assert store.get_job("a1") == updated


def test_update_job_that_raises_writes_nothing(store):
    store.add_job(make_job("a1"))

    def refuse(job):
        raise ConflictError("no")

    with pytest.raises(ConflictError):
        store.update_job("a1", refuse)
    assert store.get_job("a1") == make_job("a1")
    with pytest.raises(JobNotFound):
        store.update_job("missing", lambda job: job)


def test_counts(store):
    store.add_job(make_job("due1"))
    store.add_job(make_job("due2", due_in=-100))
    store.add_job(make_job("future", due_in=100))
    store.add_job(make_job("paused", status=JobStatus.PAUSED))
    assert store.count_due(T0) == 2
    counts = store.count_by_status()
    assert counts == {"pending": 3, "running": 0, "paused": 1, "completed": 0, "failed": 0, "cancelled": 0}


# -- claim ------------------------------------------------------------------


def test_claim_takes_due_jobs_only_and_writes_the_lease(store):
    store.add_job(make_job("due", due_in=-5))
    store.add_job(make_job("now", due_in=0))
    store.add_job(make_job("future", due_in=5))
    store.add_job(make_job("paused", status=JobStatus.PAUSED))
    store.add_job(make_job("done", status=JobStatus.COMPLETED, next_run_at=None))
    result = claim(store)
    assert [j.id for j in result.claimed] == ["due", "now"]  # earliest first
    assert result.recovered == set() and result.conflicts == 0 and not result.more_due
    for job in result.claimed:
        stored = store.get_job(job.id)
        assert stored == job
        assert stored.status is JobStatus.RUNNING
        assert stored.lease_owner == "tick-a"
        assert stored.lease_until == T0 + timedelta(seconds=LEASE)
        assert stored.lease_epoch == 1 and stored.attempts == 1
    assert store.get_job("future").status is JobStatus.PENDING


def test_claim_respects_limit_and_reports_more_due(store):
    for i in range(5):
        store.add_job(make_job(f"j{i}", due_in=-10 + i))
    first = claim(store, limit=2)
    assert [j.id for j in first.claimed] == ["j0", "j1"] and first.more_due
    second = claim(store, "tick-b", limit=10)
    assert [j.id for j in second.claimed] == ["j2", "j3", "j4"] and not second.more_due


def test_a_live_lease_is_not_claimed_again_but_an_expired_one_is_recovered(store):
    store.add_job(make_job("a1"))
    claim(store, "tick-a")
    assert claim(store, "tick-b", now=T0 + timedelta(seconds=LEASE - 1)).claimed == []
    later = T0 + timedelta(seconds=LEASE)
    result = claim(store, "tick-c", now=later)
    assert [j.id for j in result.claimed] == ["a1"] and result.recovered == {"a1"}
    job = store.get_job("a1")
    assert (job.lease_owner, job.lease_epoch, job.attempts) == ("tick-c", 2, 2)


def test_concurrent_claimers_never_share_a_job(make_store):
    setup = make_store()
    for i in range(120):
        setup.add_job(make_job(f"j{i:03d}"))
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        store = make_store()
        barrier.wait()
        got: list[str] = []
        while True:
            batch = claim(store, name, limit=7).claimed
            if not batch:
                break
            got += [j.id for j in batch]
        results[name] = got

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [job_id for got in results.values() for job_id in got]
    assert sorted(claimed) == [f"j{i:03d}" for i in range(120)]  # each exactly once
    for name, got in results.items():
        assert all(setup.get_job(job_id).lease_owner == name for job_id in got)


def test_same_occurrence_from_another_tick_is_a_duplicate(store):
    store.add_job(make_job("a1"))
    store.add_job(make_job("a2", due_in=30))
    first = claim(store, "tick-a", key="cron@2026-01-05T12:00:00Z")
    assert [j.id for j in first.claimed] == ["a1"]
    retry = claim(store, "tick-b", now=T0 + timedelta(seconds=60), key="cron@2026-01-05T12:00:00Z")
    assert retry.claimed == [] and retry.duplicate_of.tick_id == "tick-a"
    assert store.get_job("a2").status is JobStatus.PENDING  # the retry ran nothing
    # The first tick itself may claim another batch under its key...
    assert claim(store, "tick-a", now=T0 + timedelta(seconds=60), key="cron@2026-01-05T12:00:00Z").duplicate_of is None
    # ...and another occurrence is not a duplicate.
    assert claim(store, "tick-c", key="cron@2026-01-05T12:01:00Z").duplicate_of is None


def test_finished_occurrence_stays_a_duplicate(store):
    store.add_job(make_job("a1"))
    first = claim(store, "tick-a", key="occ-1")
    record = tick("tick-a", "occ-1")
    record.finished_at = T0 + timedelta(seconds=1)
    record.metrics.jobs_executed = 1
    store.settle_jobs([done(first.claimed[0])], tick=record)
    retry = claim(store, "tick-b", now=T0 + timedelta(hours=1), key="occ-1")
    assert retry.duplicate_of.tick_id == "tick-a" and retry.duplicate_of.metrics.jobs_executed == 1


# -- settle -----------------------------------------------------------------


def test_settle_applies_when_the_fence_matches(store):
    store.add_job(make_job("a1"))
    job = claim(store).claimed[0]
    record = tick()
    result = store.settle_jobs([done(job)], tick=record)
    assert result.applied == ["a1"] and result.lost == []
    stored = store.get_job("a1")
    assert stored.status is JobStatus.COMPLETED and stored.lease_owner is None
    assert [e.outcome for e in store.list_executions(job_id="a1")] == [Outcome.SUCCEEDED]
    assert store.recent_ticks(1)[0].tick_id == "tick-a"


def test_a_stale_settle_is_refused_by_the_epoch(store):
    store.add_job(make_job("a1"))
    stale = claim(store, "tick-a").claimed[0]
    fresh = claim(store, "tick-b", now=T0 + timedelta(seconds=LEASE + 1)).claimed[0]
    record = tick("tick-a")
    result = store.settle_jobs([done(stale)], tick=record)
    assert result.lost == ["a1"] and result.applied == []
    assert record.metrics.lease_lost == 0  # the caller's record is not changed: it counts from the result
    assert [t.metrics.lease_lost for t in store.recent_ticks(5) if t.tick_id == "tick-a"] == [1]  # the stored copy counts it
    assert store.get_job("a1") == fresh  # the newer state is untouched
    assert [e.outcome for e in store.list_executions(job_id="a1")] == [Outcome.LEASE_LOST]
    assert store.settle_jobs([done(fresh)], tick=tick("tick-b")).applied == ["a1"]


def test_an_operator_update_that_bumps_the_epoch_fences_out_the_tick(store):
    store.add_job(make_job("a1"))
    job = claim(store).claimed[0]
    store.update_job("a1", lambda j: j.replace(status=JobStatus.PAUSED, lease_owner=None, lease_until=None, lease_epoch=j.lease_epoch + 1))
    assert store.settle_jobs([done(job)], tick=tick()).lost == ["a1"]
    assert store.get_job("a1").status is JobStatus.PAUSED


def test_history_is_newest_first_filtered_and_bounded(store):
    store.add_job(make_job("a1"))
    for i in range(7):  # the suite's stores keep 5 per job
        job = claim(store, f"t{i}", now=T0 + timedelta(minutes=i)).claimed[0]
        execution = Execution("a1", job.fire_at, i, f"t{i}", Outcome.FAILED if i % 2 else Outcome.SUCCEEDED, T0 + timedelta(minutes=i), 1.0, None, Source.MANUAL)
        back = job.replace(status=JobStatus.PENDING, lease_owner=None, lease_until=None)
        store.settle_jobs([Settlement(back, job.lease_owner, job.lease_epoch, (execution,))], tick=tick(f"t{i}", at=T0 + timedelta(minutes=i)))
    history = store.list_executions(job_id="a1")
    assert [e.tick_id for e in history] == ["t6", "t5", "t4", "t3", "t2"]
    assert [e.tick_id for e in store.list_executions(outcome="failed")] == ["t5", "t3"]
    window = store.list_executions(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=5))
    assert [e.tick_id for e in window] == ["t4", "t3"]
    assert [t.tick_id for t in store.recent_ticks(3)] == ["t6", "t5", "t4"]


# -- extend_leases ------------------------------------------------------------


def test_extend_pushes_a_live_lease_and_changes_nothing_else(store):
    store.add_job(make_job("a1"))
    store.add_job(make_job("a2"))
    claimed = claim(store).claimed
    later = T0 + timedelta(seconds=100)
    result = store.extend_leases([RunRef.of(job) for job in claimed], now=later, lease_seconds=LEASE)
    assert result.extended == ["a1", "a2"] and result.lost == []
    for job in claimed:
        assert store.get_job(job.id) == job.replace(lease_until=later + timedelta(seconds=LEASE))


def test_extend_never_moves_a_lease_backwards(store):
    store.add_job(make_job("a1"))
    job = claim(store).claimed[0]
    result = store.extend_leases([RunRef.of(job)], now=T0 + timedelta(seconds=10), lease_seconds=60)
    assert result.extended == ["a1"] and result.lost == []
    assert store.get_job("a1") == job  # T0+70 s is before the claim's T0+300 s


def test_extend_refuses_runs_that_no_longer_hold_the_lease(store):
    for job_id in ("owner", "epoch", "paused", "completed", "cancelled"):
        store.add_job(make_job(job_id))
    claimed = {job.id: job for job in claim(store).claimed}
    # Status changed but the lease fields left as they were: the status alone refuses.
    for job_id, status in (("paused", JobStatus.PAUSED), ("completed", JobStatus.COMPLETED), ("cancelled", JobStatus.CANCELLED)):
        store.update_job(job_id, lambda j, status=status: j.replace(status=status))
    before = {job.id: job for job in store.list_jobs()}
    runs = [
        RunRef("owner", "tick-other", claimed["owner"].lease_epoch, claimed["owner"].fire_at),
        RunRef("epoch", "tick-a", claimed["epoch"].lease_epoch - 1, claimed["epoch"].fire_at),
        RunRef.of(claimed["paused"]),
        RunRef.of(claimed["completed"]),
        RunRef.of(claimed["cancelled"]),
        RunRef("ghost", "tick-a", 1, T0),
    ]
    result = store.extend_leases(runs, now=T0 + timedelta(seconds=100), lease_seconds=LEASE)
    assert result.extended == [] and result.lost == ["owner", "epoch", "paused", "completed", "cancelled", "ghost"]
    assert {job.id: job for job in store.list_jobs()} == before
    with pytest.raises(JobNotFound):
        store.get_job("ghost")


def test_extend_a_mixed_batch_reports_both_lists_exactly(store):
    for job_id in ("a1", "a2", "a3", "a4"):
        store.add_job(make_job(job_id))
    claimed = {job.id: job for job in claim(store).claimed}
    settled = store.settle_jobs([done(claimed["a2"])], tick=tick()).applied
    assert settled == ["a2"]
    taken = claim(store, "tick-b", now=T0 + timedelta(seconds=LEASE)).claimed  # a1, a3, a4 recovered by tick-b
    assert sorted(j.id for j in taken) == ["a1", "a3", "a4"]
    fresh = {job.id: job for job in taken}
    now = T0 + timedelta(seconds=LEASE + 10)
    runs = [RunRef.of(fresh["a4"]), RunRef.of(claimed["a1"]), RunRef.of(claimed["a2"]), RunRef.of(fresh["a3"])]
    result = store.extend_leases(runs, now=now, lease_seconds=LEASE)
    assert result.extended == ["a4", "a3"] and result.lost == ["a1", "a2"]
    assert store.get_job("a4").lease_until == store.get_job("a3").lease_until == now + timedelta(seconds=LEASE)
    assert store.get_job("a1") == fresh["a1"]
    assert store.extend_leases([], now=now, lease_seconds=LEASE).extended == []


# -- restore_jobs -------------------------------------------------------------


def test_restore_creates_updates_and_leaves_equal_jobs_alone(store):
    store.add_job(make_job("same"))
    store.add_job(make_job("changed"))
    store.add_job(make_job("held"))
    store.add_job(make_job("untouched"))
    held = next(job for job in claim(store).claimed if job.id == "held")  # claims every job; epoch 1
    store.update_job("same", lambda j: j.replace(status=JobStatus.PENDING, lease_owner=None, lease_until=None))
    stored_same = store.get_job("same")
    given = [
        make_job("new-1", payload={"fresh": 1}),
        stored_same.replace(lease_epoch=0),  # equal but for a lower epoch
        make_job("changed", payload={"restored": True}, lease_epoch=0),
        make_job("held", status=JobStatus.PAUSED, lease_epoch=0),
        make_job("new-2", cron="0 9 * * *", schedule_at=None, lease_epoch=7),
        stored_same,  # equal, epoch included
    ]
    result = store.restore_jobs(given)
    assert (result.created, result.updated, result.unchanged) == (["new-1", "new-2"], ["changed", "held"], ["same", "same"])
    assert store.get_job("new-1") == given[0] and store.get_job("new-2") == given[4]  # stored as given, epoch 7 kept
    assert store.get_job("same") == stored_same
    for job_id, wanted in (("changed", given[2]), ("held", given[3])):
        restored = store.get_job(job_id)
        assert restored == wanted.replace(lease_epoch=2)  # above the stored epoch 1
    # A tick still holding a replaced job cannot settle over the restored state.
    assert store.settle_jobs([done(held)], tick=tick()).lost == ["held"]
    assert store.get_job("held").status is JobStatus.PAUSED
    assert store.get_job("untouched").status is JobStatus.RUNNING
    assert store.restore_jobs([]).created == []
    # Restoring the same jobs again changes nothing.
    again = store.restore_jobs([given[0], given[2], given[3], given[4]])
    assert (again.created, again.updated, again.unchanged) == ([], [], ["new-1", "changed", "held", "new-2"])


def test_restore_keeps_a_higher_given_epoch_and_idempotency_keys_unique(store):
    store.add_job(make_job("a1"))
    result = store.restore_jobs([make_job("a1", payload={"v": 2}, lease_epoch=9), make_job("k1", idempotency_key="key-1")])
    assert (result.created, result.updated) == (["k1"], ["a1"])
    assert store.get_job("a1").lease_epoch == 9  # max(given 9, stored 0 + 1)
    existing, created = store.add_job(make_job("k2", idempotency_key="key-1"))
    assert not created and existing.id == "k1"
    # A replaced key frees the old one and takes the new one.
    assert store.restore_jobs([make_job("k1", idempotency_key="key-2")]).updated == ["k1"]
    assert store.add_job(make_job("k3", idempotency_key="key-1"))[1] is True
    assert store.add_job(make_job("k4", idempotency_key="key-2"))[0].id == "k1"


# -- unreadable stored jobs -----------------------------------------------------


def plant(store, job: Job, *, drop: tuple[str, ...] = (), **changes) -> None:
    """Store ``job`` with ``changes`` and without ``drop``, bypassing every verb (a hand edit)."""
    if store.kind == "firestore":
        from storage.firestore import _job_fields

        data = _job_fields(job) | {"history": []} | changes  # native timestamps, so the due queries find it
        store._col("jobs").document(job.id).set({k: v for k, v in data.items() if k not in drop})
        return
    if store.kind == "postgres":  # an INSERT of the row as given (its columns refuse a missing job_type)
        from storage.postgres import ADD_SQL, _job_values

        assert not drop, "a PostgreSQL row has every column"
        with store._connection("plant") as conn:
            conn.execute(ADD_SQL, _job_values(job) | {k: json.dumps(v) if k == "payload" else v for k, v in changes.items()})
        return
    data = {k: v for k, v in (job.to_dict() | changes).items() if k not in drop}
    if store.kind == "memory":
        with store._lock:
            store._table.doc["jobs"][job.id] = data
    else:
        doc = json.loads(store.path.read_text())
        doc.pop("generation", None)  # a hand edit: parsed afresh on the next call
        doc["jobs"][job.id] = data
        store.path.write_text(json.dumps(doc))


def test_a_job_that_cannot_be_decoded_is_skipped_and_reported_by_the_claim(store, caplog):
    for job_id in ("good-1", "good-2", "good-3"):
        store.add_job(make_job(job_id, due_in=-5))
    plant(store, make_job("bad-misfire", due_in=-50), misfire="bogus")
    if store.kind == "postgres":  # no column can lack job_type: a payload that is no object instead
        plant(store, make_job("no-type", due_in=-60), payload=[1])
    else:
        plant(store, make_job("no-type", due_in=-60), drop=("job_type",))
    expected_unreadable = ["bad-misfire", "no-type"]
    if store.kind not in ("firestore", "postgres"):  # Firestore's due queries never return these two; Postgres' columns refuse them
        plant(store, make_job("bogus-status"), status="bogus")
        plant(store, make_job("odd-time"), next_run_at=12)
        expected_unreadable = ["bad-misfire", "bogus-status", "no-type", "odd-time"]
    with caplog.at_level("ERROR"):
        first = claim(store, limit=2)
    assert [j.id for j in first.claimed] == ["good-1", "good-2"] and first.more_due
    assert first.unreadable == expected_unreadable
    logged = sorted(r.json_fields["job_id"] for r in caplog.records if getattr(r, "json_fields", {}).get("action") == "stored_job_unreadable")
    assert logged == expected_unreadable
    second = claim(store, "tick-b", limit=10)
    assert [j.id for j in second.claimed] == ["good-3"] and not second.more_due and second.unreadable == expected_unreadable
    for job_id in ("good-1", "good-2", "good-3"):
        assert store.get_job(job_id).status is JobStatus.RUNNING
    # The unreadable jobs were written nothing, and reading one names it.
    with pytest.raises(StoreCorrupt, match="bad-misfire"):
        store.get_job("bad-misfire")
    with pytest.raises(StoreCorrupt, match="no-type"):
        store.get_job("no-type")
    if store.kind != "firestore":
        assert store.count_by_status()["running"] == 3 and sum(store.count_by_status().values()) == (5 if store.kind == "postgres" else 6)
        assert store.count_due(T0) == 2  # bad-misfire and no-type still look due; count_due decodes nothing


def test_a_settle_without_a_tick_writes_no_tick_record(store):
    """/tasks/run settles one dispatched run with tick=None: the job and its history are
    written, no tick record is."""
    store.add_job(make_job("a1"))
    claimed = claim(store, "tick-a").claimed[0]
    before = [t.tick_id for t in store.recent_ticks(10)]
    result = store.settle_jobs([done(claimed)], tick=None)
    assert result.applied == ["a1"] and result.lost == []
    assert store.get_job("a1").status is JobStatus.COMPLETED
    assert [t.tick_id for t in store.recent_ticks(10)] == before


def test_add_jobs_adds_each_once_and_returns_what_is_stored(store):
    """add_jobs: created in order; a second call with the same jobs (or a taken id or key) writes nothing."""
    store.add_job(make_job("taken", payload={"n": "original"}))
    batch = [make_job("b1", idempotency_key="k1"), make_job("b2"), make_job("taken", payload={"n": "new"})]
    first = store.add_jobs(batch)
    assert [(job.id, created) for job, created in first] == [("b1", True), ("b2", True), ("taken", False)]
    assert first[2][0].payload == {"n": "original"}
    again = store.add_jobs(batch + [make_job("other-id", idempotency_key="k1")])
    assert [(job.id, created) for job, created in again] == [("b1", False), ("b2", False), ("taken", False), ("b1", False)]
    assert sorted(job.id for job in store.list_jobs()) == ["b1", "b2", "taken"]


# -- retention --------------------------------------------------------------------


def finished(job_id: str, status: JobStatus, updated_at, **fields) -> Job:
    return make_job(job_id, status=status, next_run_at=None, fire_at=None, updated_at=updated_at, **fields)


def test_delete_finished_jobs_removes_old_completed_and_cancelled_jobs_with_their_history(store):
    store.add_job(make_job("ran-old"))
    job = claim(store, "tick-a").claimed[0]
    assert store.settle_jobs([done(job)], tick=tick()).applied == ["ran-old"]  # completed at T0, one execution
    day = timedelta(days=1)
    store.restore_jobs([
        finished("cancelled-old", JobStatus.CANCELLED, T0 - day, idempotency_key="key-old"),
        finished("completed-new", JobStatus.COMPLETED, T0 + 30 * day),  # not older than before
        finished("failed-old", JobStatus.FAILED, T0 - day),
        make_job("paused-old", status=JobStatus.PAUSED, updated_at=T0 - day),
        make_job("pending-old", due_in=3600, updated_at=T0 - day),
    ])
    before = T0 + 30 * day
    assert store.delete_finished_jobs(before=before, limit=10) == 2
    for job_id in ("ran-old", "cancelled-old"):
        with pytest.raises(JobNotFound):
            store.get_job(job_id)
    assert store.list_executions(job_id="ran-old") == []
    assert sorted(j.id for j in store.list_jobs()) == ["completed-new", "failed-old", "paused-old", "pending-old"]
    assert store.delete_finished_jobs(before=before, limit=10) == 0
    # The deleted job's idempotency key is free again.
    again, created = store.add_job(make_job("again", idempotency_key="key-old"))
    assert created and again.id == "again"


def test_delete_finished_jobs_takes_the_oldest_first_up_to_the_limit(store):
    store.restore_jobs([finished(f"c{i}", JobStatus.COMPLETED, T0 + timedelta(hours=i)) for i in (2, 0, 1)])
    before = T0 + timedelta(days=1)
    assert store.delete_finished_jobs(before=before, limit=2) == 2
    assert [j.id for j in store.list_jobs()] == ["c2"]
    assert store.delete_finished_jobs(before=T0 + timedelta(hours=2), limit=2) == 0  # updated_at < before, strictly
    assert store.delete_finished_jobs(before=before, limit=2) == 1
    assert store.list_jobs() == [] and store.delete_finished_jobs(before=before, limit=0) == 0
