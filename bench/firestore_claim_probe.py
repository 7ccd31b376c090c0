"""Probe: how should concurrent ticks claim due jobs on Firestore?

Seeds due jobs in an emulator, then lets K concurrent claimers (threads, each
with its own client, as separate Cloud Run instances would have) claim them in
batches until none is left, with three strategies:

``transaction``   one read-write transaction per batch: query the due jobs inside
                  it, update each, commit (the library retries ABORTED, 5 attempts).
``batch_write``   optimistic: run the due query outside any transaction, then one
                  non-atomic BatchWrite RPC whose every write carries a precondition
                  on the document's ``update_time``; a failed precondition means
                  another claimer won that job.
``bulk_writer``   the same preconditioned writes through ``client.bulk_writer()``
                  with its retries disabled (it would otherwise retry a
                  FAILED_PRECONDITION up to 15 times) — sends batches of 20.
``store``         ``FirestoreStore.claim_due_jobs`` itself (batch_write plus the tick record).

Prints one row per run: wall time, jobs claimed, jobs claimed more than once,
jobs never claimed, lost writes (conflicts), failed transactions and RPCs sent.

Usage (starts its own emulator unless FIRESTORE_EMULATOR_HOST or --host is given)::

    .venv/bin/python bench/firestore_claim_probe.py
    .venv/bin/python bench/firestore_claim_probe.py --host 127.0.0.1:8080 --runs 30:3:10 300:8:50 1000:8:500
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROJECT = "demo-crontick-probe"
COLLECTION = "probe_jobs"
STRATEGIES = ("transaction", "batch_write", "bulk_writer", "store")
DEFAULT_RUNS = ("30:3:10", "30:8:10", "300:8:50", "1000:4:500")


def _count_rpcs(client, counter: collections.Counter, lock: threading.Lock) -> None:
    api = client._firestore_api
    for name in ("batch_get_documents", "run_query", "commit", "batch_write", "begin_transaction", "rollback"):
        method = getattr(api, name)

        def wrapped(*args, _method=method, _name=name, **kwargs):
            with lock:
                counter[_name] += 1
            return _method(*args, **kwargs)

        setattr(api, name, wrapped)


def _client(counter, lock):
    from google.cloud import firestore

    client = firestore.Client(project=PROJECT)
    _count_rpcs(client, counter, lock)
    return client


def _due_query(client, now, limit):
    from google.cloud.firestore_v1.base_query import FieldFilter

    return (
        client.collection(COLLECTION)
        .where(filter=FieldFilter("status", "==", "pending"))
        .where(filter=FieldFilter("next_run_at", "<=", now))
        .order_by("next_run_at")
        .limit(limit)
    )


def _claim_fields(owner, now):
    return {"status": "running", "lease_owner": owner, "lease_until": now + timedelta(seconds=300), "updated_at": now}


def seed(host: str, n: int, now: datetime) -> None:
    from google.cloud import firestore
    from google.cloud.firestore_v1 import _helpers

    urllib.request.urlopen(urllib.request.Request(f"http://{host}/emulator/v1/projects/{PROJECT}/databases/(default)/documents", method="DELETE"), timeout=30).read()
    client = firestore.Client(project=PROJECT)
    from scheduler.model import Job, JobStatus
    from storage.firestore import _job_fields

    writes = []
    for i in range(n):
        ref = client.collection(COLLECTION).document(f"job{i:05d}")
        when = now - timedelta(seconds=n - i)
        job = Job(id=ref.id, job_type="log", payload={}, status=JobStatus.PENDING, next_run_at=when, fire_at=when, created_at=when, updated_at=when, schedule_at=when)
        writes += _helpers.pbs_for_set_no_merge(ref._document_path, _job_fields(job))
    for start in range(0, len(writes), 500):
        client._firestore_api.batch_write(request={"database": client._database_string, "writes": writes[start : start + 500]}, metadata=client._rpc_metadata)
    client.close()


def claim_transaction(client, owner, now, limit, stats):
    from google.cloud import firestore

    @firestore.transactional
    def run(transaction):
        snaps = list(transaction.get(_due_query(client, now, limit)))
        for snap in snaps:
            transaction.update(snap.reference, _claim_fields(owner, now))
        return [snap.id for snap in snaps]

    try:
        ids = run(client.transaction(max_attempts=5))
        return ids, bool(ids)
    except ValueError:  # "Failed to commit transaction in 5 attempts"
        stats["failed_transactions"] += 1
        return [], True
    except Exception as exc:  # noqa: BLE001 - a probe records what happens
        stats[f"error:{type(exc).__name__}"] += 1
        return [], True


def claim_batch_write(client, owner, now, limit, stats):
    from google.cloud.firestore_v1 import _helpers

    snaps = list(_due_query(client, now, limit).stream())
    if not snaps:
        return [], False
    writes = []
    for snap in snaps:
        write = _helpers.pbs_for_update(snap.reference._document_path, _claim_fields(owner, now), None)[0]
        write.current_document.update_time = snap.update_time
        writes.append(write)
    response = client._firestore_api.batch_write(request={"database": client._database_string, "writes": writes}, metadata=client._rpc_metadata)
    won = [snap.id for snap, status in zip(snaps, response.status) if status.code == 0]
    stats["conflicts"] += len(snaps) - len(won)
    return won, True


def claim_bulk_writer(client, owner, now, limit, stats):
    from google.cloud.firestore_v1.bulk_writer import BulkWriterOptions

    snaps = list(_due_query(client, now, limit).stream())
    if not snaps:
        return [], False
    won, lock = [], threading.Lock()
    writer = client.bulk_writer(options=BulkWriterOptions(initial_ops_per_second=100000, max_ops_per_second=100000))
    writer.on_write_result(lambda ref, result, bw: (lock.acquire(), won.append(ref.id), lock.release()))
    writer.on_write_error(lambda failure, bw: False)  # never retry: a failed precondition is a lost race
    for snap in snaps:
        writer.update(snap.reference, _claim_fields(owner, now), option=client.write_option(last_update_time=snap.update_time))
    writer.close()
    stats["conflicts"] += len(snaps) - len(won)
    return won, True


def claim_store(store, owner, now, limit, stats):
    from scheduler.model import Source, TickRecord

    result = store.claim_due_jobs(now=now, tick=TickRecord(tick_id=owner, started_at=now, source=Source.MANUAL), lease_seconds=300, limit=limit)
    stats["conflicts"] += result.conflicts
    return [job.id for job in result.claimed], bool(result.claimed or result.conflicts)


def run(host: str, strategy: str, jobs: int, claimers: int, batch: int, max_seconds: float = 60.0) -> dict:
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    now = datetime.now(timezone.utc).replace(microsecond=0)
    seed(host, jobs, now)
    rpcs: collections.Counter = collections.Counter()
    stats: collections.Counter = collections.Counter()
    lock = threading.Lock()
    claimed: collections.Counter = collections.Counter()
    claim = {"transaction": claim_transaction, "batch_write": claim_batch_write, "bulk_writer": claim_bulk_writer, "store": claim_store}[strategy]
    if strategy == "store":
        from storage.firestore import FirestoreStore

        clients = [FirestoreStore(project=PROJECT, jobs_collection=COLLECTION) for _ in range(claimers)]
    else:
        clients = [_client(rpcs, lock) for _ in range(claimers)]
    stop_at = [0.0]
    barrier = threading.Barrier(claimers + 1)

    def worker(index: int) -> None:
        client = clients[index]
        barrier.wait()
        idle = 0
        while idle < 2:
            if time.perf_counter() > stop_at[0]:
                stats["timed_out"] = 1
                return
            got, saw_due = claim(client, f"c{index}", now, batch, stats)
            with lock:
                claimed.update(got)
            idle = 0 if (got or saw_due) else idle + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(claimers)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + max_seconds
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if strategy == "store":
        rpcs["all"] = sum(store.rpc_count for store in clients)
    for client in clients:
        client.close()
    return {
        "strategy": strategy, "jobs": jobs, "claimers": claimers, "batch": batch, "wall_s": wall,
        "claimed": len(claimed), "dupes": sum(1 for c in claimed.values() if c > 1), "missing": jobs - len(claimed),
        "conflicts": stats["conflicts"], "failed_tx": stats["failed_transactions"],
        "errors": sum(v for k, v in stats.items() if k.startswith("error:")), "rpcs": sum(rpcs.values()),
        "note": f"gave up after {max_seconds:g} s" if stats["timed_out"] else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("FIRESTORE_EMULATOR_HOST"), help="emulator host:port (default: start one)")
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="jobs:claimers:batch triples")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="give up a run after this long (claimers stop)")
    args = parser.parse_args(argv)
    emulator = None
    host = args.host
    if not host:
        from tests.support.firestore_emulator import FirestoreEmulator

        emulator = FirestoreEmulator().start()
        host = emulator.host
    try:
        header = f"{'strategy':<12} {'jobs':>5} {'claimers':>8} {'batch':>5} {'wall s':>7} {'claimed':>7} {'dupes':>5} {'missing':>7} {'conflicts':>9} {'failed tx':>9} {'errors':>6} {'RPCs':>5}"
        print(header)
        print("-" * len(header))
        for spec in args.runs:
            jobs, claimers, batch = (int(x) for x in spec.split(":"))
            for strategy in args.strategies:
                r = run(host, strategy, jobs, claimers, batch, args.max_seconds)
                print(
                    f"{r['strategy']:<12} {r['jobs']:>5} {r['claimers']:>8} {r['batch']:>5} {r['wall_s']:>7.2f} {r['claimed']:>7} "
                    f"{r['dupes']:>5} {r['missing']:>7} {r['conflicts']:>9} {r['failed_tx']:>9} {r['errors']:>6} {r['rpcs']:>5}  {r['note']}",
                    flush=True,
                )
    finally:
        if emulator is not None:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
