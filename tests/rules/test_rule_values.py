"""Rules as values: validation messages, repr, equality, hashing, immutability, describe()."""

from __future__ import annotations

import copy
import dataclasses
import enum
import pickle
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gnomon._errors import InvalidRule
from gnomon._rules import (
    CronRule,
    Rule,
    Weekday,
    cron,
    daily,
    every,
    every_random,
    monthly,
    once,
    weekly,
)

ALL_RULES: list[Rule] = [
    cron("*/5 * * * *"),
    every(90),
    every_random(60, 120),
    daily("09:30"),
    weekly("mon", "09:30"),
    monthly(1, "09:30"),
    once(),
]


@pytest.mark.parametrize(
    ("expr", "kwargs", "fragments"),
    [
        ("61 * * * *", {}, ["minute", "'61'", "0-59"]),
        ("* 24 * * *", {}, ["hour", "'24'", "0-23"]),
        ("* * 0 * *", {}, ["day-of-month", "'0'", "1-31"]),
        ("* * * 13 *", {}, ["month", "'13'", "1-12"]),
        ("* * * * 8", {}, ["day-of-week", "'8'", "0-7"]),
        ("* * * foo *", {}, ["month", "'FOO'", "jan"]),
        ("*/0 * * * *", {}, ["minute", "step", "'0'", "1 or more"]),
        ("5-1 * * * *", {}, ["minute", "'5-1'", "backwards"]),
        ("0 0 * * 1#6", {}, ["'#6'", "#1 to #5"]),
        ("0 0 * * MONL", {}, ["day-of-week", "'MONL'", "nL"]),
        ("0 0 L/2 * *", {}, ["day-of-month", "'L'", "LW"]),
        ("? * * * *", {}, ["minute", "'?'"]),
        ("1,,2 * * * *", {}, ["minute", "empty"]),
        ("* * * *", {}, ["4 fields", "5 fields"]),
        ("0 * * * * *", {}, ["6 fields", "seconds=True"]),
        ("0 0 31 2 *", {}, ["'0 0 31 2 *'", "never fire"]),
        ("0 0 30 2 *", {}, ["never fire"]),
        ("0 0 31 4,6,9,11 *", {}, ["never fire"]),
        ("0 0 LW * */7", {}, ["never fire"]),  # AND: the last weekday is never a Sunday
        ("@reboot", {}, ["'@reboot'", "@daily", "@every"]),
        ("@every soon", {}, ["@every", "'soon'"]),
        ("", {}, ["empty"]),
        ("CRON_TZ=Mars/Base 0 9 * * *", {}, ["'Mars/Base'", "time zone"]),
        ("CRON_TZ=Asia/Tokyo 0 9 * * *", {"timezone": "Europe/Riga"}, ["Asia/Tokyo", "Riga"]),
        ("0 9 * * *", {"timezone": "Nowhere/City"}, ["timezone", "'Nowhere/City'"]),
        ("0 9 * * *", {"timezone": 3}, ["timezone", "3", "ZoneInfo"]),
    ],
)
def test_invalid_cron_names_the_field_value_and_what_is_valid(
    expr: str, kwargs: dict[str, object], fragments: list[str]
) -> None:
    with pytest.raises(InvalidRule) as caught:
        cron(expr, **kwargs)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: daily("24:00"), ["daily", "'24:00'", "hours 0-23"]),
        (lambda: daily("09:60"), ["daily", "'09:60'"]),
        (lambda: daily("09:30:99"), ["daily", "'09:30:99'"]),
        (lambda: daily("9.30"), ["daily", "'9.30'", "HH:MM"]),
        (lambda: daily([]), ["daily", "empty"]),
        (lambda: daily([None]), ["daily", "None"]),
        (lambda: daily(time(9, 30, tzinfo=UTC)), ["daily", "tzinfo"]),
        (lambda: daily("09:30", interval=0), ["daily interval", "0", "1 or more"]),
        (lambda: daily("09:30", interval=True), ["daily interval", "True"]),
        (lambda: weekly([], "09:30"), ["weekly days", "empty"]),
        (lambda: weekly(1, "09:30"), ["weekly day 1", "ambiguous"]),
        (lambda: weekly("funday", "09:30"), ["'funday'", "'mon'"]),
        (lambda: weekly("mon", "25:00"), ["weekly at-time", "'25:00'"]),
        (lambda: weekly("mon", "09:30", interval=-1), ["weekly interval", "-1"]),
        (lambda: monthly(0, "09:30"), ["monthly day 0", "1 to 31"]),
        (lambda: monthly(32, "09:30"), ["monthly day 32"]),
        (lambda: monthly(-32, "09:30"), ["monthly day -32"]),
        (lambda: monthly([], "09:30"), ["monthly days", "empty"]),
        (lambda: monthly("1", "09:30"), ["monthly days", "'1'"]),
        (lambda: monthly(1, "09:30", interval=0), ["monthly interval", "0"]),
        (lambda: monthly(1, "09:30", timezone="Atlantis"), ["timezone", "'Atlantis'"]),
    ],
)
def test_invalid_calendar_rule_names_the_field_value_and_what_is_valid(
    make: object, fragments: list[str]
) -> None:
    with pytest.raises(InvalidRule) as caught:
        make()  # type: ignore[operator]
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("rule", ALL_RULES, ids=repr)
def test_naive_moment_is_rejected_by_name(rule: Rule) -> None:
    with pytest.raises(InvalidRule, match=r"timezone-aware.*naive 2026-01-01T00:00:00"):
        rule.next_after(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (cron("*/5 * * * *"), "cron('*/5 * * * *')"),
        (cron("0 9 * * *", timezone="Europe/Riga"), "cron('0 9 * * *', timezone='Europe/Riga')"),
        (cron("*/5 * * * * *", seconds=True), "cron('*/5 * * * * *', seconds=True)"),
        (every(timedelta(seconds=90)), "every(timedelta(seconds=90))"),
        (every_random(60, 120), "every_random(timedelta(seconds=60), timedelta(seconds=120))"),
        (daily("9:30"), "daily('09:30')"),
        (
            daily(["17:00", "09:30:15"], interval=2, timezone="UTC"),
            "daily(['09:30:15', '17:00'], interval=2, timezone='UTC')",
        ),
        (weekly(["fri", Weekday.MONDAY], "09:30"), "weekly(['mon', 'fri'], '09:30')"),
        (monthly([-1, 15, 1], "09:30", interval=3), "monthly([1, 15, -1], '09:30', interval=3)"),
        (once(), "once()"),
        (
            once(datetime(2026, 1, 1, 9, tzinfo=UTC)),
            "once(datetime.fromisoformat('2026-01-01T09:00:00+00:00'))",
        ),
    ],
)
def test_repr_reads_like_the_call_that_makes_the_rule(rule: Rule, text: str) -> None:
    assert repr(rule) == text


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (cron("0 9 * * *"), cron(" 0  9 * * * ")),
        (cron("CRON_TZ=Asia/Tokyo 0 9 * * *"), cron("0 9 * * *", timezone="Asia/Tokyo")),
        (every(90), every("1m30s")),
        (every_random(60, 120), every_random("1m", "2m")),
        (daily(["09:30", "17:00"]), daily(["17:00", "09:30", "9:30"])),
        (weekly(["mon", "Monday", Weekday.FRIDAY], "09:30"), weekly(["fri", "mon"], "09:30")),
        (monthly([1, 1, -1], "09:30"), monthly([-1, 1], time(9, 30))),
        (once(datetime(2026, 1, 1, tzinfo=UTC)), once([datetime(2026, 1, 1, tzinfo=UTC)])),
    ],
)
def test_equal_rules_are_equal_and_hash_alike(first: Rule, second: Rule) -> None:
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second}) == 1


def test_different_rules_are_unequal() -> None:
    assert cron("0 9 * * *") != cron("0 9 * * *", timezone="UTC")
    assert daily("09:30") != daily("09:30", interval=2)
    assert every(1) != every(2)


@pytest.mark.parametrize("rule", ALL_RULES, ids=repr)
def test_rules_are_frozen_and_slotted(rule: Rule) -> None:
    first_field = dataclasses.fields(rule)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(rule, first_field, None)
    assert not hasattr(rule, "__dict__")


def test_weekday_is_a_plain_enum_starting_on_sunday() -> None:
    assert not issubclass(Weekday, int)
    assert issubclass(Weekday, enum.Enum)
    assert next(iter(Weekday)) is Weekday.SUNDAY
    assert [day.name for day in Weekday][-1] == "SATURDAY"


def test_cron_rule_constructed_directly_is_validated() -> None:
    with pytest.raises(InvalidRule, match="minute"):
        CronRule("61 * * * *")
    assert CronRule("0 9 * * *", timezone=ZoneInfo("UTC")) == cron("0 9 * * *", timezone="UTC")


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (cron("30 9 * * 1-5"), "at 09:30 on Monday through Friday"),
        (cron("0 9 * * mon,wed"), "at 09:00 on Monday and Wednesday"),
        (cron("0 9,17 * * *"), "at 09:00 and 17:00"),
        (cron("*/15 * * * *"), "every 15 minutes"),
        (cron("* * * * *"), "every minute"),
        (cron("0 * * * *"), "at minute 0, every hour"),
        (cron("*/10 * * * * *", seconds=True), "every 10 seconds"),
        (cron("0 */2 * * *"), "at minute 0, every 2 hours"),
        (cron("0 0 L * *"), "at 00:00 on the last day of the month"),
        (cron("0 0 15W * *"), "at 00:00 on the weekday nearest day 15"),
        (cron("0 0 LW * *"), "at 00:00 on the last weekday of the month"),
        (cron("0 9 * * 5L"), "at 09:00 on the last Friday of the month"),
        (cron("0 9 * * mon#2"), "at 09:00 on the second Monday of the month"),
        (
            cron("*/15 9-17 * * 1-5"),
            "every 15 minutes, at hours 9 through 17 on Monday through Friday",
        ),
        (cron("23 0-20/2 * * *"), "at minute 23, every 2 hours from 0 through 20"),
        (cron("0,30 * * * *"), "at minutes 0 and 30, every hour"),
        (cron("0 0 1,15 * *"), "at 00:00 on days 1 and 15 of the month"),
        (cron("0 0 */2 * mon"), "at 00:00 on every second day of the month if it is Monday"),
        (cron("0 0 */22 * *"), "at 00:00 on every 22nd day of the month"),
        (cron("0 0 * jan-mar,jun *"), "at 00:00 in January through March and June"),
        (cron("0 9 1 * mon"), "at 09:00 on day 1 of the month and on Monday"),
        (cron("0 0 1 jan,jul *"), "at 00:00 on day 1 of the month in January and July"),
        (cron("0 9 * * *", timezone="Asia/Tokyo"), "at 09:00 (Asia/Tokyo)"),
        (cron("15 30 9 * * *", seconds=True), "at 09:30:15"),
        (every("1h30m"), "every 1h30m"),
        (every_random("1m", "5m"), "every 1m to 5m, drawn at random"),
        (daily("09:30"), "at 09:30 every day"),
        (daily(["09:30", "17:00"], interval=2), "at 09:30 and 17:00 every 2 days"),
        (weekly(["mon", "tue", "wed", "thu", "fri"], "09:30"), "at 09:30 on Monday through Friday"),
        (weekly("sat", "10:00", interval=2), "at 10:00 on Saturday, every 2 weeks"),
        (monthly([1, -1], "08:00"), "at 08:00 on day 1 and the last day of every month"),
        (
            monthly(-3, "08:00", interval=3),
            "at 08:00 on 2 days before the last day of every 3 months",
        ),
        (once(), "once, immediately"),
        (once(datetime(2026, 1, 1, tzinfo=UTC)), "once at 2026-01-01 00:00:00+00:00"),
    ],
)
def test_describe_renders_the_rule_in_plain_english(rule: Rule, text: str) -> None:
    assert rule.describe() == text


@pytest.mark.parametrize("rule", [*ALL_RULES, monthly(-1, "09:00", interval=5)], ids=repr)
@pytest.mark.parametrize(
    "moment",
    [datetime.max.replace(tzinfo=UTC), datetime.max.replace(tzinfo=ZoneInfo("America/New_York"))],
    ids=["UTC", "New York"],
)
def test_no_fire_past_the_last_representable_moment(rule: Rule, moment: datetime) -> None:
    assert rule.next_after(moment) is None


def test_cron_seconds_flag_must_be_a_boolean() -> None:
    with pytest.raises(InvalidRule, match="seconds must be True or False, got 'yes'"):
        cron("0 9 * * *", seconds="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", ALL_RULES, ids=repr)
def test_rules_survive_pickling_and_copying(rule: Rule) -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    for clone in (pickle.loads(pickle.dumps(rule)), copy.deepcopy(rule)):  # noqa: S301
        assert clone == rule
        assert clone.next_after(moment) == rule.next_after(moment)
