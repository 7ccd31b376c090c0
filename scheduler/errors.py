"""crontick's exceptions, one tree so callers can catch at the depth they need.

    CrontickError
    ├── ConfigError            a setting is missing or malformed (raised at start)
    ├── ValidationError        caller input is wrong; ``field`` names the culprit
    │   └── UnknownJobType     ``job_type`` names no registered handler
    ├── JobNotFound            no job has that id
    ├── ConflictError          the request is valid but the job's state forbids it
    ├── HandlerRegistryError   a handler name registered twice, or a bad module
    └── StoreError             the store failed; nothing was written
        ├── StoreUnavailable   transient: the store could not be reached (HTTP 503)
        └── StoreCorrupt       the stored data cannot be read; it is left untouched

HTTP maps ValidationError to 400, JobNotFound to 404, ConflictError to 409 and
StoreError to 503. Errors raised *inside a handler* are not part of this tree:
the engine catches every exception a handler raises and records it as a failed
attempt.
"""

from __future__ import annotations


class CrontickError(Exception):
    """Base class of every error crontick raises on purpose."""


class ConfigError(CrontickError):
    """A setting is missing or malformed; the message names the variable."""


class ValidationError(CrontickError):
    """Input refused. ``field`` is the offending field (``None`` for the whole body)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownJobType(ValidationError):
    def __init__(self, job_type: str, known: list[str]) -> None:
        super().__init__(
            f"unknown job_type {job_type!r}; registered types: {', '.join(sorted(known)) or 'none'}",
            field="job_type",
        )


class JobNotFound(CrontickError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class ConflictError(CrontickError):
    """The job exists but its current state forbids the operation."""


class HandlerRegistryError(CrontickError):
    """A handler name is registered twice, or a handler module cannot be loaded."""


class StoreError(CrontickError):
    """The store failed. Nothing this call meant to write was written."""


class StoreUnavailable(StoreError):
    """Transient store failure (unreachable, timed out, lock not acquired)."""


class StoreCorrupt(StoreError):
    """Stored data cannot be parsed or has an unknown schema; it is never overwritten."""
