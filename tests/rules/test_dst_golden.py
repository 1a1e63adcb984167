"""Golden DST tables: expected instants written out by hand from the zones' 2026 rules.

America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
Europe/Riga: 2026-03-29 03:00 EET -> 04:00 EEST; 2026-10-25 04:00 EEST -> 03:00 EET.
Australia/Lord_Howe (30-minute DST): 2026-04-05 02:00 (+11) -> 01:30 (+10:30);
2026-10-04 02:00 (+10:30) -> 02:30 (+11).

Expected values are ISO strings with offsets, so a fire in the wrong occurrence of a
repeated hour fails even though aware datetimes of one zone compare by wall time.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gnomon._rules import Rule, cron, daily, monthly, weekly

NEW_YORK = ZoneInfo("America/New_York")
RIGA = ZoneInfo("Europe/Riga")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def fires(rule: Rule, start: datetime, count: int) -> list[str]:
    found: list[str] = []
    moment: datetime | None = start
    for _ in range(count):
        assert moment is not None
        moment = rule.next_after(moment)
        assert moment is not None
        found.append(moment.isoformat())
    return found


CRON_CASES = [
    # --- America/New_York, spring forward
    ("30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12),
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    ("0,30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12),
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]),
    ("*/30 * * * *", NEW_YORK, datetime(2026, 3, 8, 1, 0),
     ["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
    ("30 */1 * * *", NEW_YORK, datetime(2026, 3, 8, 1, 0),
     ["2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"]),
    # --- America/New_York, fall back
    ("0 * * * *", NEW_YORK, datetime(2026, 11, 1, 0, 30),
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("30 1 * * *", NEW_YORK, datetime(2026, 10, 31, 12),
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    ("0 1-3 * * *", NEW_YORK, datetime(2026, 10, 31, 23),
     ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]),
    # from the second 01:10, the 01:45 of the first occurrence is already past
    ("45 1 * * *", NEW_YORK, datetime(2026, 11, 1, 1, 10, fold=1),
     ["2026-11-02T01:45:00-05:00"]),
    ("*/20 1 * * *", NEW_YORK, datetime(2026, 11, 1, 1, 30),
     ["2026-11-01T01:40:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:20:00-05:00",
      "2026-11-01T01:40:00-05:00", "2026-11-02T01:00:00-05:00"]),
    # --- Europe/Riga
    ("30 3 * * *", RIGA, datetime(2026, 3, 28, 12),
     ["2026-03-29T04:00:00+03:00", "2026-03-30T03:30:00+03:00"]),
    ("0 * * * *", RIGA, datetime(2026, 3, 29, 2, 30),
     ["2026-03-29T04:00:00+03:00", "2026-03-29T05:00:00+03:00"]),
    ("30 3 * * *", RIGA, datetime(2026, 10, 24, 12),
     ["2026-10-25T03:30:00+03:00", "2026-10-26T03:30:00+02:00"]),
    ("*/30 3 * * *", RIGA, datetime(2026, 10, 25, 2, 50),
     ["2026-10-25T03:00:00+03:00", "2026-10-25T03:30:00+03:00", "2026-10-25T03:00:00+02:00",
      "2026-10-25T03:30:00+02:00", "2026-10-26T03:00:00+02:00"]),
    # --- Australia/Lord_Howe
    ("15 2 * * *", LORD_HOWE, datetime(2026, 10, 3, 12),
     ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
    ("*/15 * * * *", LORD_HOWE, datetime(2026, 10, 4, 1, 50),
     ["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"]),
    # cronsim skips this 02:45, which really occurs (see docs/time-rules.md)
    ("45 * * * *", LORD_HOWE, datetime(2026, 10, 4, 1, 50),
     ["2026-10-04T02:45:00+11:00", "2026-10-04T03:45:00+11:00"]),
    ("45 1 * * *", LORD_HOWE, datetime(2026, 4, 4, 12),
     ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]),
    ("*/20 1 * * *", LORD_HOWE, datetime(2026, 4, 5, 1, 10),
     ["2026-04-05T01:20:00+11:00", "2026-04-05T01:40:00+11:00", "2026-04-05T01:40:00+10:30",
      "2026-04-06T01:00:00+10:30"]),
    # six fields are never fixed-time: the gap is skipped, the repeat fires twice
    ("0 30 1 * * *", NEW_YORK, datetime(2026, 10, 31, 12),
     ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-02T01:30:00-05:00"]),
    ("0 30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12),
     ["2026-03-09T02:30:00-04:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "zone", "start", "expected"), CRON_CASES)
def test_cron_rule_follows_the_dst_policy(
    expr: str, zone: ZoneInfo, start: datetime, expected: list[str]
) -> None:
    rule = cron(expr, seconds=len(expr.split()) == 6)
    assert fires(rule, start.replace(tzinfo=zone), len(expected)) == expected


CALENDAR_CASES = [
    (daily("02:30"), NEW_YORK, datetime(2026, 3, 7, 12),
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    (daily("01:30"), NEW_YORK, datetime(2026, 10, 31, 12),
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    (daily("02:30", interval=2), NEW_YORK, datetime(2026, 3, 6, 2, 30),
     ["2026-03-08T03:00:00-04:00", "2026-03-10T02:30:00-04:00"]),
    (weekly("sun", "02:30"), NEW_YORK, datetime(2026, 3, 1, 3),
     ["2026-03-08T03:00:00-04:00", "2026-03-15T02:30:00-04:00"]),
    (weekly("sunday", "01:30"), NEW_YORK, datetime(2026, 10, 25, 3),
     ["2026-11-01T01:30:00-04:00", "2026-11-08T01:30:00-05:00"]),
    (monthly(8, "02:30"), NEW_YORK, datetime(2026, 2, 9),
     ["2026-03-08T03:00:00-04:00", "2026-04-08T02:30:00-04:00"]),
    (monthly(1, "01:30"), NEW_YORK, datetime(2026, 10, 2),
     ["2026-11-01T01:30:00-04:00", "2026-12-01T01:30:00-05:00"]),
    (daily("03:30"), RIGA, datetime(2026, 3, 28, 12),
     ["2026-03-29T04:00:00+03:00", "2026-03-30T03:30:00+03:00"]),
    (daily(["03:00", "03:30"]), RIGA, datetime(2026, 10, 24, 12),
     ["2026-10-25T03:00:00+03:00", "2026-10-25T03:30:00+03:00", "2026-10-26T03:00:00+02:00"]),
    (monthly(-1, "03:15"), RIGA, datetime(2026, 2, 28, 12),
     ["2026-03-31T03:15:00+03:00"]),
    (daily("02:15"), LORD_HOWE, datetime(2026, 10, 3, 12),
     ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
    (weekly("sun", "01:45"), LORD_HOWE, datetime(2026, 3, 30),
     ["2026-04-05T01:45:00+11:00", "2026-04-12T01:45:00+10:30"]),
    (monthly(4, "02:00"), LORD_HOWE, datetime(2026, 9, 5),
     ["2026-10-04T02:30:00+11:00", "2026-11-04T02:00:00+11:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "zone", "start", "expected"), CALENDAR_CASES)
def test_calendar_rule_follows_the_dst_policy(
    rule: Rule, zone: ZoneInfo, start: datetime, expected: list[str]
) -> None:
    assert fires(rule, start.replace(tzinfo=zone), len(expected)) == expected


def test_fixed_time_rule_never_returns_an_instant_before_the_moment() -> None:
    # cronsim answers 01:45 EDT here, 35 minutes *before* the moment.
    moment = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NEW_YORK)
    fire = daily("01:45").next_after(moment)
    assert fire is not None
    assert fire.timestamp() > moment.timestamp()
    assert fire.isoformat() == "2026-11-02T01:45:00-05:00"


def test_imaginary_moment_is_read_as_its_instant() -> None:
    # 02:30 does not exist on 2026-03-08; Python reads it with the offset before the gap,
    # as 03:30 EDT, so the next 02:30 rule fire is the following day.
    moment = datetime(2026, 3, 8, 2, 30, tzinfo=NEW_YORK)
    assert cron("30 2 * * *").next_after(moment) == datetime(2026, 3, 9, 2, 30, tzinfo=NEW_YORK)
