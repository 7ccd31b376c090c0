"""Chat commands: one Google Chat event in, one reply out (``web/chat.py`` is the webhook:
authentication, the body, the blueprint; it imports this module with its first event).

:class:`Conversation` reads the event's text (``remind``, ``schedule``, ``list``, ``show``,
``history``, ``pause``, ``resume``, ``run``, ``cancel``, ``backfill``, ``help``: see
:data:`HELP` and ``docs/chat.md``) and acts through the job service with the sender as
the actor. A sender not in ``CHAT_ALLOWED_SENDERS`` (or ``ADMIN_EMAILS``) gets a polite
refusal, anything not understood an explanation and an example, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers.chat_message import THREAD_RE
from scheduler import schema
from scheduler.describe import describe_schedule
from scheduler.errors import ConflictError, JobNotFound, ValidationError
from scheduler.jobspec import MAX_IDEMPOTENCY_KEY_CHARS
from scheduler.model import Job, JobStatus
from scheduler.timing import PlannedTime, zone
from scheduler.when import When, canonical_zone, parse_instant, parse_range, split_when
from web.auth import is_allowed
from web.chat import ChatConfig
from web.context import Crontick

log = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 8000

MAX_LISTED = 25
HISTORY_SHOWN = 10
PREVIEW_COUNT = 3
BACKFILL_SHOWN = 10
# Without admin rights a sender may schedule only these types (see _check_schedule_rights):
# others (http_request, host handlers) act with the service's identity.
NON_ADMIN_TYPES = ("chat_message", "log")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TZ_TOKEN = re.compile(r"(?i)^(?:tz|timezone)=(.*)$")

WHEN_HELP = (
    '`<when>`: `in 10m`, `in 2h30m`, `at 2026-12-01 09:00`, `at 9:00`, `tomorrow 9:00`, `every 15m`, '
    '`every day at 9:00`, `every weekday at 9:00`, `every mon,wed at 18:30`, `cron "0 9 * * 1-5"`. '
    "Add `tz=Europe/Paris` for another time zone."
)
OPTIONS_HELP = (
    "Options, at the end of `remind` and `schedule` (or right after the <when>): `jitter=30s`, "
    "`overlap=skip|buffer_one|buffer_all|replace`, `dst=shift|skip`, `dst_repeat=first|second|both`, "
    "`starting=<time>`, `until=<time>`, `runs=N`, `pause-on-failure`; e.g. "
    "`remind every weekday at 9:00 stand-up jitter=2m until=2026-06-30`. "
    '`<time>`: `2026-06-30`, `2026-06-30T18:00`, `yesterday 9:00`, `3d ago`, `now` (in quotes when it has spaces: `until="2026-06-30 18:00"`).'
)
HELP = "\n".join(
    [
        "*crontick* schedules jobs from Chat. Commands:",
        "• `remind <when> <text> [options]`: post <text> here, e.g. `remind in 10m stretch`, `remind every weekday at 9:00 stand-up`",
        "• `schedule <when> <job_type> [json payload] [options]`: e.g. `schedule every 15m log {\"note\": \"hi\"}`",
        "• `list`: your jobs (admins: all jobs); `list all` includes finished ones",
        "• `show <id>`, `history <id>`: a job and its recent runs",
        "• `pause <id> [note]`, `resume <id> [note]`, `run <id>` (now), `cancel <id>`",
        "• `backfill <id> from <time> to <time> [runs=N]`: run each fire time of that past range once, e.g. `backfill 3f2a9c1b7e4d from 2026-01-01 to 2026-01-05`",
        "• `help`: this text",
        WHEN_HELP,
        OPTIONS_HELP,
    ]
)
EXAMPLES = {
    "remind": "remind tomorrow 9:00 send the report",
    "schedule": 'schedule every weekday at 9:00 log {"note": "stand-up"}',
    "when": "remind in 10m stretch",
    "options": "remind every weekday at 9:00 stand-up jitter=2m until=2026-06-30",
    "backfill": "backfill 3f2a9c1b7e4d from 2026-01-01 to 2026-01-05",
}

# -- options of remind and schedule ------------------------------------------------------
# A word name=value (a value with spaces in double quotes) or the flag pause-on-failure.
# At the end of the command every such word is an option (an unknown name is refused);
# right after the <when> only known names are (so a reminder's text may start with "x=1").
_OPTION = r'(?P<key>[A-Za-z][A-Za-z_-]*)=(?P<value>"[^"]*"?|\u201c[^\u201d]*\u201d?|\S*)|(?P<flag>pause[-_]on[-_]failure)'
_TRAILING_OPTION = re.compile(rf"(?:^|\s)(?:{_OPTION})\s*$", re.IGNORECASE)
_LEADING_OPTION = re.compile(rf"^\s*(?:{_OPTION})(?=\s|$)", re.IGNORECASE)
# Chat option -> the job field it sets ('-' and '_' are one; dst_gap= is dst=, timezone= is tz=).
OPTION_FIELDS = {
    "jitter": "jitter_seconds",
    "overlap": "overlap",
    "dst": "dst_gap",
    "dst_repeat": "dst_repeat",
    "starting": "starts_at",
    "until": "ends_at",
    "runs": "max_runs",
    "pause_on_failure": "pause_on_failure",
    "tz": "timezone",
}
_OPTION_ALIASES = {"dst_gap": "dst", "timezone": "tz"}
_OPTION_SHOWN = {"pause_on_failure": "pause-on-failure"}
FIELD_OPTIONS = {field: _OPTION_SHOWN.get(name, f"{name}=") for name, field in OPTION_FIELDS.items()}
# A known option word inside a reminder's text (not at its end: those were read as options).
_STRAY_OPTION = re.compile(r"(?:^|\s)((?:jitter|overlap|dst|dst[-_]gap|dst[-_]repeat|starting|until|runs|tz|timezone)=\S*)", re.IGNORECASE)
_JITTER_RE = re.compile(r"(?=\d)(?:(\d{1,4})h)?(?:(\d{1,6})m(?:in)?)?(?:(\d{1,7})s?)?", re.IGNORECASE)
_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")


@dataclass(frozen=True)
class ChatOption:
    name: str  # canonical: a key of OPTION_FIELDS
    value: str  # quotes removed; "true" for the flag
    text: str  # as typed


def _option_of(m: re.Match[str]) -> ChatOption:
    """The option a match of _OPTION reads (its name maybe unknown); refuses an unclosed quote."""
    if m.group("flag"):
        return ChatOption("pause_on_failure", "true", m.group("flag"))
    key = m.group("key").lower().replace("-", "_")
    raw = m.group("value")
    text = f"{m.group('key')}={raw}"
    if raw[:1] in ('"', "\u201c"):
        close = '"' if raw[0] == '"' else "\u201d"
        if len(raw) < 2 or raw[-1] != close:
            raise NotUnderstood(f"`{_clip(text, 60)}` has no closing quote", EXAMPLES["options"])
        raw = raw[1:-1].strip()
    return ChatOption(_OPTION_ALIASES.get(key, key), raw, text)


def trailing_options(text: str) -> tuple[str, list[ChatOption]]:
    """The option words at the end of ``text`` (in the order written) and the text before them.
    Every ``name=value`` word there is an option: an unknown name is refused with the list."""
    found: list[ChatOption] = []
    while (m := _TRAILING_OPTION.search(text)) is not None:
        option = _option_of(m)
        if option.name not in OPTION_FIELDS:
            names = ", ".join(f"`{_OPTION_SHOWN.get(name, name + '=')}`" for name in OPTION_FIELDS)
            raise NotUnderstood(f'unknown option "{_clip(option.text, 40)}"; the options are {names}', EXAMPLES["options"])
        found.insert(0, option)
        text = text[: m.start()].rstrip()
    return text, found


def leading_options(text: str) -> tuple[str, list[ChatOption]]:
    """Known option words at the start of ``text`` (right after the <when>) and the rest."""
    found: list[ChatOption] = []
    while (m := _LEADING_OPTION.match(text)) is not None:
        key = m.group("key")
        if key is not None and _OPTION_ALIASES.get(key.lower().replace("-", "_"), key.lower().replace("-", "_")) not in OPTION_FIELDS:
            break
        found.append(_option_of(m))
        text = text[m.end() :].lstrip()
    return text, found


def _jitter_seconds(option: ChatOption) -> int:
    m = _JITTER_RE.fullmatch(option.value)
    if not m:
        raise NotUnderstood(f'"{_clip(option.text, 40)}" - jitter= is seconds or a duration: jitter=30s, jitter=5m, jitter=1h', EXAMPLES["options"])
    hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return hours * 3600 + minutes * 60 + seconds


def _span(seconds: int) -> str:
    """``30s``, ``5m``, ``2h``, ``90s``: the shortest exact way to write a jitter."""
    for size, unit in ((3600, "h"), (60, "m")):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- events --------------------------------------------------------------------


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class NotUnderstood(Exception):
    """A reply explaining what was not understood, with an example."""

    def __init__(self, message: str, example: str | None = None) -> None:
        super().__init__(message)
        self.message = message if message.startswith("not understood") else f"not understood: {message}"
        self.example = example


class Conversation:
    """One event in, one reply out."""

    def __init__(self, app: Crontick, config: ChatConfig, event: Any) -> None:
        self.app = app
        self.config = config
        self.event = event if isinstance(event, dict) else {}
        self.is_event = isinstance(event, dict)
        self.sender = (_str(_dig(event, "message", "sender", "email")) or _str(_dig(event, "user", "email")) or "").strip()
        self.space = _str(_dig(event, "space", "name")) or _str(_dig(event, "message", "space", "name"))
        self.thread = _str(_dig(event, "message", "thread", "name"))
        name = _str(_dig(event, "message", "name"))
        self.message_name = name
        self.is_admin = bool(self.sender) and is_allowed(self.sender, config.admins)

    # -- entry --------------------------------------------------------------

    def answer(self) -> dict[str, Any]:
        if not self.is_event:
            return _text("Sorry, not understood: the request is not a Chat event (expected a JSON object). Type `help` for the commands.")
        kind = self.event.get("type")
        if kind == "REMOVED_FROM_SPACE":
            log.info("Chat app removed from a space", extra={"json_fields": {"space": self.space}})
            return {}
        if not (self.sender and is_allowed(self.sender, self.config.allowed)):
            return _text(
                f"Sorry, {self.sender or 'this account'} is not allowed to schedule jobs with crontick. "
                "Please ask an administrator to add you to CHAT_ALLOWED_SENDERS."
            )
        if kind == "ADDED_TO_SPACE" and not isinstance(self.event.get("message"), dict):
            return _text("Hello! I schedule jobs and reminders.\n" + HELP)
        if kind == "CARD_CLICKED":
            return _text("Sorry, not understood: buttons are not supported; type a command instead (`help` lists them).")
        if kind not in ("MESSAGE", "ADDED_TO_SPACE"):
            return _text(f"Sorry, not understood: Chat event type {str(kind)[:40]!r} is not handled. Type `help` for the commands.")
        text = _str(_dig(self.event, "message", "argumentText")) or _str(_dig(self.event, "message", "text")) or ""
        try:
            return _text(self.command(text.strip()))
        except NotUnderstood as exc:
            example = f"\nExample: `{exc.example}`" if exc.example else ""
            return _text(f"Sorry, {exc.message}{example}\nType `help` for all commands.")
        except ValidationError as exc:  # a refusal from the service outside _create: still an answer, not a 500
            return _text(f"Sorry, {NotUnderstood(_validation_text(exc)).message}\nType `help` for all commands.")

    def command(self, text: str) -> str:
        if len(text) > MAX_COMMAND_CHARS:
            raise NotUnderstood(f"the message is longer than {MAX_COMMAND_CHARS} characters")
        if not text:
            return HELP
        parts = text.split(maxsplit=1)
        word, rest = parts[0].lower(), (parts[1] if len(parts) > 1 else "")
        handler = self.COMMANDS.get(word)
        if handler is None:
            shown = parts[0] if len(parts[0]) <= 40 else parts[0][:37] + "..."
            raise NotUnderstood(f'"{shown}" is not a command; the commands are help, remind, schedule, list, show, history, pause, resume, run, cancel, backfill', EXAMPLES["when"])
        log.info("Chat command", extra={"json_fields": {"command": word, "sender": self.sender, "space": self.space}})
        return handler(self, rest)

    # -- creating -----------------------------------------------------------

    def cmd_remind(self, rest: str) -> str:
        when, message, options = self._when(rest, EXAMPLES["remind"])
        if not message.strip():
            raise NotUnderstood(f'what should I post {when.phrase}? Put the text after the time', EXAMPLES["remind"])
        stray = _STRAY_OPTION.search(message)
        if stray:  # an option amid the text would be posted as text: say where options go
            raise NotUnderstood(
                f'"{_clip(stray.group(1), 40)}" is in the middle of the text; options go at the end of the command '
                '(or right after the time), and a value with spaces goes in quotes: until="2026-06-30 18:00"',
                EXAMPLES["options"],
            )
        if not self.space:
            raise NotUnderstood("this event names no space to post the reminder into", EXAMPLES["remind"])
        payload: dict[str, Any] = {"text": message, "space": self.space}
        if self.thread and (m := THREAD_RE.match(self.thread)) and m.group(1) == self.space:
            payload["thread"] = self.thread
        return self._create("chat_message", payload, when, EXAMPLES["remind"], options)

    def cmd_schedule(self, rest: str) -> str:
        when, tail, options = self._when(rest, EXAMPLES["schedule"])
        parts = tail.split(maxsplit=1)
        if not parts:
            raise NotUnderstood(f"the job type is missing after \"{when.phrase}\"; registered types: {', '.join(self.app.registry.names())}", EXAMPLES["schedule"])
        job_type, payload_text = parts[0], (parts[1] if len(parts) > 1 else "")
        if job_type not in self.app.registry:
            shown = job_type if len(job_type) <= 40 else job_type[:37] + "..."
            raise NotUnderstood(f"unknown job type \"{shown}\"; registered types: {', '.join(self.app.registry.names())}", EXAMPLES["schedule"])
        payload = _json_payload(payload_text)
        if job_type == "chat_message" and "space" not in payload and "webhook_url" not in payload and self.space:
            payload["space"] = self.space
            if self.thread and (m := THREAD_RE.match(self.thread)) and m.group(1) == self.space:
                payload.setdefault("thread", self.thread)
        self._check_schedule_rights(job_type, payload)
        return self._create(job_type, payload, when, EXAMPLES["schedule"], options)

    def _check_schedule_rights(self, job_type: str, payload: dict[str, Any]) -> None:
        if self.is_admin:
            return
        if job_type not in NON_ADMIN_TYPES:
            raise ConflictRefusal(f"only an administrator can schedule {job_type!r} jobs from Chat; you can schedule {' and '.join(NON_ADMIN_TYPES)} (or use `remind`)")
        if job_type == "chat_message" and (payload.get("webhook_url") is not None or payload.get("space") != self.space):
            raise ConflictRefusal("without administrator rights a chat_message job can only post into this space")

    def _when(self, rest: str, example: str) -> tuple[When, str, dict[str, Any]]:
        """The <when> at the start of ``rest``, what follows it, and the job fields its
        options set. A ``tz=<zone>`` right before or after the <when> sets the zone; so does
        one among the options (at the very end, or right after the <when>)."""
        rest, options = trailing_options(rest)
        tz_name = self._option_zone(options, example) or self.config.default_timezone
        now = self.app.clock()
        try:
            when, tail = split_when(rest, now=now, tz=tz_name)
            tail, leading = leading_options(tail)
            later_zone = self._option_zone(leading, example)
            if later_zone is not None:
                if any(option.name == "tz" for option in options):
                    raise NotUnderstood("give one time zone (tz=...)", example)
                when, tail = split_when(rest, now=now, tz=later_zone)
                tail, leading = leading_options(tail)
        except ValidationError as exc:
            raise NotUnderstood(exc.message, example) from None
        return when, tail, self._option_fields([*leading, *options], when, now)

    def _option_zone(self, options: list[ChatOption], example: str) -> str | None:
        zones = [option for option in options if option.name == "tz"]
        if len(zones) > 1:
            raise NotUnderstood("give one time zone (tz=...)", example)
        if not zones:
            return None
        try:
            return canonical_zone(zones[0].value)
        except ValidationError as exc:
            raise NotUnderstood(exc.message, example) from None

    def _option_fields(self, options: list[ChatOption], when: When, now: datetime) -> dict[str, Any]:
        """The job fields ``options`` set, each value checked enough to name the option
        that is wrong; bounds and cross-field rules are the service's (see _create)."""
        example = EXAMPLES["options"]
        fields: dict[str, Any] = {}
        seen: set[str] = set()
        for option in options:
            if option.name in seen:
                raise NotUnderstood(f"give {FIELD_OPTIONS[OPTION_FIELDS[option.name]]} once", example)
            seen.add(option.name)
            field = OPTION_FIELDS[option.name]
            value = option.value
            if option.name == "tz":
                continue
            if option.name == "jitter":
                fields[field] = _jitter_seconds(option)
            elif option.name in ("overlap", "dst", "dst_repeat"):
                choices = schema.BY_NAME[field].choices
                if value.lower() not in choices:
                    raise NotUnderstood(f'"{_clip(option.text, 40)}" - {option.name}= is one of {", ".join(choices)}', example)
                fields[field] = value.lower()
            elif option.name in ("starting", "until"):
                try:
                    fields[field] = parse_instant(value, now=now, tz=when.timezone).isoformat()
                except ValidationError as exc:
                    raise NotUnderstood(f"{option.name}= {exc.message.removeprefix('not understood: ')}", example) from None
            elif option.name == "runs":
                if not re.fullmatch(r"\d{1,10}", value):
                    raise NotUnderstood(f'"{_clip(option.text, 40)}" - runs= is a whole number of runs, e.g. runs=10', example)
                fields[field] = int(value)
            elif value.lower() in _TRUE + _FALSE:  # pause-on-failure, or pause_on_failure=yes|no
                fields[field] = value.lower() in _TRUE
            else:
                raise NotUnderstood(f'"{_clip(option.text, 40)}" - write pause-on-failure (or pause-on-failure=no)', example)
        if ("dst_gap" in fields or "dst_repeat" in fields) and when.cron is None:
            raise NotUnderstood(f'dst= and dst_repeat= apply to wall-clock schedules ("every day at 2:30", cron), not to "{when.phrase}"', example)
        return fields

    def _create(self, job_type: str, payload: dict[str, Any], when: When, example: str, options: dict[str, Any] | None = None) -> str:
        options = options or {}
        data: dict[str, Any] = {"job_type": job_type, "payload": payload, **when.job_fields(), **options}
        if self.message_name:
            data["idempotency_key"] = redelivery_key(self.sender, self.message_name)
        for _ in range(3):
            data["id"] = uuid.uuid4().hex[:12]
            try:
                job, created = self.app.service.create(data, created_by=self.sender)
                break
            except ValidationError as exc:
                option = FIELD_OPTIONS.get(exc.field or "") if (exc.field or "") in options else None
                text = _validation_text(exc) + (f" (option {option})" if option else "")
                raise NotUnderstood(text, EXAMPLES["options"] if option else example) from None
            except OverflowError:  # fire-time arithmetic past year 9999 (an interval from the calendar's last days)
                raise NotUnderstood(f'"{when.phrase}" - its first run would be beyond the calendar (after 9999-12-31)', example) from None
            except ConflictError:  # a 48-bit id collision: draw another
                continue
        else:
            raise ConflictRefusal("could not allocate a job id; please try again")
        log.info("Chat job created" if created else "Chat job redelivered", extra={"json_fields": {"job_id": job.id, "sender": self.sender}})
        head = f"Scheduled `{job.id}` ({job.job_type})" if created else f"This message was already scheduled as `{job.id}` ({job.job_type})"
        return self._summary(head, job, when.timezone)

    # -- reading --------------------------------------------------------------

    def cmd_list(self, rest: str) -> str:
        tz_name, words = self._display_args(rest)
        show_all = [w.lower() for w in words] == ["all"]
        if words and not show_all:
            raise NotUnderstood(f'"{" ".join(words)[:40]}" after list; say `list` or `list all`', "list")
        jobs = [j for j in self._all_jobs() if (self.is_admin or self._owns(j)) and (show_all or j.status not in (JobStatus.COMPLETED, JobStatus.CANCELLED))]
        if not jobs:
            whose = "There are no" if self.is_admin else "You have no"
            return f"{whose} {'' if show_all else 'active '}jobs. Try `{EXAMPLES['when']}`."
        jobs.sort(key=lambda j: (j.next_run_at is None, j.next_run_at or j.created_at, j.id))
        lines = [f"{'All' if self.is_admin else 'Your'} {'' if show_all else 'active '}jobs ({len(jobs)}):"]
        for job in jobs[:MAX_LISTED]:
            zone_name = tz_name or self._zone_for(job)
            nxt = f", next {_fmt(job.next_run_at, zone_name)}" if job.next_run_at and not job.status.is_final else ""
            owner = f", by {job.created_by}" if self.is_admin and job.created_by and not self._owns(job) else ""
            lines.append(f"• `{job.id}` {job.job_type} [{job.status.value}]: {describe_schedule(job)}{nxt}{owner}{_gist(job)}")
        if len(jobs) > MAX_LISTED:
            lines.append(f"... and {len(jobs) - MAX_LISTED} more")
        return "\n".join(lines)

    def cmd_show(self, rest: str) -> str:
        job, tz_name = self._target(rest, "show")
        lines = [self._summary(f"`{job.id}` ({job.job_type}) is {job.status.value}", job, tz_name)]
        lines.append(f"Created by {job.created_by or 'the API'} on {_fmt(job.created_at, tz_name)}")
        if job.payload:
            lines.append("Payload: `" + _clip(json.dumps(job.payload, ensure_ascii=False), 300) + "`")
        if job.last_run_at:
            error = f": {_clip(job.last_error, 200)}" if job.last_error else ""
            lines.append(f"Last run {_fmt(job.last_run_at, tz_name)}: {job.last_outcome}{error}")
        return "\n".join(lines)

    def cmd_history(self, rest: str) -> str:
        job, tz_name = self._target(rest, "history")
        runs = self.app.store.list_executions(job_id=job.id, limit=HISTORY_SHOWN)
        if not runs:
            described = describe_schedule(job)
            return f"`{job.id}` ({job.job_type}) has not run yet. {described[0].upper()}{described[1:]}."
        lines = [f"Last {len(runs)} runs of `{job.id}` ({job.job_type}), newest first:"]
        for run in runs:
            error = f": {_clip(run.error, 150)}" if run.error else ""
            lines.append(f"• {_fmt(run.fire_at, tz_name)}, attempt {run.attempt}: {run.outcome.value} ({run.duration_ms:.0f} ms){error}")
        return "\n".join(lines)

    # -- changing -------------------------------------------------------------

    def _change(self, rest: str, verb: str, action: Callable[..., Job], done: str, *, with_note: bool = False) -> str:
        """``<verb> <id>``; with ``with_note``, ``<verb> <id> [note...]``: the words after the id
        (but a last ``tz=<zone>``, which sets the display zone) are the note."""
        note = None
        if with_note:
            head, note = (rest.split(maxsplit=1) + ["", ""])[:2]
            words = note.rsplit(maxsplit=1)
            display = words[-1] if words and _TZ_TOKEN.match(words[-1]) else ""
            if display:
                note = words[0] if len(words) == 2 else ""
            rest, note = f"{head} {display}", note.strip() or None
        job, tz_name = self._target(rest, verb)
        try:
            job = action(job.id, actor=self.sender, **({"note": note} if with_note else {}))
        except ConflictError as exc:
            raise ConflictRefusal(str(exc)) from None
        log.info(f"Chat {verb}", extra={"json_fields": {"action": f"chat_{verb}", "job_id": job.id, "sender": self.sender, "note": note}})
        return self._summary(f"{done} `{job.id}` ({job.job_type})", job, tz_name)

    def cmd_pause(self, rest: str) -> str:
        return self._change(rest, "pause", self.app.service.pause, "Paused", with_note=True)

    def cmd_resume(self, rest: str) -> str:
        return self._change(rest, "resume", self.app.service.resume, "Resumed", with_note=True)

    def cmd_backfill(self, rest: str) -> str:
        """``backfill <id> from <time> to <time> [runs=N] [tz=<zone>]``: times read in tz=, else
        the job's zone (the default zone for a UTC job), as show displays them."""
        example = EXAMPLES["backfill"]
        head, tail = (rest.split(maxsplit=1) + ["", ""])[:2]
        tail, options = trailing_options(tail)
        for option in options:
            if option.name not in ("runs", "tz"):
                raise NotUnderstood(f'"{_clip(option.text, 40)}" does not apply to backfill; it takes runs=N and tz=<zone>', example)
        tz_option = self._option_zone(options, example)
        job, tz_name = self._target(head, "backfill")
        if not tail.strip():
            raise NotUnderstood("backfill needs the range: `backfill <id> from <time> to <time>`", example)
        now = self.app.clock()
        try:
            start, end = parse_range(tail, now=now, tz=tz_option or tz_name)
        except ValidationError as exc:
            raise NotUnderstood(exc.message, example) from None
        data: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat()}
        runs = [option for option in options if option.name == "runs"]
        if runs:
            if len(runs) > 1 or not re.fullmatch(r"\d{1,10}", runs[0].value):
                raise NotUnderstood(f"give runs= once, a whole number from 1 to {schema.MAX_BACKFILL_RUNS}", example)
            data["max_runs"] = int(runs[0].value)
        try:
            result = self.app.service.backfill(job.id, data, actor=self.sender)
        except ConflictError as exc:
            raise ConflictRefusal(str(exc)) from None
        except ValidationError as exc:
            option = {"start": "from", "end": "to", "max_runs": "runs="}.get(exc.field or "")
            raise NotUnderstood(_validation_text(exc) + (f" ({option})" if option else ""), example) from None
        log.info("Chat backfill", extra={"json_fields": {"action": "chat_backfill", "job_id": job.id, "sender": self.sender, "created": len(result.created), "existing": len(result.existing)}})
        shown = tz_option or tz_name
        span = f"from {_fmt(start, shown)} to {_fmt(end, shown)}"
        if not result.fire_times:
            return f"`{job.id}` ({job.job_type}) has no fire time {span}: nothing to backfill. Its schedule: {describe_schedule(job)}."
        created = set(result.created)
        lines = [
            f"Backfilled `{job.id}` ({job.job_type}): {len(result.fire_times)} fire time(s) {span}; "
            f"{len(result.created)} new, {len(result.existing)} already backfilled earlier (not run again). "
            "The new ones run at the next tick, oldest first:"
        ]
        for fire in result.fire_times[:BACKFILL_SHOWN]:
            new = any(occurrence.endswith(f".bf-{fire:%Y%m%dT%H%M%S}") for occurrence in created)
            lines.append(f"• {_fmt(fire, shown)}{'' if new else ' (already backfilled)'}")
        if len(result.fire_times) > BACKFILL_SHOWN:
            lines.append(f"... and {len(result.fire_times) - BACKFILL_SHOWN} more")
        return "\n".join(lines)

    def cmd_run(self, rest: str) -> str:
        return self._change(rest, "run", self.app.service.run_now, "Run at the next tick requested for")

    def cmd_cancel(self, rest: str) -> str:
        return self._change(rest, "cancel", self.app.service.cancel, "Cancelled")

    def cmd_help(self, rest: str) -> str:
        return HELP

    COMMANDS: dict[str, Callable[[Conversation, str], str]] = {
        "help": cmd_help,
        "?": cmd_help,
        "remind": cmd_remind,
        "schedule": cmd_schedule,
        "list": cmd_list,
        "jobs": cmd_list,
        "show": cmd_show,
        "history": cmd_history,
        "pause": cmd_pause,
        "resume": cmd_resume,
        "run": cmd_run,
        "cancel": cmd_cancel,
        "backfill": cmd_backfill,
    }

    # -- helpers --------------------------------------------------------------

    def _owns(self, job: Job) -> bool:
        return bool(job.created_by) and job.created_by.lower() == self.sender.lower()

    def _all_jobs(self) -> list[Job]:
        jobs: list[Job] = []
        after: str | None = None
        while True:
            page = self.app.service.list(limit=200, after_id=after)
            jobs.extend(page)
            if len(page) < 200:
                return jobs
            after = page[-1].id

    def _display_args(self, rest: str) -> tuple[str | None, list[str]]:
        """``tz=<zone>`` tokens out of ``rest`` (canonical zone), and the other words."""
        tz_name: str | None = None
        words = []
        for word in rest.split():
            m = _TZ_TOKEN.match(word)
            if m:
                try:
                    tz_name = canonical_zone(m.group(1))
                except ValidationError as exc:
                    raise NotUnderstood(exc.message, "show <id> tz=Europe/Paris") from None
            else:
                words.append(word)
        return tz_name, words

    def _target(self, rest: str, verb: str) -> tuple[Job, str]:
        """The job named in ``rest``, if the sender may act on it, and the zone to show times in."""
        tz_name, words = self._display_args(rest)
        example = f"{verb} 3f2a9c1b7e4d"
        if not words:
            raise NotUnderstood(f"{verb} needs a job id (`list` shows yours)", example)
        if len(words) > 1:
            raise NotUnderstood(f'"{_clip(" ".join(words[1:]), 40)}" after the job id', example)
        job_id = words[0].strip("`'\"")
        if not _ID_RE.match(job_id):
            raise NotUnderstood(f'"{_clip(job_id, 40)}" is not a job id', example)
        try:
            job = self.app.service.get(job_id)
        except JobNotFound:
            raise ConflictRefusal(f"there is no job `{job_id}` (`list` shows yours)") from None
        if not (self.is_admin or self._owns(job)):
            raise ConflictRefusal(f"`{job_id}` was created by someone else; only its creator or an administrator can {verb} it")
        return job, tz_name or self._zone_for(job)

    def _zone_for(self, job: Job) -> str:
        return job.timezone if job.timezone != "UTC" else self.config.default_timezone

    def _summary(self, head: str, job: Job, tz_name: str) -> str:
        lines = [f"{head}: {describe_schedule(job)}."]
        if job.job_type == "chat_message" and isinstance(job.payload.get("text"), str):
            lines.append(f"Message: {_clip(job.payload['text'], 200)}")
        lines.extend(_settings(job, tz_name))
        if job.status is JobStatus.FAILED:
            lines.append(f"It failed and is out of attempts: `resume {job.id}` or `run {job.id}` tries again.")
            return "\n".join(lines)
        if job.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            lines.append("No further runs.")
            return "\n".join(lines)
        planned, truncated = self._preview(job)
        count = sum(p.run_at is not None for p in planned)
        label = "Next runs once resumed" if job.status is JobStatus.PAUSED else ("Next run" if count == 1 else f"Next {count} runs")
        zone_label = "UTC" if tz_name == "UTC" else f"{tz_name} / UTC"
        if planned:
            lines.append(f"{label} ({zone_label}):")
            lines.extend(_planned_line(p, job, tz_name) for p in planned)
        if truncated:
            lines.append(f"{'Later runs' if count else 'Its next run'} would be beyond the calendar (year 9999).")
        return "\n".join(lines)

    def _preview(self, job: Job) -> tuple[list[PlannedTime], bool]:
        """The next :data:`PREVIEW_COUNT` runs, with the times the DST policy dropped among
        them (at most one a day), fewer when a later one would be past year 9999, and
        whether that cut them."""
        planned = self.app.service.planned(job, 2 * PREVIEW_COUNT)
        out: list[PlannedTime] = []
        for p in planned:
            if p.note == "beyond_calendar":
                return out, True
            out.append(p)
            if sum(q.run_at is not None for q in out) == PREVIEW_COUNT:
                break
        return out, False


class ConflictRefusal(NotUnderstood):
    """A refusal that is not about parsing: the request was understood but cannot be done."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.example = None


def redelivery_key(sender: str, message_name: str) -> str:
    """The job's ``idempotency_key`` for a Chat message: ``chat:<sender>:<message.name>``.

    Scoped to the sender, so another sender's event naming the same message neither
    reuses nor reveals the first sender's job. A key over the idempotency_key limit
    (or not valid UTF-8) becomes ``chat:sha256:<hex>`` of both parts, still one per
    sender and message.
    """
    sender = sender.lower()
    key = f"chat:{sender}:{message_name}"
    if len(key) <= MAX_IDEMPOTENCY_KEY_CHARS and _utf8(key):
        return key
    digest = hashlib.sha256(json.dumps([sender, message_name]).encode("ascii")).hexdigest()  # ensure_ascii escapes surrogates
    return f"chat:sha256:{digest}"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _settings(job: Job, tz_name: str) -> list[str]:
    """The lines for the schedule settings a job has beyond the defaults: its options
    (as Chat writes them), bounds, runs remaining, note and where it was backfilled from."""
    options = []
    if job.jitter_seconds:
        options.append(f"jitter={_span(job.jitter_seconds)}")
    overlap = getattr(job.overlap, "value", job.overlap)
    if overlap != schema.BY_NAME["overlap"].default:
        options.append(f"overlap={overlap}")
    if job.dst_gap != schema.BY_NAME["dst_gap"].default:
        options.append(f"dst={job.dst_gap}")
    if job.dst_repeat is not None:
        options.append(f"dst_repeat={job.dst_repeat}")
    if job.pause_on_failure:
        options.append("pause-on-failure")
    lines = [f"Options: {' '.join(options)}"] if options else []
    if job.starts_at is not None:
        lines.append(f"Starting {_fmt(job.starts_at, tz_name)}")
    if job.ends_at is not None:
        lines.append(f"Until {_fmt(job.ends_at, tz_name)}")
    if job.max_runs is not None:
        lines.append(f"Runs remaining: {job.runs_remaining} of {job.max_runs}")
    if job.note:
        lines.append(f"Note: {_clip(job.note, 300)}")
    if job.backfill_of:
        lines.append(f"Backfilled from `{job.backfill_of}`")
    return lines


def _planned_line(p: PlannedTime, job: Job, tz_name: str) -> str:
    """One preview line, marked where the job's DST policy moved, dropped or picked a copy of the time."""
    wall = "" if p.wall is None else f"{p.wall.hour:02d}:{p.wall.minute:02d}"
    if p.run_at is None:  # dropped: dst=skip on a spring-forward day
        day = "" if p.wall is None else f"{p.wall:%a} {_ymd_hm(p.wall)} "
        return f"• {day}({job.timezone}): not run (DST: no {wall} that day, dst=skip)"
    marks = {
        "shifted": f" (DST: no {wall} that day, run at the end of the gap)",
        "first": f" (DST: the first of two {wall}s)",
        "second": f" (DST: the second of two {wall}s)",
    }
    return f"• {_fmt(p.run_at, tz_name)}{marks.get(p.note or '', '')}"


def _gist(job: Job) -> str:
    text = job.payload.get("text") if job.job_type == "chat_message" else None
    return f' "{_clip(text, 60)}"' if isinstance(text, str) else ""


def _ymd_hm(when: datetime) -> str:
    """``2026-01-05 09:00``, the year always 4 digits (glibc's ``%Y`` does not pad years below 1000)."""
    return f"{when.year:04d}-{when.month:02d}-{when.day:02d} {when.hour:02d}:{when.minute:02d}"


def _beyond(tz_name: str) -> str:
    return f"(beyond the calendar in {tz_name})"


def _fmt(when: datetime, tz_name: str) -> str:
    """``Mon 2026-01-05 09:00 CET (08:00 UTC)``; the UTC date is shown when it differs.

    Total for every UTC datetime: where the local wall time falls outside years 1 to
    9999 (east of UTC on 9999-12-31, west of it on 0001-01-01) ``astimezone`` raises
    OverflowError, so the time is shown in UTC only, ``... UTC (beyond the calendar in <zone>)``.
    """
    utc_text = _ymd_hm(when)
    if tz_name == "UTC":
        return f"{when:%a} {utc_text} UTC"
    try:
        local = when.astimezone(zone(tz_name))
    except OverflowError:
        return f"{when:%a} {utc_text} UTC {_beyond(tz_name)}"
    utc_part = f"{when.hour:02d}:{when.minute:02d}" if local.date() == when.date() else utc_text
    return f"{local:%a} {_ymd_hm(local)} {local.tzname()} ({utc_part} UTC)"


def _validation_text(exc: ValidationError) -> str:
    """The service's refusal, naming its field (appended when the message does not already)."""
    if exc.field and exc.field not in exc.message:
        return f"{exc.message} (field {exc.field})"
    return exc.message


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number; JSON has no Infinity or NaN")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{_clip(text, 30)} is not a finite number; JSON has no Infinity or NaN")
    return value


def _json_payload(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        text = text[3:-3].strip()
        if text.lower().startswith("json"):
            text = text[4:].strip()
    elif len(text) >= 2 and text[0] == text[-1] == "`":
        text = text[1:-1].strip()
    if not text:
        return {}
    try:
        # Python's json reads NaN, Infinity and 1e999 (as inf); a job must not hold them
        # (its JSON could not be written back), so they are refused here, before the service.
        payload = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise NotUnderstood(f'the payload "{_clip(text, 40)}" is not valid JSON ({_clip(str(exc), 80)})', EXAMPLES["schedule"]) from None
    if not isinstance(payload, dict):
        raise NotUnderstood(f"the payload must be a JSON object {{...}}, not {type(payload).__name__}", EXAMPLES["schedule"])
    return payload
