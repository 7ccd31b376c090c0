"""Job handlers: the registry and crontick's built-in job types."""

from __future__ import annotations

from collections.abc import Iterable

from handlers.chat_message import DEFAULT_CHAT_API_BASE_URL, register_chat_message
from handlers.registry import Handler, HandlerContext, HandlerRegistry

__all__ = ["Handler", "HandlerContext", "HandlerRegistry", "build_registry"]


def build_registry(modules: Iterable[str] = (), *, chat_api_base_url: str = DEFAULT_CHAT_API_BASE_URL) -> HandlerRegistry:
    """Built-ins (``chat_message`` posts to ``chat_api_base_url``), then ``handlers/app_handlers.py``, then each module in ``modules``."""
    from handlers import app_handlers
    from handlers.builtin import register_builtins

    registry = HandlerRegistry()
    register_builtins(registry)
    register_chat_message(registry, chat_api_base_url)
    app_handlers.register(registry)
    registry.load_modules(modules)
    return registry
