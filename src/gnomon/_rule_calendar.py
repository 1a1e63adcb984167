"""Wall-clock matchers for daily, weekly and monthly rules (gocron's schedule math).

With an interval above 1 the phase counts from the day, week (Sunday to Saturday) or
month of the moment asked about, which the engine always passes as the previous fire:
gocron's ``next(last)``.
"""

from __future__ import annotations

import bisect
from datetime import date
from typing import Final

__all__ = ["DailyMatcher", "MonthlyMatcher", "WeeklyMatcher"]

_EPOCH_ORDINAL: Final = 719_163
_DAY: Final = 86_400
_LAST_DAY: Final = date.max.toordinal() - _EPOCH_ORDINAL


def _week(day: int) -> int:
    """Sunday-based week number of a day number (1970-01-01, day 0, was a Thursday)."""
    return (day + 4) // 7


class _TimesOfDay:
    """The sorted times of day, on the days a subclass allows."""

    __slots__ = ("_times",)

    def __init__(self, times: tuple[int, ...]) -> None:
        self._times = times  # seconds after midnight, sorted

    def first_at_or_after(self, wall: int, limit: int, anchor_day: int) -> int | None:
        day, second = divmod(wall, _DAY)
        index = bisect.bisect_left(self._times, second)
        if index < len(self._times) and self._day_allowed(day, anchor_day):
            found = day * _DAY + self._times[index]
        else:
            next_day = self._next_day(day + 1, anchor_day, limit // _DAY + 1)
            if next_day is None:
                return None
            found = next_day * _DAY + self._times[0]
        return found if found < limit else None

    def _day_allowed(self, day: int, anchor_day: int) -> bool:
        raise NotImplementedError

    def _next_day(self, day: int, anchor_day: int, last_day: int) -> int | None:
        raise NotImplementedError


class DailyMatcher(_TimesOfDay):
    """Every ``interval`` days from the anchor day, at the given times of day."""

    __slots__ = ("_interval",)

    def __init__(self, times: tuple[int, ...], interval: int) -> None:
        super().__init__(times)
        self._interval = interval

    def _day_allowed(self, day: int, anchor_day: int) -> bool:
        return (day - anchor_day) % self._interval == 0

    def _next_day(self, day: int, anchor_day: int, last_day: int) -> int | None:
        day += (anchor_day - day) % self._interval
        return day if day <= last_day else None


class WeeklyMatcher(_TimesOfDay):
    """Given weekdays of every ``interval``-th week (weeks start on Sunday)."""

    __slots__ = ("_interval", "_weekdays")

    def __init__(self, times: tuple[int, ...], weekdays: frozenset[int], interval: int) -> None:
        super().__init__(times)
        self._weekdays = sum(1 << weekday for weekday in weekdays)  # 0 = Sunday
        self._interval = interval

    def _day_allowed(self, day: int, anchor_day: int) -> bool:
        in_phase = (_week(day) - _week(anchor_day)) % self._interval == 0
        return in_phase and bool(self._weekdays >> ((day + 4) % 7) & 1)

    def _next_day(self, day: int, anchor_day: int, last_day: int) -> int | None:
        while day <= last_day:
            skip = (_week(anchor_day) - _week(day)) % self._interval
            if skip:
                day = (_week(day) + skip) * 7 - 4  # that week's Sunday
            later = self._weekdays >> ((day + 4) % 7)
            if later:
                return day + (later & -later).bit_length() - 1
            day = _week(day) * 7 + 3  # the next week's Sunday
        return None


class MonthlyMatcher(_TimesOfDay):
    """Given days of every ``interval``-th month; -1 is the last day, and a day a month
    lacks is skipped rather than rolled over."""

    __slots__ = ("_days", "_interval")

    def __init__(self, times: tuple[int, ...], days: frozenset[int], interval: int) -> None:
        super().__init__(times)
        self._days = days
        self._interval = interval

    def _day_allowed(self, day: int, anchor_day: int) -> bool:
        current = date.fromordinal(day + _EPOCH_ORDINAL)
        if (_month_index(current) - _month_index_of(anchor_day)) % self._interval:
            return False
        return current.day in self._days_of(current.year, current.month)

    def _next_day(self, day: int, anchor_day: int, last_day: int) -> int | None:
        if day > _LAST_DAY:
            return None
        current = date.fromordinal(day + _EPOCH_ORDINAL)
        index, anchor, from_day = _month_index(current), _month_index_of(anchor_day), current.day
        while True:
            skip = (anchor - index) % self._interval
            if skip:
                index, from_day = index + skip, 1
            year, month = divmod(index, 12)
            if year > 9999:
                return None
            first = date(year, month + 1, 1).toordinal() - _EPOCH_ORDINAL
            if first > last_day:
                return None
            later = [day for day in self._days_of(year, month + 1) if day >= from_day]
            if later:
                return first + later[0] - 1
            index, from_day = index + 1, 1

    def _days_of(self, year: int, month: int) -> list[int]:
        length = _month_length(year, month)
        resolved = {day if day > 0 else length + 1 + day for day in self._days}
        return sorted(day for day in resolved if 1 <= day <= length)


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_index_of(day_number: int) -> int:
    return _month_index(date.fromordinal(day_number + _EPOCH_ORDINAL))


def _month_length(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31
