"""Log lines: JSON in the shape Cloud Logging reads, or plain text for a person at a terminal.

``LOG_FORMAT`` (``Settings.log_format``) picks the format: ``json``, ``text``, or ``auto``
(the default): JSON on Cloud Run (``K_SERVICE`` is set) and whenever the stream is no
terminal (a pipe, a file, a test's capture), text at a terminal. ``make run`` sets
``LOG_FORMAT=text``. The service logs to stdout; the CLI to stderr, so that what a
command prints on stdout (``crontick export -``, ``jobs show``) stays clean.

JSON: one object a line, the shape google-cloud-logging's ``StructuredLogHandler``
wrote before this formatter replaced it (importing that library cost 200-300 ms of
every cold start; this module adds nothing to import but the standard library and
orjson, a compiled extension without dependencies):

- the record's ``extra={"json_fields": {...}}`` merged in first, then ``message``
  (with the traceback appended for ``log.exception``: Error Reporting reads it there);
- ``severity``; ``logging.googleapis.com/labels`` (``{"python_logger": <logger name>}``);
- ``logging.googleapis.com/trace`` as ``projects/<GOOGLE_CLOUD_PROJECT>/traces/<id>``,
  ``…/spanId`` and ``…/trace_sampled``, from the current Flask request's ``traceparent``
  header (W3C), else its ``X-Cloud-Trace-Context``; empty outside a request;
- ``logging.googleapis.com/sourceLocation`` (``file``, ``line``, ``function``);
- ``httpRequest`` (``requestMethod``, ``requestUrl``, ``userAgent``, ``protocol``) in a request.

A record may carry ``extra={"json_lines": [...]}`` instead: a list of mappings, each written
as a line of its own, its ``message`` key the line's message and its other keys the
line's fields, everything else (severity, trace, source location, request) the record's;
the record's own message and ``json_fields`` are then not written. The engine logs a
batch's settled jobs this way (one line per job, one record per batch: the logging
module's per-record work was a sixth of a tick of 1,000 no-op jobs); a handler other than
crontick's sees one record, ``"<n> job(s) settled"``, with the lines in ``json_lines``.

A ``json_fields`` key that Cloud Logging reserves (``severity``, ``httpRequest``, the
``logging.googleapis.com/*`` keys...) is dropped rather than allowed to forge those
fields. Values JSON cannot encode are written with ``str()``. Lines are encoded by orjson
(a tick of 1,000 jobs logs 1,000 lines; 12 us a line with the standard library here),
falling back to the standard library for what orjson refuses (a lone surrogate, a
non-string key, an integer beyond 64 bits).

Text: ``2026-01-05T12:00:00.123Z INFO  scheduler.engine: Scheduler tick completed  tick_id=ab12 jobs_due=3``
(UTC; the json_fields as ``key=value``, values with spaces quoted; then the traceback);
``json_lines`` likewise, a line each.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from scheduler.settings import Settings

_HANDLER_ATTR = "_crontick_handler"
_REQUEST_DATA_KEY = "crontick.log_request_data"  # request_data's answer, kept in the WSGI environ

# https://cloud.google.com/logging/docs/structured-logging: keys with a meaning of their own.
RESERVED_FIELDS = frozenset(
    {
        "severity",
        "httpRequest",
        "time",
        "timestamp",
        "timestampSeconds",
        "timestampNanos",
        "logging.googleapis.com/insertId",
        "logging.googleapis.com/labels",
        "logging.googleapis.com/operation",
        "logging.googleapis.com/sourceLocation",
        "logging.googleapis.com/spanId",
        "logging.googleapis.com/trace",
        "logging.googleapis.com/trace_sampled",
    }
)

# Patterns, not compiled objects: re compiles (and caches) them at first use, not at import.
_TRACEPARENT = r"^\s?(?!ff)[a-f\d]{2}-((?![0]{32})[a-f\d]{32})-((?![0]{16})[a-f\d]{16})-([a-f\d]{2})(-.*)?\s?$"
_CLOUD_TRACE = r"([\w-]+)?(/?([\w-]+))?(;?o=(\d))?"


def parse_traceparent(header: str | None) -> tuple[str | None, str | None, bool]:
    """``00-<trace 32 hex>-<span 16 hex>-<flags>`` → (trace, span, sampled); (None, None, False) if malformed."""
    match = re.match(_TRACEPARENT, header or "")
    if match is None:
        return None, None, False
    return match.group(1), match.group(2), bool(int(match.group(3), 16) & 1)


def parse_cloud_trace_context(header: str | None) -> tuple[str | None, str | None, bool]:
    """``TRACE_ID[/SPAN_ID][;o=1]`` → (trace, span as 16 hex digits, sampled). The span is
    decimal in this header and hexadecimal in Cloud Logging's field."""
    if not header:
        return None, None, False
    match = re.match(_CLOUD_TRACE, header)
    trace_id, span, sampled = match.group(1), match.group(3), match.group(5) == "1"
    try:
        number = int(span)  # type: ignore[arg-type]
        span_id = f"{number:016x}" if 0 < number < 2**64 else None
    except (TypeError, ValueError):
        span_id = None
    return trace_id, span_id, sampled


def request_data() -> tuple[dict[str, Any] | None, str | None, str | None, bool]:
    """(httpRequest, trace, span, sampled) of the current Flask request; Nones outside one."""
    flask = sys.modules.get("flask")  # never imports Flask: a process without it has no request
    if flask is None or not flask.has_request_context():
        return None, None, None, False
    request = flask.request
    known = request.environ.get(_REQUEST_DATA_KEY)
    if known is not None:  # a tick logs a line per job: read the request once, not per line
        return known
    http_request = {
        "requestMethod": request.method,
        "requestUrl": request.url,
        "userAgent": request.user_agent.string,
        "protocol": request.environ.get("SERVER_PROTOCOL"),
    }
    trace_id, span_id, sampled = parse_traceparent(request.headers.get("traceparent"))
    if trace_id is None:
        trace_id, span_id, sampled = parse_cloud_trace_context(request.headers.get("X-Cloud-Trace-Context"))
    known = (http_request, trace_id, span_id, sampled)
    request.environ[_REQUEST_DATA_KEY] = known
    return known


def _message(record: logging.LogRecord) -> str:
    message = record.getMessage()
    if record.exc_info:
        if not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        message = f"{message}\n{record.exc_text}"
    if record.stack_info:
        message = f"{message}\n{record.stack_info}"
    return message


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "json_fields", None)
    return dict(fields) if isinstance(fields, Mapping) else {}


def _lines(record: logging.LogRecord) -> list[tuple[Mapping[str, Any], str]] | None:
    """A record's ``json_lines`` as (fields, message) pairs, or None if it has none."""
    lines = getattr(record, "json_lines", None)
    if not isinstance(lines, list) or not lines:
        return None
    return [(line, str(line.get("message", ""))) if isinstance(line, Mapping) else ({}, str(line)) for line in lines]


# Datetimes and dataclasses go to default=str, as with the standard library (orjson would
# write them its own way).
_AS_STDLIB = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _json_line(fields: Mapping[str, Any], message: str, tail: dict[str, Any]) -> str:
    entry = {key: value for key, value in fields.items() if key not in RESERVED_FIELDS}
    entry["message"] = message
    entry.update(tail)
    try:
        return orjson.dumps(entry, default=str, option=_AS_STDLIB).decode()
    except orjson.JSONEncodeError:
        return json.dumps(entry, ensure_ascii=False, default=str)


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object a line, in Cloud Logging's structured shape (see the module docstring)."""

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        http_request, trace_id, span_id, sampled = request_data()
        tail = {
            "severity": record.levelname,
            "logging.googleapis.com/labels": {"python_logger": record.name},
            "logging.googleapis.com/trace": f"projects/{self.project}/traces/{trace_id}" if trace_id and self.project else (trace_id or ""),
            "logging.googleapis.com/spanId": span_id or "",
            "logging.googleapis.com/trace_sampled": sampled,
            "logging.googleapis.com/sourceLocation": {"line": record.lineno, "file": record.pathname, "function": record.funcName},
            "httpRequest": http_request or {},
        }
        lines = _lines(record)
        if lines is None:
            return _json_line(_fields(record), _message(record), tail)
        return "\n".join(_json_line(fields, message, tail) for fields, message in lines)


_BARE = r"[^\s\"'=]+"


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if re.fullmatch(_BARE, text) else json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message>  key=value ...``, then the traceback if any."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', self.converter(record.created))}.{int(record.msecs):03d}Z"
        head = f"{stamp} {record.levelname:<7} {record.name}: "
        lines = _lines(record)
        if lines is not None:
            return "\n".join(head + _text_line(message, {k: v for k, v in fields.items() if k != "message"}) for fields, message in lines)
        message = _message(record)
        first, _, rest = message.partition("\n")
        line = head + _text_line(first, _fields(record))
        return f"{line}\n{rest}" if rest else line


def _text_line(message: str, fields: Mapping[str, Any]) -> str:
    pairs = "  ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
    return f"{message}  {pairs}" if pairs else message


class _CurrentStream:
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is at the time of the write,
    not at set-up: pytest's capture and click's runner swap them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()

    def isatty(self) -> bool:
        try:
            return getattr(sys, self.name).isatty()
        except (AttributeError, ValueError):  # a closed or replaced stream
            return False


def resolve_format(setting: str, environ: Mapping[str, str], stream: Any) -> str:
    """``text`` or ``json`` for ``LOG_FORMAT=setting`` (auto, text, json) on ``stream``."""
    if setting in ("text", "json"):
        return setting
    if environ.get("K_SERVICE"):  # Cloud Run sets it in every revision's environment
        return "json"
    return "text" if stream.isatty() else "json"


def configure_logging(settings: Settings, *, cli: bool = False, environ: Mapping[str, str] | None = None) -> str:
    """Install crontick's one handler on the root logger (replacing a previous one); return
    the format chosen. The service logs to stdout at ``LOG_LEVEL``; the CLI (``cli=True``)
    to stderr, at WARNING unless ``LOG_LEVEL`` is set, so a command's output is not buried
    under INFO lines (``LOG_LEVEL=INFO crontick tick`` shows each job's line)."""
    environ = os.environ if environ is None else environ
    target = _CurrentStream("stderr" if cli else "stdout")
    chosen = resolve_format(settings.log_format, environ, target)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_ATTR, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(target)  # type: ignore[arg-type]
    handler.setFormatter(CloudLoggingFormatter(settings.google_cloud_project) if chosen == "json" else TextFormatter())
    setattr(handler, _HANDLER_ATTR, True)
    root.addHandler(handler)
    root.setLevel("WARNING" if cli and not environ.get("LOG_LEVEL", "").strip() else settings.log_level)
    return chosen
