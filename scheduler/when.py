"""Parse the ``<when>`` of a chat command into a job schedule. Pure: ``now`` and
the sender's zone are arguments; nothing here reads the clock.

Forms (case-insensitive)::

    in 10m | in 2h30m | in 1 hour 15 minutes        one-off, now + duration
    at 2026-12-01 09:00 | at 2026-12-01T09:00       one-off, wall time in the zone
    at 9:00 | at 9am                                 the next such wall time (today or tomorrow)
    on 2026-12-01 at 9:00                            same as 'at <date> <time>'
    today 17:30 | tomorrow 9:00 | tomorrow at 9am    one-off
    every 15m | every 2h                             interval (counted from creation)
    every minute | every hour                        cron '* * * * *' / '0 * * * *'
    every day at 9:00 | daily at 9:00                cron '0 9 * * *'
    every weekday at 9:00 | every weekend at 10:00   cron '0 9 * * 1-5' / '0 10 * * 0,6'
    every monday at 9:00 | every mon,wed,fri at 9:00 | every tuesday and thursday at 18:30
    cron "0 9 * * 1-5" | cron 0 9 * * 1-5 | cron @daily

A ``tz=Europe/Paris`` token just before or just after the phrase sets the zone
(otherwise the caller's default). Cron schedules are evaluated in that zone with
the DST rules of :mod:`scheduler.timing`; a one-off wall time that does not exist
(spring forward) means the first instant after the gap, one that occurs twice
(fall back) its first occurrence -- the same rules the cron schedules follow.

Refusals are :class:`~scheduler.errors.ValidationError` (field ``"when"``) whose
message starts ``not understood:`` and quotes the part that was not.

Points in time (:func:`parse_instant`, :func:`parse_range`: Chat's ``starting=``,
``until=`` and ``backfill <id> from <time> to <time>``), past or future::

    now | 3d ago | 2h30m ago | in 2w
    2026-06-30 | on 2026-06-30                         00:00 that day, in the zone
    2026-06-30 18:00 | 2026-06-30T18:00 | 2026-06-30 at 6pm
    today | yesterday | tomorrow [at] [9:00]           00:00 without a time
    2026-06-30T18:00:00+02:00 | 2026-06-30T16:00Z      an explicit offset: no zone needed
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from scheduler.errors import ValidationError
from scheduler.jobspec import MAX_INTERVAL_SECONDS
from scheduler.timing import check_cron, cron_fire_times, zone

MIN_INTERVAL_SECONDS = 60  # crontick ticks once a minute; a shorter interval only misfires
MAX_DELAY_SECONDS = 10 * 366 * 86400
EXAMPLES = '"in 10m", "at 2026-12-01 09:00", "tomorrow 9:00", "every weekday at 9:00", "every 15m", \'cron "0 9 * * 1-5"\''
STARTS = ("in", "at", "on", "today", "tomorrow", "every", "daily", "cron")

_UNITS = {
    "w": 7 * 86400, "wk": 7 * 86400, "wks": 7 * 86400, "week": 7 * 86400, "weeks": 7 * 86400,
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}  # fmt: skip
_UNIT_RE = "|".join(sorted(_UNITS, key=len, reverse=True))
_DURATION_RE = re.compile(rf"(?:\d{{1,9}}(?:{_UNIT_RE}))+")
_DURATION_PART_RE = re.compile(rf"(\d{{1,9}})({_UNIT_RE})")
_TIME_RE = re.compile(r"(\d{1,2})(?::(\d{2}))?(am|pm|a\.m\.|p\.m\.)?")
_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_DATETIME_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})t(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DAYS = {
    "sun": 0, "sunday": 0, "mon": 1, "monday": 1, "tue": 2, "tues": 2, "tuesday": 2,
    "wed": 3, "weds": 3, "wednesday": 3, "thu": 4, "thur": 4, "thurs": 4, "thursday": 4,
    "fri": 5, "friday": 5, "sat": 6, "saturday": 6,
}  # fmt: skip
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u201d": "\u201d", "\u2018": "\u2019", "\u2019": "\u2019"}
_TZ_PREFIXES = ("tz=", "timezone=")


@dataclass(frozen=True, slots=True)
class When:
    """A parsed schedule: exactly one of ``schedule_at`` (UTC), ``cron``, ``interval_seconds``."""

    schedule_at: datetime | None = None
    cron: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    phrase: str = ""  # the text that was read as the <when>

    def job_fields(self) -> dict[str, Any]:
        """The schedule as fields of a job-create request (:func:`scheduler.jobspec.build_job`)."""
        fields: dict[str, Any] = {"timezone": self.timezone}
        if self.schedule_at is not None:
            fields["schedule_at"] = self.schedule_at.isoformat()
        elif self.cron is not None:
            fields["cron"] = self.cron
        else:
            fields["interval_seconds"] = self.interval_seconds
        return fields


def not_understood(part: str, why: str) -> ValidationError:
    shown = " ".join(part.split())
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValidationError(f'not understood: "{shown}" - {why}', "when")


def parse_when(text: str, *, now: datetime, tz: str = "UTC") -> When:
    """The whole of ``text`` is a <when> phrase."""
    when, rest = split_when(text, now=now, tz=tz)
    if rest:
        raise not_understood(rest, f'nothing may follow the time "{when.phrase}"')
    return when


def split_when(text: str, *, now: datetime, tz: str = "UTC") -> tuple[When, str]:
    """Read the <when> phrase at the start of ``text``; return it and the rest of the text
    (its original spacing kept, leading whitespace removed)."""
    if not isinstance(text, str):
        raise not_understood(repr(text), "expected text")
    toks = _Tokens(text)
    zone_name = _take_tz(toks)
    start = toks.i
    spec = _parse_core(toks)
    phrase = toks.span(start, toks.i)
    after = _take_tz(toks)
    if zone_name and after:
        raise not_understood(after, "give one time zone (tz=...)")
    tz_name = canonical_zone(zone_name or after or tz)
    return spec.resolve(now=now, tz_name=tz_name, phrase=phrase), toks.rest()


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def canonical_zone(name: str) -> str:
    """``name`` as an IANA zone name (case-insensitive: ``europe/paris`` -> ``Europe/Paris``)."""
    try:
        zone(name)
        return name
    except ValueError:
        pass
    fixed = _zone_names().get(name.lower()) if isinstance(name, str) else None
    if fixed is None:
        raise not_understood(f"tz={name}", "unknown time zone; use an IANA name such as Europe/Paris or America/New_York")
    return fixed


# --- tokens ------------------------------------------------------------------


class _Tokens:
    """Whitespace-separated tokens of ``text`` with their positions, read left to right."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        self.i = 0

    def peek(self, ahead: int = 0) -> str | None:
        j = self.i + ahead
        if j >= len(self.spans):
            return None
        start, end = self.spans[j]
        return self.text[start:end].lower()

    def raw(self, ahead: int = 0) -> str:
        j = self.i + ahead
        if j >= len(self.spans):
            return ""
        start, end = self.spans[j]
        return self.text[start:end]

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise AssertionError("take past the end")
        self.i += 1
        return token

    def span(self, first: int, last: int) -> str:
        if last <= first:
            return ""
        return self.text[self.spans[first][0] : self.spans[last - 1][1]]

    def rest(self) -> str:
        return "" if self.i >= len(self.spans) else self.text[self.spans[self.i][0] :]

    def offset(self) -> int:
        """Character offset of the next token (``len(text)`` at the end)."""
        return len(self.text) if self.i >= len(self.spans) else self.spans[self.i][0]

    def seek(self, offset: int) -> None:
        """Continue with the first token starting at or after ``offset``."""
        self.i = next((j for j, (start, _) in enumerate(self.spans) if start >= offset), len(self.spans))


def _take_tz(toks: _Tokens) -> str | None:
    token = toks.peek()
    if token is None:
        return None
    for prefix in _TZ_PREFIXES:
        if token.startswith(prefix):
            raw = toks.raw()[len(prefix) :]
            toks.take()
            if not raw:
                raise not_understood(token, "tz= needs a zone name, e.g. tz=Europe/Paris")
            return raw
    return None


# --- phase 1: syntax -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Delay:
    seconds: int

    def resolve(self, *, now: datetime, tz_name: str, phrase: str) -> When:
        return When(schedule_at=_utc(now) + timedelta(seconds=self.seconds), timezone=tz_name, phrase=phrase)


@dataclass(frozen=True, slots=True)
class _At:
    clock: time
    day: date | None = None  # None: today or tomorrow, whichever is next
    day_offset: int | None = None  # 0 today, 1 tomorrow (in the zone)

    def resolve(self, *, now: datetime, tz_name: str, phrase: str) -> When:
        try:
            fire = self._fire(now, zone(tz_name))
        except OverflowError:
            raise not_understood(phrase, "that date is out of range") from None
        if fire <= now:
            shown = now.astimezone(zone(tz_name)).strftime("%Y-%m-%d %H:%M")
            raise not_understood(phrase, f"that is in the past (it is now {shown} {tz_name})")
        return When(schedule_at=fire, timezone=tz_name, phrase=phrase)

    def _fire(self, now: datetime, tz: ZoneInfo) -> datetime:
        local_today = now.astimezone(tz).date()
        if self.day is not None:
            fire = local_to_utc(self.day, self.clock, tz)
        elif self.day_offset is not None:
            fire = local_to_utc(local_today + timedelta(days=self.day_offset), self.clock, tz)
        else:
            fire = local_to_utc(local_today, self.clock, tz)
            if fire <= now:
                fire = local_to_utc(local_today + timedelta(days=1), self.clock, tz)
        return fire


@dataclass(frozen=True, slots=True)
class _Every:
    seconds: int

    def resolve(self, *, now: datetime, tz_name: str, phrase: str) -> When:
        return When(interval_seconds=self.seconds, timezone=tz_name, phrase=phrase)


@dataclass(frozen=True, slots=True)
class _Cron:
    expr: str

    def resolve(self, *, now: datetime, tz_name: str, phrase: str) -> When:
        try:
            fires = next(cron_fire_times(self.expr, tz_name, now), None)
        except Exception:  # noqa: BLE001 - croniter raises assorted errors on exotic expressions
            fires = None
        if fires is None:
            raise not_understood(self.expr, "this cron expression never fires")
        return When(cron=self.expr, timezone=tz_name, phrase=phrase)


_Spec = _Delay | _At | _Every | _Cron


def _parse_core(toks: _Tokens) -> _Spec:
    word = toks.peek()
    if word is None:
        raise not_understood("", f"a time is missing; for example {EXAMPLES}")
    if word == "in":
        toks.take()
        start = toks.i
        seconds = _duration(toks, "in")
        if seconds <= 0:
            raise not_understood(f"in {toks.span(start, toks.i)}", "the delay must be positive")
        if seconds > MAX_DELAY_SECONDS:
            raise not_understood(f"in {toks.span(start, toks.i)}", "the delay must be under 10 years")
        return _Delay(seconds)
    if word == "at":
        toks.take()
        return _parse_at(toks)
    if word == "on":
        toks.take()
        day = _date(toks, "on")
        if toks.peek() == "at":
            toks.take()
        return _At(_time(toks, f"on {day.isoformat()}"), day=day)
    if word in ("today", "tomorrow"):
        toks.take()
        if toks.peek() == "at":
            toks.take()
        return _At(_time(toks, word), day_offset=0 if word == "today" else 1)
    if word == "daily":
        toks.take()
        _expect_at(toks, "daily")
        hour, minute = _hm(_time(toks, "daily at"))
        return _Cron(f"{minute} {hour} * * *")
    if word == "every":
        toks.take()
        return _parse_every(toks)
    if word == "cron":
        toks.take()
        return _parse_cron(toks)
    raise not_understood(toks.raw(), f"a time starts with one of {', '.join(STARTS)}; for example {EXAMPLES}")


def _duration(toks: _Tokens, before: str) -> int:
    """The longest run of up to 6 tokens that joins into ``<n><unit>...`` (``2h30m``, ``2 h 30 min``)."""
    for count in range(6, 0, -1):
        words = [toks.peek(k) for k in range(count)]
        if None in words:
            continue
        joined = "".join(words)  # type: ignore[arg-type]
        if _DURATION_RE.fullmatch(joined):
            toks.i += count
            return sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART_RE.findall(joined))
    raise not_understood(f"{before} {toks.raw()}".strip(), 'expected a duration such as "10m", "2h30m", "1 day" (units: s, m, h, d, w)')


def _parse_at(toks: _Tokens) -> _At:
    word = toks.peek()
    if word is None:
        raise not_understood("at", 'a time is missing, e.g. "at 9:00" or "at 2026-12-01 09:00"')
    m = _DATETIME_RE.fullmatch(word)
    if m:
        toks.take()
        year, month, dom, hour, minute, second = (int(g) if g else 0 for g in m.groups())
        return _At(_mk_time(hour, minute, second, f"at {word}"), day=_mk_date(year, month, dom, f"at {word}"))
    if _DATE_RE.fullmatch(word):
        day = _date(toks, "at")
        if toks.peek() == "at":
            toks.take()
        return _At(_time(toks, f"at {day.isoformat()}"), day=day)
    clock = _time(toks, "at")
    follow = toks.peek()
    if follow in ("today", "tomorrow"):
        toks.take()
        return _At(clock, day_offset=0 if follow == "today" else 1)
    if follow == "on" and toks.peek(1) is not None and _DATE_RE.fullmatch(toks.peek(1) or ""):
        toks.take()
        return _At(clock, day=_date(toks, "on"))
    return _At(clock)


def _date(toks: _Tokens, before: str) -> date:
    word = toks.peek()
    m = _DATE_RE.fullmatch(word or "")
    if not m:
        raise not_understood(f"{before} {toks.raw()}".strip(), "expected a date as YYYY-MM-DD, e.g. 2026-12-01")
    toks.take()
    return _mk_date(int(m.group(1)), int(m.group(2)), int(m.group(3)), f"{before} {word}")


def _mk_date(year: int, month: int, dom: int, part: str) -> date:
    try:
        return date(year, month, dom)
    except ValueError as exc:
        raise not_understood(part, f"not a date ({exc})") from None


def _mk_time(hour: int, minute: int, second: int, part: str) -> time:
    if not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
        raise not_understood(part, "not a time of day; use 24-hour HH:MM (00:00 to 23:59) or 9am/5:30pm")
    return time(hour, minute, second)


def _time(toks: _Tokens, before: str) -> time:
    """``9:00``, ``09:30``, ``21:15``, ``9am``, ``9:30 pm``, ``noon``, ``midnight``."""
    word = toks.peek()
    part = f"{before} {toks.raw()}".strip()
    if word in ("noon", "midday"):
        toks.take()
        return time(12, 0)
    if word == "midnight":
        toks.take()
        return time(0, 0)
    m = _TIME_RE.fullmatch(word or "")
    if not m:
        raise not_understood(part, 'expected a time of day such as 9:00, 17:30 or 9am')
    toks.take()
    hour, minute, suffix = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if suffix is None and toks.peek() in ("am", "pm", "a.m.", "p.m."):
        suffix = toks.take()
        part = f"{part} {suffix}"
    if suffix is None and m.group(2) is None:
        raise not_understood(part, f'write the time with minutes or am/pm, e.g. "{hour}:00" or "{hour}am"')
    if suffix is not None:
        if not 1 <= hour <= 12:
            raise not_understood(part, "with am/pm the hour must be 1 to 12")
        hour = hour % 12 + (12 if suffix.startswith("p") else 0)
    return _mk_time(hour, minute, 0, part)


def _expect_at(toks: _Tokens, before: str) -> None:
    if toks.peek() != "at":
        raise not_understood(f"{before} {toks.raw()}".strip(), f'add the time of day, e.g. "{before} at 9:00"')
    toks.take()


def _hm(clock: time) -> tuple[int, int]:
    return clock.hour, clock.minute


def _parse_every(toks: _Tokens) -> _Spec:
    word = toks.peek()
    if word is None:
        raise not_understood("every", 'say how often, e.g. "every 15m" or "every weekday at 9:00"')
    if word == "minute":
        toks.take()
        return _Cron("* * * * *")
    if word == "hour":
        toks.take()
        return _Cron("0 * * * *")
    if word[0].isdigit():
        start = toks.i
        seconds = _duration(toks, "every")
        part = f"every {toks.span(start, toks.i)}"
        if toks.peek() == "at" and _TIME_RE.fullmatch(toks.peek(1) or ""):
            raise not_understood(f"{part} at {toks.raw(1)}", 'an interval cannot start at a time of day; say "every day at 9:00" or use cron')
        if seconds < MIN_INTERVAL_SECONDS:
            raise not_understood(part, "the shortest interval is 1 minute (crontick runs jobs on a once-a-minute tick)")
        if seconds > MAX_INTERVAL_SECONDS:
            raise not_understood(part, "the longest interval is 366 days")
        return _Every(seconds)
    days = _day_spec(toks)
    _expect_at(toks, f"every {word}")
    hour, minute = _hm(_time(toks, "at"))
    return _Cron(f"{minute} {hour} * * {days}")


def _day_spec(toks: _Tokens) -> str:
    word = toks.peek() or ""
    if word in ("day", "days"):
        toks.take()
        return "*"
    if word in ("weekday", "weekdays"):
        toks.take()
        return "1-5"
    if word in ("weekend", "weekends"):
        toks.take()
        return "0,6"
    days: set[int] = set()
    while True:
        word = toks.peek()
        if word is None or word == "at":
            break
        if word in ("and", "&", ","):
            toks.take()
            continue
        names = [part for part in word.split(",") if part]
        numbers = [_day_number(name) for name in names]
        if not names or None in numbers:
            break
        days.update(n for n in numbers if n is not None)
        toks.take()
    if not days:
        raise not_understood(f"every {toks.raw()}".strip(), 'expected a duration ("every 15m"), "day", "weekday", "weekend" or day names ("every mon,wed at 9:00")')
    ordered = sorted(days)
    return "1-5" if ordered == [1, 2, 3, 4, 5] else ",".join(str(d) for d in ordered)


def _day_number(name: str) -> int | None:
    name = name.rstrip(".")
    if name in _DAYS:
        return _DAYS[name]
    if name.endswith("s") and name[:-1] in _DAYS:  # "mondays"
        return _DAYS[name[:-1]]
    return None


def _parse_cron(toks: _Tokens) -> _Cron:
    at = toks.offset()
    text = toks.text
    if at < len(text) and text[at] in _QUOTES:
        close = text.find(_QUOTES[text[at]], at + 1)
        if close < 0:
            raise not_understood(text[at:], "the cron expression has no closing quote")
        expr = " ".join(text[at + 1 : close].split())
        if close + 1 < len(text) and not text[close + 1].isspace():
            tail = re.match(r"\S*", text[close + 1 :]).group(0)  # type: ignore[union-attr]
            raise not_understood(text[at : close + 1] + tail, "leave a space after the closing quote")
        toks.seek(close + 1)
    else:
        first = toks.peek()
        if first is None:
            raise not_understood("cron", 'the expression is missing, e.g. cron "0 9 * * 1-5"')
        count = 1 if first.startswith("@") else 5
        if any(toks.peek(k) is None for k in range(count)):
            raise not_understood(f"cron {toks.rest()}", 'a cron expression has 5 fields: minute hour day-of-month month day-of-week, e.g. cron "0 9 * * 1-5"')
        expr = " ".join(toks.raw(k) for k in range(count))
        toks.i += count
    problem = check_cron(expr) if expr else "the cron expression is empty"
    if problem:
        raise not_understood(f"cron {expr}", problem)
    return _Cron(expr)


# --- wall time in a zone ---------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _exists(naive: datetime, tz: ZoneInfo) -> bool:
    return naive.replace(tzinfo=tz).astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) == naive


def local_to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall time ``day clock`` in ``tz``: the first occurrence when the
    wall time repeats (fall back), the first instant after the gap when it does not
    exist (spring forward)."""
    naive = datetime.combine(day, clock)
    if not _exists(naive, tz):
        probe = naive.replace(second=0, microsecond=0)
        for _ in range(2 * 24 * 60):  # gaps are minutes to a day long
            probe += timedelta(minutes=1)
            if _exists(probe, tz):
                naive = probe
                break
    return _utc(naive.replace(tzinfo=tz, fold=0))


# --- points in time: starting=, until=, backfill from .. to .. ------------------------

INSTANT_EXAMPLES = '"2026-06-30", "2026-06-30 18:00", "yesterday 9:00", "3d ago", "in 2w", "now"'
_OFFSET_RE = re.compile(r"\d{4}-\d{2}-\d{2}t\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:z|[+-]\d{2}:\d{2})")
_DAY_WORDS = {"yesterday": -1, "today": 0, "tomorrow": 1}


def parse_instant(text: str, *, now: datetime, tz: str = "UTC") -> datetime:
    """The whole of ``text`` is one point in time, past or future (forms in the module
    docstring); returned in UTC. Wall times are read in ``tz`` with the rules of
    :func:`local_to_utc`. Refusals as for :func:`parse_when` (field ``"when"``)."""
    if not isinstance(text, str):
        raise not_understood(repr(text), "expected text")
    toks = _Tokens(text)
    instant = _instant(toks, now=now, tz=zone(canonical_zone(tz)))
    if toks.rest():
        raise not_understood(toks.rest(), f'nothing may follow the time "{toks.span(0, toks.i)}"')
    return instant


def parse_range(text: str, *, now: datetime, tz: str = "UTC") -> tuple[datetime, datetime]:
    """``from <time> to <time>`` (each as :func:`parse_instant` reads it): ``(start, end)``
    in UTC. Whether the range is the right way round is the caller's rule, not a
    matter of parsing."""
    if not isinstance(text, str):
        raise not_understood(repr(text), "expected text")
    toks = _Tokens(text)
    example = 'e.g. "from 2026-01-01 to 2026-01-05" or "from 3d ago to now"'
    if toks.peek() != "from":
        raise not_understood(toks.raw() or text, f'expected "from <time> to <time>", {example}')
    toks.take()
    tz_info = zone(canonical_zone(tz))
    start = _instant(toks, now=now, tz=tz_info, stop="to")
    if toks.peek() != "to":
        raise not_understood(toks.rest() or toks.span(0, toks.i), f'expected "to <time>" after the start, {example}')
    toks.take()
    end = _instant(toks, now=now, tz=tz_info, stop="to")
    if toks.rest():
        raise not_understood(toks.rest(), f'nothing may follow the end time, {example}')
    return start, end


def _instant(toks: _Tokens, *, now: datetime, tz: ZoneInfo, stop: str | None = None) -> datetime:
    word = toks.peek()
    if word in ("at", "on"):
        toks.take()
        word = toks.peek()
    if word is None or word == stop:
        raise not_understood(toks.span(max(toks.i - 1, 0), toks.i), f"a time is missing; for example {INSTANT_EXAMPLES}")
    start = toks.i
    try:
        if word == "now":
            toks.take()
            return _utc(now)
        if word == "in":
            toks.take()
            return _utc(now) + timedelta(seconds=_bounded(toks, start, "in"))
        if _OFFSET_RE.fullmatch(word):
            raw = toks.raw().upper()
            toks.take()
            try:
                return _utc(datetime.fromisoformat(raw))
            except ValueError as exc:
                raise not_understood(raw, f"not a time ({exc})") from None
        m = _DATETIME_RE.fullmatch(word)
        if m:
            toks.take()
            year, month, dom, hour, minute, second = (int(g) if g else 0 for g in m.groups())
            return local_to_utc(_mk_date(year, month, dom, word), _mk_time(hour, minute, second, word), tz)
        if _DATE_RE.fullmatch(word):
            day = _date(toks, "")
            return local_to_utc(day, _optional_time(toks, day.isoformat()), tz)
        if word in _DAY_WORDS:
            toks.take()
            day = now.astimezone(tz).date() + timedelta(days=_DAY_WORDS[word])
            return local_to_utc(day, _optional_time(toks, word), tz)
        if word[0].isdigit():
            seconds = _bounded(toks, start, "")
            if toks.peek() != "ago":
                raise not_understood(toks.span(start, toks.i), 'add "ago" ("3d ago") or put "in" before it ("in 3d")')
            toks.take()
            return _utc(now) - timedelta(seconds=seconds)
    except OverflowError:
        raise not_understood(toks.span(start, max(toks.i, start + 1)), "that date is out of range") from None
    raise not_understood(toks.raw(), f"expected a time such as {INSTANT_EXAMPLES}")


def _bounded(toks: _Tokens, start: int, before: str) -> int:
    seconds = _duration(toks, before)
    if seconds > MAX_DELAY_SECONDS:
        raise not_understood(toks.span(start, toks.i), "the duration must be under 10 years")
    return seconds


def _optional_time(toks: _Tokens, before: str) -> time:
    """The time of day after a date, or 00:00 when none follows."""
    word = toks.peek()
    if word == "at":
        toks.take()
        return _time(toks, f"{before} at")
    if word is not None and (word in ("noon", "midday", "midnight") or _TIME_RE.fullmatch(word)):
        return _time(toks, before)
    return time(0, 0)
