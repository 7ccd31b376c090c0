"""Operator commands: ``flask --app main tick`` and ``flask --app main jobs ...``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from scheduler.errors import CrontickError
from scheduler.model import Job, JobStatus, Source
from web.context import crontick


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _guard(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
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

    jobs = AppGroup("jobs", help="Manage jobs in the configured store.")

    @jobs.command("add")
    @click.option("--type", "job_type", required=True, help="registered job type, e.g. log or http_request")
    @click.option("--payload", default="{}", help="JSON object passed to the handler")
    @click.option("--cron", default=None, help="5-field cron expression")
    @click.option("--timezone", default=None, help="IANA zone for --cron (default UTC)")
    @click.option("--at", "schedule_at", default=None, help="one-off RFC 3339 time with offset")
    @click.option("--every", "interval_seconds", type=int, default=None, help="interval in seconds")
    @click.option("--max-attempts", type=int, default=None)
    @click.option("--misfire", type=click.Choice(["run_once", "skip", "run_all"]), default=None)
    @click.option("--idempotency-key", default=None)
    @click.option("--id", "job_id", default=None, help="job id (default: generated)")
    def add(job_type, payload, cron, timezone, schedule_at, interval_seconds, max_attempts, misfire, idempotency_key, job_id):
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
