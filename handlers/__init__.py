"""Job handlers: the registry and crontick's built-in job types."""

from __future__ import annotations

from collections.abc import Iterable

from handlers.registry import Handler, HandlerContext, HandlerRegistry

__all__ = ["Handler", "HandlerContext", "HandlerRegistry", "build_registry"]


def build_registry(modules: Iterable[str] = ()) -> HandlerRegistry:
    """Built-ins, then ``handlers/app_handlers.py``, then each module in ``modules``."""
    from handlers import app_handlers
    from handlers.builtin import register_builtins

    registry = HandlerRegistry()
    register_builtins(registry)
    app_handlers.register(registry)
    registry.load_modules(modules)
    return registry
