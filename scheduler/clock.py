"""The one place crontick reads the wall clock. Everything else receives ``now``."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
