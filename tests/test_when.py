"""``scheduler.when`` (the <when> parser) and ``scheduler.describe``: pure, exact times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.describe import describe_cron, describe_interval, describe_schedule
from scheduler.errors import ValidationError
from scheduler.jobspec import build_job
from scheduler.timing import check_cron, cron_fire_times
from scheduler.when import When, local_to_utc, parse_instant, parse_range, parse_when, split_when

UTC = timezone.utc
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # a Monday


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(when: When, count: int = 3, now: datetime = NOW) -> list[datetime]:
    """The first ``count`` fire times of a parsed schedule, via the job builder and timing."""
    job = build_job({"job_type": "log", **when.job_fields()}, known_types=["log"], now=now)
    times = [job.next_run_at]
    if job.cron:
        times += list(_take(cron_fire_times(job.cron, job.timezone, times[0]), count - 1))
    elif job.interval_seconds:
        times += [times[0] + timedelta(seconds=job.interval_seconds * k) for k in range(1, count)]
    return times


def _take(it, n):
    for _ in range(n):
        yield next(it)


# --- one-off --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 10m", at(2026, 1, 5, 12, 10)),
        ("in 2h30m", at(2026, 1, 5, 14, 30)),
        ("in 2h 30m", at(2026, 1, 5, 14, 30)),
        ("in 1 hour 15 minutes", at(2026, 1, 5, 13, 15)),
        ("IN 90 MIN", at(2026, 1, 5, 13, 30)),
        ("in 45s", at(2026, 1, 5, 12, 0, 45)),
        ("in 1d", at(2026, 1, 6, 12, 0)),
        ("in 2w", at(2026, 1, 19, 12, 0)),
        ("at 2026-12-01 09:00", at(2026, 12, 1, 9, 0)),
        ("at 2026-12-01T09:00", at(2026, 12, 1, 9, 0)),
        ("at 2026-12-01 at 9am", at(2026, 12, 1, 9, 0)),
        ("on 2026-12-01 at 17:45", at(2026, 12, 1, 17, 45)),
        ("at 13:00", at(2026, 1, 5, 13, 0)),  # later today
        ("at 11:00", at(2026, 1, 6, 11, 0)),  # passed today: tomorrow
        ("at 12:00", at(2026, 1, 6, 12, 0)),  # exactly now is not the future
        ("at 9am tomorrow", at(2026, 1, 6, 9, 0)),
        ("at 9:30 pm", at(2026, 1, 5, 21, 30)),
        ("at 12am", at(2026, 1, 6, 0, 0)),
        ("at 12pm", at(2026, 1, 6, 12, 0)),
        ("at noon", at(2026, 1, 6, 12, 0)),
        ("at midnight", at(2026, 1, 6, 0, 0)),
        ("tomorrow 9:00", at(2026, 1, 6, 9, 0)),
        ("tomorrow at 9:00", at(2026, 1, 6, 9, 0)),
        ("Tomorrow 7PM", at(2026, 1, 6, 19, 0)),
        ("today 17:30", at(2026, 1, 5, 17, 30)),
    ],
)
def test_one_off_in_utc(text: str, expected: datetime) -> None:
    when = parse_when(text, now=NOW, tz="UTC")
    assert when.schedule_at == expected
    assert when.cron is None and when.interval_seconds is None
    assert when.job_fields() == {"timezone": "UTC", "schedule_at": expected.isoformat()}


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("at 2026-12-01 09:00", "Europe/Paris", at(2026, 12, 1, 8, 0)),
        ("at 2026-07-01 09:00", "Europe/Paris", at(2026, 7, 1, 7, 0)),
        ("at 2026-12-01 09:00", "America/New_York", at(2026, 12, 1, 14, 0)),
        ("tomorrow 9:00", "Asia/Tokyo", at(2026, 1, 6, 0, 0)),  # 21:00 JST now: tomorrow is Jan 6th there too
        ("today 23:00", "Asia/Tokyo", at(2026, 1, 5, 14, 0)),
        ("tomorrow 9:00", "Pacific/Auckland", at(2026, 1, 6, 20, 0)),  # 01:00 NZDT on Jan 6th now: tomorrow is Jan 7th
        ("today 9:00", "Pacific/Auckland", at(2026, 1, 5, 20, 0)),
        ("at 8:00", "America/Los_Angeles", at(2026, 1, 5, 16, 0)),  # 04:00 there now: later today
        ("in 10m", "Pacific/Kiritimati", at(2026, 1, 5, 12, 10)),  # a delay ignores the zone
    ],
)
def test_one_off_in_the_senders_zone(text: str, tz: str, expected: datetime) -> None:
    when = parse_when(text, now=NOW, tz=tz)
    assert when.schedule_at == expected
    assert when.timezone == tz


def test_tz_token_before_or_after_overrides_the_default() -> None:
    for text in ("tz=Europe/Paris at 2026-12-01 09:00", "at 2026-12-01 09:00 tz=Europe/Paris", "at 2026-12-01 09:00 TZ=europe/paris", "timezone=Europe/Paris at 2026-12-01 09:00"):
        when = parse_when(text, now=NOW, tz="America/New_York")
        assert (when.schedule_at, when.timezone) == (at(2026, 12, 1, 8, 0), "Europe/Paris"), text


# --- DST: one-off wall times follow the cron rules --------------------------------


def test_wall_time_in_the_spring_gap_is_the_first_instant_after_it() -> None:
    # Europe/Berlin jumps from 02:00 CET to 03:00 CEST on 2026-03-29 (01:00 UTC).
    when = parse_when("at 2026-03-29 02:30", now=NOW, tz="Europe/Berlin")
    assert when.schedule_at == at(2026, 3, 29, 1, 0)
    # America/New_York: 02:00 EST -> 03:00 EDT on 2026-03-08 (07:00 UTC).
    assert parse_when("at 2026-03-08 02:15", now=NOW, tz="America/New_York").schedule_at == at(2026, 3, 8, 7, 0)


def test_repeated_wall_time_is_its_first_occurrence() -> None:
    # Europe/Berlin repeats 02:00-03:00 on 2026-10-25: 02:30 CEST (00:30 UTC) then 02:30 CET (01:30 UTC).
    assert parse_when("at 2026-10-25 02:30", now=NOW, tz="Europe/Berlin").schedule_at == at(2026, 10, 25, 0, 30)
    assert parse_when("at 2026-11-01 01:30", now=NOW, tz="America/New_York").schedule_at == at(2026, 11, 1, 5, 30)


def test_local_to_utc_on_ordinary_times_is_the_plain_offset() -> None:
    from datetime import date, time

    from scheduler.timing import zone

    assert local_to_utc(date(2026, 1, 5), time(9, 0), zone("Europe/Berlin")) == at(2026, 1, 5, 8, 0)
    assert local_to_utc(date(2026, 6, 5), time(9, 0), zone("Europe/Berlin")) == at(2026, 6, 5, 7, 0)


def test_every_day_at_2_30_in_berlin_across_both_switches() -> None:
    when = parse_when("every day at 2:30 tz=Europe/Berlin", now=NOW)
    assert (when.cron, when.timezone) == ("30 2 * * *", "Europe/Berlin")
    spring = fires(when, 3, now=at(2026, 3, 27, 12, 0))
    assert spring == [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1, 0), at(2026, 3, 30, 0, 30)]
    autumn = fires(when, 3, now=at(2026, 10, 23, 12, 0))
    assert autumn == [at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)]


# --- recurring ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cron", "first_three"),
    [
        ("every weekday at 9:00", "0 9 * * 1-5", [at(2026, 1, 6, 9), at(2026, 1, 7, 9), at(2026, 1, 8, 9)]),
        ("every weekdays at 9am", "0 9 * * 1-5", [at(2026, 1, 6, 9), at(2026, 1, 7, 9), at(2026, 1, 8, 9)]),
        ("every day at 9:00", "0 9 * * *", [at(2026, 1, 6, 9), at(2026, 1, 7, 9), at(2026, 1, 8, 9)]),
        ("daily at 12:30", "30 12 * * *", [at(2026, 1, 5, 12, 30), at(2026, 1, 6, 12, 30), at(2026, 1, 7, 12, 30)]),
        ("every weekend at 10:00", "0 10 * * 0,6", [at(2026, 1, 10, 10), at(2026, 1, 11, 10), at(2026, 1, 17, 10)]),
        ("every monday at 9:00", "0 9 * * 1", [at(2026, 1, 12, 9), at(2026, 1, 19, 9), at(2026, 1, 26, 9)]),
        ("every mon,wed,fri at 18:30", "30 18 * * 1,3,5", [at(2026, 1, 5, 18, 30), at(2026, 1, 7, 18, 30), at(2026, 1, 9, 18, 30)]),
        ("every Tuesday and Thursday at 7pm", "0 19 * * 2,4", [at(2026, 1, 6, 19), at(2026, 1, 8, 19), at(2026, 1, 13, 19)]),
        ("every mondays, fridays at 8:15", "15 8 * * 1,5", [at(2026, 1, 9, 8, 15), at(2026, 1, 12, 8, 15), at(2026, 1, 16, 8, 15)]),
        ("every mon tue wed thu fri at 9:00", "0 9 * * 1-5", [at(2026, 1, 6, 9), at(2026, 1, 7, 9), at(2026, 1, 8, 9)]),
        ("every hour", "0 * * * *", [at(2026, 1, 5, 13), at(2026, 1, 5, 14), at(2026, 1, 5, 15)]),
        ("every minute", "* * * * *", [at(2026, 1, 5, 12, 1), at(2026, 1, 5, 12, 2), at(2026, 1, 5, 12, 3)]),
        ('cron "0 9 * * 1-5"', "0 9 * * 1-5", [at(2026, 1, 6, 9), at(2026, 1, 7, 9), at(2026, 1, 8, 9)]),
        ("cron '*/20 * * * *'", "*/20 * * * *", [at(2026, 1, 5, 12, 20), at(2026, 1, 5, 12, 40), at(2026, 1, 5, 13, 0)]),
        ("cron \u201c0 0 1 * *\u201d", "0 0 1 * *", [at(2026, 2, 1), at(2026, 3, 1), at(2026, 4, 1)]),
        ("cron 30 6 * * *", "30 6 * * *", [at(2026, 1, 6, 6, 30), at(2026, 1, 7, 6, 30), at(2026, 1, 8, 6, 30)]),
        ("cron @daily", "@daily", [at(2026, 1, 6), at(2026, 1, 7), at(2026, 1, 8)]),
    ],
)
def test_cron_forms(text: str, cron: str, first_three: list[datetime]) -> None:
    when = parse_when(text, now=NOW, tz="UTC")
    assert (when.cron, when.schedule_at, when.interval_seconds) == (cron, None, None)
    assert fires(when) == first_three


def test_weekday_schedule_in_new_york_across_the_us_spring_switch() -> None:
    when = parse_when("every weekday at 9:00 tz=America/New_York", now=NOW)
    assert fires(when, 3, now=at(2026, 3, 6, 12)) == [at(2026, 3, 6, 14), at(2026, 3, 9, 13), at(2026, 3, 10, 13)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("every 15m", 900), ("every 2h", 7200), ("every 1h30m", 5400), ("every 90 minutes", 5400), ("every 1 day", 86400), ("every 1m", 60), ("every 366d", 366 * 86400)],
)
def test_intervals(text: str, seconds: int) -> None:
    when = parse_when(text, now=NOW, tz="Europe/Paris")
    assert (when.interval_seconds, when.timezone) == (seconds, "Europe/Paris")
    assert fires(when) == [NOW + timedelta(seconds=seconds * k) for k in (1, 2, 3)]


# --- split: the rest of the command is kept verbatim ---------------------------------


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("in 10m stretch  your legs", "stretch  your legs"),
        ("in 10m\nline one\n  line two", "line one\n  line two"),
        ('cron "0 9 * * 1-5" stand-up', "stand-up"),
        ("cron 0 9 * * 1-5 stand-up", "stand-up"),
        ("every weekday at 9:00 tz=Europe/Paris stand-up at 9:05", "stand-up at 9:05"),
        ("tomorrow 9:00", ""),
        ("in 10 m 5 apples", "5 apples"),
    ],
)
def test_split_keeps_the_rest(text: str, rest: str) -> None:
    assert split_when(text, now=NOW)[1] == rest


# --- refusals name the part that was not understood --------------------------------


@pytest.mark.parametrize(
    ("text", "part", "fragment"),
    [
        ("", "", "a time is missing"),
        ("tomorow 9:00", '"tomorow"', "a time starts with one of in, at"),
        ("soon", '"soon"', "a time starts with one of"),
        ("in", '"in"', "expected a duration"),
        ("in 10", '"in 10"', "expected a duration"),
        ("in ten minutes", '"in ten"', "expected a duration"),
        ("in 0m", '"in 0m"', "must be positive"),
        ("in 99999999d", '"in 99999999d"', "under 10 years"),
        ("at", '"at"', "a time is missing"),
        ("at 25:00", '"at 25:00"', "not a time of day"),
        ("at 9:60", '"at 9:60"', "not a time of day"),
        ("at 13pm", '"at 13pm"', "1 to 12"),
        ("at 9", '"at 9"', "with minutes or am/pm"),
        ("at 2026-02-30 10:00", '"at 2026-02-30"', "not a date"),
        ("at 2026-13-01 10:00", '"at 2026-13-01"', "not a date"),
        ("at 2025-12-01 09:00", '"at 2025-12-01 09:00"', "in the past (it is now 2026-01-05 12:00 UTC)"),
        ("at 2026-12-01", '"at 2026-12-01"', "expected a time of day"),
        ("on 12/01/2026 at 9:00", '"on 12/01/2026"', "YYYY-MM-DD"),
        ("today 9:00", '"today 9:00"', "in the past"),
        ("tomorrow", '"tomorrow"', "expected a time of day"),
        ("every", '"every"', "say how often"),
        ("every 30s", '"every 30s"', "shortest interval is 1 minute"),
        ("every 400d", '"every 400d"', "longest interval is 366 days"),
        ("every 1d at 9:00", '"every 1d at 9:00"', "cannot start at a time of day"),
        ("every fortnight at 9:00", '"every fortnight"', "day names"),
        ("every day", '"every day"', "add the time of day"),
        ("every monday 9:00", '"every monday 9:00"', "add the time of day"),
        ("daily 9:00", '"daily 9:00"', "add the time of day"),
        ("cron", '"cron"', "the expression is missing"),
        ('cron "0 9 * *"', '"cron 0 9 * *"', "must have 5 fields"),
        ('cron "0 9 * * 1-5', '""0 9 * * 1-5"', "no closing quote"),
        ('cron "0 25 * * *"', '"cron 0 25 * * *"', "is not valid"),
        ('cron "0 0 30 2 *"', '"0 0 30 2 *"', "never fires"),
        ('cron ""', '"cron"', "empty"),
        ('cron "0 9 * * *"x', '""0 9 * * *"x"', "space after the closing quote"),
        ("tz=Mars/Olympus in 10m", '"tz=Mars/Olympus"', "unknown time zone"),
        ("in 10m tz=../../etc/passwd", '"tz=../../etc/passwd"', "unknown time zone"),
        ("tz= in 10m", '"tz="', "needs a zone name"),
        ("tz=UTC in 10m tz=Europe/Paris", '"Europe/Paris"', "one time zone"),
        ("at 9999-12-31 23:59 tz=America/New_York", '"at 9999-12-31 23:59"', "out of range"),
    ],
)
def test_refusals(text: str, part: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_when(text, now=NOW, tz="UTC")
    message = info.value.message
    assert message.startswith(f"not understood: {part}"), message
    assert fragment in message
    assert info.value.field == "when"


def test_parse_when_refuses_trailing_words() -> None:
    with pytest.raises(ValidationError, match='not understood: "please" - nothing may follow the time "in 10m"'):
        parse_when("in 10m please", now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]))
def test_any_text_parses_or_is_refused_cleanly(text: str, tz: str) -> None:
    """Only ValidationError ever escapes, and what parses builds a valid job."""
    try:
        when, _ = split_when(text, now=NOW, tz=tz)
    except ValidationError as exc:
        assert exc.message.startswith("not understood: ")
        return
    assert sum(x is not None for x in (when.schedule_at, when.cron, when.interval_seconds)) == 1
    build_job({"job_type": "log", **when.job_fields()}, known_types=["log"], now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3000), st.sampled_from(["m", "min", " minutes", "h", " hours", "d"]))
def test_in_duration_is_exact(n: int, unit: str) -> None:
    size = {"m": 60, "min": 60, " minutes": 60, "h": 3600, " hours": 3600, "d": 86400}[unit]
    assert parse_when(f"in {n}{unit}", now=NOW).schedule_at == NOW + timedelta(seconds=n * size)


# --- describe ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("0 9 * * 1-5", "every weekday (Monday to Friday) at 09:00"),
        ("30 2 * * *", "every day at 02:30"),
        ("0 9 * * 1,3,5", "every Monday, Wednesday and Friday at 09:00"),
        ("0 10 * * 0,6", "every Saturday and Sunday at 10:00"),
        ("0 10 * * 6,7", "every Saturday and Sunday at 10:00"),
        ("0 9 * * mon-wed", "every Monday to Wednesday at 09:00"),
        ("*/15 * * * *", "every 15 minutes"),
        ("* * * * *", "every minute"),
        ("0 * * * *", "every hour, on the hour"),
        ("15,45 * * * *", "every hour at :15 and :45"),
        ("0 9,17 * * *", "every day at 09:00 and 17:00"),
        ("*/10 9-17 * * 1-5", "every 10 minutes from 09:00 to 17:59, every weekday (Monday to Friday)"),
        ("0 */2 * * *", "every 2 hours, on the hour"),
        ("0 0 1 * *", "on the 1st of every month at 00:00"),
        ("0 0 1 1 *", "every year on January 1st at 00:00"),
        ("0 9 1 * 1", "on the 1st of every month and every Monday at 09:00"),
        ("@daily", "every day at 00:00"),
        ("@hourly", "every hour, on the hour"),
        ("0 0 L * *", 'on the cron schedule "0 0 L * *"'),
        ("not a cron", 'on the cron schedule "not a cron"'),
    ],
)
def test_describe_cron(expr: str, text: str) -> None:
    assert check_cron(expr) is None or text.startswith("on the cron schedule")
    assert describe_cron(expr) == text


def test_describe_interval_and_schedule() -> None:
    assert describe_interval(900) == "every 15 minutes"
    assert describe_interval(3600) == "every hour"
    assert describe_interval(5400) == "every 1 hour 30 minutes"
    assert describe_interval(172800) == "every 2 days"

    def job(**fields):
        return build_job({"job_type": "log", **fields}, known_types=["log"], now=NOW)

    assert describe_schedule(job(cron="0 9 * * 1-5", timezone="Europe/Paris")) == "every weekday (Monday to Friday) at 09:00 (Europe/Paris time)"
    assert describe_schedule(job(cron="0 9 * * 1-5")) == "every weekday (Monday to Friday) at 09:00 (UTC)"
    assert describe_schedule(job(interval_seconds=900)) == "every 15 minutes"
    assert describe_schedule(job(schedule_at="2026-12-01T08:00:00Z", timezone="Europe/Paris")) == "once, on Tue 2026-12-01 at 09:00 Europe/Paris time"
    assert describe_schedule(job(schedule_at="2026-12-01T08:00:00Z")) == "once, on Tue 2026-12-01 at 08:00 UTC"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_describe_cron_never_raises(expr: str) -> None:
    assert isinstance(describe_cron(expr), str)


# --- points in time: starting=, until=, backfill from .. to .. -------------------------


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("now", "Europe/Paris", NOW),
        ("3d ago", "UTC", at(2026, 1, 2, 12, 0)),
        ("2h30m ago", "UTC", at(2026, 1, 5, 9, 30)),
        ("90 min ago", "UTC", at(2026, 1, 5, 10, 30)),
        ("in 2w", "UTC", at(2026, 1, 19, 12, 0)),
        ("2026-06-30", "UTC", at(2026, 6, 30)),
        ("2026-06-30", "Europe/Berlin", at(2026, 6, 29, 22)),
        ("on 2026-06-30", "Europe/Berlin", at(2026, 6, 29, 22)),
        ("at 2026-06-30 18:00", "Europe/Berlin", at(2026, 6, 30, 16)),
        ("2026-06-30T18:00", "America/New_York", at(2026, 6, 30, 22)),
        ("2026-06-30 at 6pm", "UTC", at(2026, 6, 30, 18)),
        ("2026-06-30 noon", "UTC", at(2026, 6, 30, 12)),
        ("today", "Europe/Berlin", at(2026, 1, 4, 23)),
        ("yesterday 9:00", "UTC", at(2026, 1, 4, 9)),
        ("Tomorrow at 9AM", "Asia/Tokyo", at(2026, 1, 6, 0)),
        ("2026-06-30T18:00:00+02:00", "America/New_York", at(2026, 6, 30, 16)),  # an offset: the zone is not used
        ("2026-06-30T16:00Z", "Asia/Tokyo", at(2026, 6, 30, 16)),
        ("2025-01-05", "UTC", at(2025, 1, 5)),  # past or future: both fine
        ("2026-03-29 02:30", "Europe/Berlin", at(2026, 3, 29, 1, 0)),  # in the spring gap: its end
        ("2026-10-25 02:30", "Europe/Berlin", at(2026, 10, 25, 0, 30)),  # repeated: the first
    ],
)
def test_parse_instant(text: str, tz: str, expected: datetime) -> None:
    assert parse_instant(text, now=NOW, tz=tz) == expected


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("from 2026-01-01 to 2026-01-05", at(2025, 12, 31, 23), at(2026, 1, 4, 23)),
        ("from 3d ago to now", at(2026, 1, 2, 12), NOW),
        ("FROM yesterday 9:00 TO today at 9:00", at(2026, 1, 4, 8), at(2026, 1, 5, 8)),
        ("from 2026-01-05 09:00 to 2026-01-05T11:30", at(2026, 1, 5, 8), at(2026, 1, 5, 10, 30)),
        ("from 2026-01-05 to 2026-01-04", at(2026, 1, 4, 23), at(2026, 1, 3, 23)),  # the order is the caller's rule
    ],
)
def test_parse_range(text: str, start: datetime, end: datetime) -> None:
    assert parse_range(text, now=NOW, tz="Europe/Berlin") == (start, end)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'not understood: "" - a time is missing; for example "2026-06-30", "2026-06-30 18:00", "yesterday 9:00", "3d ago", "in 2w", "now"'),
        ("soon", 'not understood: "soon" - expected a time such as "2026-06-30", "2026-06-30 18:00", "yesterday 9:00", "3d ago", "in 2w", "now"'),
        ("3d", 'not understood: "3d" - add "ago" ("3d ago") or put "in" before it ("in 3d")'),
        ("2026-06-30 9", 'not understood: "2026-06-30 9" - write the time with minutes or am/pm, e.g. "9:00" or "9am"'),
        ("2026-13-01", 'not understood: "2026-13-01" - not a date (month must be in 1..12)'),
        ("2026-06-30T25:00Z", 'not understood: "2026-06-30T25:00Z" - not a time (hour must be in 0..23)'),
        ("in 99999999w", 'not understood: "in 99999999w" - the duration must be under 10 years'),
        ("99999999w ago", 'not understood: "99999999w" - the duration must be under 10 years'),
        ("2026-06-30 18:00 sharp", 'not understood: "sharp" - nothing may follow the time "2026-06-30 18:00"'),
        ("9999-12-31 23:59", 'not understood: "9999-12-31 23:59" - that date is out of range'),
    ],
)
def test_parse_instant_refusals(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_instant(text, now=NOW, tz="America/New_York")
    assert (info.value.message, info.value.field) == (message, "when")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-01-01 to now", 'not understood: "2026-01-01" - expected "from <time> to <time>", e.g. "from 2026-01-01 to 2026-01-05" or "from 3d ago to now"'),
        ("from 2026-01-01", 'not understood: "from 2026-01-01" - expected "to <time>" after the start'),
        ("from 2026-01-01 until now", 'not understood: "until now" - expected "to <time>" after the start'),
        ("from to now", 'not understood: "from" - a time is missing'),
        ("from now to", 'not understood: "to" - a time is missing'),
        ("from now to now please", 'not understood: "please" - nothing may follow the end time'),
    ],
)
def test_parse_range_refusals(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_range(text, now=NOW, tz="UTC")
    assert info.value.message.startswith(message), info.value.message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "America/Adak", "Australia/Lord_Howe"]))
def test_any_instant_or_range_parses_or_is_refused_cleanly(text: str, tz: str) -> None:
    """Only ValidationError ever escapes; what parses is an aware UTC instant."""
    for parse, words in ((parse_instant, text), (parse_range, f"from {text} to now")):
        try:
            result = parse(words, now=NOW, tz=tz)
        except ValidationError as exc:
            assert exc.message.startswith("not understood: ") and exc.field == "when"
            continue
        for instant in result if isinstance(result, tuple) else (result,):
            assert instant.tzinfo is not None and instant.utcoffset() == timedelta(0)
