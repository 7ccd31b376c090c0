"""Where a tick's time goes: one in-process tick over N due no-op jobs under pyinstrument.

    .venv/bin/python -m bench.profile_tick --store json --jobs 1000
    .venv/bin/python -m bench.profile_tick --store firestore --jobs 1000   # starts its own emulator
    .venv/bin/python -m bench.profile_tick --import-only                   # what `import main` + create_app cost

Prints pyinstrument's call tree (``--html FILE`` writes the interactive page
instead). Used to explain the figures of bench/results.md that miss their goal.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["json", "firestore"], default="json")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--html", type=Path, help="write pyinstrument's HTML page here")
    parser.add_argument("--service-logging", action="store_true", help="log as the service does (one JSON line per job, INFO) to a file")
    parser.add_argument("--import-only", action="store_true", help="profile `import main; main.create_app()` (JSON store) instead")
    args = parser.parse_args(argv)
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    if args.import_only:
        config = {"ENVIRONMENT": "test", "AUTH_MODE": "disabled", "SCHEDULER_STORAGE": "json", "SCHEDULER_JSON_PATH": str(Path(tempfile.mkdtemp()) / "jobs.json")}
        profiler.start()
        import main as crontick_main

        crontick_main.create_app(config)
        profiler.stop()
    else:
        from bench.common import StoreSetup, make_jobs
        from bench.run import _engine
        from scheduler.clock import utc_now

        emulator = None
        if args.store == "firestore":
            from tests.support.firestore_emulator import FirestoreEmulator

            emulator = FirestoreEmulator(project="demo-crontick-profile").start()
        try:
            if args.service_logging:
                from scheduler.settings import Settings
                from web.logs import configure_logging

                sys.stdout = open(Path(tempfile.mkdtemp()) / "service.log", "w")  # noqa: SIM115 - the service's stdout
                configure_logging(Settings(environment="test", auth_mode="disabled"))
            setup = StoreSetup(args.store, json_path=Path(tempfile.mkdtemp()) / "jobs.json", emulator=emulator)
            store = setup.store()
            engine = _engine(store, args.batch)
            for _ in range(2):  # warm: imports, first RPCs, the emulator's JIT
                setup.reset(make_jobs(args.jobs, prefix="warm-"), store)
                engine.run_tick(now=utc_now(), tick_id=uuid.uuid4().hex)
            setup.reset(make_jobs(args.jobs, prefix="prof-"), store)
            if args.store == "json":
                store._call("count_by_status")  # the tick then finds the file parsed (as the serving worker would)
            profiler.start()
            outcome = engine.run_tick(now=utc_now(), tick_id=uuid.uuid4().hex)
            profiler.stop()
            print(f"{outcome.tick.metrics.jobs_succeeded} jobs in {outcome.tick.metrics.duration_ms:.0f} ms", file=sys.stderr)
            store.close()
        finally:
            if emulator is not None:
                emulator.stop()
    sys.stdout = sys.__stdout__
    if args.html:
        args.html.write_text(profiler.output_html())
    else:
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
