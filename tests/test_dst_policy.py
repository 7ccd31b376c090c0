"""DST policy per job: ``dst_gap`` x ``dst_repeat``, fire times checked to the second.

Expected instants are derived by hand from each zone's rules (comments say how), not
from the code under test. 2026 rules unless said otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.timing import cron_fire_times, cron_schedule, zone

UTC = timezone.utc


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def day(expr: str, tz: str, start: str, end: str, **policy) -> list[str]:
    """Fire instants (UTC, to the second) in [start, end)."""
    out = []
    for at in cron_fire_times(expr, tz, z(start) - timedelta(seconds=1), **policy):
        if at >= z(end):
            return out
        out.append(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


# -- spring forward: a wall time that does not exist -----------------------------------------
GAPS = [
    # zone, cron, window (UTC), the instant the gap ends (shift fires there)
    # Berlin: 2026-03-29 02:00 CET -> 03:00 CEST at 01:00Z; 02:30 does not exist.
    ("Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z", "2026-03-29T01:00:00Z"),
    # New York: 2026-03-08 02:00 EST -> 03:00 EDT at 07:00Z.
    ("America/New_York", "30 2 * * *", "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z", "2026-03-08T07:00:00Z"),
    # Lord Howe (a 30-minute shift): 2026-10-04 02:00 (+10:30) -> 02:30 (+11:00) at 15:30Z on the 3rd; 02:15 does not exist.
    ("Australia/Lord_Howe", "15 2 * * *", "2026-10-03T06:00:00Z", "2026-10-04T06:00:00Z", "2026-10-03T15:30:00Z"),
    # St John's: 2026-03-08 02:00 NST (-3:30) -> 03:00 NDT at 05:30Z.
    ("America/St_Johns", "30 2 * * *", "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z", "2026-03-08T05:30:00Z"),
    # Chatham: 2026-09-27 02:45 (+12:45) -> 03:45 (+13:45) at 14:00Z on the 26th; 03:00 does not exist.
    ("Pacific/Chatham", "0 3 * * *", "2026-09-26T06:00:00Z", "2026-09-27T06:00:00Z", "2026-09-26T14:00:00Z"),
    # Sao Paulo kept DST until 2019: 2018-11-04 00:00 (-3) -> 01:00 (-2) at 03:00Z; 00:30 did not exist.
    ("America/Sao_Paulo", "30 0 * * *", "2018-11-03T12:00:00Z", "2018-11-04T12:00:00Z", "2018-11-04T03:00:00Z"),
]


@pytest.mark.parametrize("tz, expr, start, end, gap_end", GAPS)
def test_gap_shift_fires_once_at_the_gap_end(tz, expr, start, end, gap_end):
    assert day(expr, tz, start, end) == [gap_end]  # the default is shift
    assert day(expr, tz, start, end, dst_gap="shift") == [gap_end]


@pytest.mark.parametrize("tz, expr, start, end, gap_end", GAPS)
def test_gap_skip_does_not_fire_that_day(tz, expr, start, end, gap_end):
    assert day(expr, tz, start, end, dst_gap="skip") == []
    dropped = [f for f in islice(cron_schedule(expr, tz, z(start), dst_gap="skip"), 3) if f.note == "dropped"]
    assert dropped and dropped[0].at is None


def test_sao_paulo_has_no_gap_since_its_rules_changed():
    # DST abolished in 2019: 00:30 exists every day of 2026 at -3, i.e. 03:30Z.
    assert day("30 0 * * *", "America/Sao_Paulo", "2026-11-03T12:00:00Z", "2026-11-05T12:00:00Z", dst_gap="skip") == [
        "2026-11-04T03:30:00Z",
        "2026-11-05T03:30:00Z",
    ]


# -- fall back: a wall time that happens twice -------------------------------------------------
REPEATS = [
    # zone, cron, window, first copy, second copy
    # Berlin: 2026-10-25 03:00 CEST -> 02:00 CET at 01:00Z; 02:30 at 00:30Z (CEST) and 01:30Z (CET).
    ("Europe/Berlin", "30 2 * * *", "2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"),
    # New York: 2026-11-01 02:00 EDT -> 01:00 EST at 06:00Z; 01:30 at 05:30Z (EDT) and 06:30Z (EST).
    ("America/New_York", "30 1 * * *", "2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"),
    # Lord Howe: 2026-04-05 02:00 (+11) -> 01:30 (+10:30); 01:45 at 14:45Z and 15:15Z on the 4th.
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T06:00:00Z", "2026-04-05T06:00:00Z", "2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z"),
    # St John's: 2026-11-01 02:00 NDT (-2:30) -> 01:00 NST (-3:30); 01:30 at 04:00Z and 05:00Z.
    ("America/St_Johns", "30 1 * * *", "2026-10-31T12:00:00Z", "2026-11-01T12:00:00Z", "2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z"),
    # Chatham: 2026-04-05 03:45 (+13:45) -> 02:45 (+12:45); 03:00 at 13:15Z and 14:15Z on the 4th.
    ("Pacific/Chatham", "0 3 * * *", "2026-04-04T06:00:00Z", "2026-04-05T06:00:00Z", "2026-04-04T13:15:00Z", "2026-04-04T14:15:00Z"),
    # Sao Paulo, 2019-02-17: 00:00 (-2) -> 23:00 on the 16th (-3); 23:30 at 01:30Z and 02:30Z on the 17th.
    ("America/Sao_Paulo", "30 23 * * *", "2019-02-16T12:00:00Z", "2019-02-17T12:00:00Z", "2019-02-17T01:30:00Z", "2019-02-17T02:30:00Z"),
]


@pytest.mark.parametrize("tz, expr, start, end, first, second", REPEATS)
@pytest.mark.parametrize("repeat", ["first", "second", "both", None])
def test_repeat_policy(tz, expr, start, end, first, second, repeat):
    expected = {"first": [first], "second": [second], "both": [first, second], None: [first]}[repeat]  # None: a fixed hour fires once
    assert day(expr, tz, start, end, dst_repeat=repeat) == expected


def test_a_wildcard_hour_keeps_elapsed_time_by_default_and_obeys_a_policy():
    # New York's repeated hour 01:00-02:00 on 2026-11-01 (05:00Z-07:00Z): */30 fires every 30 minutes of elapsed time.
    window = ("2026-11-01T04:59:00Z", "2026-11-01T07:01:00Z")
    assert day("*/30 * * * *", "America/New_York", *window) == [f"2026-11-01T{h}:00Z" for h in ("05:00", "05:30", "06:00", "06:30", "07:00")]
    assert day("*/30 * * * *", "America/New_York", *window, dst_repeat="first") == [f"2026-11-01T{h}:00Z" for h in ("05:00", "05:30", "07:00")]
    assert day("*/30 * * * *", "America/New_York", *window, dst_repeat="second") == [f"2026-11-01T{h}:00Z" for h in ("06:00", "06:30", "07:00")]


def test_several_times_in_one_gap_fire_once_at_its_end():
    # Berlin's gap 02:00-03:00 on 2026-03-29: */15 matches 02:00, 02:15, 02:30, 02:45; shift fires once at 01:00Z (03:00 CEST).
    assert day("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T01:20:00Z") == [
        "2026-03-29T00:30:00Z", "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z",
    ]
    assert day("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", "2026-03-29T01:20:00Z", dst_gap="skip") == [
        "2026-03-29T00:30:00Z", "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z",
    ]  # 03:00 CEST itself exists and fires; the four gap times are dropped


# -- properties ----------------------------------------------------------------------------------
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham", "America/Sao_Paulo", "UTC", "Asia/Kolkata"]
CRONS = ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 3 * * *", "45 1 * * *", "15 0-4 * * *", "*/30 1-3 * * *", "0 */2 * * *", "@hourly", "@daily"]
# Around a switch: the weeks of the 2026 (and 2018/2019 Sao Paulo) transitions.
STARTS = [z(s) for s in ("2026-03-28T00:00:00Z", "2026-03-07T00:00:00Z", "2026-10-03T00:00:00Z", "2026-04-04T00:00:00Z", "2026-10-24T00:00:00Z",
                         "2026-10-31T00:00:00Z", "2026-09-26T00:00:00Z", "2018-11-03T00:00:00Z", "2019-02-16T00:00:00Z")]


@settings(max_examples=200, deadline=None)
@given(tz=st.sampled_from(ZONES), expr=st.sampled_from(CRONS), start=st.sampled_from(STARTS), offset=st.integers(0, 36 * 3600),
       gap=st.sampled_from(["shift", "skip"]), repeat=st.sampled_from(["first", "second", "both", None]))
def test_fire_times_strictly_increase_and_respect_the_policy(tz, expr, start, offset, gap, repeat):
    after = start + timedelta(seconds=offset)
    tzinfo = zone(tz)
    times = []
    for fire in cron_schedule(expr, tz, after, dst_gap=gap, dst_repeat=repeat):
        if fire.at is None:
            assert gap == "skip" and fire.note == "dropped"
        else:
            assert fire.at > after
            times.append(fire)
        if len(times) >= 60:
            break
    instants = [f.at for f in times]
    assert instants == sorted(set(instants))  # strictly increasing
    for fire in times:
        local = fire.at.astimezone(tzinfo).replace(tzinfo=None)
        if fire.note == "shifted":
            assert gap == "shift"
            before = (fire.at - timedelta(seconds=1)).astimezone(tzinfo).utcoffset()
            assert before != fire.at.astimezone(tzinfo).utcoffset()  # exactly at a transition: the gap's end
        else:
            assert local == fire.wall  # an ordinary or repeated time fires at its own wall time, never inside a gap
    effective = repeat or ("first" if expr.split()[1:2] and "*" not in expr.split()[1] and not expr.startswith("@hourly") else "both")
    walls = {}
    for fire in times:
        walls.setdefault(fire.wall, []).append(fire.note)
    for notes in walls.values():
        if "first" in notes or "second" in notes:
            expected = {"first": ["first"], "second": ["second"], "both": ["first", "second"]}[effective]
            if notes != expected and len(notes) < len(expected):
                continue  # the window cut the pair (the first copy fell before `after`)
            assert notes == expected, (notes, effective)
