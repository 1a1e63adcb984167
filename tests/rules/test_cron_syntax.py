"""Each element of the cron syntax, pinned by the fire times it produces (in UTC unless
a zone is named). 2026-01-01 is a Thursday."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gnomon._rules import CronRule, Every, cron

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)


def fires(rule: CronRule | Every, start: datetime, count: int) -> list[str]:
    found: list[str] = []
    moment: datetime | None = start
    for _ in range(count):
        assert moment is not None
        moment = rule.next_after(moment)
        assert moment is not None
        found.append(moment.isoformat())
    return found


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("*/15 * * * *", ["2026-01-01T00:15:00+00:00", "2026-01-01T00:30:00+00:00"]),
        ("5/15 * * * *", ["2026-01-01T00:05:00+00:00", "2026-01-01T00:20:00+00:00"]),
        ("50/15 * * * *", ["2026-01-01T00:50:00+00:00", "2026-01-01T01:50:00+00:00"]),
        (
            "10-30/10 * * * *",
            ["2026-01-01T00:10:00+00:00", "2026-01-01T00:20:00+00:00", "2026-01-01T00:30:00+00:00"],
        ),
        ("0,45 1 * * *", ["2026-01-01T01:00:00+00:00", "2026-01-01T01:45:00+00:00"]),
        ("0 22-23 * * *", ["2026-01-01T22:00:00+00:00", "2026-01-01T23:00:00+00:00"]),
        (
            "0 9 * * mon-fri",
            ["2026-01-01T09:00:00+00:00", "2026-01-02T09:00:00+00:00", "2026-01-05T09:00:00+00:00"],
        ),
        ("0 9 * * 0", ["2026-01-04T09:00:00+00:00", "2026-01-11T09:00:00+00:00"]),
        ("0 9 * * 7", ["2026-01-04T09:00:00+00:00", "2026-01-11T09:00:00+00:00"]),
        ("0 9 * * SUN", ["2026-01-04T09:00:00+00:00", "2026-01-11T09:00:00+00:00"]),
        (
            "0 9 * * 5-7",
            ["2026-01-02T09:00:00+00:00", "2026-01-03T09:00:00+00:00", "2026-01-04T09:00:00+00:00"],
        ),
        ("0 0 1 jan *", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
        ("0 0 1 FEB,Mar *", ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"]),
        ("0 0 1 */5 *", ["2026-06-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00"]),
        ("0 0 L * *", ["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00"]),
        (
            "0 0 LW * *",
            ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00", "2026-03-31T00:00:00+00:00"],
        ),
        ("0 0 15W * *", ["2026-01-15T00:00:00+00:00", "2026-02-16T00:00:00+00:00"]),
        ("0 0 1W 8 *", ["2026-08-03T00:00:00+00:00", "2027-08-02T00:00:00+00:00"]),
        ("0 0 31W 5 *", ["2026-05-29T00:00:00+00:00", "2027-05-31T00:00:00+00:00"]),
        ("0 0 * * 5L", ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"]),
        ("0 0 * * 0L", ["2026-01-25T00:00:00+00:00", "2026-02-22T00:00:00+00:00"]),
        ("0 0 * * fri#2", ["2026-01-09T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]),
        ("0 0 * * 1#5", ["2026-03-30T00:00:00+00:00", "2026-06-29T00:00:00+00:00"]),
        # Vixie: neither day field starts with *, so either may match
        (
            "0 0 1,15 * mon",
            ["2026-01-05T00:00:00+00:00", "2026-01-12T00:00:00+00:00", "2026-01-15T00:00:00+00:00"],
        ),
        # ... and when one starts with *, both must: odd days that are Mondays
        (
            "0 0 */2 * mon",
            ["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00", "2026-02-09T00:00:00+00:00"],
        ),
        ("0 0 13 * */7", ["2026-09-13T00:00:00+00:00", "2026-12-13T00:00:00+00:00"]),
        ("0 0 ? * mon", ["2026-01-05T00:00:00+00:00", "2026-01-12T00:00:00+00:00"]),
        ("0 0 13 * ?", ["2026-01-13T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]),
        ("@hourly", ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"]),
        ("@daily", ["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00"]),
        ("@midnight", ["2026-01-02T00:00:00+00:00"]),
        ("@weekly", ["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"]),
        ("@monthly", ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"]),
        ("@yearly", ["2027-01-01T00:00:00+00:00"]),
        ("@ANNUALLY", ["2027-01-01T00:00:00+00:00"]),
        ("0 0 29 2 *", ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
        ("  0   12  *  *  *  ", ["2026-01-01T12:00:00+00:00"]),
    ],
)
def test_cron_element_fires_at_expected_times(expr: str, expected: list[str]) -> None:
    rule = cron(expr)
    assert fires(rule, NEW_YEAR, len(expected)) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (
            "*/20 * * * * *",
            ["2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00", "2026-01-01T00:01:00+00:00"],
        ),
        ("30 0 9 * * *", ["2026-01-01T09:00:30+00:00", "2026-01-02T09:00:30+00:00"]),
        ("0 9 * * *", ["2026-01-01T09:00:00+00:00"]),  # the seconds field is optional
    ],
)
def test_leading_seconds_field_is_read_with_seconds_true(expr: str, expected: list[str]) -> None:
    assert fires(cron(expr, seconds=True), NEW_YEAR, len(expected)) == expected


def test_next_after_is_strictly_after_a_matching_moment() -> None:
    rule = cron("0 9 * * *")
    assert rule.next_after(datetime(2026, 1, 1, 9, tzinfo=UTC)) == datetime(
        2026, 1, 2, 9, tzinfo=UTC
    )


def test_microseconds_before_a_fire_still_reach_it() -> None:
    moment = datetime(2026, 1, 1, 8, 59, 59, 999_999, tzinfo=UTC)
    assert cron("0 9 * * *").next_after(moment) == datetime(2026, 1, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize("prefix", ["CRON_TZ=Asia/Tokyo", "TZ=Asia/Tokyo", "cron_tz=Asia/Tokyo"])
def test_zone_prefix_sets_the_rules_zone(prefix: str) -> None:
    rule = cron(f"{prefix} 0 9 * * *")
    tokyo = ZoneInfo("Asia/Tokyo")
    assert rule.timezone == tokyo
    # 2026-01-01 00:00 UTC is 09:00 in Tokyo, so the next 09:00 is the following day.
    fire = rule.next_after(NEW_YEAR)
    assert fire == datetime(2026, 1, 2, 9, tzinfo=tokyo)
    assert fire is not None
    assert fire.tzinfo is tokyo


def test_zone_prefix_equal_to_timezone_argument_is_accepted() -> None:
    assert cron("CRON_TZ=Asia/Tokyo 0 9 * * *", timezone="Asia/Tokyo") == cron(
        "0 9 * * *", timezone=ZoneInfo("Asia/Tokyo")
    )


def test_rule_without_zone_computes_and_answers_in_the_moments_zone() -> None:
    riga = ZoneInfo("Europe/Riga")
    fire = cron("0 9 * * *").next_after(datetime(2026, 1, 1, 10, tzinfo=riga))
    assert fire == datetime(2026, 1, 2, 9, tzinfo=riga)
    assert fire is not None
    assert fire.tzinfo is riga


def test_rule_with_zone_answers_in_its_own_zone_for_a_moment_in_another() -> None:
    riga = ZoneInfo("Europe/Riga")
    fire = cron("0 9 * * *", timezone=riga).next_after(datetime(2026, 1, 1, 6, tzinfo=UTC))
    assert fire == datetime(2026, 1, 1, 9, tzinfo=riga)
    assert fire is not None
    assert fire.tzinfo is riga


def test_every_macro_gives_an_interval_rule() -> None:
    rule = cron("@every 1h30m")
    assert isinstance(rule, Every)
    assert rule.next_after(NEW_YEAR) == datetime(2026, 1, 1, 1, 30, tzinfo=UTC)
    assert cron("@every 90s") == cron("@EVERY 1m30s")


def test_rare_rule_is_found_decades_ahead() -> None:
    # the 29th of February on a Monday: 2044, then 2072
    rule = cron("0 0 29 2 *")
    assert rule.next_after(datetime(2029, 3, 1, tzinfo=UTC)) == datetime(2032, 2, 29, tzinfo=UTC)
    and_rule = cron("0 0 * 2 1#5")
    assert fires(and_rule, NEW_YEAR, 2) == [
        "2044-02-29T00:00:00+00:00",
        "2072-02-29T00:00:00+00:00",
    ]


def test_no_fire_after_year_9999_gives_none() -> None:
    assert cron("0 0 1 1 *").next_after(datetime(9999, 6, 1, tzinfo=UTC)) is None
    assert cron("0 0 29 2 *").next_after(datetime(9997, 3, 1, tzinfo=UTC)) is None
