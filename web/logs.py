"""Structured logs on stdout, one JSON object a line, in the shape Cloud Logging reads.

google-cloud-logging's ``StructuredLogHandler`` writes ``severity``, ``message``
and ``logging.googleapis.com/trace`` (taken from ``X-Cloud-Trace-Context`` or
``traceparent`` of the current Flask request, qualified with the project), and
merges each record's ``extra={"json_fields": {...}}`` into the object.
"""

from __future__ import annotations

import logging
import sys

from scheduler.settings import Settings

_HANDLER_ATTR = "_crontick_handler"


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is at the time of the write, not at set-up."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(settings: Settings) -> None:
    from google.cloud.logging_v2.handlers import StructuredLogHandler

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_ATTR, False):
            root.removeHandler(handler)
    handler = StructuredLogHandler(project_id=settings.google_cloud_project, stream=_CurrentStdout())
    setattr(handler, _HANDLER_ATTR, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
