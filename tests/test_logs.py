"""web/logs.py: Cloud Logging's JSON line shape, the text lines people read, and which one is chosen.

The expected JSON lines below are the shape google-cloud-logging's StructuredLogHandler
wrote (compared field by field, in order, before that library was removed): the
record's json_fields, message, severity, labels, trace, spanId, trace_sampled,
sourceLocation, httpRequest.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys

import pytest
from flask import Flask

from scheduler.settings import Settings
from tests.support.processes import REPO, service_env, make_dry_run
from web.logs import CloudLoggingFormatter, TextFormatter, configure_logging, parse_cloud_trace_context, parse_traceparent, resolve_format

KEY_ORDER = [
    "message",
    "severity",
    "logging.googleapis.com/labels",
    "logging.googleapis.com/trace",
    "logging.googleapis.com/spanId",
    "logging.googleapis.com/trace_sampled",
    "logging.googleapis.com/sourceLocation",
    "httpRequest",
]


def emit(formatter: logging.Formatter, *, headers: dict[str, str] | None = None, exc: bool = False, **kwargs) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("crontick.test_logs")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG

    def log() -> None:
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("it failed", **kwargs)
        else:
            logger.info("Job %s", "succeeded", **kwargs)

    if headers is None:
        log()
    else:
        with Flask("t").test_request_context("/cron/tick?x=1", method="POST", headers=headers | {"User-Agent": "agent/1.0"}, environ_base={"SERVER_PROTOCOL": "HTTP/1.1"}):
            log()
    return stream.getvalue()


def test_json_line_in_a_request_with_traceparent():
    line = emit(CloudLoggingFormatter("proj-1"), headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, extra={"json_fields": {"action": "job_succeeded", "attempt": 2}})
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert list(entry) == ["action", "attempt", *KEY_ORDER]
    source = entry.pop("logging.googleapis.com/sourceLocation")
    assert source == {"line": source["line"], "file": __file__, "function": "log"} and isinstance(source["line"], int)
    assert entry == {
        "action": "job_succeeded",
        "attempt": 2,
        "message": "Job succeeded",
        "severity": "INFO",
        "logging.googleapis.com/labels": {"python_logger": "crontick.test_logs"},
        "logging.googleapis.com/trace": "projects/proj-1/traces/0af7651916cd43dd8448eb211c80319c",
        "logging.googleapis.com/spanId": "b7ad6b7169203331",
        "logging.googleapis.com/trace_sampled": True,
        "httpRequest": {"requestMethod": "POST", "requestUrl": "http://localhost/cron/tick?x=1", "userAgent": "agent/1.0", "protocol": "HTTP/1.1"},
    }


def test_json_line_with_x_cloud_trace_context_and_no_project():
    entry = json.loads(emit(CloudLoggingFormatter(None), headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}))
    assert list(entry) == KEY_ORDER
    assert entry["logging.googleapis.com/trace"] == "105445aa7843bc8bf206b12000100000"  # unqualified without a project
    assert entry["logging.googleapis.com/spanId"] == "0000000000000001"  # decimal in the header, hex in the field
    assert entry["logging.googleapis.com/trace_sampled"] is True


def test_traceparent_wins_over_x_cloud_trace_context():
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    entry = json.loads(emit(CloudLoggingFormatter("p"), headers=headers))
    assert (entry["logging.googleapis.com/trace"], entry["logging.googleapis.com/trace_sampled"]) == ("projects/p/traces/0af7651916cd43dd8448eb211c80319c", False)


def test_json_line_outside_a_request_has_empty_trace_fields():
    entry = json.loads(emit(CloudLoggingFormatter("p")))
    assert (entry["logging.googleapis.com/trace"], entry["logging.googleapis.com/spanId"], entry["logging.googleapis.com/trace_sampled"], entry["httpRequest"]) == ("", "", False, {})


def test_json_fields_cannot_forge_reserved_fields_and_odd_values_are_written_as_text():
    fields = {"severity": "DEBUG", "httpRequest": {"status": 1}, "logging.googleapis.com/trace": "forged", "when": Settings, "ok": True}
    entry = json.loads(emit(CloudLoggingFormatter("p"), extra={"json_fields": fields}))
    assert entry["severity"] == "INFO" and entry["httpRequest"] == {} and entry["logging.googleapis.com/trace"] == ""
    assert entry["when"] == str(Settings) and entry["ok"] is True
    assert list(entry) == ["when", "ok", *KEY_ORDER]


def test_values_orjson_refuses_or_writes_its_own_way_come_out_as_the_standard_library_writes_them():
    from datetime import datetime, timezone

    from scheduler.model import RunRef

    when = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)
    run = RunRef("j1", "tick", 3, when)
    line = emit(CloudLoggingFormatter("p"), extra={"json_fields": {"when": when, "run": run, "text": "caf\u00e9"}})
    entry = json.loads(line)
    assert entry["when"] == str(when) and entry["run"] == str(run) and entry["text"] == "caf\u00e9"
    assert "café" in line  # UTF-8, not \\u escapes, as ensure_ascii=False wrote
    # orjson refuses these (the standard library takes them): a line is still written.
    refused = {"by_code": {404: 2}, "big": 2**70, "lone": "\ud800"}
    entry = json.loads(emit(CloudLoggingFormatter("p"), extra={"json_fields": refused}))
    assert entry["by_code"] == {"404": 2} and entry["big"] == 2**70 and entry["lone"] == "\ud800"
    assert list(entry) == ["by_code", "big", "lone", *KEY_ORDER]


def test_an_exception_is_part_of_the_message():
    entry = json.loads(emit(CloudLoggingFormatter("p"), exc=True, extra={"json_fields": {"action": "engine_error"}}))
    assert entry["severity"] == "ERROR" and entry["action"] == "engine_error"
    head, *trace = entry["message"].splitlines()
    assert head == "it failed" and trace[0] == "Traceback (most recent call last):" and trace[-1] == "ValueError: boom"


LINES = [
    {"action": "job_settled", "job_id": "a", "severity": "DEBUG", "message": "Job succeeded"},
    {"action": "job_settled", "job_id": "b c", "message": "Job misfired"},
    "a bare line",
]


def test_json_lines_become_one_json_line_each_in_the_full_shape():
    traceparent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    text = emit(CloudLoggingFormatter("p"), headers=traceparent, extra={"json_fields": {"action": "jobs_settled"}, "json_lines": LINES})
    assert text.endswith("\n") and text.count("\n") == 3
    entries = [json.loads(line) for line in text.splitlines()]
    assert [list(e) for e in entries] == [["action", "job_id", *KEY_ORDER], ["action", "job_id", *KEY_ORDER], KEY_ORDER]
    assert [(e.get("job_id"), e["message"], e["severity"]) for e in entries] == [("a", "Job succeeded", "INFO"), ("b c", "Job misfired", "INFO"), (None, "a bare line", "INFO")]
    shared = {k: v for k, v in entries[0].items() if k in KEY_ORDER[1:]}
    assert all({k: e[k] for k in shared} == shared for e in entries)  # trace, span, labels, source, request: the record's
    assert shared["logging.googleapis.com/trace"] == "projects/p/traces/0af7651916cd43dd8448eb211c80319c"
    assert "jobs_settled" not in text and "Job %s" not in text  # the record's own message and fields are not written


def test_json_lines_in_text():
    lines = emit(TextFormatter(), extra={"json_fields": {"action": "jobs_settled"}, "json_lines": LINES}).splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "INFO    crontick.test_logs: Job succeeded  action=job_settled  job_id=a  severity=DEBUG",
        'INFO    crontick.test_logs: Job misfired  action=job_settled  job_id="b c"',
        "INFO    crontick.test_logs: a bare line",
    ]


@pytest.mark.parametrize("lines", [[], "not a list", None])
def test_a_record_without_usable_json_lines_is_written_as_itself(lines):
    entry = json.loads(emit(CloudLoggingFormatter("p"), extra={"json_fields": {"action": "x"}, "json_lines": lines}))
    assert (entry["action"], entry["message"]) == ("x", "Job succeeded")


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True)),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", (None, None, False)),  # all-zero trace id is invalid
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", (None, None, False)),  # version ff is invalid
        ("garbage", (None, None, False)),
        (None, (None, None, False)),
    ],
)
def test_parse_traceparent(header, parsed):
    assert parse_traceparent(header) == parsed


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("105445aa7843bc8bf206b12000100000/1;o=1", ("105445aa7843bc8bf206b12000100000", "0000000000000001", True)),
        ("105445aa7843bc8bf206b12000100000/255;o=0", ("105445aa7843bc8bf206b12000100000", "00000000000000ff", False)),
        ("105445aa7843bc8bf206b12000100000", ("105445aa7843bc8bf206b12000100000", None, False)),
        ("105445aa7843bc8bf206b12000100000/0", ("105445aa7843bc8bf206b12000100000", None, False)),  # span 0 is none
        ("", (None, None, False)),
    ],
)
def test_parse_cloud_trace_context(header, parsed):
    assert parse_cloud_trace_context(header) == parsed


def test_text_line():
    record = logging.LogRecord("scheduler.engine", logging.WARNING, __file__, 10, "Tick %s", ("done",), None)
    record.created, record.msecs = 1767614400.25, 250.0  # 2026-01-05T12:00:00.250Z
    record.json_fields = {"tick_id": "ab12", "jobs_due": 3, "note": "two words", "empty": "", "ids": ["a", "b"]}
    assert TextFormatter().format(record) == (
        '2026-01-05T12:00:00.250Z WARNING scheduler.engine: Tick done  tick_id=ab12  jobs_due=3  note="two words"  empty=""  ids="[\\"a\\", \\"b\\"]"'
    )


def test_text_line_with_a_traceback():
    lines = emit(TextFormatter(), exc=True).splitlines()
    assert lines[0].endswith(" ERROR   crontick.test_logs: it failed")
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


class Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("setting", "environ", "tty", "chosen"),
    [
        ("auto", {}, True, "text"),
        ("auto", {}, False, "json"),
        ("auto", {"K_SERVICE": "crontick"}, True, "json"),
        ("auto", {"K_SERVICE": ""}, True, "text"),
        ("text", {"K_SERVICE": "crontick"}, False, "text"),
        ("json", {}, True, "json"),
    ],
)
def test_resolve_format(setting, environ, tty, chosen):
    assert resolve_format(setting, environ, Stream(tty)) == chosen


def test_configure_logging_replaces_its_handler_and_the_cli_is_quiet_by_default(capsys):
    root = logging.getLogger()
    before = [h for h in root.handlers if not getattr(h, "_crontick_handler", False)]
    try:
        assert configure_logging(Settings(log_format="json", log_level="DEBUG"), environ={}) == "json"
        assert configure_logging(Settings(log_format="text", log_level="DEBUG"), environ={}) == "text"
        ours = [h for h in root.handlers if getattr(h, "_crontick_handler", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter) and root.level == logging.DEBUG
        logging.getLogger("crontick.t").info("to stdout")
        configure_logging(Settings(log_format="json", log_level="DEBUG"), cli=True, environ={})
        assert root.level == logging.WARNING  # LOG_LEVEL unset: the CLI logs warnings only
        logging.getLogger("crontick.t").warning("to stderr")
        configure_logging(Settings(log_format="json", log_level="DEBUG"), cli=True, environ={"LOG_LEVEL": "debug"})
        assert root.level == logging.DEBUG
        out, err = capsys.readouterr()
        assert out.endswith("crontick.t: to stdout\n") and out.count("\n") == 1
        assert json.loads(err)["message"] == "to stderr"
    finally:
        configure_logging(Settings(environment="test", auth_mode="disabled"), environ={})
        assert [h for h in root.handlers if not getattr(h, "_crontick_handler", False)] == before


START = "from main import create_app; create_app()"  # logs "JSON store opened" at INFO on stdout


def run_with_stdout(env: dict[str, str], *, tty: bool) -> str:
    """Start a real process whose stdout is a terminal (a pty) or a pipe; return what it wrote there."""
    if not tty:
        done = subprocess.run([sys.executable, "-c", START], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-c", START], env=env, cwd=REPO, stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(60) == 0, proc.stderr.read()
        proc.stderr.close()
    finally:
        os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize(
    ("settings", "tty", "chosen"),
    [({}, True, "text"), ({}, False, "json"), ({"K_SERVICE": "crontick"}, True, "json"), ({"LOG_FORMAT": "text"}, False, "text"), ({"LOG_FORMAT": "json"}, True, "json")],
    ids=["terminal", "pipe", "cloud-run-terminal", "text-on-pipe", "json-on-terminal"],
)
def test_the_format_a_real_process_writes(tmp_path, settings, tty, chosen):
    env = service_env(SCHEDULER_STORAGE="json", SCHEDULER_JSON_PATH=str(tmp_path / "jobs.json"), **settings)
    for name in ("LOG_FORMAT", "K_SERVICE"):
        if name not in settings:
            env.pop(name, None)  # as the case says, whatever the shell running the tests has
    lines = [line for line in run_with_stdout(env, tty=tty).splitlines() if "JSON store opened" in line]
    assert len(lines) == 1, lines
    if chosen == "json":
        assert json.loads(lines[0])["action"] == "json_store_opened"
    else:
        assert " INFO    storage.jsonfile: JSON store opened  action=json_store_opened  path=" in lines[0]


def test_make_run_logs_text_unless_told():
    dry = make_dry_run("run")
    assert dry.returncode == 0, dry.stderr
    assert "LOG_FORMAT=${LOG_FORMAT:-text} " in dry.stdout.splitlines()[-1]
