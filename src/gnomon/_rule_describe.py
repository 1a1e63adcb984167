"""Plain-English renderings of time rules, for ``describe()``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import time
from typing import Final

from gnomon._cron import CronSpec

__all__ = [
    "describe_cron",
    "describe_times",
    "join_words",
    "number_words",
    "ordinal",
    "weekday_names",
]

WEEKDAY_NAMES: Final = (
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
)
MONTH_NAMES: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_SUFFIXES: Final = {1: "st", 2: "nd", 3: "rd"}
_ORDINALS: Final = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
_UNITS: Final = {0: "second", 1: "minute", 2: "hour", 3: "day", 4: "month"}
_STEPPED: Final = re.compile(r"(?:\*|(\d+)-(\d+))/(\d+)")


def join_words(words: Sequence[str], conjunction: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def ordinal(number: int) -> str:
    if number in _ORDINALS:
        return _ORDINALS[number]
    if number % 100 in (11, 12, 13):
        return f"{number}th"
    return f"{number}{_SUFFIXES.get(number % 10, 'th')}"


def describe_times(times: Iterable[time]) -> str:
    return "at " + join_words([_clock(at.hour, at.minute, at.second) for at in times])


def weekday_names(weekdays: Iterable[int]) -> str:
    """Weekday numbers (0 = Sunday) in words; runs of three or more become ranges."""
    ordered = sorted(set(weekdays))
    if len(ordered) == 7:
        return "every day"
    words = [
        WEEKDAY_NAMES[run[0]]
        if len(run) == 1
        else f"{WEEKDAY_NAMES[run[0]]} through {WEEKDAY_NAMES[run[-1]]}"
        if len(run) > 2
        else f"{WEEKDAY_NAMES[run[0]]} and {WEEKDAY_NAMES[run[1]]}"
        for run in _runs(ordered)
    ]
    return join_words(words)


def _runs(values: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for value in values:
        if runs and runs[-1][-1] == value - 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return runs


def _clock(hour: int, minute: int, second: int = 0) -> str:
    text = f"{hour:02d}:{minute:02d}"
    return f"{text}:{second:02d}" if second else text


def describe_cron(spec: CronSpec) -> str:
    """The cron rule in words, e.g. "at 09:30 on Monday through Friday"."""
    parts = [_time_part(spec), _day_part(spec), _month_part(spec)]
    return " ".join(part for part in parts if part)


def _time_part(spec: CronSpec) -> str:
    fixed = [spec.fields[index] for index in (0, 1, 2)]
    if all(field.isdigit() for field in fixed):
        return "at " + _clock(int(fixed[2]), int(fixed[1]), int(fixed[0]))
    simple = len(spec.hours) * len(spec.minutes) * len(spec.seconds) <= 4
    if simple and all(_is_plain_list(field) for field in fixed):
        times = [
            _clock(hour, minute, second)
            for hour in sorted(spec.hours)
            for minute in sorted(spec.minutes)
            for second in sorted(spec.seconds)
        ]
        return "at " + join_words(times)
    words = [_field_words(spec, index) for index in (0, 1, 2)]
    return ", ".join(word for word in words if word) or "every second"


def _is_plain_list(field: str) -> bool:
    return all(term.isdigit() for term in field.split(","))


def _field_words(spec: CronSpec, index: int) -> str:
    field = spec.fields[index]
    unit = _UNITS[index]
    values = (spec.seconds, spec.minutes, spec.hours)[index]
    if field == "*":
        # "* * * * *" is "every minute", not "every minute, every hour"
        finer_repeats = index > 0 and spec.fields[index - 1].startswith("*")
        return "" if finer_repeats else f"every {unit}"
    stepped = _STEPPED.fullmatch(field)
    if stepped:
        first, last, step = stepped.groups()
        span = f" from {first} through {last}" if first else ""
        return f"every {step} {unit}s{span}"
    if index == 0 and values == frozenset({0}):
        return ""
    plural = "s" if len(values) > 1 else ""
    return f"at {unit}{plural} {number_words(values)}"


def number_words(values: Iterable[int], names: Sequence[str] = ()) -> str:
    """``1, 2 and 5`` or ``9 through 17``: runs of three or more become ranges."""
    words = []
    for run in _runs(sorted(set(values))):
        texts = [names[value] if names else str(value) for value in run]
        words.extend([f"{texts[0]} through {texts[-1]}"] if len(run) > 2 else texts)
    return join_words(words)


def _day_part(spec: CronSpec) -> str:
    day_star = spec.fields[3] in ("*", "?")
    weekday_star = spec.fields[5] in ("*", "?")
    day_words = _day_of_month_words(spec)
    weekday_words = _weekday_words(spec)
    if day_star and weekday_star:
        return ""
    if day_star:
        return f"on {weekday_words}"
    if weekday_star:
        return f"on {day_words}"
    if spec.days_and:
        return f"on {day_words} if it is {weekday_words}"
    return f"on {day_words} and on {weekday_words}"


def _day_of_month_words(spec: CronSpec) -> str:
    words = []
    stepped = _STEPPED.fullmatch(spec.fields[3])
    if stepped and not stepped.group(1):
        words.append(f"every {ordinal(int(stepped.group(3)))} day of the month")
    elif spec.days and spec.days != frozenset(range(1, 32)):
        plural = "s" if len(spec.days) > 1 else ""
        words.append(f"day{plural} {number_words(spec.days)} of the month")
    elif spec.days:
        words.append("every day")
    if spec.last_day:
        words.append("the last day of the month")
    if spec.last_weekday_of_month:
        words.append("the last weekday of the month")
    words.extend(f"the weekday nearest day {day}" for day in sorted(spec.nearest_weekdays))
    return join_words(words, "or")


def _weekday_words(spec: CronSpec) -> str:
    words = [weekday_names(spec.weekdays)] if spec.weekdays else []
    words.extend(
        f"the last {WEEKDAY_NAMES[day]} of the month" for day in sorted(spec.last_weekdays)
    )
    words.extend(
        f"the {ordinal(nth)} {WEEKDAY_NAMES[day]} of the month"
        for day, nth in sorted(spec.nth_weekdays)
    )
    return join_words(words, "or")


def _month_part(spec: CronSpec) -> str:
    if spec.months == frozenset(range(1, 13)):
        return ""
    return "in " + number_words((month - 1 for month in spec.months), MONTH_NAMES)
