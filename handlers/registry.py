"""The handler registry: job_type name -> plain function of (job, ctx).

A handler succeeds by returning (the value is ignored) and fails by raising;
the engine records the exception text as ``last_error`` and retries with
backoff. ``ctx.idempotency_key`` is stable across retries of one occurrence, so
a handler that calls another system can pass it along to make repeats harmless.

Host applications register their job types in one place, a function
``register(registry)`` in a module named by ``SCHEDULER_HANDLER_MODULES``::

    # myapp/crontick_jobs.py
    def send_digest(job, ctx):
        ...

    def register(registry):
        registry.register("send_digest", send_digest)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from scheduler.context import Cancellation, Handler, HandlerContext
from scheduler.errors import HandlerRegistryError

__all__ = ["Cancellation", "Handler", "HandlerContext", "HandlerRegistry", "PayloadValidator"]

PayloadValidator = Callable[[dict[str, Any]], None]


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._validators: dict[str, PayloadValidator] = {}

    def register(self, name: str, handler: Handler, *, validate: PayloadValidator | None = None) -> None:
        """Add ``handler`` under ``name``; ``validate(payload)`` (optional) runs when a job is
        created or patched and raises :class:`~scheduler.errors.ValidationError` to refuse it."""
        if not name or not isinstance(name, str):
            raise HandlerRegistryError("a handler name must be a non-empty string")
        if name in self._handlers:
            raise HandlerRegistryError(f"handler {name!r} is already registered")
        if not callable(handler):
            raise HandlerRegistryError(f"handler {name!r} is not callable")
        self._handlers[name] = handler
        if validate is not None:
            self._validators[name] = validate

    def validate_payload(self, name: str, payload: dict[str, Any]) -> None:
        validator = self._validators.get(name)
        if validator is not None:
            validator(payload)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def load_modules(self, modules: Iterable[str]) -> None:
        """Import each module and call its ``register(registry)``."""
        for module_name in modules:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise HandlerRegistryError(f"SCHEDULER_HANDLER_MODULES: cannot import {module_name!r}: {exc}") from exc
            register = getattr(module, "register", None)
            if not callable(register):
                raise HandlerRegistryError(f"SCHEDULER_HANDLER_MODULES: {module_name!r} has no register(registry) function")
            register(self)
