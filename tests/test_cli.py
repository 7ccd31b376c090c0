"""The operator CLI through click's runner (``app.test_cli_runner()``) on every store kind."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from main import create_app
from scheduler.model import Source, TickRecord
from scheduler.snapshot import checksum
from storage.jsonfile import JsonFileStore
from storage.memory import MemoryStore
from tests.support.clock import T0


@pytest.fixture
def build(config, clock, registry):
    def make(store):
        return create_app(config, store=store, clock=clock, registry=registry, rng=random.Random(7))

    return make


@pytest.fixture
def cli_app(build, make_store):
    return build(make_store())


def invoke(app, *args, ok: bool = True):
    result = app.test_cli_runner().invoke(args=list(args))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def json_output(result) -> dict:
    """The JSON a command printed (log records may precede it on the same stream)."""
    lines = result.output.splitlines()
    start = lines.index("{")
    return json.loads("\n".join(lines[start:]))


def jobs_of(app) -> list[dict]:
    store = app.extensions["crontick"].store
    return [job.to_dict() for job in store.list_jobs(limit=10_000)]


def counts_of(app) -> dict[str, int]:
    return app.extensions["crontick"].store.count_by_status()


def seed(app, clock) -> None:
    past = (T0 - timedelta(minutes=2)).isoformat()
    invoke(app, "jobs", "add", "--type", "log", "--id", "done", "--at", past, "--payload", '{"to": "ops"}')
    invoke(app, "jobs", "add", "--type", "boom", "--id", "dead", "--at", past, "--max-attempts", "1")
    invoke(app, "jobs", "add", "--type", "log", "--id", "cron", "--cron", "0 9 * * 1-5", "--timezone", "Europe/Paris", "--idempotency-key", "k")
    invoke(app, "tick")
    invoke(app, "jobs", "add", "--type", "log", "--id", "paused", "--every", "600")
    invoke(app, "jobs", "pause", "paused")


def test_existing_commands_still_work(cli_app, clock):
    added = invoke(cli_app, "jobs", "add", "--type", "log", "--id", "j1", "--every", "60")
    assert added.output.startswith("created j1  pending")
    assert invoke(cli_app, "jobs", "add", "--type", "log", "--id", "j2", "--every", "60", "--idempotency-key", "same").output.startswith("created")
    assert invoke(cli_app, "jobs", "add", "--type", "log", "--id", "j3", "--every", "60", "--idempotency-key", "same").output.startswith("exists  j2")
    assert invoke(cli_app, "jobs", "list").output.splitlines()[-1] == "2 job(s)"
    assert json_output(invoke(cli_app, "jobs", "show", "j1"))["id"] == "j1"
    assert invoke(cli_app, "jobs", "pause", "j1").output.startswith("pause: j1  paused")
    assert invoke(cli_app, "jobs", "resume", "j1").output.startswith("resume: j1  pending")
    assert invoke(cli_app, "jobs", "run", "j1").output.startswith("run: j1  pending")
    assert json_output(invoke(cli_app, "tick"))["jobs_executed"] == 1
    assert invoke(cli_app, "jobs", "release", "j1", ok=False).exit_code == 1
    assert invoke(cli_app, "jobs", "cancel", "j2").output.startswith("cancel: j2  cancelled")
    assert "no job with id 'nope'" in invoke(cli_app, "jobs", "show", "nope", ok=False).output


def test_executions(cli_app, clock):
    seed(cli_app, clock)
    out = invoke(cli_app, "executions").output.splitlines()
    assert out[-1] == "2 execution(s)"
    assert any("  done  succeeded" in line for line in out) and any("  dead  failed" in line and "RuntimeError: boom" in line for line in out)
    only = invoke(cli_app, "executions", "--job", "dead").output.splitlines()
    assert only[-1] == "1 execution(s)" and "  dead  " in only[0]
    assert invoke(cli_app, "executions", "--outcome", "succeeded").output.splitlines()[-1] == "1 execution(s)"
    assert invoke(cli_app, "executions", "--since", "2026-01-05T12:00:01Z").output.splitlines() == ["0 execution(s)"]
    assert invoke(cli_app, "executions", "--until", "2026-01-05T12:00:01+00:00", "--limit", "1").output.splitlines()[-1] == "1 execution(s)"
    rows = json.loads(invoke(cli_app, "executions", "--json").output)
    assert {row["job_id"] for row in rows} == {"done", "dead"} and all(row["started_at"] == "2026-01-05T12:00:00.000000Z" for row in rows)
    assert "no job with id 'ghost'" in invoke(cli_app, "executions", "--job", "ghost", ok=False).output
    assert "--since" in invoke(cli_app, "executions", "--since", "noon", ok=False).output
    assert invoke(cli_app, "executions", "--outcome", "meh", ok=False).exit_code == 2
    assert invoke(cli_app, "executions", "--limit", "0", ok=False).exit_code == 2


def test_status(cli_app, clock):
    seed(cli_app, clock)
    store = cli_app.extensions["crontick"].store
    invoke(cli_app, "jobs", "add", "--type", "log", "--id", "stuck", "--at", (T0 - timedelta(seconds=30)).isoformat())
    clock.advance(5)
    store.claim_due_jobs(now=clock(), tick=TickRecord("tick-stuck", clock(), Source.MANUAL), lease_seconds=5, limit=10)
    clock.advance(35)
    lines = invoke(cli_app, "status").output.splitlines()
    assert lines[0] == f"store:   {store.kind}  at 2026-01-05T12:00:40.000000Z"
    assert lines[1] == "jobs:    pending=1  running=1  paused=1  completed=1  failed=1  cancelled=0  (total 5)"
    assert lines[2] == "due:     1"
    assert lines[3] == "leases:  held=0  expired=1  (stuck)"
    assert lines[4] == "overdue: stuck (log, running) due since 2026-01-05T12:00:10.000000Z, lag 30 s"
    assert lines[5].startswith("tick:    2026-01-05T12:00:05.000000Z  tick-stuck")
    assert lines[6].startswith("tick:    2026-01-05T12:00:00.000000Z  ") and "due=2 ok=1 failed=1" in lines[6]
    assert len(lines) == 7  # the seed's tick too
    report = json.loads(invoke(cli_app, "status", "--json", "--ticks", "0").output)
    api = cli_app.test_client().get("/api/v1/status?ticks=0").get_json()
    assert report == api and report["leases"] == {"held": 0, "expired": 1, "expired_job_ids": ["stuck"]}


def test_export_then_import_into_a_memory_store_and_another_json_file(cli_app, build, clock, tmp_path):
    seed(cli_app, clock)
    source_jobs, source_counts = jobs_of(cli_app), counts_of(cli_app)
    backup = tmp_path / "backup.json"
    out = invoke(cli_app, "export", str(backup), "--with-history").output.splitlines()
    assert out[0] == f"exported 4 job(s), 2 execution(s) from the {cli_app.extensions['crontick'].store.kind} store to {backup}"
    assert out[1] == "jobs:    pending=1  running=0  paused=1  completed=1  failed=1  cancelled=0  (total 4)"
    document = json.loads(backup.read_text())
    assert out[2] == f"checksum {document['checksum']}" and checksum(document) == document["checksum"]
    assert "exists" in invoke(cli_app, "export", str(backup), ok=False).output
    invoke(cli_app, "export", str(backup), "--force", "--with-history")

    other_json = JsonFileStore(tmp_path / "other" / "jobs.json")
    for target in (build(MemoryStore()), build(other_json)):
        out = invoke(target, "import", str(backup)).output.splitlines()
        assert out[0].startswith("snapshot: 4 job(s) exported 2026-01-05T12:00:00.000000Z from a ")
        assert out[1] == "before:  pending=0  running=0  paused=0  completed=0  failed=0  cancelled=0  (total 0)"
        assert out[2] == "created 4, updated 0, unchanged 0; 0 job(s) in the store but not in the snapshot left as they are"
        assert out[3] == "after:   pending=1  running=0  paused=1  completed=1  failed=1  cancelled=0  (total 4)"
        assert jobs_of(target) == source_jobs and counts_of(target) == source_counts
        again = invoke(target, "import", str(backup)).output.splitlines()
        assert again[1].split()[1:] == out[3].split()[1:] and again[3] == out[3]
        assert again[2] == "created 0, updated 0, unchanged 4; 0 job(s) in the store but not in the snapshot left as they are"
        assert jobs_of(target) == source_jobs
    # The JSON file written by the import is readable by a fresh process-like store.
    reopened = JsonFileStore(tmp_path / "other" / "jobs.json")
    reopened.open()
    assert [job.to_dict() for job in reopened.list_jobs(limit=100)] == source_jobs


def test_export_to_stdout_and_import_from_stdin(cli_app, build, clock):
    seed(cli_app, clock)
    runner = cli_app.test_cli_runner()
    result = runner.invoke(args=["export", "-"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert len(document["jobs"]) == 4 and "exported 4 job(s)" in result.stderr
    target = build(MemoryStore())
    imported = target.test_cli_runner().invoke(args=["import", "-"], input=result.stdout)
    assert imported.exit_code == 0, imported.output
    assert jobs_of(target) == jobs_of(cli_app)


def test_import_dry_run_writes_nothing(cli_app, build, clock, tmp_path):
    seed(cli_app, clock)
    invoke(cli_app, "export", str(tmp_path / "b.json"))
    target = build(MemoryStore())
    out = invoke(target, "import", str(tmp_path / "b.json"), "--dry-run").output
    assert "would create 4, would update 0, unchanged 0" in out and "dry run: nothing written" in out
    assert jobs_of(target) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d | {"checksum": "sha256:" + "0" * 64}, "checksum mismatch"),
        (lambda d: d | {"jobs": d["jobs"][:-1]}, "checksum mismatch"),
        (lambda d: (d | {"version": 2}) | {"checksum": checksum(d | {"version": 2})}, "unsupported snapshot version 2"),
        (lambda d: (d | {"format": "x"}) | {"checksum": checksum(d | {"format": "x"})}, "format is 'x'"),
    ],
    ids=["bad-checksum", "job-removed", "unknown-version", "wrong-format"],
)
def test_import_refuses_a_bad_snapshot_and_writes_nothing(cli_app, build, clock, tmp_path, edit, message):
    seed(cli_app, clock)
    invoke(cli_app, "export", str(tmp_path / "b.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(edit(json.loads((tmp_path / "b.json").read_text()))))
    target = build(MemoryStore())
    invoke(target, "jobs", "add", "--type", "log", "--id", "keep", "--every", "60")
    before = jobs_of(target)
    result = invoke(target, "import", str(bad), ok=False)
    assert result.exit_code == 1
    assert message in result.output and "nothing was written" in result.output
    assert jobs_of(target) == before
    assert invoke(target, "import", str(tmp_path / "missing.json"), ok=False).exit_code == 2


def test_a_long_import_prints_progress_per_batch_on_stderr(cli_app, build, clock, tmp_path, monkeypatch):
    from scheduler import snapshot as snap

    seed(cli_app, clock)
    invoke(cli_app, "export", str(tmp_path / "b.json"))
    short = invoke(build(JsonFileStore(tmp_path / "short" / "jobs.json")), "import", str(tmp_path / "b.json"))
    assert "imported " not in short.stderr  # one batch: no progress lines
    monkeypatch.setattr(snap, "IMPORT_BATCH", 3)
    store = JsonFileStore(tmp_path / "long" / "jobs.json")
    result = invoke(build(store), "import", str(tmp_path / "b.json"))
    progress = [line.split(" (")[0] for line in result.stderr.splitlines() if line.startswith("imported ")]
    assert progress == ["imported 3/4 job(s)", "imported 4/4 job(s)"]
    assert "imported " not in result.stdout
    assert "created 4, updated 0, unchanged 0;" in result.stdout
    assert store.fsynced_writes == 2 and len(store.list_jobs()) == 4
