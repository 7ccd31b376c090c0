"""Operator commands: ``crontick tick``, ``jobs ...``, ``executions``, ``status``,
``export FILE`` and ``import FILE`` (``crontick`` is ``flask --app main``: web/cli_entry.py).

The CLI serves no HTTP, so it reads no HTTP auth settings (``create_app(for_cli=True)``).
A setting it cannot work with is one line naming the variable (``Error: SCHEDULER_LEASE_SECONDS='abc': must be a number``) and
exit status 2, never a traceback; a refusal of the store or of the input is exit 1.

``jobs add`` and ``jobs edit`` take one option per create (PATCH) field of the job
schema, derived from :data:`scheduler.schema.FIELDS` (kind -> click type, choices ->
``click.Choice``, bounds -> ``IntRange``/``FloatRange``, doc -> help), so a new field
needs no edit here. Every refusal of a ``jobs`` command is one line naming the field
(and the option), exit 2 for what click itself refuses, 1 for the service's refusals."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from scheduler import schema
from scheduler.errors import ConfigError, CrontickError, HandlerRegistryError, ValidationError
from scheduler.jobspec import parse_timestamp
from scheduler.model import Job, JobStatus, Outcome, Source, to_iso
from web.context import crontick


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


class ConfigUsageError(click.ClickException):
    """A setting the CLI cannot work with: ``Error: <message naming the variable>``, exit 2."""

    exit_code = 2


def cli_app() -> Flask:
    """The app as the CLI builds it (``crontick`` and ``flask --app main``)."""
    from main import create_app

    try:
        return create_app(for_cli=True)
    except (ConfigError, HandlerRegistryError) as exc:
        raise ConfigUsageError(str(exc)) from None


def _guard(fn, *args, options: dict[str, str] | None = None, **kwargs):
    """Call ``fn``; a refusal becomes one ``Error:`` line. ``options`` maps a refused
    field to the CLI option that sets it, appended to the message (``(--jitter-seconds)``)."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise ConfigUsageError(str(exc)) from None
    except ValidationError as exc:
        message = " ".join(str(exc).split())
        field = (exc.field or "").split(".")[0]
        option = (options or {}).get(field)
        raise click.ClickException(f"{message} ({option})" if option and option not in message else message) from None
    except CrontickError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from None


class OneLineCommand(click.Command):
    """A command whose usage errors (a bad option value, a missing option) are one
    ``Error:`` line naming the option, without the usage text: exit status 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.ctx = None  # UsageError.show prints the usage and a hint only with a context
            raise


class OptionError(click.ClickException):
    """Input the CLI refuses before the service sees it: one line, exit 2 (as click's own)."""

    exit_code = 2


# -- options derived from the job schema ---------------------------------------------

# Option names kept from before the schema existed; every other field is --<name with dashes>.
_OPTION_NAMES = {"job_type": "--type", "schedule_at": "--at", "interval_seconds": "--every", "timeout_seconds": "--timeout"}


def option_name(field: str) -> str:
    """The CLI option that sets job field ``field`` (``jitter_seconds`` -> ``--jitter-seconds``)."""
    return _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


# Refused fields of add/edit -> their option; "schedule" is the service's name for "none or several".
FIELD_OPTIONS = {spec.name: option_name(spec.name) for spec in schema.FIELDS} | {"schedule": "--at, --cron or --every"}


class TimestampType(click.ParamType):
    """RFC 3339 with an offset, checked as the service checks it; passed on as text."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_timestamp(value, param.name if param is not None and param.name else "value")
        except ValidationError as exc:
            self.fail(exc.message, param, ctx)
        return value.strip()


class JsonObjectType(click.ParamType):
    """A JSON object given as text (``--payload '{"a": 1}'``)."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError) as exc:
            self.fail(f"not JSON: {exc}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"must be a JSON object {{...}}, got {type(parsed).__name__}", param, ctx)
        return parsed


def _click_type(spec: schema.FieldSpec) -> click.ParamType:
    if spec.kind == "choice":
        return click.Choice(spec.choices)
    if spec.kind == "integer":
        low = None if spec.minimum is None else int(spec.minimum)
        high = None if spec.maximum is None else int(spec.maximum)
        return click.IntRange(low, high) if low is not None or high is not None else click.INT
    if spec.kind == "number":
        return click.FloatRange(spec.minimum, spec.maximum) if spec.minimum is not None or spec.maximum is not None else click.FLOAT
    if spec.kind == "timestamp":
        return TimestampType()
    if spec.kind == "object":
        return JsonObjectType()
    if spec.kind == "string":
        return click.STRING
    # A new kind must be given a type here rather than be taken as text unchecked.
    raise ValueError(f"job field {spec.name!r}: no CLI option type for kind {spec.kind!r}")


def _default_text(spec: schema.FieldSpec) -> str:
    if spec.default is None or spec.default == {} or spec.kind == "boolean" and spec.default is False:
        return ""
    return f" Default: {json.dumps(spec.default) if not isinstance(spec.default, str) else spec.default}."


def schema_options(fields: frozenset[str], *, required: tuple[str, ...] = (), defaults: bool = True) -> list[click.Option]:
    """One click option per job field in ``fields`` (schema order), each named by
    :func:`option_name`, passing the field's name to the callback and ``None`` when
    not given (so the service's default, or for an edit the job's value, stands)."""
    out: list[click.Option] = []
    for spec in schema.FIELDS:
        if spec.name not in fields:
            continue
        flag = option_name(spec.name)
        help_text = spec.doc + (_default_text(spec) if defaults else "")
        if spec.kind == "boolean":
            out.append(click.Option([f"{flag}/--no-{flag[2:]}", spec.name], default=None, help=help_text))
        else:
            # No default given: click then enforces `required` (an explicit None counts as a value).
            out.append(click.Option([flag, spec.name], type=_click_type(spec), required=spec.name in required, help=help_text))
    return out


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _line(job: Job) -> str:
    schedule = job.cron or (f"every {job.interval_seconds}s" if job.interval_seconds else f"at {job.schedule_at.isoformat()}")
    next_run = job.next_run_at.isoformat() if job.next_run_at else "-"
    return f"{job.id}  {job.status.value:<9}  {job.job_type:<14}  next={next_run}  {schedule}"


def register_cli(app: Flask) -> None:
    @app.cli.command("tick")
    def tick_command() -> None:
        """Run one tick now, as /cron/tick would, and print its metrics."""
        ct = crontick()
        outcome = _guard(ct.engine.run_tick, now=ct.clock(), tick_id=uuid.uuid4().hex, source=Source.MANUAL)
        _echo_json(outcome.to_dict())

    @app.cli.command("check-config")
    def check_config_command() -> None:
        """Check the environment as the service does at start, HTTP auth settings included
        (the other commands leave those out: they serve no HTTP)."""
        import os

        from scheduler.settings import Settings

        settings = _guard(Settings.from_env, os.environ)
        click.echo(
            f"settings ok: ENVIRONMENT={settings.environment} AUTH_MODE={settings.auth_mode} "
            f"SCHEDULER_STORAGE={settings.storage} SCHEDULER_DISPATCH={settings.dispatch}"
        )

    jobs = AppGroup("jobs", help="Manage jobs in the configured store.")
    jobs.command_class = OneLineCommand

    def add(**values):
        """Create a job: one schedule (--at, --cron or --every) and any other field of the job schema."""
        job, created = _guard(crontick().service.create, _given(values), created_by="cli", options=FIELD_OPTIONS)
        click.echo(("created " if created else "exists  ") + _line(job))

    jobs.command("add")(add).params[:0] = schema_options(schema.CREATE_FIELDS, required=("job_type",))

    @click.argument("job_id")
    @click.option("--note", default=None, help="why, kept in the job's audit (at most 500 characters)")
    def edit(job_id, note, **values):
        """Change a pending or paused job (PATCH): only the options given change; a new
        schedule restarts it from now."""
        changes = _given(values)
        if not changes:
            raise OptionError("nothing to change: give at least one option, e.g. --jitter-seconds 30 (crontick jobs edit --help lists them)")
        job = _guard(crontick().service.patch, job_id, changes, actor="cli", note=note, options=FIELD_OPTIONS | {"note": "--note"})
        click.echo("edit: " + _line(job))

    jobs.command("edit")(edit).params.extend(schema_options(schema.PATCH_FIELDS, defaults=False))

    @jobs.command("backfill")
    @click.argument("job_id")
    @click.option("--from", "start", required=True, type=TimestampType(), help="the range's start, inclusive: RFC 3339 with an offset")
    @click.option("--to", "end", required=True, type=TimestampType(), help="the range's end, exclusive, not in the future: RFC 3339 with an offset")
    @click.option("--max-runs", type=click.IntRange(1, schema.MAX_BACKFILL_RUNS), default=None, help=f"run only the oldest N fire times (default: all, at most {schema.MAX_BACKFILL_RUNS})")
    def backfill(job_id, start, end, max_runs):
        """Run each fire time of a recurring job's schedule in [--from, --to) once, oldest
        first, each as an occurrence job of its own. Asking again adds nothing twice."""
        request = _given({"start": start, "end": end, "max_runs": max_runs})
        result = _guard(crontick().service.backfill, job_id, request, actor="cli", options={"start": "--from", "end": "--to", "max_runs": "--max-runs"})
        click.echo(
            f"backfill {result.job_id}: {len(result.fire_times)} fire time(s) in [{start}, {end}): "
            f"created {len(result.created)}, existing {len(result.existing)}"
        )
        created, existing = set(result.created), set(result.existing)
        for fire in result.fire_times:
            # Occurrence ids end in .bf-<fire time> (JobService.backfill).
            suffix = f".bf-{fire:%Y%m%dT%H%M%S}"
            made = next((i for i in result.created if i.endswith(suffix)), None)
            found = made or next((i for i in result.existing if i.endswith(suffix)), "-")
            state = "created" if found in created else ("existing" if found in existing else "-")
            click.echo(f"{to_iso(fire)}  {state:<8}  {found}")

    @jobs.command("list")
    @click.option("--status", type=click.Choice([s.value for s in JobStatus]), default=None)
    @click.option("--type", "job_type", default=None)
    @click.option("--limit", type=click.IntRange(1, 10000), default=100)
    def list_(status, job_type, limit):
        """List jobs, ordered by id."""
        found = _guard(crontick().service.list, status=JobStatus(status) if status else None, job_type=job_type, limit=limit)
        for job in found:
            click.echo(_line(job))
        click.echo(f"{len(found)} job(s)")

    @jobs.command("show")
    @click.argument("job_id")
    def show(job_id):
        """Print one job as JSON."""
        _echo_json(_guard(crontick().service.get, job_id).to_dict())

    def _verb(name: str, method: str, help_text: str, **extra_options):
        @click.argument("job_id")
        def command(job_id, **kwargs):
            job = _guard(getattr(crontick().service, method), job_id, actor="cli", options={"note": "--note"}, **kwargs)
            click.echo(f"{name}: " + _line(job))
            if kwargs.get("note") and job.note:
                click.echo(f"note: {job.note}")

        command.__doc__ = help_text
        for option in extra_options.values():
            command = option(command)
        jobs.command(name)(command)

    def note_option():
        return click.option("--note", default=None, help="why: kept on the job (shown by show) and in its audit, at most 500 characters")

    _verb("pause", "pause", "Pause a job (a running one keeps running, but its result is dropped).", note=note_option())
    _verb(
        "resume", "resume", "Resume a paused or failed job.",
        catch_up=click.option("--catch-up", is_flag=True, help="run an overdue fire time instead of skipping to the next"),
        note=note_option(),
    )
    _verb("run", "run_now", "Make a job due now; its schedule is unchanged.")
    _verb("cancel", "cancel", "Cancel a job; the record stays for audit.")
    _verb("release", "release", "Free a stuck lease.", force=click.option("--force", is_flag=True, help="take a live lease too"))

    app.cli.add_command(jobs)
    register_operating_cli(app)
    register_db_cli(app)


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{status.value}={counts.get(status.value, 0)}" for status in JobStatus) + f"  (total {sum(counts.values())})"


def register_operating_cli(app: Flask) -> None:
    """``executions``, ``status``, ``export`` and ``import`` (docs/operating.md). The
    snapshot module loads when ``export`` or ``import`` runs: a served app never needs it."""
    from web.api import status_report

    @app.cli.command("executions")
    @click.option("--job", "job_id", default=None, help="only this job's executions")
    @click.option("--outcome", type=click.Choice([o.value for o in Outcome]), default=None)
    @click.option("--since", default=None, help="RFC 3339 time with offset: started at or after")
    @click.option("--until", default=None, help="RFC 3339 time with offset: started before")
    @click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="print the records as JSON")
    def executions(job_id, outcome, since, until, limit, as_json):
        """Execution history, newest first."""
        ct = crontick()
        since_at = _guard(parse_timestamp, since, "--since") if since else None
        until_at = _guard(parse_timestamp, until, "--until") if until else None
        if job_id is not None:
            _guard(ct.store.get_job, job_id)
        rows = _guard(ct.store.list_executions, job_id=job_id, outcome=outcome, since=since_at, until=until_at, limit=limit)
        if as_json:
            _echo_json([row.to_dict() for row in rows])
            return
        for row in rows:
            error = f"  {row.error}" if row.error else ""
            click.echo(
                f"{to_iso(row.started_at)}  {row.job_id}  {row.outcome.value:<10}  attempt={row.attempt}  "
                f"{row.duration_ms:.0f}ms  fire_at={to_iso(row.fire_at)}  tick={row.tick_id[:12]}{error}"
            )
        click.echo(f"{len(rows)} execution(s)")

    @app.cli.command("status")
    @click.option("--ticks", type=click.IntRange(0, 200), default=5, show_default=True, help="recent ticks to show")
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON (as GET /api/v1/status)")
    def status(ticks, as_json):
        """Store-wide figures: jobs by status, due, leases, the oldest overdue job, recent ticks."""
        report = _guard(status_report, crontick(), ticks=ticks)
        if as_json:
            _echo_json(report)
            return
        jobs, leases, overdue = report["jobs"], report["leases"], report["oldest_overdue"]
        click.echo(f"store:   {report['store']}  at {report['now']}")
        click.echo(f"jobs:    {_counts(jobs['by_status'])}")
        click.echo(f"due:     {jobs['due']}")
        expired_ids = f"  ({', '.join(leases['expired_job_ids'])})" if leases["expired_job_ids"] else ""
        click.echo(f"leases:  held={leases['held']}  expired={leases['expired']}{expired_ids}")
        if overdue is None:
            click.echo("overdue: none")
        else:
            click.echo(f"overdue: {overdue['id']} ({overdue['job_type']}, {overdue['status']}) due since {overdue['due_since']}, lag {overdue['lag_seconds']:.0f} s")
        for tick in report["recent_ticks"]:
            m = tick["metrics"]
            click.echo(
                f"tick:    {tick['started_at']}  {tick['tick_id'][:12]}  {tick['source']:<15}  due={m['jobs_due']} "
                f"ok={m['jobs_succeeded']} failed={m['jobs_failed']} deferred={m['jobs_deferred']} "
                f"recovered={m['jobs_recovered']} lease_lost={m['lease_lost']}  {m['duration_ms']:.0f}ms"
            )

    @app.cli.command("export")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @click.option("--with-history", is_flag=True, help="include execution history (an archive: import restores jobs only)")
    @click.option("--force", is_flag=True, help="overwrite FILE if it exists")
    def export(file, with_history, force):
        """Write every job to FILE ('-' for stdout) as a checksummed snapshot."""
        from scheduler import snapshot as snap

        ct = crontick()
        document, summary = _guard(snap.build_snapshot, ct.store, now=ct.clock(), with_history=with_history)
        if file == "-":
            click.echo(json.dumps(document, indent=1, ensure_ascii=False))
        else:
            try:
                snap.write_snapshot(document, file, overwrite=force)
            except OSError as exc:
                raise click.ClickException(str(exc)) from None
        history = f", {summary.executions} execution(s)" if with_history else ""
        click.echo(f"exported {summary.jobs} job(s){history} from the {ct.store.kind} store to {file}", err=file == "-")
        click.echo(f"jobs:    {_counts(summary.by_status)}", err=file == "-")
        click.echo(f"checksum {document['checksum']}", err=file == "-")
        if summary.history_capped:
            click.echo(f"warning: history capped at {snap.MAX_EXECUTIONS_PER_JOB} for {', '.join(summary.history_capped)}", err=True)

    @app.cli.command("import")
    @click.argument("file", type=click.File("rb"))
    @click.option("--dry-run", is_flag=True, help="validate and count, write nothing")
    def import_command(file, dry_run):
        """Restore jobs from a snapshot FILE ('-' for stdin). The whole file is checked first;
        nothing is written if any of it is wrong. Importing the same file twice is harmless."""
        from scheduler import snapshot as snap

        ct = crontick()
        try:
            snapshot = snap.parse_snapshot(file.read(), limits=crontick().service.limits)
        except snap.SnapshotError as exc:
            raise click.ClickException(str(exc)) from None
        doc = snapshot.document
        click.echo(f"snapshot: {len(snapshot.jobs)} job(s) exported {doc.get('exported_at')} from a {doc.get('store')} store; checksum ok")
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            # Only long imports report (more than one batch), on stderr so stdout keeps the summary.
            if total > snap.IMPORT_BATCH:
                click.echo(f"imported {done}/{total} job(s) ({time.monotonic() - started:.1f} s)", err=True)

        summary = _guard(snap.import_snapshot, ct.store, snapshot, known_types=ct.registry.names(), dry_run=dry_run, progress=progress)
        click.echo(f"before:  {_counts(summary.before)}")
        verb = "would create" if dry_run else "created"
        click.echo(f"{verb} {summary.created}, {'would update' if dry_run else 'updated'} {summary.updated}, unchanged {summary.unchanged}; "
                   f"{summary.untouched} job(s) in the store but not in the snapshot left as they are")
        if summary.unknown_types:
            click.echo(f"warning: job types not registered here: {', '.join(summary.unknown_types)} (those jobs fail when they run)", err=True)
        if dry_run:
            click.echo("dry run: nothing written")
        else:
            click.echo(f"after:   {_counts(summary.after)}")


def register_db_cli(app: Flask) -> None:
    """``db upgrade``: the PostgreSQL store's schema migrations (storage/postgres_migrations)."""
    db = AppGroup("db", help="The PostgreSQL store's schema (SCHEDULER_STORAGE=postgres).")

    @db.command("upgrade")
    def upgrade() -> None:
        """Apply the pending schema migrations, each once (safe to run from several places at once:
        the runner holds a PostgreSQL advisory lock). Run it for each release when
        SCHEDULER_POSTGRES_MIGRATE_AT_START is off (the default in staging and production)."""
        settings = crontick().settings
        if settings.storage != "postgres" or not settings.postgres_dsn:
            raise click.ClickException(f"db upgrade needs SCHEDULER_STORAGE=postgres and SCHEDULER_POSTGRES_DSN (SCHEDULER_STORAGE is {settings.storage!r})")
        from storage.postgres import PostgresStore, load_migrations

        applied = _guard(PostgresStore.from_settings(settings).migrate)  # with the service's login (password or IAM token)
        for name in applied:
            click.echo(f"applied {name}")
        click.echo(f"schema up to date: {len(load_migrations())} migration(s), {len(applied)} applied now")

    app.cli.add_command(db)
