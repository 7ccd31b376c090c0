"""The objects one app instance is wired from, reachable in views as ``crontick()``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from handlers.registry import HandlerRegistry
from scheduler.engine import TickEngine
from scheduler.legacy_loop import LegacyLoop
from scheduler.service import JobService
from scheduler.settings import Settings
from storage.base import JobStore
from web.auth import TokenVerifier


@dataclass
class Crontick:
    """What a request handler reaches through :func:`crontick`: the app's parts, built once by ``create_app``."""

    settings: Settings
    store: JobStore
    registry: HandlerRegistry
    engine: TickEngine
    service: JobService
    clock: Callable[[], datetime]
    tick_verifier: TokenVerifier
    admin_verifier: TokenVerifier
    tasks_verifier: TokenVerifier
    legacy_loop: LegacyLoop | None = None  # only in shadow mode


def crontick() -> Crontick:
    return current_app.extensions["crontick"]
