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


# --- the job schema's fields, edit, notes and backfill ---------------------------------------------


def show(app, job_id: str) -> dict:
    return json_output(invoke(app, "jobs", "show", job_id))


def test_add_and_edit_options_are_derived_from_the_schema(app):
    import click

    from scheduler import schema
    from web.cli import option_name

    group = app.cli.commands["jobs"]
    add = {param.name: param for param in group.commands["add"].params}
    edit = {param.name: param for param in group.commands["edit"].params}
    assert set(add) == set(schema.CREATE_FIELDS)
    assert set(edit) == set(schema.PATCH_FIELDS) | {"job_id", "note"}
    # The option names the CLI had before the schema: kept.
    assert [option_name(name) for name in ("job_type", "schedule_at", "interval_seconds", "timeout_seconds", "id", "max_attempts", "idempotency_key", "overlap")] == [
        "--type", "--at", "--every", "--timeout", "--id", "--max-attempts", "--idempotency-key", "--overlap",
    ]  # fmt: skip
    for spec in schema.FIELDS:
        for params, fields in ((add, schema.CREATE_FIELDS), (edit, schema.PATCH_FIELDS)):
            if spec.name not in fields:
                continue
            param = params[spec.name]
            assert param.opts[0] == option_name(spec.name) and param.help.startswith(spec.doc), spec.name
            if spec.kind == "choice":
                assert tuple(param.type.choices) == spec.choices, spec.name
            if spec.kind == "integer" and spec.maximum is not None:
                assert (param.type.min, param.type.max) == (spec.minimum, spec.maximum), spec.name
            if spec.kind == "boolean":
                assert param.secondary_opts == ["--no-" + option_name(spec.name)[2:]], spec.name
    assert [name for name, param in add.items() if param.required] == ["job_type"]
    assert isinstance(add["misfire"].type, click.Choice) and "Default: run_once." in add["misfire"].help
    assert "Default:" not in edit["misfire"].help  # an edit leaves what is not given as it is


def test_a_new_schema_field_needs_no_cli_edit(monkeypatch):
    from scheduler import schema
    from web.cli import schema_options

    extra = schema.FieldSpec("retry_budget", "integer", "Retries a day.", default=5, minimum=0, maximum=50, create=True, patch=True)
    monkeypatch.setattr(schema, "FIELDS", (*schema.FIELDS, extra))
    [option] = schema_options(frozenset({"retry_budget"}))
    assert (option.opts, option.name, option.help) == (["--retry-budget"], "retry_budget", "Retries a day. Default: 5.")
    assert (option.type.min, option.type.max) == (0, 50)
    odd = schema.FieldSpec("blob", "bytes", "Raw.", create=True)
    monkeypatch.setattr(schema, "FIELDS", (*schema.FIELDS, odd))
    with pytest.raises(ValueError, match="job field 'blob': no CLI option type for kind 'bytes'"):
        schema_options(frozenset({"blob"}))


def test_add_takes_every_new_schedule_field_and_edit_patches_them(cli_app, clock):
    out = invoke(
        cli_app, "jobs", "add", "--type", "log", "--id", "nightly", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin",
        "--dst-gap", "skip", "--dst-repeat", "both", "--jitter-seconds", "30", "--starts-at", "2026-02-01T00:00:00Z",
        "--ends-at", "2026-06-30T00:00:00+02:00", "--max-runs", "10", "--pause-on-failure", "--catch-up-window-seconds", "3600",
        "--overlap", "buffer_one", "--misfire", "run_all", "--misfire-grace-seconds", "120", "--max-attempts", "5",
        "--timeout", "20", "--payload", '{"msg": "hi"}', "--idempotency-key", "nightly-v1",
    ).output  # fmt: skip
    assert out.startswith("created nightly  pending    log  ")
    job = show(cli_app, "nightly")
    assert {name: job[name] for name in (
        "cron", "timezone", "dst_gap", "dst_repeat", "jitter_seconds", "starts_at", "ends_at", "max_runs", "runs_remaining", "run_count",
        "pause_on_failure", "catch_up_window_seconds", "overlap", "misfire", "misfire_grace_seconds", "max_attempts", "timeout_seconds",
        "payload", "idempotency_key", "fire_at", "created_by",
    )} == {
        "cron": "30 2 * * *", "timezone": "Europe/Berlin", "dst_gap": "skip", "dst_repeat": "both", "jitter_seconds": 30,
        "starts_at": "2026-02-01T00:00:00.000000Z", "ends_at": "2026-06-29T22:00:00.000000Z", "max_runs": 10, "runs_remaining": 10,
        "run_count": 0, "pause_on_failure": True, "catch_up_window_seconds": 3600, "overlap": "buffer_one", "misfire": "run_all",
        "misfire_grace_seconds": 120, "max_attempts": 5, "timeout_seconds": 20.0, "payload": {"msg": "hi"},
        "idempotency_key": "nightly-v1", "fire_at": "2026-02-01T01:30:00.000000Z", "created_by": "cli",
    }  # fmt: skip
    assert "2026-02-01T01:30:00.000000Z" <= job["next_run_at"] <= "2026-02-01T01:30:30.000000Z"  # jittered by up to 30 s

    edited = invoke(cli_app, "jobs", "edit", "nightly", "--jitter-seconds", "0", "--max-runs", "3", "--dst-gap", "shift", "--no-pause-on-failure", "--note", "fewer runs")
    assert edited.output.startswith("edit: nightly  pending    log             next=2026-02-01T01:30:") and edited.output.endswith("  30 2 * * *\n")
    after = show(cli_app, "nightly")
    assert {name: after[name] for name in ("jitter_seconds", "max_runs", "runs_remaining", "dst_gap", "pause_on_failure")} == {
        "jitter_seconds": 0, "max_runs": 3, "runs_remaining": 3, "dst_gap": "shift", "pause_on_failure": False,
    }  # fmt: skip
    assert after["audit"][-1] == {"action": "edit", "actor": "cli", "at": "2026-01-05T12:00:00.000000Z", "detail": "dst_gap, jitter_seconds, max_runs, pause_on_failure", "note": "fewer runs"}
    assert after["next_run_at"] == after["fire_at"] == "2026-02-01T01:30:00.000000Z"  # no jitter now: the next run is planned again
    unchanged = {k: v for k, v in after.items() if k not in ("jitter_seconds", "max_runs", "runs_remaining", "dst_gap", "pause_on_failure", "audit", "next_run_at")}
    assert unchanged == {k: v for k, v in job.items() if k in unchanged}
    # A new schedule restarts the job from now.
    invoke(cli_app, "jobs", "edit", "nightly", "--every", "3600")
    assert {k: show(cli_app, "nightly")[k] for k in ("cron", "interval_seconds", "fire_at")} == {"cron": None, "interval_seconds": 3600, "fire_at": "2026-02-01T00:00:00.000000Z"}


def test_pause_and_resume_keep_a_note(cli_app, clock):
    invoke(cli_app, "jobs", "add", "--type", "log", "--id", "beat", "--every", "600")
    paused = invoke(cli_app, "jobs", "pause", "beat", "--note", "deploy freeze until 14:00").output.splitlines()
    assert paused == ["pause: beat  paused     log             next=2026-01-05T12:10:00+00:00  every 600s", "note: deploy freeze until 14:00"]
    assert show(cli_app, "beat")["note"] == "deploy freeze until 14:00"
    clock.advance(minutes=25)
    resumed = invoke(cli_app, "jobs", "resume", "beat", "--catch-up", "--note", "freeze over").output.splitlines()
    assert resumed == ["resume: beat  pending    log             next=2026-01-05T12:10:00+00:00  every 600s", "note: freeze over"]
    job = show(cli_app, "beat")
    assert job["note"] == "freeze over"
    assert [(e["action"], e["actor"], e["detail"], e["note"]) for e in job["audit"]] == [
        ("create", "cli", None, None), ("pause", "cli", None, "deploy freeze until 14:00"), ("resume", "cli", "catch_up", "freeze over"),
    ]  # fmt: skip
    assert invoke(cli_app, "jobs", "pause", "beat").output.splitlines() == ["pause: beat  paused     log             next=2026-01-05T12:10:00+00:00  every 600s"]


def test_backfill_prints_the_counts_and_fire_times_and_runs_each_once(cli_app, clock):
    invoke(cli_app, "jobs", "add", "--type", "log", "--id", "hourly", "--cron", "0 * * * *")
    first = invoke(cli_app, "jobs", "backfill", "hourly", "--from", "2026-01-05T09:00:00Z", "--to", "2026-01-05T11:30:00Z").output.splitlines()
    assert first == [
        "backfill hourly: 3 fire time(s) in [2026-01-05T09:00:00Z, 2026-01-05T11:30:00Z): created 3, existing 0",
        "2026-01-05T09:00:00.000000Z  created   hourly.bf-20260105T090000",
        "2026-01-05T10:00:00.000000Z  created   hourly.bf-20260105T100000",
        "2026-01-05T11:00:00.000000Z  created   hourly.bf-20260105T110000",
    ]
    again = invoke(cli_app, "jobs", "backfill", "hourly", "--from", "2026-01-05T08:00:00+00:00", "--to", "2026-01-05T11:30:00Z", "--max-runs", "2").output.splitlines()
    assert again == [
        "backfill hourly: 2 fire time(s) in [2026-01-05T08:00:00+00:00, 2026-01-05T11:30:00Z): created 1, existing 1",
        "2026-01-05T08:00:00.000000Z  created   hourly.bf-20260105T080000",
        "2026-01-05T09:00:00.000000Z  existing  hourly.bf-20260105T090000",
    ]
    assert json_output(invoke(cli_app, "tick"))["jobs_succeeded"] == 4
    assert invoke(cli_app, "executions").output.splitlines()[-1] == "4 execution(s)"
    assert show(cli_app, "hourly.bf-20260105T080000")["backfill_of"] == "hourly"
    repeat = invoke(cli_app, "jobs", "backfill", "hourly", "--from", "2026-01-05T08:00:00Z", "--to", "2026-01-05T12:00:00Z").output.splitlines()
    assert repeat[0] == "backfill hourly: 4 fire time(s) in [2026-01-05T08:00:00Z, 2026-01-05T12:00:00Z): created 0, existing 4"
    assert json_output(invoke(cli_app, "tick"))["jobs_executed"] == 0


@pytest.mark.parametrize(
    ("args", "exit_code", "line"),
    [
        (["jobs", "add", "--type", "log", "--every", "60", "--jitter-seconds", "31"], 1, "jitter_seconds (31) must be at most half the period (30 s) (--jitter-seconds)"),
        (["jobs", "add", "--type", "log", "--every", "60", "--jitter-seconds", "9999"], 2, "Invalid value for '--jitter-seconds': 9999 is not in the range 0<=x<=3600."),
        (["jobs", "add", "--type", "log", "--cron", "0 9 * * *", "--dst-gap", "sometimes"], 2, "Invalid value for '--dst-gap': 'sometimes' is not one of 'shift', 'skip'."),
        (["jobs", "add", "--type", "log", "--every", "60", "--starts-at", "tomorrow"], 2, "Invalid value for '--starts-at': starts_at 'tomorrow' is not an RFC 3339 timestamp"),
        (["jobs", "add", "--type", "log", "--every", "60", "--ends-at", "2026-02-01T00:00:00"], 2, "Invalid value for '--ends-at': ends_at '2026-02-01T00:00:00' has no UTC offset; add 'Z' or '+hh:mm'"),
        (["jobs", "add", "--type", "log", "--every", "60", "--starts-at", "2026-03-01T00:00:00Z", "--ends-at", "2026-02-01T00:00:00Z"], 1, "ends_at must be after starts_at (--ends-at)"),
        (["jobs", "add", "--type", "log", "--cron", "0 9 * * *", "--ends-at", "2026-01-05T08:00:00Z"], 1, "the schedule has no fire time before ends_at (2026-01-05T08:00:00+00:00) (--ends-at)"),
        (["jobs", "add", "--type", "log", "--every", "60", "--max-runs", "0"], 2, "Invalid value for '--max-runs': 0 is not in the range 1<=x<=1000000000."),
        (["jobs", "add", "--type", "log", "--every", "60", "--overlap", "queue"], 2, "Invalid value for '--overlap': 'queue' is not one of 'skip', 'buffer_one', 'buffer_all', 'replace'."),
        (["jobs", "add", "--type", "log", "--every", "60", "--payload", "nope"], 2, "Invalid value for '--payload': not JSON: Expecting value: line 1 column 1 (char 0)"),
        (["jobs", "add", "--type", "log", "--every", "60", "--payload", "[1]"], 2, "Invalid value for '--payload': must be a JSON object {...}, got list"),
        (["jobs", "add", "--type", "log", "--every", "60", "--payload", '{"a": NaN}'], 1, "payload holds a non-finite number (nan at payload.a); JSON has no Infinity or NaN (--payload)"),
        (["jobs", "add", "--every", "60"], 2, "Missing option '--type'."),
        (["jobs", "add", "--type", "nope", "--every", "60"], 1, "unknown job_type 'nope'; registered types: {types} (--type)"),
        (["jobs", "add", "--type", "log"], 1, "a job needs exactly one schedule: schedule_at, cron or interval_seconds (--at, --cron or --every)"),
        (["jobs", "add", "--type", "log", "--every", "60", "--bogus"], 2, "No such option '--bogus'."),
        (["jobs", "edit", "j"], 2, "nothing to change: give at least one option, e.g. --jitter-seconds 30 (crontick jobs edit --help lists them)"),
        (["jobs", "edit", "j", "--id", "x"], 2, "No such option '--id'."),
        (["jobs", "edit", "nope", "--max-runs", "3"], 1, "no job with id 'nope'"),
        (["jobs", "edit", "j", "--every", "60", "--jitter-seconds", "40"], 1, "jitter_seconds (40) must be at most half the period (30 s) (--jitter-seconds)"),
        (["jobs", "edit", "j", "--max-runs", "2", "--note", "x" * 501], 1, "note must be at most 500 characters, got 501 (--note)"),
        (["jobs", "pause", "j", "--note", "x" * 501], 1, "note must be at most 500 characters, got 501 (--note)"),
        (["jobs", "resume", "j", "--note", "why"], 1, "job j is pending; only paused or failed jobs can be resumed"),
        (["jobs", "backfill", "j", "--from", "2026-01-05T11:00:00Z", "--to", "2026-01-05T13:00:00Z"], 1, "end must not be in the future (now is 2026-01-05T12:00:00.000000Z); a backfill replays fire times that passed (--to)"),
        (["jobs", "backfill", "j", "--from", "2026-01-05T11:00:00Z", "--to", "2026-01-05T10:00:00Z"], 1, "end must be after start (--to)"),
        (["jobs", "backfill", "j", "--from", "2026-01-05T11:00:00", "--to", "2026-01-05T12:00:00Z"], 2, "Invalid value for '--from': start '2026-01-05T11:00:00' has no UTC offset; add 'Z' or '+hh:mm'"),
        (["jobs", "backfill", "j", "--from", "2026-01-05T11:00:00Z"], 2, "Missing option '--to'."),
        (["jobs", "backfill", "j", "--from", "2026-01-04T00:00:00Z", "--to", "2026-01-05T12:00:00Z", "--max-runs", "1001"], 2, "Invalid value for '--max-runs': 1001 is not in the range 1<=x<=1000."),
        (["jobs", "backfill", "minutely", "--from", "2026-01-04T00:00:00Z", "--to", "2026-01-05T12:00:00Z"], 1, "[start, end) holds more than 1000 fire times; narrow it, or pass max_runs to run the oldest ones (--to)"),
        (["jobs", "backfill", "once", "--from", "2026-01-05T08:00:00Z", "--to", "2026-01-05T12:00:00Z"], 1, "job once is a one-off job; only recurring jobs can be backfilled (use run now)"),
        (["jobs", "backfill", "ghost", "--from", "2026-01-05T08:00:00Z", "--to", "2026-01-05T12:00:00Z"], 1, "no job with id 'ghost'"),
    ],
    ids=lambda value: None,
)
def test_every_refusal_is_one_line_naming_the_field(build, registry, args, exit_code, line):
    line = line.replace("{types}", ", ".join(sorted(registry.names())))
    app = build(MemoryStore())
    invoke(app, "jobs", "add", "--type", "log", "--id", "j", "--every", "60")
    invoke(app, "jobs", "add", "--type", "log", "--id", "once", "--at", "2026-01-05T11:00:00Z")
    invoke(app, "jobs", "add", "--type", "log", "--id", "minutely", "--cron", "* * * * *")
    before = jobs_of(app)
    result = invoke(app, *args, ok=False)
    assert (result.exit_code, result.output) == (exit_code, f"Error: {line}\n")
    assert isinstance(result.exception, SystemExit)  # no traceback: click's own exit
    assert jobs_of(app) == before
