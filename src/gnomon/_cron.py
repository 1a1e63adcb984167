"""Cron expressions: parsing into field sets, and the wall-clock matcher built from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from gnomon._errors import InvalidRule

__all__ = ["CronMatcher", "CronSpec", "expand_macro", "parse_cron"]

_FIELDS: Final = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW = range(6)
_MONTH_NAMES: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAY_NAMES: Final = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NEAREST: Final = re.compile(r"(\d+)W")
_LAST_DOW: Final = re.compile(r"(\d+)L")
_NTH_DOW: Final = re.compile(r"(\w+)#(\d+)")
_VALID_DAY_EXTRAS: Final = "L, LW, or nW (the weekday nearest day n)"
_VALID_DOW_EXTRAS: Final = "nL (the last weekday n of the month) or n#k (the k-th, k = 1-5)"
_EPOCH_ORDINAL: Final = 719_163
_SENTINEL: Final = 99
_LAST_DAY: Final = date.max.toordinal() - _EPOCH_ORDINAL
_EVERY_SEVENTH_BIT: Final = sum(1 << (7 * week) for week in range(5))
_DAYS_1_TO_31: Final = (1 << 32) - 2
_MONTH_LENGTHS: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_IN_MONTH: Final = tuple((1 << (length + 1)) - 2 for length in range(32))  # bits 1 to length


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A parsed cron expression: the set of values each field allows."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday; 7 is folded into 0
    last_day: bool = False
    last_weekday_of_month: bool = False
    nearest_weekdays: frozenset[int] = frozenset()
    last_weekdays: frozenset[int] = frozenset()  # nL
    nth_weekdays: frozenset[tuple[int, int]] = frozenset()  # (weekday, k) for n#k
    days_and: bool = True  # Vixie: both day fields must match when either starts with *
    fixed_time: bool = False  # minute and hour both fixed, 5 fields: Debian DST policy
    fields: tuple[str, ...] = ()  # the six fields as written, seconds first


def expand_macro(text: str) -> str | None:
    """The five fields an ``@`` macro stands for, or ``None`` for an unknown one."""
    return _MACROS.get(text.lower())


def parse_cron(text: str, *, seconds: bool) -> CronSpec:
    """Parse ``text`` (5 fields, or 6 with a leading seconds field when ``seconds``)."""
    parts = text.split()
    if text.startswith("@"):
        expanded = expand_macro(text.strip())
        if expanded is None:
            raise InvalidRule(
                f"cron expression {text!r}: unknown macro; valid: "
                f"{', '.join(sorted(_MACROS))} or @every <duration>"
            )
        parts = expanded.split()
    _check_field_count(text, parts, seconds=seconds)
    fixed = len(parts) == 5 and not parts[0].startswith("*") and not parts[1].startswith("*")
    if len(parts) == 5:
        parts = ["0", *parts]
    return _build_spec(text, parts, fixed=fixed)


def _check_field_count(text: str, parts: list[str], *, seconds: bool) -> None:
    if len(parts) == 5 or (seconds and len(parts) == 6):
        return
    if len(parts) == 6:
        raise InvalidRule(
            f"cron expression {text!r} has 6 fields; a leading seconds field needs "
            "cron(..., seconds=True), otherwise use 5 fields: minute hour day month weekday"
        )
    valid = "5 fields, or 6 with seconds=True" if seconds else "5 fields"
    raise InvalidRule(f"cron expression {text!r} has {len(parts)} fields; valid: {valid}")


def _build_spec(text: str, parts: list[str], *, fixed: bool) -> CronSpec:
    upper = [part.upper() for part in parts]
    values = [_parse_plain_field(text, index, upper[index]) for index in (0, 1, 2, 4)]
    days, day_extras = _parse_day_field(text, upper[_DOM])
    weekdays, last_dows, nths = _parse_weekday_field(text, upper[_DOW])
    days_and = upper[_DOM][0] in "*?" or upper[_DOW][0] in "*?"
    return CronSpec(
        seconds=values[0],
        minutes=values[1],
        hours=values[2],
        days=days,
        months=values[3],
        weekdays=frozenset(value % 7 for value in weekdays),
        last_day="L" in day_extras,
        last_weekday_of_month="LW" in day_extras,
        nearest_weekdays=frozenset(int(extra[:-1]) for extra in day_extras if extra[0].isdigit()),
        last_weekdays=last_dows,
        nth_weekdays=nths,
        days_and=days_and,
        fixed_time=fixed,
        fields=tuple(parts),
    )


def _parse_plain_field(text: str, index: int, field: str) -> frozenset[int]:
    values: set[int] = set()
    for term in _terms(text, index, field):
        values.update(_parse_term(text, index, term))
    return frozenset(values)


def _parse_day_field(text: str, field: str) -> tuple[frozenset[int], set[str]]:
    values: set[int] = set()
    extras: set[str] = set()
    for term in _terms(text, _DOM, field):
        nearest = _NEAREST.fullmatch(term)
        if term in ("L", "LW"):
            extras.add(term)
        elif nearest:
            _check_range(text, _DOM, nearest.group(1), int(nearest.group(1)))
            extras.add(f"{int(nearest.group(1))}W")
        else:
            values.update(_parse_term(text, _DOM, term, extras=_VALID_DAY_EXTRAS))
    return frozenset(values), extras


def _parse_weekday_field(
    text: str, field: str
) -> tuple[frozenset[int], frozenset[int], frozenset[tuple[int, int]]]:
    values: set[int] = set()
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for term in _terms(text, _DOW, field):
        last_match = _LAST_DOW.fullmatch(term)
        nth_match = _NTH_DOW.fullmatch(term)
        if last_match:
            last.add(_value(text, _DOW, last_match.group(1), names=False) % 7)
        elif nth_match:
            weekday = _value(text, _DOW, nth_match.group(1)) % 7
            nth.add((weekday, _nth(text, nth_match.group(2))))
        else:
            values.update(_parse_term(text, _DOW, term, extras=_VALID_DOW_EXTRAS))
    return frozenset(values), frozenset(last), frozenset(nth)


def _nth(text: str, digits: str) -> int:
    if not (digits.isdigit() and digits.isascii()) or not 1 <= int(digits) <= 5:
        raise InvalidRule(
            f"cron expression {text!r}: day-of-week '#{digits}' is not valid; "
            "valid: #1 to #5 (the first to fifth such weekday of the month)"
        )
    return int(digits)


def _terms(text: str, index: int, field: str) -> list[str]:
    terms = field.split(",")
    if any(not term for term in terms):
        name = _FIELDS[index][0]
        raise InvalidRule(
            f"cron expression {text!r}: {name} field {field!r} has an empty list item"
        )
    return terms


def _parse_term(text: str, index: int, term: str, *, extras: str = "") -> range:
    name, low, high = _FIELDS[index]
    base, slash, step_text = term.partition("/")
    step = _step(text, index, step_text) if slash else 1
    if base == "*" or (base == "?" and index in (_DOM, _DOW)):
        return range(low, high + 1, step)
    if "-" in base:
        first_text, _, last_text = base.partition("-")
        first = _value(text, index, first_text, extras=extras)
        last = _value(text, index, last_text, extras=extras)
        if last < first:
            raise InvalidRule(
                f"cron expression {text!r}: {name} range {base!r} runs backwards; "
                f"write the smaller value first (ranges do not wrap around)"
            )
        return range(first, last + 1, step)
    first = _value(text, index, base, extras=extras)
    return range(first, high + 1 if slash else first + 1, step)


def _step(text: str, index: int, step_text: str) -> int:
    if not (step_text.isdigit() and step_text.isascii()) or int(step_text) == 0:
        raise InvalidRule(
            f"cron expression {text!r}: {_FIELDS[index][0]} step {step_text!r} is not valid; "
            "valid: a whole number of 1 or more, as in */5"
        )
    return int(step_text)


def _value(text: str, index: int, token: str, *, names: bool = True, extras: str = "") -> int:
    name_table = _MONTH_NAMES if index == _MONTH else _DAY_NAMES if index == _DOW else {}
    if names and token.lower() in name_table:
        return name_table[token.lower()]
    if token.isdigit() and token.isascii():
        return _check_range(text, index, token, int(token))
    name, low, high = _FIELDS[index]
    valid = f"valid: {low}-{high}"
    if name_table and names:
        valid += f", or a name such as {next(iter(name_table))}"
    if extras:
        valid += f", or {extras}"
    raise InvalidRule(f"cron expression {text!r}: {name} value {token!r} is not valid; {valid}")


def _check_range(text: str, index: int, token: str, value: int) -> int:
    name, low, high = _FIELDS[index]
    if not low <= value <= high:
        raise InvalidRule(
            f"cron expression {text!r}: {name} value {token!r} is out of range; valid: {low}-{high}"
        )
    return value


def _next_table(values: frozenset[int], size: int) -> tuple[int, ...]:
    """``table[i]``: the smallest allowed value >= i, or a sentinel past every field."""
    low, high = min(values), max(values)
    if len(values) == high - low + 1:  # a range, as * and a-b give: no loop in Python
        table = [low] * low + list(range(low, high + 1))
    else:
        table = []
        for value in sorted(values):
            table += [value] * (value + 1 - len(table))
    return (*table, *[_SENTINEL] * (size + 2 - len(table)))


def _bits(values: frozenset[int] | set[int]) -> int:
    if not values:
        return 0
    low, high = min(values), max(values)
    if len(values) == high - low + 1:
        return (1 << (high + 1)) - (1 << low)
    mask = 0
    for value in values:
        mask |= 1 << value
    return mask


def _days_by_first_weekday(weekday_bits: int) -> tuple[int, ...]:
    """Per weekday of a month's first day (0 = Sunday): the days 1-31 (as bits) that fall
    on the allowed weekdays."""
    masks = []
    for first in range(7):
        week = (weekday_bits >> first | weekday_bits << (7 - first)) & 0x7F  # bit j: day j + 1
        masks.append(week * _EVERY_SEVENTH_BIT << 1 & _DAYS_1_TO_31)
    return tuple(masks)


def _month_length(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _nearest_weekday(day: int, length: int, first_weekday: int) -> int:
    # croniter's rule: a day past the month's end means its last day; never leave the month.
    day = min(day, length)
    weekday = (first_weekday + day - 1) % 7
    if weekday == 6:
        return day - 1 if day > 1 else day + 2
    if weekday == 0:
        return day + 1 if day < length else day - 2
    return day


def _last_weekday_of_month(length: int, first_weekday: int) -> int:
    weekday = (first_weekday + length - 1) % 7
    return length - 1 if weekday == 6 else length - 2 if weekday == 0 else length


class CronMatcher:
    """Finds the first wall-clock time a :class:`CronSpec` allows, field by field."""

    __slots__ = (
        "_day_and",
        "_day_extras",
        "_dom_bits",
        "_dow_by_first",
        "_first_time",
        "_last_answer",
        "_last_day",
        "_last_month",
        "_last_weekday",
        "_last_weekdays",
        "_month_cache",
        "_months",
        "_nearest",
        "_next_hour",
        "_next_minute",
        "_next_month",
        "_next_second",
        "_nth",
        "_single_time",
        "_weekday_extras",
    )

    def __init__(self, spec: CronSpec) -> None:
        self._next_second = _next_table(spec.seconds, 60)
        self._first_time = min(spec.hours) * 3600 + min(spec.minutes) * 60 + min(spec.seconds)
        one_time = len(spec.hours) == len(spec.minutes) == len(spec.seconds) == 1
        self._single_time = self._first_time if one_time else -1
        self._next_minute = _next_table(spec.minutes, 60)
        self._next_hour = _next_table(spec.hours, 24)
        self._next_month = _next_table(spec.months, 12)
        self._months = spec.months
        self._dom_bits = _bits(spec.days)
        self._dow_by_first = _days_by_first_weekday(_bits(spec.weekdays))
        self._last_day = spec.last_day
        self._last_weekday = spec.last_weekday_of_month
        self._nearest = tuple(sorted(spec.nearest_weekdays))
        self._last_weekdays = tuple(sorted(spec.last_weekdays))
        self._nth = tuple(sorted(spec.nth_weekdays))
        self._day_and = spec.days_and
        self._day_extras = spec.last_day or spec.last_weekday_of_month or bool(self._nearest)
        self._weekday_extras = bool(self._last_weekdays or self._nth)
        self._month_cache: dict[int, tuple[int, int, int]] = {}
        self._last_answer = (-1 << 40, 0)  # (day asked about, first allowed day from it)
        # The month of the last answer: first day, end, allowed days, year, month.
        self._last_month = (0, 0, 0, 0, 0)

    def fires_ever(self) -> bool:
        """Whether any day matches: the calendar repeats every 400 years."""
        return any(
            self._day_mask(year, month)[0]
            for year in range(2000, 2400)
            for month in sorted(self._months)
        )

    def first_at_or_after(self, wall: int, limit: int, anchor_day: int) -> int | None:
        """The first allowed wall time in ``[wall, limit)``; ``anchor_day`` is unused."""
        day, second = divmod(wall, 86_400)
        single = self._single_time
        if single >= 0:  # one time of day, as most rules have: no field-by-field search
            asked = day if second <= single else day + 1
            # Such rules ask about the day after their last fire, most often in its month
            # (others ask about one day many times, which _first_day remembers).
            first, end, mask, _, _ = self._last_month
            bits = mask >> (asked - first + 1) if first <= asked < end else 0
            if bits:
                found = (asked + (bits & -bits).bit_length() - 1) * 86_400 + single
                return found if found < limit else None
            time_of_day = single if second <= single else None
        else:
            time_of_day = self._time_at_or_after(second // 3600, second // 60 % 60, second % 60)
        first_day = self._first_day(day if time_of_day is not None else day + 1, limit // 86_400)
        if first_day is None:
            return None
        if first_day != day or time_of_day is None:
            time_of_day = self._first_time
        found = first_day * 86_400 + time_of_day
        return found if found < limit else None

    def _time_at_or_after(self, hour: int, minute: int, second: int) -> int | None:
        """Seconds after midnight of the first allowed time of day at or after the given."""
        next_hour, next_minute, next_second = self._next_hour, self._next_minute, self._next_second
        if next_hour[hour] == hour:
            if next_minute[minute] == minute:
                found = next_second[second]
                if found != _SENTINEL:
                    return hour * 3600 + minute * 60 + found
                minute += 1
            found = next_minute[minute]
            if found != _SENTINEL:
                return hour * 3600 + found * 60 + next_second[0]
            hour += 1
        found = next_hour[hour]
        if found == _SENTINEL:
            return None
        return found * 3600 + next_minute[0] * 60 + next_second[0]

    def _first_day(self, day_number: int, last_day: int) -> int | None:
        """The first allowed day number at or after ``day_number``, up to ``last_day``."""
        asked, answer = self._last_answer
        if asked == day_number:  # rules firing many times a day ask about one day often
            return answer if answer <= last_day else None
        first, end, mask, year, month = self._last_month
        following = (0, 0)  # the number of the month after one seen, and its first day
        if first <= day_number < end:
            # Rules ask about the day after their last fire, most often in its month.
            bits = mask >> (day_number - first + 1)
            if bits:
                answer = day_number + (bits & -bits).bit_length() - 1
                self._last_answer = (day_number, answer)
                return answer if answer <= last_day else None
        if first <= day_number <= end and month:
            # Nothing left in that month, or the day asked about is the first after it.
            following = (year * 12 + month, end)
            month, day = month + 1, 1
        elif day_number > _LAST_DAY:
            return None
        else:
            start = date.fromordinal(day_number + _EPOCH_ORDINAL)
            year, month, day = start.year, start.month, start.day
        while True:
            found = self._next_month[month]
            if found != month:
                day = 1
                if found == _SENTINEL:
                    year, found = year + 1, self._next_month[1]
                    if year > 9999:
                        return None
                month = found
            hint = following[1] if following[0] == year * 12 + month - 1 else None
            known = self._month_cache.get(year * 16 + month) or self._day_mask(year, month, hint)
            mask, first, length = known
            if first > last_day:
                return None
            bits = mask >> day
            if bits:
                answer = first + day - 2 + (bits & -bits).bit_length()
                self._last_answer = (day_number, answer)
                self._last_month = (first, first + length, mask, year, month)
                return answer
            following = (year * 12 + month, first + length)
            month, day = month + 1, 1

    def _day_mask(
        self, year: int, month: int, first_day: int | None = None
    ) -> tuple[int, int, int]:
        """The month's matching days as bits 1-31, its first day's number (if not given)
        and its length."""
        if first_day is None:
            first_day = date(year, month, 1).toordinal() - _EPOCH_ORDINAL
        length = _MONTH_LENGTHS[month] if month != 2 else _month_length(year, month)
        first_weekday = (first_day + 4) % 7  # 1970-01-01 was a Thursday; 0 = Sunday
        days = self._month_days(length, first_weekday) if self._day_extras else self._dom_bits
        weekdays = (
            self._month_weekdays(length, first_weekday)
            if self._weekday_extras
            else self._dow_by_first[first_weekday]
        )
        # Either way, only the month's own days: bits 1 to length.
        mask = (days & weekdays if self._day_and else days | weekdays) & _IN_MONTH[length]
        cache = self._month_cache
        if len(cache) >= 2048:
            cache.clear()
        known = cache[year * 16 + month] = (mask, first_day, length)
        return known

    def _month_days(self, length: int, first_weekday: int) -> int:
        bits = self._dom_bits
        if self._last_day:
            bits |= 1 << length
        if self._last_weekday:
            bits |= 1 << _last_weekday_of_month(length, first_weekday)
        for day in self._nearest:
            bits |= 1 << _nearest_weekday(day, length, first_weekday)
        return bits

    def _month_weekdays(self, length: int, first_weekday: int) -> int:
        bits = self._dow_by_first[first_weekday]
        for weekday in self._last_weekdays:
            bits |= 1 << (length - (first_weekday + length - 1 - weekday) % 7)
        for weekday, nth in self._nth:
            day = 1 + (weekday - first_weekday) % 7 + 7 * (nth - 1)
            if day <= length:
                bits |= 1 << day
        return bits
