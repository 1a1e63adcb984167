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

A ``ZoneInfo``'s segments are read from the compiled TZif file it was loaded from
(:mod:`gnomon._tzif`: its table of changes, then its footer's POSIX TZ rule a year at a
time), each checked against the zone the first time it is used: where a walk fires in
it, against the fire's own offset (which costs nothing more than the fire), else by
converting one instant in it. Any other zone, or one whose file cannot be found, read or
trusted, has its segments probed where walks ask about them, a few days at a time.
Either way a sparse rule (once a year, or on 29 February) does not pay for every year it
skips: when its next match is days away, the walk jumps to shortly before it. Which
segments lie in between cannot change the answer once the walk is past the offsets near
the moment.
"""

from __future__ import annotations

import bisect
import threading
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final, Protocol
from zoneinfo import ZoneInfo

from gnomon import _tzif

__all__ = ["WallMatcher", "forget_offsets", "next_fire"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)
_ZERO: Final = timedelta(0)
_DAY: Final = 86_400
# Calendars repeat every 400 years, so a rule that matches nothing in 401 years never will.
_HORIZON: Final = 401 * 146_097 * 86_400 // 400
# Wall times at or past this are beyond datetime's year 9999.
_WALL_END: Final = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH) // _SECOND
_LAST_FULL_HORIZON: Final = _WALL_END - _HORIZON  # from here on, the horizon is _WALL_END
_WINDOW: Final = 86_400  # offsets are probed a day at a time: no zone changes twice a day
# More than any two offsets of one zone differ by: at most about 25 h, in zones that moved
# across the date line (Samoa 2011, Kwajalein 1993, Manila 1844, Alaska 1867).
_JUMP: Final = 36 * 3600
# Windows probed at once: a jump's landing covers its fire time and _JUMP past it.
_SPAN: Final = 4 * _WINDOW
_UNKNOWN: Final = 1 << 62  # an offset not probed yet; above every instant
_MAX_ZONES_CACHED: Final = 64
_MAX_SEGMENTS_CACHED: Final = 4096
# Past its table, a zone's changes are worked out for the years a walk reaches: added to
# those known when it reaches a year next to them, afresh when it jumps further; at most
# _TAIL_YEARS years are kept.
_TAIL_YEARS: Final = 1000

_Segment = tuple[int, int, int, int]
# Past the table: the first UTC year worked out, the year past the last, and the changes.
_TailYears = tuple[int, int, list[tuple[int, int]]]


class WallMatcher(Protocol):
    """The wall-clock half of a calendar rule."""

    def first_at_or_after(self, wall: int, limit: int, anchor_day: int) -> int | None:
        """The first matching wall time in ``[wall, limit)``, or ``None``.

        ``anchor_day`` is the wall-clock day of the moment being asked about; rules with
        an interval of several days, weeks or months count their phase from it.
        """
        ...


class _Offsets(Protocol):
    """A zone's offsets as the walk asks about them (see :class:`_ZoneOffsets`)."""

    last: _Segment  # the segment found last, which the walk checks first

    def segment(self, instant: int) -> _Segment: ...

    def before(self, start: int, end: int) -> int: ...

    def lookup(self, instant: int) -> _Segment:
        """As :meth:`segment`, but the segment may not have been checked against the
        zone yet: :meth:`confirm` must check it before an answer depends on it."""
        ...

    def confirm(self, segment: _Segment, instant: int, fire: datetime | None) -> bool:
        """Whether the zone agrees with ``segment`` (found by :meth:`lookup` around
        ``instant``): cheaply from ``fire``, converted at an instant inside it, when
        there is one. If not, the zone is probed from then on."""
        ...


def next_fire(
    matcher: WallMatcher, moment: datetime, zone: tzinfo, *, fixed: bool
) -> datetime | None:
    """The first instant strictly after ``moment`` at which ``matcher`` fires in ``zone``."""
    returned, instant = _last_returned
    if moment is not returned:  # a scheduler asks about the fire time returned last
        # Whole seconds, floored exactly: the float's error is far below half a second.
        stamp = moment.timestamp()
        instant = round(stamp - moment.microsecond * 1e-6) if moment.microsecond else int(stamp)
    if zone is UTC:
        return _next_fire_fixed_offset(matcher, instant, zone)
    offsets = _ZONES.get(zone)
    if offsets is None:
        if isinstance(zone, timezone):
            return _next_fire_fixed_offset(matcher, instant, zone)
        offsets = _offsets_of(zone)
    found = _next_fire_in_zone(matcher, instant, offsets, zone, fixed=fixed)
    if found is _DISAGREED:  # a segment read from the zone's file disagreed with the zone
        return next_fire(matcher, moment, zone, fixed=fixed)  # now probed
    return found


def _next_fire_in_zone(
    matcher: WallMatcher, instant: int, offsets: _Offsets, zone: tzinfo, *, fixed: bool
) -> datetime | None:
    global _last_returned  # noqa: PLW0603  # see _at
    last = offsets.last  # no call on the hot path when it holds
    segment = last if last[0] <= instant < last[1] else offsets.lookup(instant)
    start, end, offset, before = segment
    wall = instant + offset
    horizon = wall + _HORIZON if wall < _LAST_FULL_HORIZON else _WALL_END
    low = wall + 1
    # Only a change less than a day before the moment can have repeated its walls.
    if fixed and instant - start < _JUMP:
        # Inside a repeated hour, walls up to the change were already reached once.
        low = max(low, start + (before if before != _UNKNOWN else offsets.before(start, end)))
    if low >= horizon:
        return None
    found = matcher.first_at_or_after(low, horizon, wall // _DAY)
    if found is not None and found < end + offset:  # most often: in the moment's segment
        # A fixed-time wall inside a gap fires as the gap ends, at the segment's start.
        instant = found - offset if found - offset > start else start
        try:  # as _at does, without the call
            fire: datetime | None = datetime.fromtimestamp(instant, zone)
        except (OverflowError, ValueError, OSError):
            fire = None
        # A segment just looked up is checked against the fire's own offset.
        if segment is not last and not offsets.confirm(segment, instant, fire):
            return _DISAGREED
        if fire is not None:
            _last_returned = (fire, instant)
        return fire
    if segment is not last and not offsets.confirm(segment, instant, None):
        return _DISAGREED
    return _walk_on(matcher, instant, offsets, zone, (end, offset, low, found), fixed=fixed)


def _next_fire_fixed_offset(matcher: WallMatcher, instant: int, zone: timezone) -> datetime | None:
    offset = 0 if zone is UTC else zone.utcoffset(None) // _SECOND
    wall = instant + offset
    horizon = wall + _HORIZON if wall < _LAST_FULL_HORIZON else _WALL_END
    if wall + 1 >= horizon:
        return None
    found = matcher.first_at_or_after(wall + 1, horizon, wall // _DAY)
    return None if found is None else _at(found - offset, zone)


def _walk_on(
    matcher: WallMatcher,
    instant: int,
    offsets: _Offsets,
    zone: tzinfo,
    searched: tuple[int, int, int, int | None],
    *,
    fixed: bool,
) -> datetime | None:
    """Go on from the segment ending at ``end`` (of ``offset``), where the walls from
    ``low`` up to ``found`` held no match; ``_DISAGREED`` if a segment read on the way
    turns out to disagree with the zone."""
    end, offset, searched_from, found = searched
    wall = instant + offset
    horizon = wall + _HORIZON if wall < _LAST_FULL_HORIZON else _WALL_END
    anchor = wall // _DAY
    settled = instant + _JUMP
    while found is not None:
        # Nothing matches in [searched_from, found). Once past the offsets near the moment,
        # the segments whose walls all lie well below ``found`` change nothing: skip them.
        ahead = found - offset - _JUMP
        target = ahead if end >= settled and ahead > end else end
        segment = offsets.lookup(target)
        start, end, offset, low = _enter(offsets, segment, target, fixed=fixed)
        if not searched_from <= low <= found:
            searched_from = low
            found = matcher.first_at_or_after(low, horizon, anchor) if low < horizon else None
        # The segment is checked where the walk fires in it (against the fire's own
        # offset, which costs nothing more) or where it leaves it.
        if found is not None and found < end + offset:
            fire = _at(found - offset if found - offset > start else start, zone)
            return fire if offsets.confirm(segment, target, fire) else _DISAGREED
        if not offsets.confirm(segment, target, None):
            return _DISAGREED
    return None


# What _walk_on answers when a segment read from a TZif file disagrees with the zone:
# told apart by identity, never returned to a caller.
_DISAGREED: Final = datetime.min.replace(tzinfo=UTC)


def _enter(
    offsets: _Offsets, segment: _Segment, target: int, *, fixed: bool
) -> tuple[int, int, int, int]:
    """The ``segment`` from ``target`` on (start, end, offset) and the first wall to search
    in it: fixed-time rules carry the highest wall already reached across a change."""
    start, end, offset, before = segment
    if start < target:  # the target lies inside a segment: no change happens there
        return target, end, offset, target + offset
    if not fixed:
        return start, end, offset, start + offset
    if before == _UNKNOWN:
        before = offsets.before(start, end)
    return start, end, offset, start + before


def _at(instant: int, zone: tzinfo) -> datetime | None:
    global _last_returned  # noqa: PLW0603  # one slot, replaced whole: no lock needed
    try:
        found = datetime.fromtimestamp(instant, zone)
    except (OverflowError, ValueError, OSError):
        return None
    _last_returned = (found, instant)
    return found


# The fire time returned last and its instant: datetimes are immutable, so the same
# object asked about next needs no conversion (a zone's costs several lookups).
_last_returned: tuple[datetime | None, int] = (None, 0)


class _ZoneOffsets:
    """A zone's UTC offsets, probed a few windows (days) at a time where they are asked
    about, and kept as the segments of constant offset found so far, merged where they
    meet. A rule that fires once a year probes a few days a year, not the whole year."""

    __slots__ = ("_learning", "_segments", "_zone", "last")

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        # (start, end, offset, offset just before start), sorted and disjoint. Readers take
        # no lock: the list changes by one slice assignment at a time, under _learning.
        self._segments: list[_Segment] = []
        self._learning = threading.Lock()
        self.last: _Segment = (0, 0, 0, 0)

    def segment(self, instant: int) -> _Segment:
        """Start, end, offset, and the offset just before the start, around ``instant``.

        The start is either a change of offset or a point where nothing changes (then
        the offset before it is the segment's own); the offset before it may be
        ``_UNKNOWN``, which :meth:`before` probes."""
        last = self.last
        if last[0] <= instant < last[1]:
            return last
        found = self._known(instant)
        if found is None:
            with self._learning:
                found = self._known(instant) or self._learn(instant)
        self.last = found
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
        offset = self.offset(start - 1)
        with self._learning:
            segments = self._segments
            index = bisect.bisect_left(segments, (start, end))
            if index < len(segments) and segments[index][:2] == (start, end):
                segments[index] = (start, end, segments[index][2], offset)
        return offset

    def lookup(self, instant: int) -> _Segment:
        """As :meth:`segment`: probed segments need no check."""
        return self.segment(instant)

    def confirm(self, segment: _Segment, instant: int, fire: datetime | None) -> bool:
        """Always: probed segments are the zone's own."""
        return True

    def _change_between(self, low: int, high: int, before: int) -> int:
        while high - low > 1:
            middle = (low + high) // 2
            if self.offset(middle) == before:
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
            return [self.offset(instant) for instant in instants]

    def offset(self, instant: int) -> int:
        """The zone's offset at ``instant``, probed."""
        return _probe(self._zone, instant)


# Offsets as timedeltas, to compare with a zone's; arithmetic only, so kept across
# forget_offsets. Far fewer offsets than this are in use.
_DELTAS: dict[int, timedelta] = {}


def _delta(seconds: int) -> timedelta:
    if len(_DELTAS) >= 1024:
        _DELTAS.clear()
    delta = _DELTAS[seconds] = timedelta(seconds=seconds)
    return delta


def _probe(zone: tzinfo, instant: int) -> int:
    """The zone's offset at ``instant``, as ``datetime`` converts it."""
    try:
        local = datetime.fromtimestamp(instant, zone)
    except (OverflowError, ValueError, OSError):
        try:  # some platforms refuse timestamps that datetime itself can hold
            local = (_EPOCH + timedelta(seconds=instant)).astimezone(zone)
        except (OverflowError, ValueError):
            return 0
    offset = local.utcoffset()
    return 0 if offset is None else offset // _SECOND


class _TableOffsets:
    """A zone's UTC offsets read from the compiled TZif data its ``ZoneInfo`` was loaded
    from: the table of changes, then the POSIX TZ rule of its footer for the years past
    the table, computed a year at a time as :class:`ZoneInfo` itself does.

    Whatever the data does not say is probed instead: instants before the table's first
    change, and the years past it when the footer is not a rule this reader knows. The
    first time a segment is used it is checked against the zone (by :meth:`segment` at
    the instant asked about; after :meth:`lookup`, by :meth:`confirm`), and a zone that
    disagrees (its file changed since it was loaded) is probed from then on. Segments
    may start where nothing changes (a UTC new year past the table); the walk treats
    those as it treats any other start."""

    __slots__ = (
        "_changes",
        "_checked",
        "_footer",
        "_kinds",
        "_offsets",
        "_prober",
        "_rule",
        "_tail_years",
        "_trusted",
        "_zone",
        "last",
    )

    def __init__(self, table: _tzif.Table, zone: tzinfo) -> None:
        # UTC seconds of each change, sorted; per change, the index of its offset in
        # ``offsets``; and the footer's TZ string, read when first needed.
        self._changes, self._kinds, self._offsets, footer = table
        self._footer: str | None = footer
        self._rule: _tzif.TailRule | None = None
        self._zone = zone
        self._prober: _ZoneOffsets | None = None
        self._trusted = True
        self._checked: set[int] = set()  # starts of the segments checked against the zone
        self._tail_years: _TailYears = (0, 0, [])  # first and past the last, changes
        self.last: _Segment = (0, 0, 0, 0)

    def segment(self, instant: int) -> _Segment:
        """As :meth:`_ZoneOffsets.segment`."""
        last = self.last
        if last[0] <= instant < last[1]:
            return last
        found = self.last = self._find(instant)
        return found

    def before(self, start: int, end: int) -> int:
        """The offset just before ``start``, where a segment begins."""
        last = self.last
        if last[0] == start and last[3] != _UNKNOWN:
            return last[3]
        return self._find(start - 1)[2]

    def lookup(self, instant: int) -> _Segment:
        """As :meth:`segment`, left for :meth:`confirm` to check."""
        last = self.last
        if last[0] <= instant < last[1]:
            return last
        return self._read_trusted(instant) or self._probed().segment(instant)

    def confirm(self, segment: _Segment, instant: int, fire: datetime | None) -> bool:
        """As :meth:`_Offsets.confirm`."""
        if segment[0] not in self._checked:
            if fire is None:
                agrees = self._agrees(segment, instant)
            else:  # the zone's offset at the fire, an instant inside the segment
                offset = segment[2]
                agrees = fire.utcoffset() == (_DELTAS.get(offset) or _delta(offset))
                if agrees:
                    self._remember(segment)
            if not agrees:
                self._trusted = False
                return False
        self.last = segment
        return True

    def _find(self, instant: int) -> _Segment:
        found = self._read_trusted(instant)
        if found is None:
            return self._probed().segment(instant)
        if found[0] not in self._checked and not self._agrees(found, instant):
            self._trusted = False
            return self._probed().segment(instant)
        return found

    def _read_trusted(self, instant: int) -> _Segment | None:
        """The segment around ``instant`` as the data says, unless it is silent or no
        longer trusted."""
        try:
            return self._read(instant) if self._trusted else None
        except IndexError:  # an offset index out of range: checked only where it is read
            self._trusted = False
            return None

    def _agrees(self, segment: _Segment, instant: int) -> bool:
        """Whether the zone has the segment's offset at ``instant``; remembered if so."""
        offset = segment[2]
        try:  # comparing timedeltas: cheaper than converting the zone's to seconds
            zone_offset = datetime.fromtimestamp(instant, self._zone).utcoffset()
            agrees = zone_offset == (_DELTAS.get(offset) or _delta(offset))
        except (OverflowError, ValueError, OSError):
            agrees = _probe(self._zone, instant) == offset
        if agrees:
            self._remember(segment)
        return agrees

    def _remember(self, segment: _Segment) -> None:
        checked = self._checked
        if len(checked) >= _MAX_SEGMENTS_CACHED:
            checked.clear()
        checked.add(segment[0])

    def _probed(self) -> _ZoneOffsets:
        """The zone's offsets as probing finds them, where the data is silent."""
        prober = self._prober
        if prober is None:
            prober = self._prober = _ZoneOffsets(self._zone)
        return prober

    def _read(self, instant: int) -> _Segment | None:
        """The segment around ``instant`` as the data says, or ``None`` if it is silent."""
        changes = self._changes
        if changes and changes[0] <= instant <= changes[-1]:
            index = bisect.bisect_right(changes, instant) - 1
            offsets, kinds = self._offsets, self._kinds
            # Past the last change the footer decides, from the next second on.
            after = changes[index + 1] if index + 1 < len(changes) else instant + 1
            before = offsets[kinds[index - 1]] if index else _UNKNOWN
            return changes[index], after, offsets[kinds[index]], before
        if changes and instant < changes[0]:
            return None
        rule = self._tail_rule()
        if isinstance(rule, int):
            last = self._offsets[self._kinds[-1]] if changes else rule
            return (changes[-1] + 1 if changes else -_UNKNOWN), _UNKNOWN, rule, last
        return None if rule is None or not changes else self._tail(instant)

    def _tail_rule(self) -> _tzif.TailRule | None:
        footer = self._footer
        if footer is not None:
            last = self._offsets[self._kinds[-1]] if self._changes else None
            self._rule = _tzif.tail_rule(footer, last, self._offsets[-1])
            self._footer = None
        return self._rule

    def _tail(self, instant: int) -> _Segment:
        """The segment past the table, from the rule's changes in the UTC years worked
        out so far; a segment reaching past them ends (or starts) at a year's start,
        where nothing need change."""
        year = _tzif.utc_year(instant)
        first, last, changes = self._tail_years
        if not first <= year < last:
            first, last, changes = self._tail_years = self._cover(year)
        index = bisect.bisect_right(changes, (instant, _UNKNOWN)) - 1
        if index + 1 == len(changes) and last <= _tzif.LAST_YEAR and last - first < _TAIL_YEARS:
            # Learn the next year now rather than end the segment at its start: a walk
            # that reaches the end would ask again.
            first, last, changes = self._tail_years = self._cover(last)
        start, offset = changes[index]
        if index:
            before = changes[index - 1][1]
        elif start == self._changes[-1] + 1:
            before = self._offsets[self._kinds[-1]]
        else:  # a year's start: found by :meth:`before` if a walk needs it
            before = _UNKNOWN
        if index + 1 < len(changes):
            end = changes[index + 1][0]
        else:
            end = _tzif.year_start(last) if last <= _tzif.LAST_YEAR else _UNKNOWN
        return start, end, offset, before

    def _cover(self, year: int) -> _TailYears:
        """The changes of the years worked out so far and of ``year``, if it is next to
        them (a walk goes on to the next years), else of ``year`` alone."""
        first, last, changes = self._tail_years
        rule = self._rule
        assert isinstance(rule, _tzif.PosixRule)  # noqa: S101  # _read checked it
        points = _tzif.rule_points(rule, year, self._changes[-1] + 1)
        if first < last and last - first < _TAIL_YEARS and year in (first - 1, last):
            if year == last:
                return first, last + 1, _tzif.merged(changes, points)
            return year, last, _tzif.merged(points, changes)
        return year, year + 1, _tzif.merged(points, ())


def _table_offsets(zone: tzinfo) -> _TableOffsets | None:
    """The zone's offsets from the TZif data it was loaded from, if that can be found and
    read; ``None`` otherwise."""
    key = zone.key if type(zone) is ZoneInfo else None
    data = None if key is None else _tzif.tzif_data(key)
    table = None if data is None else _tzif.parse_tzif(data)
    return None if table is None else _TableOffsets(table, zone)


_ZONES: dict[tzinfo, _Offsets] = {}


def _offsets_of(zone: tzinfo) -> _Offsets:
    offsets = _ZONES.get(zone)
    if offsets is None:
        if len(_ZONES) >= _MAX_ZONES_CACHED:
            _ZONES.clear()
        offsets = _ZONES[zone] = _table_offsets(zone) or _ZoneOffsets(zone)
    return offsets


def forget_offsets() -> None:
    """Drop every zone's cached offsets, and with them what was read of its TZif data
    (benchmarks measure from a cold cache)."""
    global _last_returned  # noqa: PLW0603
    _ZONES.clear()
    _last_returned = (None, 0)
