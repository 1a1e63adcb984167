"""Walking wall-clock matches through a time zone's offset changes.

A calendar rule (cron, daily, weekly, monthly) matches *wall-clock* times; a scheduler
needs *instants*. Between two offset changes wall time is instant plus a constant offset,
so the walk here cuts the time line into such segments and asks the rule for its first
wall-clock match inside each one. How a segment starts decides the DST policy:

* fixed-time rules carry the highest wall time already reached across a change. After a
  fall-back the repeated walls are below it, so they fire only at their first
  occurrence; after a spring-forward the skipped walls are above it, so a time inside
  the gap fires at the first instant after the gap (Debian cron, cronsim);
* every other rule starts each segment at the segment's own first wall time, so it fires
  at every wall time that really occurs: never in a gap, twice in a repeated hour.

Wall times are whole seconds counted from 1970-01-01 00:00 as if the zone were UTC.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final, Protocol

__all__ = ["WallMatcher", "next_fire"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_DAY: Final = 86_400
# Calendars repeat every 400 years, so a rule that matches nothing in 401 years never will.
_HORIZON: Final = 401 * 146_097 * 86_400 // 400
# Wall times at or past this are beyond datetime's year 9999.
_WALL_END: Final = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // _SECOND
_CHUNK_BITS: Final = 25  # offsets are looked up in cached chunks of 2**25 s (~388 days)
_PROBE_STEP: Final = 86_400  # no zone changes its offset twice within a day
_MAX_ZONES_CACHED: Final = 64
_MAX_CHUNKS_CACHED: Final = 1024


class WallMatcher(Protocol):
    """The wall-clock half of a calendar rule."""

    def first_at_or_after(self, wall: int, limit: int, anchor_day: int) -> int | None:
        """The first matching wall time in ``[wall, limit)``, or ``None``.

        ``anchor_day`` is the wall-clock day of the moment being asked about; rules with
        an interval of several days, weeks or months count their phase from it.
        """
        ...


def next_fire(
    matcher: WallMatcher, moment: datetime, zone: tzinfo, *, fixed: bool
) -> datetime | None:
    """The first instant strictly after ``moment`` at which ``matcher`` fires in ``zone``."""
    # Whole seconds, floored exactly: the float's error is far below half a second.
    instant = round(moment.timestamp() - moment.microsecond * 1e-6)
    if isinstance(zone, timezone):
        return _next_fire_fixed_offset(matcher, instant, zone)
    return _next_fire_in_zone(matcher, instant, _offsets_of(zone), zone, fixed=fixed)


def _next_fire_fixed_offset(matcher: WallMatcher, instant: int, zone: timezone) -> datetime | None:
    offset = zone.utcoffset(None) // _SECOND
    wall = instant + offset
    horizon = wall + _HORIZON if wall < _WALL_END - _HORIZON else _WALL_END
    if wall + 1 >= horizon:
        return None
    found = matcher.first_at_or_after(wall + 1, horizon, wall // _DAY)
    return None if found is None else _at(found - offset, zone)


def _next_fire_in_zone(
    matcher: WallMatcher, instant: int, offsets: _ZoneOffsets, zone: tzinfo, *, fixed: bool
) -> datetime | None:
    start, end, offset, offset_before = offsets.segment(instant)
    wall = instant + offset
    horizon = wall + _HORIZON if wall < _WALL_END - _HORIZON else _WALL_END
    anchor = wall // _DAY
    low = wall + 1
    if fixed and start + offset_before > low:
        # Inside a repeated hour, walls up to the change were already reached once.
        low = start + offset_before
    searched_from = low
    found = matcher.first_at_or_after(low, horizon, anchor) if low < horizon else None
    while found is not None:
        if found < end + offset:
            # A fixed-time wall inside a gap fires as the gap ends, at the segment's start.
            return _at(found - offset if found - offset > start else start, zone)
        start, end, new_offset, _ = offsets.segment(end)
        low = start + (offset if fixed else new_offset)
        offset = new_offset
        # Nothing matches in [searched_from, found): search again only below or past it.
        if not searched_from <= low <= found:
            searched_from = low
            found = matcher.first_at_or_after(low, horizon, anchor) if low < horizon else None
    return None


def _at(instant: int, zone: tzinfo) -> datetime | None:
    try:
        return datetime.fromtimestamp(instant, zone)
    except (OverflowError, ValueError, OSError):
        return None


class _ZoneOffsets:
    """A zone's UTC offsets, found by probing and cached in chunks of time."""

    __slots__ = ("_chunks", "_last", "_zone")

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._chunks: dict[int, tuple[list[int], list[int]]] = {}
        self._last = (0, 0, 0, 0)

    def segment(self, instant: int) -> tuple[int, int, int, int]:
        """Start, end, offset, and the offset just before the start, around ``instant``."""
        last = self._last
        if last[0] <= instant < last[1]:
            return last
        self._last = found = self._find(instant)
        return found

    def _find(self, instant: int) -> tuple[int, int, int, int]:
        index = instant >> _CHUNK_BITS
        chunk = self._chunks.get(index)
        if chunk is None:
            if len(self._chunks) >= _MAX_CHUNKS_CACHED:
                self._chunks.clear()
            chunk = self._chunks[index] = self._probe(index)
        starts, offsets = chunk
        i = bisect.bisect_right(starts, instant) - 1
        return starts[i], starts[i + 1], offsets[i + 1], offsets[i]

    def _probe(self, index: int) -> tuple[list[int], list[int]]:
        # starts: segment starts then the chunk end; offsets[i + 1] holds from starts[i],
        # offsets[0] is the offset just before the chunk.
        first, end = index << _CHUNK_BITS, (index + 1) << _CHUNK_BITS
        starts, offsets = [first], [self._offset(first - 1), self._offset(first)]
        previous_at, previous = first, offsets[-1]
        for step in range(first + _PROBE_STEP, end + _PROBE_STEP, _PROBE_STEP):
            at = min(step, end - 1)
            current = self._offset(at)
            if current != previous:
                starts.append(self._change_between(previous_at, at, previous))
                offsets.append(current)
            previous_at, previous = at, current
        starts.append(end)
        return starts, offsets

    def _change_between(self, low: int, high: int, before: int) -> int:
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == before:
                low = middle
            else:
                high = middle
        return high

    def _offset(self, instant: int) -> int:
        try:
            local = datetime.fromtimestamp(instant, self._zone)
        except (OverflowError, ValueError, OSError):
            try:  # some platforms refuse timestamps that datetime itself can hold
                local = (_EPOCH + timedelta(seconds=instant)).astimezone(self._zone)
            except (OverflowError, ValueError):
                return 0
        offset = local.utcoffset()
        return 0 if offset is None else offset // _SECOND


_ZONES: dict[tzinfo, _ZoneOffsets] = {}


def _offsets_of(zone: tzinfo) -> _ZoneOffsets:
    offsets = _ZONES.get(zone)
    if offsets is None:
        if len(_ZONES) >= _MAX_ZONES_CACHED:
            _ZONES.clear()
        offsets = _ZONES[zone] = _ZoneOffsets(zone)
    return offsets
