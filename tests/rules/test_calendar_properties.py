"""With an interval of 1, daily, weekly and monthly rules are cron rules by another name;
cron rules are checked against cronsim (test_differential.py), so these follow too."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gnomon._rules import Rule, Weekday, cron, daily, monthly, weekly

ZONES = st.sampled_from(
    [UTC, ZoneInfo("America/New_York"), ZoneInfo("Europe/Riga"), ZoneInfo("Australia/Lord_Howe")]
)
STARTS = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC))
TIMES = st.builds(time, st.integers(0, 23), st.integers(0, 59))
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _same_fires(ours: Rule, reference: Rule, start: datetime, count: int = 4) -> None:
    left: datetime | None = start
    right: datetime | None = start
    for _ in range(count):
        assert left is not None
        assert right is not None
        left, right = ours.next_after(left), reference.next_after(right)
        assert left is not None
        assert right is not None
        assert left.isoformat() == right.isoformat(), (ours, start)


@settings(max_examples=150, deadline=None)
@given(at=TIMES, zone=ZONES, start=STARTS)
def test_daily_fires_as_the_equivalent_cron_rule(at: time, zone: ZoneInfo, start: datetime) -> None:
    reference = cron(f"{at.minute} {at.hour} * * *")
    _same_fires(daily(at), reference, start.astimezone(zone))


@settings(max_examples=150, deadline=None)
@given(
    days=st.sets(st.sampled_from(list(Weekday)), min_size=1),
    at=TIMES,
    zone=ZONES,
    start=STARTS,
)
def test_weekly_fires_as_the_equivalent_cron_rule(
    days: set[Weekday], at: time, zone: ZoneInfo, start: datetime
) -> None:
    names = ",".join(DAY_NAMES[day.value] for day in days)
    reference = cron(f"{at.minute} {at.hour} * * {names}")
    _same_fires(weekly(days, at), reference, start.astimezone(zone))


@settings(max_examples=150, deadline=None)
@given(
    days=st.sets(st.integers(1, 31), min_size=1, max_size=4),
    last=st.booleans(),
    at=TIMES,
    zone=ZONES,
    start=STARTS,
)
def test_monthly_fires_as_the_equivalent_cron_rule(
    days: set[int], last: bool, at: time, zone: ZoneInfo, start: datetime
) -> None:
    field = ",".join([*map(str, sorted(days)), *(["L"] if last else [])])
    reference = cron(f"{at.minute} {at.hour} {field} * *")
    _same_fires(monthly([*days, *([-1] if last else [])], at), reference, start.astimezone(zone))


@settings(max_examples=150, deadline=None)
@given(interval=st.integers(2, 9), at=TIMES, zone=ZONES, start=STARTS)
def test_daily_interval_fires_every_nth_day_from_the_previous_fire(
    interval: int, at: time, zone: ZoneInfo, start: datetime
) -> None:
    rule = daily(at, interval=interval)
    first = rule.next_after(start.astimezone(zone))
    assert first is not None
    second = rule.next_after(first)
    assert second is not None
    gap = second.astimezone(zone).date() - first.astimezone(zone).date()
    assert gap == timedelta(days=interval)
