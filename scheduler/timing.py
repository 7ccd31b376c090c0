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

import hashlib
import heapq
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.model import MAX_CATCH_UP, Job, utc

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class CronError(ValueError):
    """croniter could not evaluate a cron expression: it matches no date (``0 0 30 2 *``),
    or croniter refuses it. croniter's ``CroniterError`` under a name of this module, so
    that no caller imports croniter."""


# croniter (and dateutil with it) is imported by the two functions below, on the first cron
# expression read, not at import: about 20 ms of a cold start (in process), and a /health or a
# tick of interval and one-off jobs never reads one. Later imports find it in sys.modules.


def _cron_walk(expr: str, start: datetime) -> Iterator[datetime]:
    """The naive wall times after ``start`` that ``expr`` matches, ascending (croniter);
    raises :class:`CronError` when croniter refuses ``expr`` or finds no next time."""
    from croniter import CroniterError, croniter

    try:
        it = croniter(expr, start)
        while True:
            yield it.get_next(datetime)
    except CroniterError as exc:
        raise CronError(f"cron expression {expr!r}: {exc}") from exc


def check_cron(expr: str) -> str | None:
    """Return why ``expr`` is not a valid 5-field cron expression, or ``None``."""
    text = expr.strip()
    if text.lower() in _CRON_MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"cron expression {expr!r} must have 5 fields (minute hour day month weekday), got {len(fields)}"
    from croniter import croniter

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


DST_GAP_CHOICES = ("shift", "skip")
DST_REPEAT_CHOICES = ("first", "second", "both")
# Wall times earlier than local(after) can still fire after it, in the second copy of a
# repeated hour; no zone has ever repeated more than this much of its clock at once.
_FOLD_LOOKBACK = timedelta(hours=3)
_INSTANT = timedelta(microseconds=1)
_ZERO = timedelta(0)


@dataclass(frozen=True, slots=True)
class FireTime:
    """One wall-clock match of a cron expression and what the DST policy made of it.

    ``at`` is the instant it fires (UTC), ``None`` when the policy dropped it;
    ``note`` is ``None`` for an ordinary time, else ``"shifted"`` (skipped by
    spring-forward, fired at the gap's end), ``"dropped"`` (skipped by spring-forward,
    ``dst_gap=skip``), ``"first"`` / ``"second"`` (one copy of a time repeated by
    fall-back; ``"both"`` yields two FireTimes, one of each).
    """

    wall: datetime  # naive local wall time the expression matched
    at: datetime | None
    note: str | None = None


def _transition_near(tz: ZoneInfo, instant: datetime) -> bool:
    offset = instant.astimezone(tz).utcoffset()
    return (instant - _FOLD_LOOKBACK).astimezone(tz).utcoffset() != offset or (instant + _FOLD_LOOKBACK).astimezone(tz).utcoffset() != offset


def _gap_end(tz: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The transition instant in (before, after]: the first instant after a spring-forward gap."""
    target = after.astimezone(tz).utcoffset()
    lo, hi = before, after
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0) if hi.microsecond else hi


def cron_schedule(expr: str, tz_name: str, after: datetime, *, dst_gap: str = "shift", dst_repeat: str | None = None) -> Iterator[FireTime]:
    """Every wall-clock match of ``expr`` in ``tz_name`` whose instant is after ``after``
    (and the matches the policy dropped), ascending by instant.

    ``dst_gap``: ``shift`` fires a wall time that spring-forward skips at the first
    instant after the gap (several such times fire once there); ``skip`` drops it.
    ``dst_repeat``: ``first``, ``second`` or ``both`` copies of a wall time that
    fall-back repeats; ``None`` is Vixie cron's rule: ``first`` when the hour field is
    fixed, ``both`` (elapsed time) when it is a wildcard.
    """
    tz = zone(tz_name)
    repeat = dst_repeat or ("first" if _hour_is_fixed(expr) else "both")
    after = utc(after)
    start = after.astimezone(tz).replace(tzinfo=None)
    if (after + _FOLD_LOOKBACK).astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
        start -= _FOLD_LOOKBACK  # a transition is near: wall times before local(after) may fire after it
    walls = _cron_walk(expr.strip(), start)
    pending: list[tuple[datetime, int, FireTime]] = []  # a heap by instant
    order = 0
    last = after
    for wall in walls:
        i0 = utc(wall.replace(tzinfo=tz, fold=0))
        i1 = utc(wall.replace(tzinfo=tz, fold=1))
        if i0 == i1:
            found = [FireTime(wall, i0)]
        elif i1 > i0:  # repeated by fall-back: fold=0 is the first copy
            found = {
                "first": [FireTime(wall, i0, "first")],
                "second": [FireTime(wall, i1, "second")],
                "both": [FireTime(wall, i0, "first"), FireTime(wall, i1, "second")],
            }[repeat]
        elif dst_gap == "skip":  # in a spring-forward gap: fold=1 maps before it, fold=0 after
            found = [FireTime(wall, None, "dropped")]
        else:
            found = [FireTime(wall, _gap_end(tz, i1, i0), "shifted")]
        if not pending and i0 == i1 and not _transition_near(tz, i0):
            # The common case: an ordinary time, no DST switch within hours: nothing later
            # can sort before it, so it needs no look at the next match.
            if i0 > last:
                last = i0
                yield found[0]
            continue
        for fire in found:
            heapq.heappush(pending, (fire.at or i1, order, fire))
            order += 1
        # Any later wall time fires at or after min(i0, i1): what sorts before it is final.
        floor = min(i0, i1)
        while pending and pending[0][0] < floor:
            at, _, fire = heapq.heappop(pending)
            if fire.at is None:
                if at > after:
                    yield fire
                continue
            if fire.at <= last:  # at or before `after`, or a second wall time shifted to the same gap end
                continue
            last = fire.at
            yield fire


def cron_fire_times(expr: str, tz_name: str, after: datetime, *, dst_gap: str = "shift", dst_repeat: str | None = None) -> Iterator[datetime]:
    """Fire times of ``expr`` in ``tz_name`` strictly after ``after``, in UTC, ascending
    (see :func:`cron_schedule` for the DST policy)."""
    for fire in cron_schedule(expr, tz_name, after, dst_gap=dst_gap, dst_repeat=dst_repeat):
        if fire.at is not None:
            yield fire.at


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
    """The recurring ``job``'s fire times strictly after ``after``, within its
    ``starts_at``/``ends_at`` bounds and by its DST policy; empty for one-off jobs."""
    if job.starts_at is not None and after < job.starts_at:
        after = job.starts_at - _INSTANT  # starts_at itself may fire
    if job.cron is not None:
        times = cron_fire_times(job.cron, job.timezone, after, dst_gap=job.dst_gap, dst_repeat=job.dst_repeat)
    elif job.interval_seconds is not None:
        # Anchored at creation, so a manual run or a pause never shifts the grid.
        times = interval_fire_times(job.created_at, job.interval_seconds, after)
    else:
        return iter(())
    if job.ends_at is None:
        return times
    return _until(times, job.ends_at)


def _until(times: Iterator[datetime], end: datetime) -> Iterator[datetime]:
    for fire in times:
        if fire > end:
            return
        yield fire


def next_fire_after(job: Job, after: datetime) -> datetime | None:
    """The next fire time after ``after``; ``None`` when the schedule never fires again
    (a one-off job, a cron expression such as ``0 0 30 2 *`` that matches no date, or
    one past ``ends_at``). Raises OverflowError when it would be past year 9999."""
    try:
        return next(fire_times_after(job, after), None)
    except CronError:
        return None


def first_fire_time(job: Job, now: datetime) -> datetime | None:
    """Where a new (or resumed) job's schedule starts."""
    if job.schedule_at is not None:
        return job.schedule_at
    return next_fire_after(job, now)


def jitter_delay(job: Job, fire: datetime) -> timedelta:
    """The job's delay for the occurrence at ``fire``: uniform in [0, jitter_seconds],
    derived from (job id, fire time) alone, so every instance, retry and preview agrees."""
    if not job.jitter_seconds:
        return _ZERO
    digest = hashlib.sha256(f"{job.id}|{fire.isoformat()}".encode()).digest()
    millis = int.from_bytes(digest[:8], "big") % (job.jitter_seconds * 1000 + 1)
    return timedelta(milliseconds=millis)


def run_at(job: Job, fire: datetime | None) -> datetime | None:
    """When the occurrence that fires at ``fire`` is due: the fire time plus its jitter."""
    return None if fire is None else fire + jitter_delay(job, fire)


@dataclass(frozen=True, slots=True)
class PlannedTime:
    """One upcoming occurrence as a preview shows it: the nominal ``fire_at``, when it
    runs (``run_at``: plus its jitter), and ``note``: what the DST policy did
    (``shifted``, ``first``, ``second``), or ``dropped`` (``dst_gap=skip``: no run;
    ``fire_at`` and ``run_at`` are ``None`` and ``wall`` names the skipped wall time).
    A last entry noted ``beyond_calendar`` says later occurrences would be past year 9999."""

    fire_at: datetime | None
    run_at: datetime | None
    note: str | None = None
    wall: datetime | None = None


def planned_times(job: Job, first: datetime, count: int, *, due: datetime | None = None) -> list[PlannedTime]:
    """The job's next ``count`` occurrences from ``first`` (its next fire time, due at
    ``due``: default ``first`` plus its jitter), with the times its DST policy moved
    or dropped marked: what the engine will run, in order."""
    head = PlannedTime(first, due or run_at(job, first))
    out: list[PlannedTime] = []
    try:
        if job.cron is not None:
            for fire in cron_schedule(job.cron, job.timezone, first - _INSTANT, dst_gap=job.dst_gap, dst_repeat=job.dst_repeat):
                if len(out) >= count:
                    break
                if fire.at is None:
                    out.append(PlannedTime(None, None, fire.note, fire.wall))
                elif job.ends_at is not None and fire.at > job.ends_at:
                    break
                else:
                    out.append(PlannedTime(fire.at, run_at(job, fire.at), fire.note, fire.wall))
        elif job.is_recurring:
            out.append(head)
            for fire in fire_times_after(job, first):
                if len(out) >= count:
                    break
                out.append(PlannedTime(fire, run_at(job, fire)))
    except CronError:
        pass
    except OverflowError:
        out.append(PlannedTime(None, None, "beyond_calendar"))
    if out and out[0].fire_at == first:
        out[0] = PlannedTime(first, head.run_at, out[0].note, out[0].wall)
    elif not out or out[0] is not head:
        out.insert(0, head)  # a one-off, a run-now or a retry: not a time of the schedule itself
    return out[:count] if out[-1].note != "beyond_calendar" else out[: count - 1] + out[-1:]


def catch_up_occurrences(job: Job, fire_at: datetime, now: datetime) -> tuple[list[datetime], int]:
    """Occurrences a ``run_all`` job runs now: ``fire_at`` and every later fire time <= ``now``.

    Returns ``(occurrences, dropped)``: at most :data:`MAX_CATCH_UP` of the most
    recent occurrences, none older than ``catch_up_window_seconds`` (but at least the
    latest one), and how many older ones were dropped to respect those bounds.
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
    if job.catch_up_window_seconds is not None:
        horizon = now - timedelta(seconds=job.catch_up_window_seconds)
        recent = [fire for fire in occurrences if fire >= horizon] or occurrences[-1:]
        dropped += len(occurrences) - len(recent)
        occurrences = recent
    return occurrences, dropped


def backoff_delay(attempt: int, base_seconds: float, cap_seconds: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].

    Floored at one second so that a retry is never due at the instant the tick
    that failed it is still claiming at.
    """
    ceiling = min(cap_seconds, base_seconds * (2 ** max(attempt - 1, 0)))
    return max(1.0, rng.uniform(0, ceiling))
