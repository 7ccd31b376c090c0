"""CloudTasksDispatcher: one Cloud Tasks HTTP task per claimed run (``SCHEDULER_DISPATCH=cloud_tasks``).

Each task is created in ``CLOUD_TASKS_QUEUE`` with:

- name ``{queue}/tasks/{task_id(run)}``: deterministic, so a CreateTask retried after
  a timeout names the same task and Cloud Tasks answers ``ALREADY_EXISTS``, which
  counts as dispatched (the task exists);
- an HTTP POST to ``CLOUD_TASKS_TARGET_URL`` with ``Content-Type: application/json``
  and :func:`~scheduler.dispatch.task_body` (the run's identity, never the payload);
- an OIDC token for ``CLOUD_TASKS_SERVICE_ACCOUNT`` with audience
  :attr:`Settings.tasks_audience`, when a service account is set (the emulator needs none);
- ``dispatch_deadline`` = the job's timeout clamped to Cloud Tasks' 15 s..1,800 s.

CreateTask calls run concurrently on one bounded pool (``SCHEDULER_DISPATCH_CONCURRENCY``
threads, created once, shut down by :meth:`close`) over the client's one gRPC channel.
Time is bounded twice, so a hung API cannot hold the tick: each call gets at most
``call_timeout`` seconds (``UNAVAILABLE`` is retried with backoff inside that time:
the name makes a retry safe), and a batch at most ``batch_timeout``; a request not
started by then fails without a call. No failure raises: it lands in
``DispatchResult.failed`` with the error's name and text, and that run stays leased
until its lease expires, like a crashed run.

``google.cloud.tasks_v2`` is imported here only when a dispatcher is built, so the
inline mode (and its cold start) never loads it. With ``CLOUD_TASKS_EMULATOR_HOST`` the
client talks plain gRPC to that host without credentials (tests/support/tasks_emulator.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from scheduler.dispatch import DispatchRequest, DispatchResult, clamp_deadline, task_body, task_id
from scheduler.errors import ConfigError
from scheduler.settings import Settings

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 10.0
BATCH_TIMEOUT_SECONDS = 30.0
_BACKOFF_INITIAL_SECONDS = 0.1
_BACKOFF_MAX_SECONDS = 1.0

# Outcomes of one CreateTask.
_CREATED = "created"
_EXISTED = "existed"


class CloudTasksDispatcher:
    """Creates one HTTP task per :class:`DispatchRequest`; implements :class:`scheduler.dispatch.Dispatcher`.

    ``call_timeout`` and ``batch_timeout`` bound one CreateTask and one :meth:`dispatch`
    call. Building it builds the client: without CLOUD_TASKS_EMULATOR_HOST that reads the
    application-default credentials, so missing credentials stop the service at start.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
        batch_timeout: float = BATCH_TIMEOUT_SECONDS,
    ) -> None:
        from google.api_core import exceptions
        from google.cloud import tasks_v2

        if not settings.cloud_tasks_queue:
            raise ConfigError("CLOUD_TASKS_QUEUE is required to dispatch through Cloud Tasks")
        if not settings.cloud_tasks_target_url:
            raise ConfigError("CLOUD_TASKS_TARGET_URL is required to dispatch through Cloud Tasks")
        self._tasks_v2 = tasks_v2
        self._already_exists = exceptions.AlreadyExists
        self._unavailable = exceptions.ServiceUnavailable
        self.queue = settings.cloud_tasks_queue
        self.target_url = settings.cloud_tasks_target_url
        self.service_account = settings.cloud_tasks_service_account
        self.audience = settings.tasks_audience
        self.emulator_host = settings.cloud_tasks_emulator_host
        self.call_timeout = call_timeout
        self.batch_timeout = batch_timeout
        self.concurrency = settings.dispatch_concurrency
        self._client = self._build_client()
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="crontick-dispatch")

    def _build_client(self) -> Any:
        tasks_v2 = self._tasks_v2
        if self.emulator_host:
            import grpc
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            # The emulator speaks plain gRPC and checks no credentials; with a channel given,
            # the transport looks none up either.
            return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(self.emulator_host)))
        return tasks_v2.CloudTasksClient()

    def task_name(self, request: DispatchRequest) -> str:
        return f"{self.queue}/tasks/{task_id(request.run)}"

    def build_task(self, request: DispatchRequest) -> Any:
        """The ``tasks_v2.Task`` for ``request`` (what :meth:`dispatch` creates)."""
        tasks_v2 = self._tasks_v2
        http_request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=self.target_url,
            headers={"Content-Type": "application/json"},
            body=task_body(request.run),
        )
        if self.service_account:
            http_request.oidc_token = tasks_v2.OidcToken(service_account_email=self.service_account, audience=self.audience or "")
        return tasks_v2.Task(
            name=self.task_name(request),
            http_request=http_request,
            dispatch_deadline=timedelta(seconds=clamp_deadline(request.deadline_seconds)),
        )

    def dispatch(self, requests: Sequence[DispatchRequest]) -> DispatchResult:
        """Create one task per request, concurrently. Never raises for a task: a job
        whose task could not be created is in ``failed`` with the error's name and text."""
        result = DispatchResult()
        if not requests:
            return result
        started = time.monotonic()
        deadline = started + self.batch_timeout
        futures: list[Future[tuple[str, str | None]] | None] = []
        for request in requests:
            pool = self._pool
            try:
                futures.append(pool.submit(self._create, request, deadline) if pool is not None else None)
            except RuntimeError:  # close() shut the pool down meanwhile
                futures.append(None)
        outcomes = [self._outcome(future) for future in futures]
        created = existed = 0
        for request, (outcome, error) in zip(requests, outcomes):
            job_id = request.run.job_id
            if outcome == _CREATED or outcome == _EXISTED:
                result.dispatched.append(job_id)
                created += outcome == _CREATED
                existed += outcome == _EXISTED
                continue
            result.failed[job_id] = error or "unknown error"
            log.warning(
                "Task for job %s not created: %s",
                job_id,
                error,
                extra={"json_fields": {"action": "task_create_failed", "job_id": job_id, "task": task_id(request.run), "queue": self.queue, "error": error}},
            )
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        log.info(
            "Dispatched %d of %d runs to Cloud Tasks",
            len(result.dispatched),
            len(requests),
            extra={
                "json_fields": {
                    "action": "tasks_dispatched",
                    "queue": self.queue,
                    "runs": len(requests),
                    "tasks_created": created,
                    "tasks_existing": existed,
                    "tasks_failed": len(result.failed),
                    "elapsed_ms": elapsed_ms,
                }
            },
        )
        return result

    @staticmethod
    def _outcome(future: Future[tuple[str, str | None]] | None) -> tuple[str, str | None]:
        if future is None:
            return "failed", "not attempted: the dispatcher is closed"
        try:
            return future.result()
        except CancelledError:
            return "failed", "not attempted: the dispatcher was closed during the batch"

    def _create(self, request: DispatchRequest, batch_deadline: float) -> tuple[str, str | None]:
        """One CreateTask, retried on UNAVAILABLE until ``call_timeout`` (or the batch
        deadline) runs out; returns (outcome, error text). Never raises."""
        try:
            task = self.build_task(request)
        except Exception as exc:  # a value the API types refuse: report it, as for any failure
            return "failed", f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        call_deadline = min(now + self.call_timeout, batch_deadline)
        if call_deadline <= now:
            return "failed", f"not attempted: the dispatch batch ran out of its {self.batch_timeout:g} s"
        backoff = _BACKOFF_INITIAL_SECONDS
        while True:
            remaining = call_deadline - time.monotonic()
            try:
                self._client.create_task(request={"parent": self.queue, "task": task}, retry=None, timeout=remaining)
                return _CREATED, None
            except self._already_exists:
                return _EXISTED, None
            except self._unavailable as exc:
                if time.monotonic() + backoff >= call_deadline:
                    return "failed", f"{type(exc).__name__}: {exc}"
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)
            except Exception as exc:
                return "failed", f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Shut the pool down (waiting for calls under way) and close the client's channel."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        transport = getattr(self._client, "transport", None)
        if transport is not None and hasattr(transport, "close"):
            transport.close()
