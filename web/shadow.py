"""Shadow-mode report over HTTP (``GET /api/v1/shadow-report``) and the CLI (``shadow-report``)."""

from __future__ import annotations

import json
from datetime import timedelta

import click
from flask import Blueprint, Flask, jsonify, request

from scheduler.errors import ValidationError
from scheduler.shadow import shadow_report
from web.context import crontick

bp = Blueprint("shadow", __name__)

MAX_WINDOW_MINUTES = 7 * 24 * 60


def _window(raw: str | None) -> timedelta:
    if raw is None:
        return timedelta(hours=1)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WINDOW_MINUTES:
        raise ValidationError(f"window_minutes must be a whole number from 1 to {MAX_WINDOW_MINUTES}", "window_minutes")
    return timedelta(minutes=int(raw))


@bp.get("/api/v1/shadow-report")
def report():
    ct = crontick()
    ct.admin_verifier.verify(request.headers.get("Authorization"))
    body = shadow_report(ct.store, now=ct.clock(), window=_window(request.args.get("window_minutes")))
    body["shadow_mode"] = ct.settings.shadow_mode
    return jsonify(body)


def register_shadow(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.cli.command("shadow-report")
    @click.option("--window-minutes", type=click.IntRange(1, MAX_WINDOW_MINUTES), default=60)
    def shadow_report_command(window_minutes: int) -> None:
        """Compare what Cloud Scheduler and the legacy loop ran over the window."""
        ct = crontick()
        body = shadow_report(ct.store, now=ct.clock(), window=timedelta(minutes=window_minutes))
        body["shadow_mode"] = ct.settings.shadow_mode
        click.echo(json.dumps(body, indent=2))
