"""URL rules that compile their URL builder on first use, not when they are added.

Werkzeug compiles two URL builders for every rule as it is added to the map (Python
source built as an AST, then ``compile``): 58 for crontick's 29 rules, 9-15 ms of every
cold start (in process, on two builds of Python), though a worker builds URLs only for
the console's links and redirects, and for few of its rules. :class:`LazyBuilderRule`
defers each builder to its first ``url_for``; matching requests never used them.

Private part: ``werkzeug.routing.Rule._compile_builder`` (listed in :data:`PRIVATE_PARTS`;
nothing else in crontick touches Werkzeug's private names). The override takes and passes
on whatever arguments Werkzeug gives it, so a release that reshapes it, or stops calling
it from ``Rule.compile``, costs the saving, never a start or a URL:
``tests/test_routing.py`` fails then, naming the symbol. requirements.txt keeps Werkzeug
below its next major version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.routing import Rule

PRIVATE_PARTS: tuple[tuple[str, str], ...] = (("werkzeug.routing.Rule", "_compile_builder"),)


class LazyBuilderRule(Rule):
    """A Werkzeug rule whose URL builders are compiled by the first URL built with them."""

    def _compile_builder(self, *args: Any, **kwargs: Any) -> Callable[..., tuple[str, str]]:
        compile_now = super()._compile_builder
        compiled: list[Callable[..., tuple[str, str]]] = []
        lock = threading.Lock()

        def build(rule: Rule, *values: Any, **named: Any) -> tuple[str, str]:
            if not compiled:
                with lock:  # the console's threads may build the same rule's first URL at once
                    if not compiled:
                        compiled.append(compile_now(*args, **kwargs))
            return compiled[0](rule, *values, **named)

        return build


class CrontickFlask(Flask):
    """Flask with :class:`LazyBuilderRule` for every rule, its ``/static`` one included."""

    url_rule_class = LazyBuilderRule
