"""Pure timing functions: fire times, misfire catch-up, retry backoff.

Nothing here reads the clock; callers pass ``now``/``after``.

Cron expressions are evaluated on the wall clock of the job's time zone:

* a wall time that does not exist (spring forward, e.g. 02:30 on the switch
  day in Europe/Berlin) fires at the first instant after the gap (03:00), once;
* a wall time that occurs twice (fall back) fires once, at its first occurrence,
  when the hour field is fixed (``30 2 * * *``); expressions whose hour field is
  a wildcard (``*/30 * * * *``) keep elapsed-time semantics and fire in both
  copies of the repeated hour. This is Vixie cron's rule.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from scheduler.model import MAX_CATCH_UP, Job, utc

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def check_cron(expr: str) -> str | None:
    """Return why ``expr`` is not a valid 5-field cron expression, or ``None``."""
    text = expr.strip()
    if text.lower() in _CRON_MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"cron expression {expr!r} must have 5 fields (minute hour day month weekday), got {len(fields)}"
    if not croniter.is_valid(text):
        return f"cron expression {expr!r} is not valid"
    return None


# Every IANA name fits (the longest is 32 characters); checked before tzdata turns the
# name into a file path, where 256+ characters fail with OSError (ENAMETOOLONG).
MAX_ZONE_NAME = 64
_ZONE_NAME = re.compile(r"[A-Za-z0-9/_+-]{1,%d}" % MAX_ZONE_NAME)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises ``ValueError`` naming it (clipped to 80 characters)
    when unknown, longer than :data:`MAX_ZONE_NAME`, or not of letters, digits, ``/_-+``."""
    try:
        if not (isinstance(name, str) and _ZONE_NAME.fullmatch(name)):
            raise ValueError("not an IANA zone name")
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        shown = f"{name[:80]!r}..." if isinstance(name, str) and len(name) > 80 else repr(name)
        raise ValueError(f"unknown time zone {shown}") from exc


def _hour_is_fixed(expr: str) -> bool:
    fields = expr.split()
    if len(fields) != 5:  # macros: @hourly has a wildcard hour, the others fix it
        return expr.strip().lower() != "@hourly"
    return "*" not in fields[1]


def _is_second_of_repeated(local: datetime) -> bool:
    if local.fold != 1:
        return False
    return local.replace(fold=0).utcoffset() != local.utcoffset()


def cron_fire_times(expr: str, tz_name: str, after: datetime) -> Iterator[datetime]:
    """Fire times of ``expr`` in ``tz_name`` strictly after ``after``, in UTC, ascending."""
    tz = zone(tz_name)
    fixed_hour = _hour_is_fixed(expr)
    it = croniter(expr.strip(), after.astimezone(tz))
    previous = utc(after)
    while True:
        local = it.get_next(datetime)
        if fixed_hour and _is_second_of_repeated(local):
            continue
        fire = utc(local)
        if fire <= previous:  # croniter can step back inside a fold; never yield twice
            continue
        previous = fire
        yield fire


def interval_fire_times(anchor: datetime, seconds: int, after: datetime) -> Iterator[datetime]:
    """``anchor + k*seconds`` (k >= 1) strictly after ``after``, ascending."""
    step = timedelta(seconds=seconds)
    if after < anchor:
        first = anchor + step
    else:
        first = anchor + step * ((after - anchor) // step + 1)
    while True:
        yield first
        first += step


def fire_times_after(job: Job, after: datetime) -> Iterator[datetime]:
    """The recurring ``job``'s fire times strictly after ``after``; empty for one-off jobs."""
    if job.cron is not None:
        return cron_fire_times(job.cron, job.timezone, after)
    if job.interval_seconds is not None:
        # Anchored at creation, so a manual run or a pause never shifts the grid.
        return interval_fire_times(job.created_at, job.interval_seconds, after)
    return iter(())


def next_fire_after(job: Job, after: datetime) -> datetime | None:
    """The next fire time after ``after``; ``None`` when the schedule never fires again
    (a one-off job, or a cron expression such as ``0 0 30 2 *`` that matches no date).
    Raises OverflowError when the next fire time would be past year 9999."""
    try:
        return next(fire_times_after(job, after), None)
    except CroniterError:  # no date matches
        return None


def first_fire_time(job: Job, now: datetime) -> datetime | None:
    """Where a new (or resumed) job's schedule starts."""
    if job.schedule_at is not None:
        return job.schedule_at
    return next_fire_after(job, now)


def catch_up_occurrences(job: Job, fire_at: datetime, now: datetime) -> tuple[list[datetime], int]:
    """Occurrences a ``run_all`` job runs now: ``fire_at`` and every later fire time <= ``now``.

    Returns ``(occurrences, dropped)``: at most :data:`MAX_CATCH_UP` of the most
    recent occurrences, and how many older ones were dropped to respect that bound.
    """
    occurrences = [fire_at]
    dropped = 0
    for fire in fire_times_after(job, fire_at):
        if fire > now:
            break
        occurrences.append(fire)
        if len(occurrences) > MAX_CATCH_UP:
            occurrences.pop(0)
            dropped += 1
    return occurrences, dropped


def backoff_delay(attempt: int, base_seconds: float, cap_seconds: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].

    Floored at one second so that a retry is never due at the instant the tick
    that failed it is still claiming at.
    """
    ceiling = min(cap_seconds, base_seconds * (2 ** max(attempt - 1, 0)))
    return max(1.0, rng.uniform(0, ceiling))
