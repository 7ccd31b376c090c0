"""The cyclic garbage collector of a gunicorn worker: off while the app loads, then
told to leave the loaded app alone and to run less often.

gunicorn.conf.py calls :func:`before_app_load` from its ``post_fork`` hook (in the new
worker, before it imports ``main:app``) and :func:`after_app_load` from
``post_worker_init`` (once the app, its store and its handlers exist).

Why (measured on this 2-core machine, Python 3.11, JSON store):

- **At start.** Importing gunicorn's worker, Flask and crontick and creating the app makes
  about 39,000 objects that live as long as the process; CPython's collector ran 95 times
  over them while they loaded (87 young, 8 middle collections) and freed nothing that
  reference counting would not have: 16-26 ms of a 240-410 ms load.
- **Every tick.** A tick of 1,000 due jobs allocates tens of thousands of short-lived
  containers (records, Job objects, log records), nearly all freed by reference
  counting the moment they are dropped. The default young threshold (700) still runs
  about 21 young, 2 middle and a full collection a tick, and a full one walks every
  object the worker holds: the modules, the app and the JSON store's parsed file.
  6-8 ms a tick (median of 12 ticks, in process through the Flask app), 0 ms with the
  settings below.

What it changes: after the app has loaded, ``gc.freeze()`` moves every object alive then
into the permanent generation, which collections never scan (reference counting still
frees them when dropped), and the young threshold goes from 700 to
:data:`YOUNG_THRESHOLD`. Cyclic garbage (which crontick's hot path does not make) waits
for at most that many more allocations before it is collected: a few MB at most.
``CRONTICK_GC_TUNING=off`` keeps CPython's defaults (collector on throughout, 700).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Mapping

from scheduler.settings import parse_bool

YOUNG_THRESHOLD = 20_000  # gen0: allocations between young collections (CPython: 700)
SETTING = "CRONTICK_GC_TUNING"

log = logging.getLogger(__name__)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``CRONTICK_GC_TUNING`` is off, false, 0 or no (read as every boolean
    setting is, scheduler.settings.parse_bool). Unset, empty or unreadable: on, the
    default, since a worker hook is no place to refuse a start over an optimisation."""
    value = (os.environ if environ is None else environ).get(SETTING, "").strip()
    try:
        return parse_bool(value) if value else True
    except ValueError:
        return True


def before_app_load() -> None:
    """In a new worker, before it loads the app: no collections while it does."""
    if enabled():
        gc.disable()


def after_app_load() -> None:
    """Once the app is loaded: freeze what exists, collect young objects less often, and
    turn the collector back on (always: whatever turned it off, a worker never runs
    without one)."""
    tuned = enabled()
    if tuned:
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.enable()
    log.info(
        "Worker garbage collector set",
        extra={"json_fields": {"action": "worker_gc_set", "tuned": tuned, "frozen_objects": gc.get_freeze_count(), "thresholds": list(gc.get_threshold())}},
    )
