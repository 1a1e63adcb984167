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

A zone's segments are learnt where walks ask about them, a few days at a time, so a
sparse rule (once a year, or on 29 February) does not pay for every year it skips: when
its next match is days away, the walk jumps to shortly before it. Which segments lie in
between cannot change the answer once the walk is past the offsets near the moment.
"""

from __future__ import annotations

import bisect
import threading
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final, Protocol

__all__ = ["WallMatcher", "forget_offsets", "next_fire"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_ZERO: Final = timedelta(0)
_DAY: Final = 86_400
# Calendars repeat every 400 years, so a rule that matches nothing in 401 years never will.
_HORIZON: Final = 401 * 146_097 * 86_400 // 400
# Wall times at or past this are beyond datetime's year 9999.
_WALL_END: Final = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // _SECOND
_WINDOW: Final = 86_400  # offsets are probed a day at a time: no zone changes twice a day
# More than any two offsets of one zone differ by: at most about 25 h, in zones that moved
# across the date line (Samoa 2011, Kwajalein 1993, Manila 1844, Alaska 1867).
_JUMP: Final = 36 * 3600
# Windows probed at once: a jump's landing covers its fire time and _JUMP past it.
_SPAN: Final = 4 * _WINDOW
_UNKNOWN: Final = 1 << 62  # an offset not probed yet; above every instant
_MAX_ZONES_CACHED: Final = 64
_MAX_SEGMENTS_CACHED: Final = 4096

_Segment = tuple[int, int, int, int]


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
    start, end, offset, _ = offsets.segment(instant)
    wall = instant + offset
    horizon = wall + _HORIZON if wall < _WALL_END - _HORIZON else _WALL_END
    anchor = wall // _DAY
    low = wall + 1
    # Only a change less than a day before the moment can have repeated its walls.
    if fixed and instant - start < _JUMP:
        # Inside a repeated hour, walls up to the change were already reached once.
        low = max(low, start + offsets.before(start, end))
    searched_from = low
    found = matcher.first_at_or_after(low, horizon, anchor) if low < horizon else None
    settled = instant + _JUMP
    while found is not None:
        if found < end + offset:
            # A fixed-time wall inside a gap fires as the gap ends, at the segment's start.
            return _at(found - offset if found - offset > start else start, zone)
        # Nothing matches in [searched_from, found). Once past the offsets near the moment,
        # the segments whose walls all lie well below ``found`` change nothing: skip them.
        ahead = found - offset - _JUMP
        start, end, offset, low = _enter(
            offsets, ahead if end >= settled and ahead > end else end, fixed=fixed
        )
        if not searched_from <= low <= found:
            searched_from = low
            found = matcher.first_at_or_after(low, horizon, anchor) if low < horizon else None
    return None


def _enter(offsets: _ZoneOffsets, target: int, *, fixed: bool) -> tuple[int, int, int, int]:
    """The segment from ``target`` on (start, end, offset) and the first wall to search in
    it: fixed-time rules carry the highest wall already reached across a change."""
    start, end, offset, _ = offsets.segment(target)
    if start < target:  # the target lies inside a segment: no change happens there
        return target, end, offset, target + offset
    return start, end, offset, start + (offsets.before(start, end) if fixed else offset)


def _at(instant: int, zone: tzinfo) -> datetime | None:
    try:
        return datetime.fromtimestamp(instant, zone)
    except (OverflowError, ValueError, OSError):
        return None


class _ZoneOffsets:
    """A zone's UTC offsets, probed a few windows (days) at a time where they are asked
    about, and kept as the segments of constant offset found so far, merged where they
    meet. A rule that fires once a year probes a few days a year, not the whole year."""

    __slots__ = ("_last", "_learning", "_segments", "_zone")

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        # (start, end, offset, offset just before start), sorted and disjoint. Readers take
        # no lock: the list changes by one slice assignment at a time, under _learning.
        self._segments: list[_Segment] = []
        self._learning = threading.Lock()
        self._last: _Segment = (0, 0, 0, 0)

    def segment(self, instant: int) -> _Segment:
        """Start, end, offset, and the offset just before the start, around ``instant``.

        The start is either a change of offset or a point where nothing changes (then
        the offset before it is the segment's own); the offset before it may be
        ``_UNKNOWN``, which :meth:`before` probes."""
        last = self._last
        if last[0] <= instant < last[1]:
            return last
        found = self._known(instant)
        if found is None:
            with self._learning:
                found = self._known(instant) or self._learn(instant)
        self._last = found
        return found

    def _known(self, instant: int) -> _Segment | None:
        segments = self._segments
        index = bisect.bisect_right(segments, (instant, _UNKNOWN)) - 1
        try:
            found = segments[index] if index >= 0 else None
        except IndexError:  # shortened by a learner in another thread meanwhile
            return None
        return found if found is not None and found[0] <= instant < found[1] else None

    def _learn(self, instant: int) -> _Segment:
        """Probe the windows from the one around ``instant`` and merge them into what is
        known. Several at once: a walk goes on to the next days, and a far jump lands
        ``_JUMP`` before the fire time it looks for."""
        first = instant - instant % _WINDOW
        segments = self._segments
        index = bisect.bisect_right(segments, (first, _UNKNOWN))
        end = first + _SPAN
        if index < len(segments):
            end = min(end, segments[index][0])
        left = segments[index - 1] if index and segments[index - 1][1] == first else None
        right = segments[index] if index < len(segments) and segments[index][0] == end else None
        pieces = self._probe(first, end, left, right)
        low, high = index, index
        if left is not None and left[2] == pieces[0][2]:
            pieces[0] = (left[0], pieces[0][1], left[2], left[3])
            low -= 1
        if right is not None:
            last = pieces[-1]
            if right[2] == last[2]:
                pieces[-1] = (last[0], right[1], right[2], last[3])
            else:  # a change right at ``end``
                pieces.append((right[0], right[1], right[2], last[2]))
            high += 1
        if len(segments) >= _MAX_SEGMENTS_CACHED:
            self._segments = pieces
        else:
            segments[low:high] = pieces
        return next(piece for piece in pieces if instant < piece[1])

    def _probe(
        self, first: int, end: int, left: _Segment | None, right: _Segment | None
    ) -> list[_Segment]:
        """The segments of ``[first, end)``, which is a whole number of windows."""
        points = range(first, end + 1, _WINDOW)
        offsets = self._offsets(points if right is None else points[:-1])
        if right is not None:
            offsets.append(right[2])
        start, offset = first, offsets[0]
        prior = _UNKNOWN if left is None else left[2]
        pieces: list[_Segment] = []
        for i in range(1, len(points)):
            if offsets[i] != offsets[i - 1]:
                change = self._change_between(points[i - 1], points[i], offsets[i - 1])
                if change < end:
                    pieces.append((start, change, offset, prior))
                    start, offset, prior = change, offsets[i], offsets[i - 1]
        pieces.append((start, end, offset, prior))
        return pieces

    def before(self, start: int, end: int) -> int:
        """The offset just before ``start``, where the segment ``[start, end)`` begins;
        probed once if the segment begins where nothing was known."""
        found = self._known(start)
        if found is not None and found[0] == start and found[3] != _UNKNOWN:
            return found[3]
        offset = self._offset(start - 1)
        with self._learning:
            segments = self._segments
            index = bisect.bisect_left(segments, (start, end))
            if index < len(segments) and segments[index][:2] == (start, end):
                segments[index] = (start, end, segments[index][2], offset)
        return offset

    def _change_between(self, low: int, high: int, before: int) -> int:
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(middle) == before:
                low = middle
            else:
                high = middle
        return high

    def _offsets(self, instants: range) -> list[int]:
        zone = self._zone
        try:
            return [
                (datetime.fromtimestamp(instant, zone).utcoffset() or _ZERO) // _SECOND
                for instant in instants
            ]
        except (OverflowError, ValueError, OSError):
            return [self._offset(instant) for instant in instants]

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


def forget_offsets() -> None:
    """Drop every zone's cached offsets (benchmarks measure from a cold cache)."""
    _ZONES.clear()
