"""gocron's schedule-math tables (job_test.go: daily, weekly, monthly ``next``), ported.

``moment`` plays gocron's ``last``: the previous fire. Its DST rows are replaced by the
golden DST tables (test_dst_golden.py) except where only the elapsed time is checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gnomon._rules import Rule, Weekday, daily, monthly, weekly

CHICAGO = ZoneInfo("America/Chicago")


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("rule", "last", "expected"),
    [
        pytest.param(daily("00:00"), utc(2026, 1, 1), utc(2026, 1, 2), id="midnight: +24h"),
        pytest.param(
            daily(["12:30", "05:30"]), utc(2026, 1, 1, 5, 30), utc(2026, 1, 1, 12, 30),
            id="05:30 and 12:30, after 05:30: 12:30",
        ),
        pytest.param(
            daily(["05:30", "12:30"], interval=2), utc(2026, 1, 1, 12, 30),
            utc(2026, 1, 3, 5, 30), id="every 2 days after 12:30: 05:30 two days later",
        ),
        pytest.param(
            weekly(["mon", "thu"], "00:00"), utc(2026, 1, 5), utc(2026, 1, 8),
            id="Mon and Thu after Mon: Thu",
        ),
        pytest.param(
            weekly([Weekday.MONDAY, Weekday.THURSDAY], "00:00"), utc(2026, 1, 8), utc(2026, 1, 12),
            id="after Thu: next Mon",
        ),
        pytest.param(
            weekly(["mon", "thu"], "00:00", interval=2), utc(2026, 1, 8), utc(2026, 1, 19),
            id="every 2 weeks: the Monday of the week after next",
        ),
        pytest.param(
            monthly(5, "09:00"), utc(2026, 1, 5, 8), utc(2026, 1, 5, 9),
            id="same day before the at-time: that day",
        ),
        pytest.param(
            monthly([1, 10], "09:00"), utc(2026, 1, 1, 9), utc(2026, 1, 10, 9),
            id="days 1 and 10 after day 1: the 10th",
        ),
        pytest.param(
            monthly(1, "00:00", interval=2), utc(2024, 1, 1), utc(2024, 3, 1),
            id="interval 2: +60 days",
        ),
        pytest.param(
            monthly([-1, -3, -5], "00:00"), utc(2024, 1, 29), utc(2024, 1, 31),
            id="-1, -3, -5 from Jan 29: Jan 31",
        ),
        pytest.param(
            monthly(31, "00:00"), utc(2024, 1, 31), utc(2024, 3, 31),
            id="day 31 from Jan 31: Mar 31, February skipped",
        ),
        pytest.param(
            monthly([10, 7, 19, 2], "00:00"), utc(2024, 1, 2), utc(2024, 1, 7),
            id="unsorted days from the 2nd: the 7th",
        ),
        pytest.param(
            monthly(31, "00:00", interval=2), utc(2023, 12, 31), utc(2024, 8, 31),
            id="interval 2, day 31, from Dec 31: Aug 31",
        ),
        pytest.param(
            monthly(-1, "00:00"), utc(2024, 1, 31), utc(2024, 2, 29), id="-1 from Jan 31: Feb 29"
        ),
        pytest.param(
            monthly(-1, "00:00"), utc(2024, 2, 29), utc(2024, 3, 31), id="-1 from Feb 29: Mar 31"
        ),
        pytest.param(
            monthly(-1, "00:00", interval=3), utc(2023, 11, 30), utc(2024, 2, 29),
            id="-1 every 3 months from Nov 30: Feb 29",
        ),
    ],
)  # fmt: skip
def test_schedule_math_matches_gocron(rule: Rule, last: datetime, expected: datetime) -> None:
    assert rule.next_after(last) == expected


@pytest.mark.parametrize(
    ("rule", "last", "elapsed"),
    [
        pytest.param(
            daily("00:00"), datetime(2023, 3, 12, tzinfo=CHICAGO), timedelta(hours=23),
            id="Chicago spring-forward day: +23h",
        ),
        pytest.param(
            weekly("sat", "00:00"), datetime(2023, 3, 11, tzinfo=CHICAGO),
            timedelta(days=7, hours=-1), id="Saturday across DST: 7 days - 1 hour",
        ),
        pytest.param(
            monthly(5, "05:30"), datetime(2023, 11, 1, tzinfo=CHICAGO),
            timedelta(days=4, hours=6, minutes=30), id="Chicago November DST: 4d 6.5h",
        ),
    ],
)  # fmt: skip
def test_elapsed_time_across_dst_matches_gocron(
    rule: Rule, last: datetime, elapsed: timedelta
) -> None:
    fire = rule.next_after(last)
    assert fire is not None
    assert fire.astimezone(UTC) - last.astimezone(UTC) == elapsed


def test_daily_interval_counts_from_the_previous_fire() -> None:
    rule = daily("09:00", interval=3)
    fires = [utc(2026, 1, 1, 9)]
    for _ in range(3):
        fire = rule.next_after(fires[-1])
        assert fire is not None
        fires.append(fire)
    assert [fire.day for fire in fires] == [1, 4, 7, 10]


def test_weekly_interval_keeps_its_phase_across_days_of_one_week() -> None:
    rule = weekly(["tue", "fri"], "08:00", interval=2)
    fires = [utc(2026, 1, 6, 8)]  # a Tuesday
    for _ in range(3):
        fire = rule.next_after(fires[-1])
        assert fire is not None
        fires.append(fire)
    assert [fire.date().isoformat() for fire in fires] == [
        "2026-01-06",
        "2026-01-09",
        "2026-01-20",
        "2026-01-23",
    ]


def test_weekly_weeks_start_on_sunday() -> None:
    # From a Saturday, a Sunday fire is in the next week, so with interval 2 it is skipped
    # until the week after that.
    rule = weekly(["sun", "sat"], "08:00", interval=2)
    assert rule.next_after(utc(2026, 1, 3, 8)) == utc(2026, 1, 11, 8)


def test_monthly_negative_days_count_back_from_the_months_end() -> None:
    rule = monthly(-5, "00:00")
    assert rule.next_after(utc(2026, 1, 1)) == utc(2026, 1, 27)
    assert rule.next_after(utc(2026, 1, 27)) == utc(2026, 2, 24)


def test_monthly_positive_and_negative_days_naming_one_date_fire_once() -> None:
    rule = monthly([31, -1], "00:00")
    assert rule.next_after(utc(2026, 1, 1)) == utc(2026, 1, 31)
    assert rule.next_after(utc(2026, 1, 31)) == utc(2026, 2, 28)


def test_calendar_rule_with_zone_fires_in_that_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    fire = daily("09:00", timezone="Asia/Tokyo").next_after(utc(2026, 1, 1, 1))
    assert fire == datetime(2026, 1, 2, 9, tzinfo=tokyo)
    assert fire is not None
    assert fire.tzinfo is tokyo


def test_at_times_with_seconds_fire_on_the_second() -> None:
    assert daily("09:30:15").next_after(utc(2026, 1, 1, 9, 30)) == utc(2026, 1, 1, 9, 30, 15)
