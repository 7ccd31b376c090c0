"""Drill: ``kill -9`` at random moments while a process writes to the store.

JSON: each loop starts a process hammering add_job/claim/settle on a file of a
few thousand jobs (so that a write takes milliseconds and kills land inside
writes), kills it at a random moment, and checks that the file parses, the store
opens, and every add the process had acknowledged is in it. Firestore: the same
hammer against the emulator (fewer loops: each process start loads the client);
every job document decodes and no acknowledged job is lost. In the end every
job that is not completed is claimable once its lease expires: nothing stuck.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from scheduler.clock import utc_now
from scheduler.model import JobStatus, Source, TickRecord
from storage.jsonfile import JsonFileStore
from tests.reliability.conftest import ledger_jobs, size
from tests.support.processes import REPO

pytestmark = pytest.mark.slow

LOOPS = {"json": size(50, 1000), "firestore": size(3, 40), "postgres": size(10, 200)}
KILL_WITHIN = {"json": 0.08, "firestore": 0.5, "postgres": 0.3}  # seconds after "ready"


def test_kill_9_during_writes_leaves_a_valid_store_with_every_acknowledged_write(backend, tmp_path):
    rng = random.Random(20261122)
    backend.seed(ledger_jobs(size(2000, 3000) if backend.kind == "json" else 50, tmp_path / "unused-ledger", prefix="base"))
    env = backend.env()
    acknowledged: set[str] = set()
    mid_write = 0
    for loop in range(LOOPS[backend.kind]):
        proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.hammer", f"k{loop:04d}"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0, KILL_WITHIN[backend.kind]))
        finally:
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(30)
        assert proc.returncode == -signal.SIGKILL, err
        acknowledged |= {line.split()[1] for line in out.splitlines() if line.startswith("added ")}
        if backend.kind == "json":
            path = backend.json_path
            doc = json.loads(path.read_bytes())  # parses: never a torn file
            assert doc["schema_version"] == 1 and isinstance(doc["jobs"], dict)
            leftovers = list(path.parent.glob(f".{path.name}.*.tmp"))
            mid_write += len(leftovers)  # temp files of writes the kill interrupted
            JsonFileStore(path).open()
            assert not list(path.parent.glob(f".{path.name}.*.tmp")), "open() removes the interrupted writes' temp files"
            missing = acknowledged - set(doc["jobs"])
        else:
            ids = {job.id for job in backend.all_jobs()}  # every document decodes (StoreCorrupt otherwise)
            missing = acknowledged - ids
        assert not missing, f"loop {loop}: acknowledged adds lost: {sorted(missing)[:5]}"
    assert acknowledged, "the hammer never got an add through"
    if backend.kind == "json" and LOOPS["json"] >= 50:
        assert mid_write > 0, "no kill landed inside a write: the drill did not test what it says"
    # Nothing stuck: once every lease has expired, every unfinished job is claimable.
    store = backend.store()
    jobs = backend.all_jobs()
    unfinished = {j.id for j in jobs if j.status is not JobStatus.COMPLETED}
    later = utc_now() + timedelta(seconds=120)
    claimed = store.claim_due_jobs(now=later, tick=TickRecord("after-the-kills", later, Source.MANUAL), lease_seconds=60, limit=len(jobs) + 1).claimed
    assert {j.id for j in claimed} == unfinished
