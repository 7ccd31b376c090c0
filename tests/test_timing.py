"""Fire times, DST and backoff: pure functions, no clock."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from scheduler.timing import backoff_delay, check_cron, cron_fire_times, interval_fire_times

UTC = timezone.utc


def fires(expr, tz, after, n):
    it = cron_fire_times(expr, tz, after)
    return [next(it) for _ in range(n)]


def local(times, tz):
    return [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z") for t in times]


def test_daily_0230_in_berlin_on_the_spring_forward_day_fires_once_after_the_gap():
    times = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    # 2026-03-29 02:30 does not exist in Berlin (02:00 -> 03:00): it fires at 03:00 CEST, once.
    assert local(times, "Europe/Berlin") == ["03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"]
    assert [t.isoformat() for t in times] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]


def test_daily_0230_in_berlin_on_the_fall_back_day_fires_once():
    times = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    # 02:30 happens twice on 2026-10-25 (CEST then CET); a fixed-hour job fires at the first only.
    assert local(times, "Europe/Berlin") == ["10-25 02:30+0200", "10-26 02:30+0100", "10-27 02:30+0100"]


def test_wildcard_hour_keeps_elapsed_time_through_the_repeated_hour():
    times = fires("*/30 * * * *", "America/New_York", datetime(2026, 11, 1, 4, 50, tzinfo=UTC), 6)
    assert [t.strftime("%H:%M") for t in times] == ["05:00", "05:30", "06:00", "06:30", "07:00", "07:30"]  # every 30 min in UTC


def test_utc_cron_and_interval_grid():
    after = datetime(2026, 1, 5, 12, 7, tzinfo=UTC)
    assert [t.strftime("%H:%M") for t in fires("*/15 * * * *", "UTC", after, 3)] == ["12:15", "12:30", "12:45"]
    anchor = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    it = interval_fire_times(anchor, 600, after)
    assert [next(it).strftime("%H:%M") for _ in range(2)] == ["12:10", "12:20"]


@pytest.mark.parametrize(
    "expr, problem",
    [
        ("* * * *", "must have 5 fields"),
        ("* * * * * *", "must have 5 fields"),
        ("61 * * * *", "is not valid"),
        ("x y z a b", "is not valid"),
    ],
)
def test_bad_cron_expressions_are_explained(expr, problem):
    assert problem in check_cron(expr)


def test_good_cron_expressions_pass():
    for expr in ("*/5 * * * *", "0 9 * * 1-5", "@daily", "@hourly", "0 0 1 1 *"):
        assert check_cron(expr) is None


def test_backoff_is_full_jitter_doubling_and_capped():
    rng = random.Random(1)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (8, 600), (30, 600)]:
        samples = [backoff_delay(attempt, 10, 600, rng) for _ in range(300)]
        assert 1.0 <= min(samples) and max(samples) <= ceiling
        assert max(samples) > ceiling * 0.8  # the whole range is used
