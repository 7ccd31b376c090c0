"""The JSON store with real files and real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from main import create_app
from scheduler.errors import StoreCorrupt, StoreUnavailable
from scheduler.model import JobStatus, RunRef, Source, TickRecord
from storage.jsonfile import JsonFileStore
from tests.support.clock import T0, FakeClock
from tests.support.handlers import read_ledger
from tests.support.jobs import make_job
from tests.support.tick_worker import start_together
from tests.support.processes import REPO, service_env

def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return service_env(
        SCHEDULER_STORAGE="json",
        SCHEDULER_JSON_PATH=str(tmp_path / "jobs.json"),
        SCHEDULER_HANDLER_MODULES="tests.support.handlers",
        SCHEDULER_CLAIM_BATCH_SIZE="40",
        CRONTICK_TEST_LEDGER=str(tmp_path / "ledger.txt"),
        LOG_LEVEL="WARNING",
        **extra,
    )


def seed(path: Path, n: int, job_type: str = "ledger", **payload) -> JsonFileStore:
    from scheduler.clock import utc_now

    store = JsonFileStore(path)
    store.open()
    now = utc_now()
    for i in range(n):
        store.add_job(make_job(f"j{i:04d}", now=now, due_in=-1, job_type=job_type, payload=dict(payload)))
    return store


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"schema_version": 99, "jobs": {}}', b"[1, 2]", b'{"schema_version": 1, "jobs": []}'])
def test_a_corrupt_file_is_refused_at_open_served_as_503_and_left_untouched(tmp_path, content):
    path = tmp_path / "jobs.json"
    path.write_bytes(content)
    before = path.stat()
    with pytest.raises(StoreCorrupt) as excinfo:
        JsonFileStore(path).open()
    assert str(path) in str(excinfo.value)
    # The service starts anyway (main.create_app) and answers 503 naming the file.
    client = create_app({"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_JSON_PATH": str(path)}).test_client()
    response = client.post("/cron/tick")
    assert response.status_code == 503 and str(path) in response.json["error"]["message"]
    assert client.get("/health").status_code == 200
    assert path.read_bytes() == content and path.stat().st_mtime_ns == before.st_mtime_ns
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_file_corrupted_while_serving_gives_503_and_is_not_overwritten(tmp_path):
    path = tmp_path / "jobs.json"
    app = create_app({"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_JSON_PATH": str(path)})
    client = app.test_client()
    assert client.post("/cron/tick").status_code == 200
    path.write_text("garbage")
    response = client.post("/cron/tick")
    assert response.status_code == 503
    assert response.json["error"]["code"] == "store_unavailable" and str(path) in response.json["error"]["message"]
    assert path.read_text() == "garbage"
    assert client.get("/health").status_code == 200


def test_an_unwritable_store_gives_503_and_loses_nothing(tmp_path):
    path = tmp_path / "data" / "jobs.json"
    clock = FakeClock()
    config = {"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_JSON_PATH": str(path)}
    app = create_app(config, clock=clock)
    ct = app.extensions["crontick"]
    job, _ = ct.service.create({"job_type": "log", "schedule_at": clock().isoformat()})
    # As root, permissions do not stop writes; swapping the folder for a file does.
    saved = tmp_path / "saved"
    path.parent.rename(saved)
    path.parent.write_text("not a folder")
    response = app.test_client().post("/cron/tick")
    assert response.status_code == 503 and response.json["error"]["code"] == "store_unavailable"
    path.parent.unlink()
    saved.rename(path.parent)
    body = app.test_client().post("/cron/tick").json
    assert body["jobs_succeeded"] == 1
    assert ct.store.get_job(job.id).status is JobStatus.COMPLETED


def test_another_process_write_is_seen_through_the_cache(tmp_path):
    path = tmp_path / "jobs.json"
    a, b = JsonFileStore(path), JsonFileStore(path)
    a.open(), b.open()
    a.add_job(make_job("x"))
    assert b.get_job("x").id == "x"
    b.update_job("x", lambda j: j.replace(payload={"by": "b"}))
    assert a.get_job("x").payload == {"by": "b"}
    # A hand edit (no generation token) is parsed afresh too.
    doc = json.loads(path.read_text())
    del doc["generation"]
    doc["jobs"]["x"]["payload"] = {"by": "hand"}
    path.write_text(json.dumps(doc))
    assert a.get_job("x").payload == {"by": "hand"}


def test_a_held_lock_gives_store_unavailable_not_a_hang(tmp_path):
    store = JsonFileStore(tmp_path / "jobs.json", lock_timeout=0.2)
    store.open()
    # Another process holds flock on the lock file, as a second crontick would (storage/flock.py).
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl,os,time; fd=os.open({store.lock_path!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreUnavailable, match=rf"could not lock {re.escape(str(store.path))} within 0.2 s"):
            store.add_job(make_job("x"))
    finally:
        holder.kill()
        holder.wait()
    store.add_job(make_job("x"))  # the kernel released the killed holder's lock
    assert store.get_job("x").id == "x"


def test_two_processes_and_threads_over_500_due_jobs_run_each_exactly_once(tmp_path):
    # until_pids: a process's first handlers wait until another process has run a job too.
    seed(tmp_path / "jobs.json", 500, ledger=str(tmp_path / "ledger.txt"), until_pids=2)
    start = tmp_path / "go"
    env = worker_env(tmp_path, CRONTICK_TEST_START=str(start))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.support.tick_worker"], env=env, cwd=REPO) for _ in range(2)]
    # ...and two threads in this process, each with its own store instance.
    app_env = worker_env(tmp_path)
    threads = []
    for _ in range(2):
        app = create_app(app_env)
        ct = app.extensions["crontick"]

        def loop(ct=ct):
            while not start.exists():
                time.sleep(0.005)
            idle = 0
            while idle < 3:  # as tests/support/tick_worker.py: idle means nothing was due
                outcome = ct.engine.run_tick(now=ct.clock(), tick_id=os.urandom(8).hex())
                idle = idle + 1 if outcome.tick.metrics.jobs_due == 0 else 0

        threads.append(threading.Thread(target=loop))
    for t in threads:
        t.start()
    start_together(start, workers=2)  # every worker has built its app and waits on the start file
    for t in threads:
        t.join(120)
    assert [p.wait(120) for p in procs] == [0, 0]
    rows = read_ledger(tmp_path / "ledger.txt")
    counts = Counter(row[0] for row in rows)
    assert len(counts) == 500 and set(counts.values()) == {1}
    assert len({row[3] for row in rows}) >= 2  # more than one process really took part
    store = JsonFileStore(tmp_path / "jobs.json")
    assert store.count_by_status()["completed"] == 500


def test_a_process_killed_mid_handler_is_rerun_after_its_lease(tmp_path):
    store = seed(tmp_path / "jobs.json", 1, job_type="ledger_then_hang", release=str(tmp_path / "never"), ledger=str(tmp_path / "ledger.txt"))
    env = worker_env(tmp_path, SCHEDULER_LEASE_SECONDS="30", SCHEDULER_TICK_BUDGET_SECONDS="25", SCHEDULER_JOB_TIMEOUT_SECONDS="20")
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.tick_worker"], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while not read_ledger(tmp_path / "ledger.txt") and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    job = store.get_job("j0000")
    assert job.status is JobStatus.RUNNING and job.attempts == 1
    # A later tick, past the dead tick's lease, recovers the job and runs it again.
    (tmp_path / "never").touch()
    clock = FakeClock(job.lease_until + timedelta(seconds=1))
    app = create_app(worker_env(tmp_path), clock=clock)
    body = app.test_client().post("/cron/tick").json
    assert (body["jobs_recovered"], body["jobs_succeeded"]) == (1, 1)
    rows = read_ledger(tmp_path / "ledger.txt")
    assert [(r[0], r[2]) for r in rows] == [("j0000", "1"), ("j0000", "2")]
    final = store.get_job("j0000")
    assert final.status is JobStatus.COMPLETED and final.attempts == 0 and final.lease_epoch == 2


def test_temp_files_of_an_interrupted_write_are_removed_at_start(tmp_path):
    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    store.add_job(make_job("x"))
    orphan = tmp_path / ".jobs.json.abc123.tmp"
    orphan.write_text('{"half": ')
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_text("mine")
    JsonFileStore(tmp_path / "jobs.json").open()
    assert not orphan.exists() and unrelated.exists()
    assert JsonFileStore(tmp_path / "jobs.json").get_job("x").id == "x"


def test_a_start_that_cannot_lock_for_the_cleanup_still_opens_and_leaves_the_temp_files(tmp_path, caplog):
    from storage import flock

    JsonFileStore(tmp_path / "jobs.json").add_job(make_job("x"))
    orphan = tmp_path / ".jobs.json.abc123.tmp"
    orphan.write_text('{"half": ')
    store = JsonFileStore(tmp_path / "jobs.json")
    locks = []

    def lock_then_time_out():  # the open's read gets the lock; the cleanup after it does not
        locks.append(1)
        if len(locks) == 2:
            raise flock.LockTimeout(store.lock_path, store.lock_timeout)
        return flock.hold(store.lock_path, store.lock_timeout)

    store._file_lock = lock_then_time_out
    with caplog.at_level("WARNING", logger="storage.jsonfile"):
        store.open()
    assert len(locks) == 2
    assert orphan.exists()
    (record,) = [r for r in caplog.records if getattr(r, "json_fields", {}).get("action") == "json_temp_cleanup_skipped"]
    assert "could not lock" in record.json_fields["error"]
    assert store.get_job("x").id == "x"


def test_extend_leases_is_one_write_per_batch_and_none_when_nothing_moves(tmp_path):
    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    for i in range(5):
        store.add_job(make_job(f"j{i}"))
    tick = TickRecord("t1", T0, Source.MANUAL)
    runs = [RunRef.of(job) for job in store.claim_due_jobs(now=T0, tick=tick, lease_seconds=60, limit=10).claimed]
    writes = store.fsynced_writes
    assert len(store.extend_leases(runs, now=T0 + timedelta(seconds=30), lease_seconds=60).extended) == 5
    assert store.fsynced_writes == writes + 1
    # Leases already as far out as asked, then a batch of lost runs: no file replacement.
    assert len(store.extend_leases(runs, now=T0, lease_seconds=60).extended) == 5
    stale = [RunRef(run.job_id, "someone-else", run.lease_epoch, run.fire_at) for run in runs]
    assert len(store.extend_leases(stale, now=T0 + timedelta(seconds=50), lease_seconds=60).lost) == 5
    assert store.fsynced_writes == writes + 1
    assert {job.lease_until for job in JsonFileStore(tmp_path / "jobs.json").list_jobs()} == {T0 + timedelta(seconds=90)}


def test_restore_jobs_is_one_file_replacement_per_call_and_none_when_unchanged(tmp_path):
    store = JsonFileStore(tmp_path / "jobs.json")
    store.open()
    jobs = [make_job(f"r{i:03d}") for i in range(250)]
    result = store.restore_jobs(jobs)
    assert len(result.created) == 250 and store.fsynced_writes == 1
    assert store.restore_jobs(jobs).unchanged == [job.id for job in jobs] and store.fsynced_writes == 1
    assert store.restore_jobs([]).created == [] and store.fsynced_writes == 1
    assert JsonFileStore(tmp_path / "jobs.json").list_jobs(limit=1000) == jobs


def test_a_store_opened_on_a_symlink_writes_the_target_and_shares_it(tmp_path, caplog):
    target = tmp_path / "real" / "jobs.json"
    target.parent.mkdir()
    link = tmp_path / "jobs-link.json"
    link.symlink_to(target)  # dangling until the first write
    with caplog.at_level("INFO", logger="storage.jsonfile"):
        on_link = JsonFileStore(link)
        on_link.open()
    opened = [r.json_fields for r in caplog.records if getattr(r, "json_fields", {}).get("action") == "json_store_opened"]
    assert opened == [{"action": "json_store_opened", "path": str(link), "resolved_path": str(target), "symlink": True}]
    on_link.add_job(make_job("via-link"))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.is_file() and not target.is_symlink()
    assert "via-link" in json.loads(target.read_text())["jobs"]
    on_target = JsonFileStore(target)
    on_target.open()
    on_target.add_job(make_job("via-target"))
    assert [j.id for j in on_link.list_jobs()] == [j.id for j in on_target.list_jobs()] == ["via-link", "via-target"]
    on_link.update_job("via-target", lambda j: j.replace(payload={"by": "link"}))
    assert on_target.get_job("via-target").payload == {"by": "link"}
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["jobs-link.json", "real"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["jobs.json", "jobs.json.lock"]  # one lock, next to the target


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _plant_payload(path: Path, job_id: str, payload_json: str) -> None:
    """Swap the payload of a stored job for raw JSON text (a hand edit of the file)."""
    text = path.read_text()
    marker = json.dumps({"n": job_id}, separators=(",", ":"))  # make_job's payload
    assert text.count(marker) == 1
    path.write_text(text.replace(marker, payload_json))


def test_hand_edited_values_orjson_refuses_survive_a_write_and_non_finite_numbers_become_null(tmp_path):
    """The store encodes with orjson and falls back to the standard library for what orjson
    refuses; the API refuses all of these, so only a hand edit (or an old file) holds them."""
    path = tmp_path / "jobs.json"
    store = JsonFileStore(path)
    store.open()
    for job_id in ("surrogate", "big", "deep", "infinite", "accent"):
        store.add_job(make_job(job_id, payload={"n": job_id}))
    _plant_payload(path, "surrogate", '{"s":"\\ud800"}')
    _plant_payload(path, "big", '{"n":' + str(2**70) + "}")
    _plant_payload(path, "deep", '{"d":' + _nested(300) + "}")  # orjson stops at 255 levels
    _plant_payload(path, "infinite", '{"x":Infinity,"y":NaN}')
    _plant_payload(path, "accent", '{"s":"caf\\u00e9"}')
    store = JsonFileStore(path)  # the edit kept the generation token: a new instance parses it
    for job_id in ("surrogate", "big", "deep", "infinite", "accent"):  # each job record written again
        store.update_job(job_id, lambda j: j.replace(max_attempts=j.max_attempts + 1))
    doc = json.loads(path.read_bytes(), parse_constant=lambda name: pytest.fail(f"{name} written"))  # strict JSON
    payloads = {job_id: doc["jobs"][job_id]["payload"] for job_id in ("surrogate", "big", "deep", "infinite", "accent")}
    assert payloads["surrogate"] == {"s": "\ud800"} and payloads["big"] == {"n": 2**70}
    assert payloads["deep"] == {"d": json.loads(_nested(300))}
    assert payloads["infinite"] == {"x": None, "y": None}
    assert payloads["accent"] == {"s": "caf\u00e9"} and "café".encode() in path.read_bytes()
    fresh = JsonFileStore(path)
    assert fresh.get_job("surrogate").payload == {"s": "\ud800"} and fresh.get_job("big").max_attempts == store.get_job("big").max_attempts


def test_a_payload_nested_5000_deep_gives_store_corrupt_naming_the_file_and_the_job(tmp_path):
    path = tmp_path / "jobs.json"
    store = JsonFileStore(path)
    store.open()
    for job_id in ("fine", "deep-one", "shallow"):
        store.add_job(make_job(job_id))
    _plant_payload(path, "deep-one", '{"x":' + _nested(5000) + "}")
    _plant_payload(path, "shallow", '{"x":' + _nested(31) + "}")  # 32 levels with the object: within the limit
    before, stat, limit = path.read_bytes(), path.stat(), sys.getrecursionlimit()
    for _ in range(2):  # the second time from the remembered diagnosis
        with pytest.raises(StoreCorrupt) as excinfo:
            JsonFileStore(path).open()
        message = str(excinfo.value)
        assert message == (
            f"{path} is nested too deeply to read: job(s) 'deep-one' have a payload nested more than 32 levels deep; "
            "remove or flatten them by hand, crontick will not overwrite the file"
        )
    with pytest.raises(StoreCorrupt, match="deep-one"):
        JsonFileStore(path).list_jobs()
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.json", "jobs.json.lock"]
    assert sys.getrecursionlimit() == limit  # raised only inside the deep parse


def test_too_deep_outside_any_payload_or_beyond_the_deep_parse_names_the_file_only(tmp_path):
    path = tmp_path / "jobs.json"
    store = JsonFileStore(path)
    store.open()
    store.add_job(make_job("a1"))
    doc = json.loads(path.read_text())
    del doc["generation"]  # a hand-edited file: parsed on every call
    text = json.dumps(doc, separators=(",", ":"))
    ticks_deep = text.replace('"ticks":[]', '"ticks":[' + _nested(5000) + "]")
    assert ticks_deep != text
    path.write_text(ticks_deep)
    with pytest.raises(StoreCorrupt) as excinfo:
        JsonFileStore(path).open()
    assert str(excinfo.value) == f"{path} is nested too deeply to read (no job payload is the cause that could be found); fix or move it, crontick will not overwrite it"
    # Deeper than even the worker thread's parse allows: the file is named, nothing crashes.
    path.write_text(text)
    _plant_payload(path, "a1", '{"x":' + _nested(300_000) + "}")
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match="no job payload is the cause that could be found"):
        JsonFileStore(path).open()
    assert path.read_bytes() == before
