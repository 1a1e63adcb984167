from __future__ import annotations

from datetime import timedelta

import pytest

from gnomon import InvalidJob, InvalidRule, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2h45m10s", timedelta(hours=2, minutes=45, seconds=10)),
        ("2d", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 1H ", timedelta(hours=1)),
    ],
)
def test_go_style_strings_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text, field="interval") == expected


def test_numbers_are_seconds_and_timedeltas_pass_through() -> None:
    assert parse_duration(2, field="x") == timedelta(seconds=2)
    assert parse_duration(0.25, field="x") == timedelta(milliseconds=250)
    assert parse_duration(timedelta(minutes=3), field="x") == timedelta(minutes=3)


@pytest.mark.parametrize("bad", ["", "5", "5 min", "1h-5m", "h", "1w", "--1s"])
def test_malformed_strings_name_the_field_and_value(bad: str) -> None:
    with pytest.raises(InvalidRule, match=r"interval must be .*500ms") as info:
        parse_duration(bad, field="interval")
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, "0s", timedelta(0), "-5m"])
def test_zero_and_negative_are_rejected_where_positive_is_required(bad: object) -> None:
    with pytest.raises(InvalidJob, match="timeout must be a positive duration"):
        parse_duration(bad, field="timeout", error=InvalidJob)


@pytest.mark.parametrize("bad", [True, None, [1], float("nan"), float("inf")])
def test_other_types_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidRule, match="jitter"):
        parse_duration(bad, field="jitter")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=1, seconds=5), "1d5s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_round_trips(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text, field="x", positive=False) == value
