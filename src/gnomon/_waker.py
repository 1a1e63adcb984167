"""A precise wake-up for an asyncio loop, and the last stretch before a deadline.

``loop.call_later`` cannot wake a loop on time: the selector's timeout is a whole number
of milliseconds, rounded up, so a timer fires on average half a millisecond late, and up
to a whole one. A thread waits on a condition variable instead, which wakes within a
fraction of a millisecond, and hands the wake-up to the loop through its self-pipe
(``call_soon_threadsafe``), which the selector notices at once. It does so a
:class:`Headstart` before the deadline (learned from how late its wake-ups come): the
loop fires what is due ahead, then ``arrive``s at the deadline before it starts any run.
The thread face's leading thread does the same.

The thread waits only while a deadline is set; it never touches the scheduler's state,
only calls ``callback`` on the loop, once per deadline.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["EARLY", "Headstart", "LoopWaker", "arrive", "sharpen_timers"]

_MAX_SLEEP = 60.0
EARLY = 200e-6
"""How long before a deadline a timer thread first ends its timed wait (seconds); its
:class:`Headstart` then learns how early it must be on this machine.

A timed wait on a condition ends about 0.1 ms late at the median on an idle machine,
more at the tail; the thread wakes this much early and covers the rest with ``arrive``.
"""


class Headstart:
    """How long before a deadline a timer thread ends its timed wait, learned from how
    late its timed waits end.

    A wait ends late by a few microseconds on an idle machine, by a few tenths of a
    millisecond at the tail on a virtual one. The headstart follows the 98th percentile
    of that overshoot (a stochastic quantile estimate: each wait that ended later than
    covered moves it up by ``_STEP * 0.98``, each other one down by ``_STEP * 0.02``),
    plus ``_WORK`` for firing the batch before the deadline. One wait that ends very late
    (a suspended process, a stepped clock) moves it by one step only, and it stays
    within ``[_FLOOR, _CEILING]``. The thread spins (``arrive``) for what is left of it,
    so a machine whose waits end on time spends less processor time than one whose do not.

    One thread at a time writes it (the thread face's leader, under the engine's lock;
    the async face's loop); others read ``seconds``.
    """

    __slots__ = ("seconds",)

    _STEP = 20e-6
    _QUANTILE = 0.98
    _WORK = 100e-6
    _FLOOR = 100e-6
    _CEILING = 1e-3

    def __init__(self) -> None:
        self.seconds = EARLY

    def learn(self, overshoot: float) -> None:
        """A timed wait meant to end ``seconds`` before a deadline ended ``overshoot``
        seconds after it was due."""
        if overshoot + self._WORK > self.seconds:
            self.seconds = min(self._CEILING, self.seconds + self._STEP * self._QUANTILE)
        else:
            self.seconds = max(self._FLOOR, self.seconds - self._STEP * (1 - self._QUANTILE))


class FireAhead:
    """How much earlier than its headstart a timer wakes for a deadline that brings a
    burst, learned from how long firing takes.

    Firing a due job (its next fire time, its heap entry, its gates, its run) costs a few
    microseconds, so a deadline that brings a thousand jobs takes milliseconds to fire.
    Done after the deadline, that work would sit in front of the runs; done before it,
    the runs start one after the other as soon as the deadline comes. The timer counts
    the entries due together at its next deadline (``Engine.due_together``) and ends its
    wait earlier by their firing time, beyond the first ``FREE`` entries, which the
    headstart's allowance for work ahead already covers, with a margin of a half (a
    firing slowed by the garbage collector, or cold caches after a long wait); it never
    wakes more than ``_CEILING`` earlier. What it wakes too early, it sleeps away, all
    but the last stretch (``arrive``). The time
    per entry follows what firing took at past deadlines that brought more than ``FREE``
    entries, within ``[_FASTEST, _SLOWEST]``: an exponential average that moves up to a
    slower firing with weight ``_RISE`` and down to a faster one with weight ``_FALL``.
    It starts above what firing costs once warm (4 to 10 µs an entry on 2-core virtual
    machines), because the first burst fires with cold caches: waking too early costs
    little, too late the runs' time.

    One thread at a time writes it (the thread face's leader; the async face's loop).
    """

    __slots__ = ("per_entry",)

    FREE = 32
    _INITIAL = 10e-6
    _FASTEST = 0.5e-6
    _SLOWEST = 50e-6
    _CEILING = 20e-3
    _RISE = 0.75
    _FALL = 0.25
    _MARGIN = 1.5

    def __init__(self) -> None:
        self.per_entry = self._INITIAL

    def limit(self) -> int:
        """How many due entries are worth counting: past these, the ceiling holds."""
        return self.FREE + int(self._CEILING / (self.per_entry * self._MARGIN)) + 1

    def before(self, due_together: Callable[[int], int]) -> float:
        """How much earlier to wake for the next deadline, given how to count the
        entries due at it up to a limit (``Engine.due_together``)."""
        return self.seconds(due_together(self.limit()))

    def seconds(self, entries: int) -> float:
        """How much earlier to wake for a deadline that brings ``entries``."""
        if entries <= self.FREE:
            return 0.0
        return min(self._CEILING, (entries - self.FREE) * self.per_entry * self._MARGIN)

    def learn(self, entries: int, elapsed: float) -> None:
        """Firing ``entries`` took ``elapsed`` seconds: the estimate moves most of the
        way up to a slower firing (waking too late costs the runs' time), a little of
        the way down to a faster one (waking too early costs only a spin)."""
        if entries > self.FREE:
            sample = min(self._SLOWEST, max(self._FASTEST, elapsed / entries))
            weight = self._RISE if sample > self.per_entry else self._FALL
            self.per_entry += (sample - self.per_entry) * weight


_PR_SET_TIMERSLACK = 29
_SLACK_NS = 1


def sharpen_timers() -> None:
    """Ask Linux to end this thread's timed waits on time.

    By default the kernel may end a timed wait up to 50 µs late, to group wake-ups;
    gnomon's timer threads wait for deadlines, so they ask for no such slack (the
    setting is per thread). Elsewhere, or if the call fails, nothing changes.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_TIMERSLACK, _SLACK_NS, 0, 0, 0)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, loaded once (a ``CDLL`` is a reference cycle left to the
    garbage collector, one per worker thread otherwise); None where it does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # only where the call exists

        prctl: Callable[..., int] = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def arrive(deadline: float, early: float = EARLY, *, asleep_until: float = 0.0) -> None:
    """Return when ``time.time()`` reaches ``deadline``, at most ``early`` away.

    The last stretch before a deadline, after a timed wait that ended early on purpose:
    the thread yields (``time.sleep(0)``, which releases the interpreter to other
    threads) until the deadline, so it is running when the deadline comes instead of
    being woken by the kernel after it. With ``asleep_until`` (a timed wait's learned
    lateness, ``Headstart.seconds``), a thread further than that from the deadline
    sleeps until then first: a wake-up made early for work that took less time than
    foreseen (see ``FireAhead``) spends the rest asleep, not spinning. It costs at most
    ``early`` of CPU per deadline. If the wall clock is stepped back meanwhile, it still
    returns within ``2 * early``.
    """
    clock, pause, elapsed = time.time, time.sleep, time.monotonic
    cap = elapsed() + 2 * early
    if asleep_until:
        rest = min(deadline - clock() - asleep_until, early)
        if rest > 0:
            pause(rest)
    while clock() < deadline and elapsed() < cap:
        pause(0)


class LoopWaker:
    """Calls ``callback(deadline, early)`` on ``loop`` just before the wall clock reaches
    the set deadline: ``early`` before it (``headstart.seconds``, plus the ``ahead`` given
    with the deadline), or at once if that has passed. The callback does what it can
    ahead of time, then ``arrive``s (with ``early``) before anything that must not start
    early."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        callback: Callable[[float, float], None],
        headstart: Headstart | None = None,
    ) -> None:
        self._loop = loop
        self._callback = callback
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._deadline: float | None = None
        self._ahead = 0.0
        self._closed = False
        self.headstart = Headstart() if headstart is None else headstart
        """How early the thread wakes the loop; ``arrive`` at the deadline with it."""
        self._thread = threading.Thread(target=self._main, name="gnomon-waker", daemon=True)
        self._thread.start()

    def set(self, deadline: float | None, ahead: float = 0.0) -> None:
        """Wake the loop at ``deadline`` (a ``time.time()`` stamp), ``ahead`` seconds
        earlier than the headstart alone would (a burst to fire; see ``FireAhead``);
        None: not at all.

        Replaces any earlier deadline; safe from any thread.
        """
        with self._lock:
            earlier, earlier_ahead = self._deadline, self._ahead
            self._deadline, self._ahead = deadline, ahead
            if deadline is not None and (
                earlier is None or deadline - ahead < earlier - earlier_ahead
            ):
                self._changed.notify()

    def close(self) -> None:
        """Stop the thread (it ends at once; a pending deadline is dropped)."""
        with self._lock:
            self._closed = True
            self._deadline = None
            self._changed.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _main(self) -> None:
        sharpen_timers()
        clock = time.time
        timed_out = False  # the last wait ran its whole span: a wake-up to learn from
        with self._lock:
            while not self._closed:
                deadline = self._deadline
                if deadline is None:
                    timed_out = False
                    self._changed.wait(_MAX_SLEEP)
                    continue
                early = self.headstart.seconds + self._ahead
                wait = deadline - clock()
                if wait > early:
                    timed_out = not self._changed.wait(min(wait - early, _MAX_SLEEP))
                    continue
                self._deadline = None  # one wake-up per deadline; the callback sets the next
                loop = self._loop
                if loop.is_closed():
                    return
                woken_for = deadline - early if timed_out else None
                try:
                    loop.call_soon_threadsafe(self._arrived, deadline, early, woken_for)
                except RuntimeError:  # the loop closed meanwhile
                    return

    def _arrived(self, deadline: float, early: float, woken_for: float | None) -> None:
        """On the loop: learn how late the wake-up came (from the thread's timed wait to
        the loop running this), then call back."""
        if woken_for is not None:
            self.headstart.learn(time.time() - woken_for)
        self._callback(deadline, early)
