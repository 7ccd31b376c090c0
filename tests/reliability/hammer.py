"""A process that hammers one store with writes until it is killed: ``python -m tests.reliability.hammer PREFIX``.

Configured like the service (SCHEDULER_STORAGE, SCHEDULER_JSON_PATH or the
Firestore variables). Loops: add a due job, claim up to 20 due jobs, settle
them as completed. Prints ``ready`` once, then ``added <id>`` after each add_job
returned (an acknowledged write), flushed, so the drill knows what must survive
a ``kill -9``.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import timedelta


def main(prefix: str) -> int:
    from scheduler.clock import utc_now
    from scheduler.model import JobStatus, Settlement, Source, TickRecord
    from scheduler.settings import Settings
    from storage import create_store
    from tests.support.jobs import make_job

    store = create_store(Settings.from_env(os.environ))
    store.open()
    print("ready", flush=True)
    i = 0
    while True:
        now = utc_now()
        job, _ = store.add_job(make_job(f"{prefix}-{i:05d}", now=now, due_in=-1))
        print(f"added {job.id}", flush=True)
        i += 1
        tick = TickRecord(uuid.uuid4().hex, now, Source.MANUAL)
        claimed = store.claim_due_jobs(now=now, tick=tick, lease_seconds=60, limit=20).claimed
        settlements = [
            Settlement(j.replace(status=JobStatus.COMPLETED, next_run_at=None, lease_owner=None, lease_until=None, attempts=0, updated_at=now + timedelta(milliseconds=1)), j.lease_owner or "", j.lease_epoch)
            for j in claimed
        ]
        if settlements:
            store.settle_jobs(settlements, tick=tick)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
