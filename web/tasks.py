"""``POST /tasks/run``: where Cloud Tasks delivers a dispatched run (``SCHEDULER_DISPATCH=cloud_tasks``).

The body names one run (:func:`scheduler.dispatch.parse_task_body`): job id,
lease owner, lease epoch, fire time. The token is verified like the tick's, with
its own allow-list (``TASKS_ALLOWED_EMAILS``, default the tasks service account).

Answers, all meant for Cloud Tasks' retry logic:

* 200 ``duplicate_delivery``: the stored job no longer holds the lease the task
  names (a redelivery, or a run settled, taken over or paused meanwhile): nothing ran;
* 200 ``settled`` (or ``lease_lost``): the handler ran and its outcome was written,
  failures included: crontick owns retries, backoff and the dead letter, so Cloud
  Tasks' own retries only cover transport failures;
* 503 with ``Retry-After``: the store is unavailable; Cloud Tasks tries again;
* 400/401/403: a bad body or token (Cloud Tasks retries those too, harmlessly).
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from scheduler.dispatch import parse_task_body
from web.api import json_body
from web.context import crontick
from web.metrics import observe_task_run

bp = Blueprint("tasks", __name__)

_COUNT_RE = re.compile(r"^[0-9]{1,9}$")


def _task_headers() -> dict[str, object] | None:
    name = request.headers.get("X-CloudTasks-TaskName")
    if name is None:
        return None

    def count(header: str) -> int | None:
        raw = request.headers.get(header, "")
        return int(raw) if _COUNT_RE.match(raw) else None

    return {
        "name": name[:500],
        "retry_count": count("X-CloudTasks-TaskRetryCount"),
        "execution_count": count("X-CloudTasks-TaskExecutionCount"),
    }


@bp.post("/tasks/run")
def run_task():
    ct = crontick()
    ct.tasks_verifier.verify(request.headers.get("Authorization"))
    run = parse_task_body(json_body())
    outcome = ct.engine.run_dispatched(run, task=_task_headers())
    observe_task_run(outcome)
    return jsonify(outcome.to_dict())
