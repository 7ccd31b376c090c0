"""Operator commands: ``crontick tick``, ``jobs ...``, ``executions``, ``status``,
``export FILE`` and ``import FILE`` (``crontick`` is ``flask --app main``: web/cli_entry.py).

The CLI serves no HTTP, so it reads no HTTP auth settings (``create_app(for_cli=True)``).
A setting it cannot work with is one line naming the variable (``Error: SCHEDULER_LEASE_SECONDS='abc': must be a number``) and
exit status 2, never a traceback; a refusal of the store or of the input is exit 1."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from scheduler.errors import ConfigError, CrontickError, HandlerRegistryError
from scheduler.jobspec import parse_timestamp
from scheduler.model import Job, JobStatus, Misfire, Outcome, Overlap, Source, to_iso
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


def _guard(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise ConfigUsageError(str(exc)) from None
    except CrontickError as exc:
        raise click.ClickException(str(exc)) from None


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

    @jobs.command("add")
    @click.option("--type", "job_type", required=True, help="registered job type, e.g. log or http_request")
    @click.option("--payload", default="{}", help="JSON object passed to the handler")
    @click.option("--cron", default=None, help="5-field cron expression")
    @click.option("--timezone", default=None, help="IANA zone for --cron (default UTC)")
    @click.option("--at", "schedule_at", default=None, help="one-off RFC 3339 time with offset")
    @click.option("--every", "interval_seconds", type=int, default=None, help="interval in seconds")
    @click.option("--max-attempts", type=int, default=None)
    @click.option("--misfire", type=click.Choice([m.value for m in Misfire]), default=None)
    @click.option("--overlap", type=click.Choice([o.value for o in Overlap]), default=None, help="fire times that pass while a run still goes (default skip)")
    @click.option("--timeout", "timeout_seconds", type=float, default=None, help="seconds before a run counts as failed")
    @click.option("--idempotency-key", default=None)
    @click.option("--id", "job_id", default=None, help="job id (default: generated)")
    def add(job_type, payload, cron, timezone, schedule_at, interval_seconds, max_attempts, misfire, overlap, timeout_seconds, idempotency_key, job_id):
        """Create a job."""
        try:
            payload_obj = json.loads(payload)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
        body = {
            "job_type": job_type,
            "payload": payload_obj,
            "cron": cron,
            "timezone": timezone,
            "schedule_at": schedule_at,
            "interval_seconds": interval_seconds,
            "max_attempts": max_attempts,
            "misfire": misfire,
            "overlap": overlap,
            "timeout_seconds": timeout_seconds,
            "idempotency_key": idempotency_key,
            "id": job_id,
        }
        body = {k: v for k, v in body.items() if v is not None}
        job, created = _guard(crontick().service.create, body, created_by="cli")
        click.echo(("created " if created else "exists  ") + _line(job))

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
            job = _guard(getattr(crontick().service, method), job_id, **kwargs)
            click.echo(f"{name}: " + _line(job))

        command.__doc__ = help_text
        for option in extra_options.values():
            command = option(command)
        jobs.command(name)(command)

    _verb("pause", "pause", "Pause a job (a running one keeps running, but its result is dropped).")
    _verb("resume", "resume", "Resume a paused or failed job.", catch_up=click.option("--catch-up", is_flag=True, help="run an overdue fire time instead of skipping to the next"))
    _verb("run", "run_now", "Make a job due now; its schedule is unchanged.")
    _verb("cancel", "cancel", "Cancel a job; the record stays for audit.")
    _verb("release", "release", "Free a stuck lease.", force=click.option("--force", is_flag=True, help="take a live lease too"))

    app.cli.add_command(jobs)
    register_operating_cli(app)
    register_db_cli(app)


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{status.value}={counts.get(status.value, 0)}" for status in JobStatus) + f"  (total {sum(counts.values())})"


def register_operating_cli(app: Flask) -> None:
    """``executions``, ``status``, ``export`` and ``import`` (docs/operating.md)."""
    from scheduler import snapshot as snap
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
        from storage.postgres import apply_migrations, load_migrations

        applied = _guard(apply_migrations, settings.postgres_dsn, connect_timeout=settings.postgres_connect_timeout_seconds)
        for name in applied:
            click.echo(f"applied {name}")
        click.echo(f"schema up to date: {len(load_migrations())} migration(s), {len(applied)} applied now")

    app.cli.add_command(db)
