"""every, every_random and once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from gnomon._errors import InvalidRule
from gnomon._rules import Every, Once, every, every_random, once

START = datetime(2026, 1, 1, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("value", "interval"),
    [
        (timedelta(milliseconds=1), timedelta(milliseconds=1)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1000h", timedelta(hours=1000)),
    ],
)
def test_every_adds_its_interval(value: timedelta | float | str, interval: timedelta) -> None:
    assert every(value).next_after(START) == START + interval


def test_every_measures_elapsed_time_across_a_dst_change() -> None:
    moment = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)  # EDT
    fire = every("1h").next_after(moment)
    assert fire is not None
    assert fire.isoformat() == "2026-11-01T01:30:00-05:00"
    assert fire.tzinfo is NEW_YORK


@pytest.mark.parametrize("bad", [0, -1, "0s", "-5m", timedelta(0), "soon", None, True])
def test_every_rejects_a_non_positive_or_malformed_interval(bad: object) -> None:
    with pytest.raises(InvalidRule, match="every interval"):
        every(bad)  # type: ignore[arg-type]


def test_anchored_after_returns_the_first_anchored_time_strictly_after() -> None:
    rule = every("10m")
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    assert rule.anchored_after(anchor, anchor) == anchor + timedelta(minutes=10)
    assert rule.anchored_after(anchor, anchor + timedelta(minutes=25)) == anchor + timedelta(
        minutes=30
    )
    assert rule.anchored_after(anchor, anchor - timedelta(hours=1)) == anchor


def test_anchored_after_is_constant_time_for_a_distant_moment() -> None:
    rule = every("1ms")
    anchor = datetime(1970, 1, 1, tzinfo=UTC)
    moment = datetime(2026, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)
    assert rule.anchored_after(anchor, moment) == moment + timedelta(microseconds=544)


def test_anchored_after_compares_instants_not_wall_times() -> None:
    rule = every("1h")
    anchor = datetime(2026, 11, 1, 1, 0, fold=1, tzinfo=NEW_YORK)  # 01:00 EST
    moment = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)  # 01:30 EDT, an hour earlier
    assert rule.anchored_after(anchor, moment).isoformat() == "2026-11-01T01:00:00-05:00"


def test_every_random_draws_within_its_bounds() -> None:
    rule = every_random("1m", "2m")
    moment = START
    for _ in range(200):
        fire = rule.next_after(moment)
        assert fire is not None
        assert timedelta(minutes=1) <= fire - moment < timedelta(minutes=2)
        moment = fire


def test_every_random_is_a_pure_function_of_rule_and_moment() -> None:
    first = [every_random(60, 120).next_after(START + timedelta(seconds=i)) for i in range(50)]
    again = [every_random("1m", "2m").next_after(START + timedelta(seconds=i)) for i in range(50)]
    assert first == again
    assert len({fire - START for fire in first if fire is not None}) > 40  # it does vary


def test_every_random_rejects_a_minimum_not_below_its_maximum() -> None:
    with pytest.raises(InvalidRule, match=r"minimum \(2m\) must be less than its maximum \(1m\)"):
        every_random("2m", "1m")
    with pytest.raises(InvalidRule, match="minimum"):
        every_random("1m", "1m")
    with pytest.raises(InvalidRule, match="every_random minimum"):
        every_random(-1, 5)


def test_once_without_instants_means_run_immediately() -> None:
    rule = once()
    assert rule.instants == ()
    assert rule.next_after(START) is None


def test_once_sorts_and_deduplicates_by_instant() -> None:
    late = datetime(2026, 1, 2, tzinfo=UTC)
    early_in_tokyo = datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))  # 00:00 UTC
    rule = once([late, early_in_tokyo, late.astimezone(timezone(timedelta(hours=2)))])
    assert rule.instants == (datetime(2026, 1, 1, tzinfo=UTC), late)
    assert rule.next_after(START - timedelta(seconds=1)) == START
    assert rule.next_after(START) == late
    assert rule.next_after(late) is None


def test_once_keeps_both_occurrences_of_a_repeated_wall_time() -> None:
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert len(once([first, second]).instants) == 2


def test_once_answers_in_the_moments_zone() -> None:
    fire = once(START).next_after(datetime(2025, 12, 31, tzinfo=NEW_YORK))
    assert fire == START
    assert fire is not None
    assert fire.tzinfo is NEW_YORK


@pytest.mark.parametrize(
    "bad", [datetime(2026, 1, 1), [START, datetime(2026, 1, 1)], "2026-01-01", 5, [3]]
)
def test_once_rejects_naive_and_non_datetime_values(bad: object) -> None:
    with pytest.raises(InvalidRule, match="once at"):
        once(bad)  # type: ignore[arg-type]


def test_interval_rules_have_no_zone() -> None:
    assert every(1).timezone is None
    assert every_random(1, 2).timezone is None
    assert once().timezone is None
    assert isinstance(once(), Once)
    assert isinstance(every(1), Every)
