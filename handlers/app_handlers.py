"""Register your application's job types here.

This is the one place a host application adds handlers in crontick's own tree.
To keep crontick unmodified instead, put the same ``register`` function in your
own module and name it in ``SCHEDULER_HANDLER_MODULES`` (comma-separated).
A handler is ``fn(job, ctx)``: return to succeed, raise to fail (and be retried).
"""

from __future__ import annotations

from handlers.registry import HandlerRegistry


def register(registry: HandlerRegistry) -> None:
    # registry.register("send_digest", send_digest)
    pass
