"""crontick's entry point: ``create_app()`` wires settings, store, handlers and HTTP.

gunicorn serves ``main:app``; the Flask CLI runs ``flask --app main ...``. The
module-level ``app`` is built on first access, so importing this module creates
no client and reads no environment.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from flask import Flask

from handlers import HandlerRegistry, build_registry
from scheduler.clock import utc_now
from scheduler.engine import TickEngine
from scheduler.errors import StoreError
from scheduler.jobspec import JobLimits
from scheduler.legacy_loop import LegacyLoop
from scheduler.service import JobService
from scheduler.settings import Settings
from storage import JobStore, create_store
from web.api import bp as api_bp
from web.auth import TokenVerifier
from web.chat import bp as chat_bp
from web.cli import register_cli
from web.console import register_console
from web.context import Crontick
from web.errors import register_body_limit, register_error_handlers
from web.logs import configure_logging
from web.metrics import register_metrics
from web.routing import CrontickFlask
from web.shadow import register_shadow
from web.tasks import bp as tasks_bp
from web.tick import bp as tick_bp

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20  # every endpoint; Chat's webhook reads at most 256 KiB of it


def create_app(
    config: Mapping[str, str] | None = None,
    *,
    for_cli: bool = False,
    store: JobStore | None = None,
    registry: HandlerRegistry | None = None,
    clock: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Flask:
    """Build the app from ``config`` (environment-style strings; default ``os.environ``).

    ``for_cli``: the operator CLI (``crontick``, ``flask --app main``), which serves no HTTP:
    the HTTP auth settings are not read, logs go to stderr (web/logs.py), no legacy loop starts."""
    environ = os.environ if config is None else config
    settings = Settings.from_env(environ, serving=not for_cli)
    configure_logging(settings, cli=for_cli, environ=environ)
    registry = registry or build_registry(settings.handler_modules, chat_api_base_url=settings.chat_api_base_url)
    store = store or create_store(settings)
    try:
        store.open()
    except StoreError as exc:
        # Serve anyway: /health answers, every store call answers 503 naming the problem
        # (StoreCorrupt names the file and the job), and the service recovers by itself
        # once the store does. Refusing to start would crash-loop the instance instead.
        log.error(
            "The job store cannot be read at start; serving 503 until it can",
            extra={"json_fields": {"action": "store_unavailable_at_start", "error": str(exc), "error_type": type(exc).__name__}},
        )

    def verifier(allowed: tuple[str, ...]) -> TokenVerifier:
        return TokenVerifier(
            mode=settings.auth_mode,
            audience=settings.oidc_audience,
            allowed=allowed,
            certs_url=settings.oidc_certs_url,
            certs_timeout=settings.oidc_certs_timeout_seconds,
        )

    dispatcher = None
    if settings.dispatch == "cloud_tasks":
        from scheduler.cloud_tasks import CloudTasksDispatcher  # imported only when dispatching: cold start

        dispatcher = CloudTasksDispatcher(settings)
    engine = TickEngine(store, registry, settings, rng=rng, monotonic=monotonic, clock=clock, dispatcher=dispatcher)
    app = CrontickFlask(__name__)
    app.json.sort_keys = False
    register_body_limit(app, MAX_REQUEST_BYTES)
    app.extensions["crontick"] = ct = Crontick(
        settings=settings,
        store=store,
        registry=registry,
        engine=engine,
        service=JobService(store, registry, clock, JobLimits.for_settings(settings)),
        clock=clock,
        tick_verifier=verifier(settings.oidc_allowed_emails),
        admin_verifier=verifier(settings.admin_emails),
        tasks_verifier=TokenVerifier(
            mode=settings.auth_mode,
            audience=settings.tasks_audience or settings.oidc_audience,
            allowed=settings.tasks_callers,
            certs_url=settings.oidc_certs_url,
            certs_timeout=settings.oidc_certs_timeout_seconds,
        ),
    )
    app.register_blueprint(tick_bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(api_bp)
    register_metrics(app)
    app.register_blueprint(chat_bp)
    register_shadow(app)
    register_console(app)
    register_error_handlers(app)
    register_cli(app)
    if settings.shadow_mode and not for_cli:
        ct.legacy_loop = LegacyLoop(engine, clock, settings.legacy_interval_seconds)
        ct.legacy_loop.start()
    return app


def __getattr__(name: str) -> Flask:
    if name == "app":
        import click

        if click.get_current_context(silent=True) is not None:
            # `flask --app main <command>` loads `app` inside a click command; gunicorn does not.
            from web.cli import cli_app

            application = cli_app()
        else:
            application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
