"""Human descriptions of schedules: ``describe_cron("0 9 * * 1-5")`` ->
``"every weekday (Monday to Friday) at 09:00"``. Pure; used by the chat
webhook's confirmations (and meant to be shared with the API preview).

Anything the describer does not model (``L``, ``W``, ``#``, ``?``, odd step
combinations) falls back to quoting the expression, so a description is always
true even when it is not pretty.
"""

from __future__ import annotations

from typing import Any

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
_DOW_ALIASES = {name[:3].lower(): i for i, name in enumerate(DAY_NAMES)}
_MONTH_ALIASES = {name[:3].lower(): i + 1 for i, name in enumerate(MONTH_NAMES)}
_MAX_LISTED_TIMES = 8


class _Unsupported(Exception):
    pass


class _Field:
    """One cron field: ``any`` (``*``), or the sorted values it matches; ``step`` is set for ``*/n``."""

    def __init__(self, text: str, low: int, high: int, aliases: dict[str, int] | None = None, *, sunday7: bool = False) -> None:
        self.text = text
        self.any = text == "*"
        self.step: int | None = None
        values: set[int] = set()
        for part in text.split(","):
            values.update(self._part(part, low, high, aliases or {}, sunday7))
        if not values:
            raise _Unsupported(text)
        self.values = sorted(values)
        if text.startswith("*/") and "," not in text:
            self.step = int(text[2:])

    @staticmethod
    def _value(token: str, aliases: dict[str, int], low: int, high: int) -> int:
        token = token.lower()
        if token in aliases:
            return aliases[token]
        if not token.isdigit():
            raise _Unsupported(token)
        value = int(token)
        if not low <= value <= high:
            raise _Unsupported(token)
        return value

    def _part(self, part: str, low: int, high: int, aliases: dict[str, int], sunday7: bool) -> set[int]:
        top = 7 if sunday7 else high
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise _Unsupported(part)
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = self._value(first, aliases, low, top), self._value(last, aliases, low, top)
            if end < start:
                raise _Unsupported(part)
        else:
            start = self._value(base, aliases, low, top)
            end = top if step_text else start
        values = set(range(start, end + 1, step))
        if sunday7 and 7 in values:
            values.discard(7)
            values.add(0)
        return values


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _times(minute: _Field, hour: _Field) -> str:
    """The time-of-day part: 'at 09:00', 'every 15 minutes', 'every hour at :30', ..."""
    if minute.any and hour.any:
        return "every minute"
    if minute.step and minute.values[0] == 0 and hour.any:
        return f"every {minute.step} minutes"
    if hour.any:
        if minute.values == [0]:
            return "every hour, on the hour"
        return "every hour at " + _join([f":{m:02d}" for m in minute.values])
    hours = _hours(hour)
    if minute.any:
        return f"every minute {hours}"
    if minute.step and minute.values[0] == 0:
        return f"every {minute.step} minutes {hours}"
    if hour.step and len(minute.values) == 1:
        at = "on the hour" if minute.values == [0] else f"at :{minute.values[0]:02d}"
        return f"every {hour.step} hours, {at}"
    if len(minute.values) * len(hour.values) <= _MAX_LISTED_TIMES:
        return "at " + _join([f"{h:02d}:{m:02d}" for h in hour.values for m in minute.values])
    return "at minutes " + _join([f":{m:02d}" for m in minute.values]) + " " + hours


def _hours(hour: _Field) -> str:
    runs = _runs(hour.values)
    if len(runs) == 1 and runs[0][0] != runs[0][1]:
        return f"from {runs[0][0]:02d}:00 to {runs[0][1]:02d}:59"
    return "during hour " + _join([f"{h:02d}" for h in hour.values]) if len(hour.values) == 1 else "during hours " + _join([f"{h:02d}" for h in hour.values])


def _weekdays(dow: _Field) -> str:
    """'every weekday (Monday to Friday)', 'every Monday and Thursday', 'every Saturday and Sunday'."""
    values = dow.values
    if values == [1, 2, 3, 4, 5]:
        return "every weekday (Monday to Friday)"
    ordered = sorted(values, key=lambda d: (d - 1) % 7)  # Monday first, Sunday last
    runs = _runs([(d - 1) % 7 for d in ordered])
    parts = []
    for start, end in runs:
        first, last = DAY_NAMES[(start + 1) % 7], DAY_NAMES[(end + 1) % 7]
        if end - start >= 2:
            parts.append(f"{first} to {last}")
        else:
            parts.extend(DAY_NAMES[(d + 1) % 7] for d in range(start, end + 1))
    return "every " + _join(parts)


def _month_days(dom: _Field) -> str:
    if dom.step and dom.values[0] == 1:
        return f"every {dom.step} days of the month (from the 1st)"
    if len(dom.values) > 6:
        return f"on {len(dom.values)} days of every month ({_join([_ordinal(d) for d in dom.values[:3]])}, ...)"
    return "on the " + _join([_ordinal(d) for d in dom.values]) + " of every month"


def _describe(expr: str) -> str:
    fields = expr.split()
    if len(fields) != 5:
        raise _Unsupported(expr)
    minute = _Field(fields[0], 0, 59)
    hour = _Field(fields[1], 0, 23)
    dom = _Field(fields[2], 1, 31)
    month = _Field(fields[3], 1, 12, _MONTH_ALIASES)
    dow = _Field(fields[4], 0, 6, _DOW_ALIASES, sunday7=True)
    times = _times(minute, hour)
    if dom.any and dow.any:
        days = ""
    elif dom.any:
        days = _weekdays(dow)
    elif dow.any:
        days = _month_days(dom)
    else:  # cron's rule: either field matching is enough
        days = f"{_month_days(dom)} and {_weekdays(dow)}"
    if len(month.values) == 1 and len(dom.values) == 1 and dow.any and not month.any:
        yearly = f"every year on {MONTH_NAMES[month.values[0] - 1]} {_ordinal(dom.values[0])}"
        return f"{yearly} {times}" if times.startswith("at ") else f"{times}, {yearly}"
    if times.startswith("at "):
        text = f"{days or 'every day'} {times}"
    else:
        text = f"{times}, {days}" if days else times
    if not month.any:
        text += ", in " + _join([MONTH_NAMES[m - 1] for m in month.values])
    return text


def describe_cron(expr: str) -> str:
    """A sentence for a 5-field cron expression or a macro (``@daily``); never raises."""
    text = " ".join(str(expr).split())
    expanded = MACROS.get(text.lower(), text)
    try:
        return _describe(expanded)
    except (_Unsupported, ValueError, IndexError):
        return f'on the cron schedule "{text}"'


def describe_interval(seconds: int) -> str:
    return "every " + format_duration(seconds, singular_article=False)


def format_duration(seconds: int, *, singular_article: bool = True) -> str:
    """``5400`` -> ``"1 hour 30 minutes"``; ``3600`` -> ``"hour"`` in ``every hour`` form when
    ``singular_article`` is false."""
    parts = []
    remaining = int(seconds)
    for name, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {name}" + ("s" if count != 1 else ""))
    if not parts:
        return "0 seconds"
    if not singular_article and len(parts) == 1 and parts[0].startswith("1 "):
        return parts[0][2:]
    return " ".join(parts)


def describe_schedule(job: Any) -> str:
    """A sentence for a job's schedule (``schedule_at`` / ``cron`` / ``interval_seconds``)."""
    tz_name = getattr(job, "timezone", None) or "UTC"
    if getattr(job, "cron", None):
        where = "UTC" if tz_name == "UTC" else f"{tz_name} time"
        return f"{describe_cron(job.cron)} ({where})"
    if getattr(job, "interval_seconds", None):
        return describe_interval(job.interval_seconds)
    at = getattr(job, "schedule_at", None)
    if at is not None:
        from scheduler.timing import zone

        try:
            tz = zone(tz_name)
        except ValueError:
            tz, tz_name = zone("UTC"), "UTC"
        try:
            local = at.astimezone(tz)
        except OverflowError:  # within hours of year 1 or 9999: say it in UTC
            return f"once, on {at:%a} {at.year:04d}-{at:%m-%d} at {at:%H:%M} UTC (beyond the calendar in {tz_name})"
        if tz_name == "UTC":
            return f"once, on {local:%a %Y-%m-%d at %H:%M} UTC"
        return f"once, on {local:%a %Y-%m-%d at %H:%M} {tz_name} time"
    return "no schedule"
