"""Reading the compiled TZif data a ``ZoneInfo`` is loaded from (RFC 8536).

A version 2+ file holds a table of the instants at which the zone's offset changes, and a
footer: a POSIX TZ string whose rule gives the changes of the years past the table. This
module finds and reads the file, parses the table, and parses the footer's rule and works
out its changes a UTC year at a time, as :class:`ZoneInfo` itself does. It says nothing
about whether the data matches the zone: :mod:`gnomon._rule_zone` checks that.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import struct
import sys
import zoneinfo
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

__all__ = [
    "LAST_YEAR",
    "PosixRule",
    "RuleDay",
    "Table",
    "TailRule",
    "merged",
    "parse_tzif",
    "rule_points",
    "tail_rule",
    "tzif_data",
    "utc_year",
    "year_start",
]

_DAY: Final = 86_400
_EPOCH_ORDINAL: Final = 719_163
LAST_YEAR: Final = 9999
_DAYS_BEFORE_MONTH: Final = (0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)
_MONTH_LENGTHS: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_READ_SIZE: Final = 1 << 13  # TZif files hold a few kilobytes; longer ones take more reads
_COUNTS: Final = struct.Struct(">6l")
_LITTLE_ENDIAN: Final = sys.byteorder == "little"
_NEWLINE: Final = ord("\n")


@dataclass(frozen=True, slots=True)
class RuleDay:
    """One end of a POSIX TZ rule's daylight time: ``Mm.w.d``, ``Jn`` or ``n``, and the
    local time of day (seconds, possibly negative or past a day)."""

    month: int  # 0 for a day of the year
    week: int
    day: int
    julian: bool
    time: int

    def local_seconds(self, days: int, leap: bool) -> int:
        """When it falls in the year that starts after the ordinal ``days`` (``leap`` or
        not), as seconds of local time from 1970-01-01, computed as :class:`ZoneInfo`
        computes it (whose answers the table must agree with)."""
        if self.month:
            month = self.month
            first = days + _DAYS_BEFORE_MONTH[month] + (leap and month > 2) + 1
            day = 1 + (self.day - first % 7) % 7 + 7 * (self.week - 1)  # ordinal 7: a Sunday
            if day > _MONTH_LENGTHS[month] + (leap and month == 2):
                day -= 7
            return (first + day - 1 - _EPOCH_ORDINAL) * _DAY + self.time
        day = self.day + (self.julian and self.day >= 59 and leap)
        return (days - _EPOCH_ORDINAL + day) * _DAY + self.time


@dataclass(frozen=True, slots=True)
class PosixRule:
    """A TZif footer's daylight-saving rule: standard and daylight offsets, and when
    daylight time starts (in standard time) and ends (in daylight time)."""

    std: int
    dst: int
    start: RuleDay
    end: RuleDay


TailRule = int | PosixRule  # past the table: a constant offset, or a rule


def rule_points(rule: PosixRule, year: int, floor: int) -> tuple[tuple[int, int], ...]:
    """The UTC year's first instant at or after ``floor`` and each change after it, each
    with the offset from there on. Like :class:`ZoneInfo`, the rule decides an instant by
    its own UTC year's start and end of daylight time alone."""
    before = year - 1
    days = before * 365 + before // 4 - before // 100 + before // 400  # to 1 January
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    start = rule.start.local_seconds(days, leap) - rule.std
    end = rule.end.local_seconds(days, leap) - rule.dst
    # Before the earlier change, between the two, from the later one on.
    if start < end:
        low, high, values = start, end, (rule.std, rule.dst, rule.std)
    else:  # daylight time spans the new year (or, if they are equal, the whole year)
        low, high, values = end, start, (rule.dst, rule.std if end < start else rule.dst, rule.dst)
    year_start = (days + 1 - _EPOCH_ORDINAL) * _DAY
    first, limit = max(year_start, floor), year_start + (366 if leap else 365) * _DAY
    current = values[0] if first < low else values[1] if first < high else values[2]
    points = [(first, current)]
    for change, value in ((low, values[1]), (high, values[2])):
        if first < change < limit and value != current:
            points.append((change, value))
            current = value
    return tuple(points)


def merged(
    earlier: Sequence[tuple[int, int]], later: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Changes of consecutive years as one list, without the points where nothing does."""
    changes = [*earlier]
    for point in later:
        if not changes or point[1] != changes[-1][1]:
            changes.append(point)
    return changes


def year_start(year: int) -> int:
    before = year - 1
    days = before * 365 + before // 4 - before // 100 + before // 400 + 1 - _EPOCH_ORDINAL
    return days * _DAY


def utc_year(instant: int) -> int:
    day = min(max(instant // _DAY + _EPOCH_ORDINAL, 1), date.max.toordinal())
    return date.fromordinal(day).year


_POSIX_TZ: Final = re.compile(
    r"(?:<[A-Za-z0-9+-]+>|[A-Za-z]{3,})(?P<std>[+-]?\d{1,3}(?::\d{2}){0,2})"
    r"(?:(?:<[A-Za-z0-9+-]+>|[A-Za-z]{3,})(?P<dst>[+-]?\d{1,3}(?::\d{2}){0,2})?"
    r",(?P<start>[^,]+),(?P<end>[^,]+))?",
    re.ASCII,
)
_RULE_DAY: Final = re.compile(
    r"(?:M(?P<month>\d{1,2})\.(?P<week>\d)\.(?P<weekday>\d)|(?P<julian>J?)(?P<day>\d{1,3}))"
    r"(?:/(?P<time>[+-]?\d{1,3}(?::\d{2}){0,2}))?",
    re.ASCII,
)


def _parse_footer(footer: str) -> TailRule | None:
    """The footer's TZ string as a constant offset or a rule; ``None`` if it is not one
    this reader knows (the zone is then probed)."""
    found = _POSIX_TZ.fullmatch(footer)
    if found is None:
        return None
    std = -_clock_seconds(found["std"])
    if found["start"] is None:
        return std
    dst = -_clock_seconds(found["dst"]) if found["dst"] else std + 3600
    start, end = _parse_rule_day(found["start"]), _parse_rule_day(found["end"])
    return None if start is None or end is None else PosixRule(std, dst, start, end)


def _parse_rule_day(text: str) -> RuleDay | None:
    found = _RULE_DAY.fullmatch(text)
    if found is None:
        return None
    time = _clock_seconds(found["time"]) if found["time"] else 2 * 3600
    if found["month"] is not None:
        month, week, weekday = int(found["month"]), int(found["week"]), int(found["weekday"])
        valid = 1 <= month <= 12 and 1 <= week <= 5 and weekday <= 6
        return RuleDay(month, week, weekday, julian=False, time=time) if valid else None
    julian, day = bool(found["julian"]), int(found["day"])
    return RuleDay(0, 0, day, julian, time) if julian <= day <= 365 else None


def _clock_seconds(text: str) -> int:
    """``[+-]hh[:mm[:ss]]`` as seconds."""
    hours, _, rest = text.lstrip("+-").partition(":")
    minutes, _, seconds = rest.partition(":")
    total = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return -total if text.startswith("-") else total


def tzif_data(key: str) -> bytes | None:
    """The TZif file ``ZoneInfo(key)`` reads: the first on ``zoneinfo.TZPATH``, else the
    ``tzdata`` package's."""
    for directory in zoneinfo.TZPATH:
        # os.read rather than open(): a cold walk reads a zone's file once, and open()'s
        # buffered reader costs more than the read itself.
        try:
            descriptor = os.open(f"{directory}/{key}", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = os.read(descriptor, _READ_SIZE)
            while len(data) % _READ_SIZE == 0 and (more := os.read(descriptor, _READ_SIZE)):
                data += more
        except OSError:
            continue
        finally:
            os.close(descriptor)
        return data
    *packages, name = key.split("/")
    try:
        resources = importlib.resources.files(".".join(["tzdata.zoneinfo", *packages]))
        return resources.joinpath(name).read_bytes()
    except (ImportError, OSError, TypeError, ValueError):
        return None


# Changes, per change its offset's index, the offsets, and the footer's TZ string.
Table = tuple["array[int]", bytes, list[int], str]


def parse_tzif(data: bytes) -> Table | None:
    """The table and footer of version 2+ TZif data (RFC 8536); ``None`` for data this
    reader does not take: version 1 only, leap seconds, or anything malformed."""
    try:
        return _parse_tzif_body(data)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        return None


def _parse_tzif_body(data: bytes) -> Table | None:
    if data[:4] != b"TZif" or data[4:5] in (b"\0", b""):
        return None
    # Skip the version 1 block: its counts are isutcnt, isstdcnt, leapcnt, timecnt,
    # typecnt, charcnt; its times are 32-bit.
    ut, std, leaps, count, types, chars = _COUNTS.unpack_from(data, 20)
    at = 44 + count * 5 + types * 6 + chars + leaps * 8 + std + ut
    if data[at : at + 4] != b"TZif":
        return None
    ut, std, leaps, count, types, chars = _COUNTS.unpack_from(data, at + 20)
    if leaps or not types:
        return None
    at += 44
    kinds_at = at + 8 * count
    changes = array("q", data[at:kinds_at])
    if _LITTLE_ENDIAN:
        changes.byteswap()
    at = kinds_at + count
    kinds = data[kinds_at:at]
    offsets = list(struct.unpack_from(">" + "l2x" * types, data, at))  # utoff, skip the rest
    at += 6 * types + chars + std + ut
    # Each change's offset index is checked where it is read, not all of them here.
    if len(kinds) != count or data[at] != _NEWLINE:
        return None  # cut short
    return changes, kinds, offsets, data[at + 1 : data.index(b"\n", at + 1)].decode("ascii")


def tail_rule(footer: str, last: int | None, final_kind: int) -> TailRule | None:
    """Past the table: the footer's rule, or without one the last change's offset (with
    no changes, the last offset listed); ``None`` where probing must decide. A constant
    that differs from the last change's is left to probing: ``ZoneInfo`` uses one when
    converting instants and the other when converting wall times."""
    if not footer:
        return final_kind if last is None else last
    rule = _parse_footer(footer)
    return None if isinstance(rule, int) and last is not None and rule != last else rule
