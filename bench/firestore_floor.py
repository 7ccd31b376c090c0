"""The wire floor of a Firestore tick, measured beside crontick's own tick (``make bench`` figure 12).

The floor is the least a tick over N due jobs can do on the same emulator: the same
four round trips crontick's tick makes, written with raw protobuf messages over a
bare gRPC channel, with nothing else (no model objects, no handlers, no thread pool,
no retries, no tick record)::

    1. RunQuery     status == "pending" AND next_run_at <= now ORDER BY next_run_at LIMIT N+1,
                    every document decoded to Python values
    2. BatchWrite   N lease updates (6 fields, a field mask, an update_time precondition)
    3. BatchGetDocuments of the N jobs (the fields crontick's settle reads: the same mask), decoded
    4. BatchWrite   N whole-job writes (preconditioned on step 3's update_time) + N execution records

crontick's tick is one in-process ``TickEngine.run_tick`` with a claim batch of N (so
that it makes one batch, as the floor does) running N no-op handlers; on top of the
floor it sends the second due query (expired leases, empty here), writes the tick
record with its claim and its settle, and runs the handlers in its pool with the
lease heartbeat. Each rep clears the emulator and seeds N due jobs afresh before
each side (the emulator's query time grows with the collection), and the two sides
alternate which goes first. Reported: wall time and this process's CPU time
(``time.process_time``: every thread, gRPC's included) of each, and their ratio.

    .venv/bin/python -m bench.firestore_floor --jobs 1000 --reps 5   # starts its own emulator
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SETTLE_MASK = ("lease_owner", "lease_epoch", "settled_by", "history")
_SERVICE = "/google.firestore.v1.Firestore/"


class Floor:
    """Raw stubs on a bare insecure channel to the emulator; nothing of crontick's store."""

    def __init__(self, host: str, project: str, jobs_collection: str = "scheduler_jobs", executions_collection: str = "scheduler_executions") -> None:
        import grpc
        from google.cloud.firestore_v1.types import document, firestore, query, write

        self.pb = {
            "Value": document.Value.pb(), "Write": write.Write.pb(), "StructuredQuery": query.StructuredQuery.pb(),
            "RunQueryRequest": firestore.RunQueryRequest.pb(), "BatchGetDocumentsRequest": firestore.BatchGetDocumentsRequest.pb(),
            "BatchWriteRequest": firestore.BatchWriteRequest.pb(),
        }
        self.channel = grpc.insecure_channel(host)
        self.database = f"projects/{project}/databases/(default)"
        self.documents = f"{self.database}/documents"
        self.jobs, self.executions = jobs_collection, executions_collection
        self.metadata = (("google-cloud-resource-prefix", self.database), ("authorization", "Bearer owner"))
        self.run_query = self.channel.unary_stream(_SERVICE + "RunQuery", request_serializer=lambda m: m.SerializeToString(), response_deserializer=firestore.RunQueryResponse.pb().FromString)
        self.batch_get = self.channel.unary_stream(_SERVICE + "BatchGetDocuments", request_serializer=lambda m: m.SerializeToString(), response_deserializer=firestore.BatchGetDocumentsResponse.pb().FromString)
        self.batch_write = self.channel.unary_unary(_SERVICE + "BatchWrite", request_serializer=lambda m: m.SerializeToString(), response_deserializer=firestore.BatchWriteResponse.pb().FromString)

    def close(self) -> None:
        self.channel.close()

    # -- the minimal codec ---------------------------------------------------------
    def decode(self, v: Any) -> Any:
        kind = v.WhichOneof("value_type")
        if kind == "timestamp_value":
            return _EPOCH + timedelta(seconds=v.timestamp_value.seconds, microseconds=v.timestamp_value.nanos // 1000)
        if kind == "map_value":
            return {k: self.decode(x) for k, x in v.map_value.fields.items()}
        if kind == "array_value":
            return [self.decode(x) for x in v.array_value.values]
        if kind == "null_value":
            return None
        return getattr(v, kind)

    def encode(self, target: Any, value: Any) -> None:
        if value is None:
            target.null_value = 0
        elif isinstance(value, bool):
            target.boolean_value = value
        elif isinstance(value, int):
            target.integer_value = value
        elif isinstance(value, float):
            target.double_value = value
        elif isinstance(value, str):
            target.string_value = value
        elif isinstance(value, datetime):
            delta = value - _EPOCH
            target.timestamp_value.seconds = delta.days * 86400 + delta.seconds
            target.timestamp_value.nanos = delta.microseconds * 1000
        elif isinstance(value, dict):
            target.map_value.SetInParent()
            for k, x in value.items():
                self.encode(target.map_value.fields[k], x)
        else:
            target.array_value.SetInParent()
            for x in value:
                self.encode(target.array_value.values.add(), x)

    # -- one tick ---------------------------------------------------------------------
    def tick(self, n: int, now: datetime, owner: str) -> dict[str, float]:
        """The four round trips over ``n`` due jobs; returns each step's wall seconds."""
        pb, t = self.pb, [time.perf_counter()]
        query = pb["StructuredQuery"]()
        query.from_.add().collection_id = self.jobs
        where = query.where.composite_filter
        where.op = where.AND
        status = where.filters.add().field_filter
        status.field.field_path, status.op, status.value.string_value = "status", status.EQUAL, "pending"
        due = where.filters.add().field_filter
        due.field.field_path, due.op = "next_run_at", due.LESS_THAN_OR_EQUAL
        self.encode(due.value, now)
        order = query.order_by.add()
        order.field.field_path, order.direction = "next_run_at", pb["StructuredQuery"].ASCENDING
        query.limit.value = n + 1
        jobs = []
        for response in self.run_query(pb["RunQueryRequest"](parent=self.documents, structured_query=query), metadata=self.metadata, timeout=60):
            if response.HasField("document"):
                doc = response.document
                jobs.append((doc.name, doc.update_time, {k: self.decode(v) for k, v in doc.fields.items()}))
        if len(jobs) != n:
            raise RuntimeError(f"the floor's query found {len(jobs)} due jobs, not {n}")
        t.append(time.perf_counter())
        lease_until = now + timedelta(seconds=300)
        claim = pb["BatchWriteRequest"](database=self.database)
        for name, update_time, data in jobs:
            w = claim.writes.add()
            w.update.name = name
            changes = {"status": "running", "lease_owner": owner, "lease_until": lease_until, "lease_epoch": data["lease_epoch"] + 1, "attempts": data["attempts"] + 1, "updated_at": now}
            for k, x in changes.items():
                self.encode(w.update.fields[k], x)
                data[k] = x
            w.update_mask.field_paths.extend(changes)
            w.current_document.update_time.CopyFrom(update_time)
        codes = {status.code for status in self.batch_write(claim, metadata=self.metadata, timeout=60).status}
        if codes != {0}:
            raise RuntimeError(f"the floor's claim write failed: codes {sorted(codes)}")
        t.append(time.perf_counter())
        read = pb["BatchGetDocumentsRequest"](database=self.database, documents=[name for name, _, _ in jobs])
        read.mask.field_paths.extend(_SETTLE_MASK)
        fences = {}
        for response in self.batch_get(read, metadata=self.metadata, timeout=60):
            doc = response.found
            fences[doc.name] = (doc.update_time, {k: self.decode(v) for k, v in doc.fields.items()})
        t.append(time.perf_counter())
        settle = pb["BatchWriteRequest"](database=self.database)
        for name, _, data in jobs:
            update_time, fence = fences[name]
            if fence["lease_owner"] != owner:
                raise RuntimeError(f"the floor lost {name}")
            job_id = name.rpartition("/")[2]
            exec_id = f"{job_id}~{owner[:12]}"
            execution = {
                "job_id": job_id, "fire_at": data["fire_at"], "attempt": data["attempts"], "tick_id": owner, "outcome": "succeeded",
                "started_at": now, "duration_ms": 0.1, "error": None, "source": "manual", "expire_at": now + timedelta(days=30),
            }
            w = settle.writes.add()
            w.update.name = f"{self.documents}/{self.executions}/{exec_id}"
            for k, x in execution.items():
                self.encode(w.update.fields[k], x)
            data |= {"status": "completed", "next_run_at": None, "fire_at": None, "lease_owner": None, "lease_until": None, "attempts": 0, "last_run_at": now, "last_outcome": "succeeded", "history": [exec_id], "settled_by": f"{owner}#{data['lease_epoch']}"}
            w = settle.writes.add()
            w.update.name = name
            for k, x in data.items():
                self.encode(w.update.fields[k], x)
            w.current_document.update_time.CopyFrom(update_time)
        codes = {status.code for status in self.batch_write(settle, metadata=self.metadata, timeout=60).status}
        if codes != {0}:
            raise RuntimeError(f"the floor's settle write failed: codes {sorted(codes)}")
        t.append(time.perf_counter())
        return {step: t[i + 1] - t[i] for i, step in enumerate(("run_query", "claim_batch_write", "batch_get", "settle_batch_write"))}


def _timed(run: Any) -> tuple[float, float, Any]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = run()
    return time.perf_counter() - t0, time.process_time() - cpu0, out


def compare(emulator: Any, store: Any, n: int, reps: int, warmup: int = 1) -> dict[str, Any]:
    """crontick's in-process tick against the floor over ``n`` due jobs, ``reps`` times each
    (after ``warmup`` unrecorded pairs), alternating which goes first."""
    from bench.common import make_jobs, seed_firestore
    from bench.run import _engine
    from scheduler.clock import utc_now

    floor = Floor(emulator.host, emulator.project, store.collections["jobs"], store.collections["executions"])
    engine = _engine(store, batch=n)
    samples: dict[str, list[tuple[float, float]]] = {"crontick": [], "floor": []}
    steps: list[dict[str, float]] = []

    def crontick() -> None:
        out = engine.run_tick(now=utc_now(), tick_id=uuid.uuid4().hex)
        if out.tick.metrics.jobs_succeeded != n:
            raise RuntimeError(f"crontick's tick ran {out.tick.metrics.jobs_succeeded} of {n}")

    def fresh() -> None:
        emulator.clear()
        seed_firestore(store, make_jobs(n, prefix="floor-"))

    try:
        for rep in range(warmup + reps):
            order = ["crontick", "floor"] if rep % 2 == 0 else ["floor", "crontick"]
            for side in order:
                fresh()
                if side == "crontick":
                    wall, cpu, _ = _timed(crontick)
                else:
                    wall, cpu, parts = _timed(lambda: floor.tick(n, utc_now(), uuid.uuid4().hex))
                if rep >= warmup:
                    samples[side].append((wall, cpu))
                    if side == "floor":
                        steps.append(parts)
    finally:
        floor.close()
    ratios = [c[0] / f[0] for c, f in zip(samples["crontick"], samples["floor"])]
    return {
        "n": n,
        "crontick_ms": [round(w * 1000, 1) for w, _ in samples["crontick"]],
        "floor_ms": [round(w * 1000, 1) for w, _ in samples["floor"]],
        "crontick_cpu_ms": [round(c * 1000, 1) for _, c in samples["crontick"]],
        "floor_cpu_ms": [round(c * 1000, 1) for _, c in samples["floor"]],
        "ratios": [round(r, 2) for r in ratios],
        "ratio_of_medians": round(statistics.median(w for w, _ in samples["crontick"]) / statistics.median(w for w, _ in samples["floor"]), 2),
        "median_ratio": round(statistics.median(ratios), 2),
        "floor_steps_ms": {k: round(statistics.median(s[k] for s in steps) * 1000, 1) for k in steps[0]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 100])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    import os

    from storage.firestore import FirestoreStore
    from tests.support.firestore_emulator import FirestoreEmulator

    with FirestoreEmulator(project="demo-crontick-floor") as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        store = FirestoreStore(project=emulator.project)
        store.open()
        for n in args.jobs:
            print(compare(emulator, store, n, args.reps), flush=True)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())


REPS = {1000: 5, 100: 10}
GOAL_RATIO_1000 = 1.5


def figure12(res: Any, emulator: Any, store: Any, quick: bool) -> None:
    """``make bench`` figure 12: crontick's tick over 1,000 and 100 due jobs against the floor."""
    from bench.run import over

    raw = {}
    for n, reps in REPS.items():
        runs = 2 if quick else reps
        out = compare(emulator, store, n, runs)
        raw[n] = out
        c, f = statistics.median(out["crontick_ms"]), statistics.median(out["floor_ms"])
        cpu_c, cpu_f = statistics.median(out["crontick_cpu_ms"]), statistics.median(out["floor_cpu_ms"])
        value = (
            f"median {out['median_ratio']:.2f}x (pairs: {', '.join(f'{x:.2f}' for x in out['ratios'])}); "
            f"p50 {c:.0f} ms vs floor {f:.0f} ms; CPU {cpu_c:.0f} vs {cpu_f:.0f} ms"
        )
        label = f"12. Firestore tick / raw-protobuf wire floor, {n:,} due"
        if n == 1000:
            goal = GOAL_RATIO_1000
            res.row(label, "firestore", value, f"<= {goal:g}x the floor", out["median_ratio"] <= goal, f"{runs} pairs", over(out["median_ratio"], goal, "x"))
        else:
            res.row(label, "firestore", value, "(reported)", None, f"{runs} pairs")
    res.raw["fig12"] = raw
