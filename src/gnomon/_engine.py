"""The state core: one lock owns every job, the timer heap and the run bookkeeping.

Every transition here is short and never calls user code. A transition returns (or
appends to) a list of *effects* — plain callables — that the caller runs after the lock
is released: dispatching a run to the pool or loop, reporting a skip to the monitor.

Every transition may meet a job that was removed since the message that triggered it
was created (a timer entry, a finishing run, a handle held by a user). That is a normal
case: a job's heap entry names it by id and sequence number and is dropped when the
job is gone or armed anew (its entries hold no object, so the garbage collector leaves
them alone, however many jobs there are); a run that
finishes for a removed job releases its slot and is otherwise forgotten. This is the
structural answer to the crash class of gocron v2.2.5 to 2.2.6.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol
from uuid import uuid4

from gnomon._clock import Clock, FakeClock, SystemClock, stamp_function
from gnomon._distributed import occurrence_key
from gnomon._errors import InvalidJob, JobNotFound, SchedulerShutDown
from gnomon._events import LimitMode, Outcome, Recovery, RunEvent
from gnomon._job import Job, JobOwner, JobState
from gnomon._rules import Every, EveryRandom, Once, Rule
from gnomon._run import Run, call_hook
from gnomon._stores.contract import RunRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Executor
    from zoneinfo import ZoneInfo

    from gnomon._distributed import Elector
    from gnomon._events import Monitor
    from gnomon._job import JobSpec
    from gnomon._stores.leases import StoreLocker

__all__ = ["Driver", "Effects", "Engine"]

Effects = list["Callable[[], None]"]
_Kept = tuple[Run, Outcome, "BaseException | None", datetime, int, "str | None"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TINY = timedelta(microseconds=1)
_WALK_LIMIT = 100_000
_MISSED_LIMIT = 10_000
_QUEUE_LIMIT = 1000
WAKE_BATCH = 32
"""Heap entries fired in one hold of the engine's lock; a deadline that brings more is a
burst, whose runs a driver starts while it fires the rest."""

# The timer heap holds one int per entry, its sort key: the fire time in microseconds,
# then the push's ``seq``, then the job's 128-bit id (or the timed-entry flag, the
# entry itself then kept in ``Engine._timed`` by its seq). An int is no object the
# cyclic collector tracks, so a hundred thousand armed jobs add nothing to its passes,
# nor to the allocations that set them off, as a tuple per entry would.
_TICKS = 1_000_000
_SEQ_SHIFT = 129
_TICK_SHIFT = _SEQ_SHIFT + 64
_SEQ_MASK = (1 << 64) - 1
_TIMED = 1 << 128
_ID_MASK = _TIMED - 1
_ROUNDS_EXACTLY = 2.0**32
"""Below this POSIX timestamp (in 2106) a float stamp, rounded, is its exact microsecond;
from it on, a fire time's tick is counted from its datetime."""
_RETRY_LIMIT = 1000
_MARGIN = timedelta(milliseconds=50)
"""Added to a store's or locker's delay (beside 5%) before asking it again."""
_UNRECORDED = (Outcome.SKIPPED_LOCKED, Outcome.SKIPPED_NOT_LEADER, Outcome.SKIPPED_LOCK_ERROR)
"""Outcomes a store does not record: another scheduler ran the occurrence (or may). A
tuple: ``in`` compares by identity, where a set would call the enums' Python ``__hash__``."""
_UTC_KEYS = frozenset(
    {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Universal", "Zulu", "Etc/Universal", "Etc/Zulu"}
)


class Driver(Protocol):
    """What the engine needs from a face (thread ``Scheduler`` or ``AsyncScheduler``)."""

    def dispatch(self, run: Run) -> None:
        """Begin executing ``run``'s pipeline (pool thread or loop task)."""

    def report(self, effect: Callable[[], None]) -> None:
        """Run ``effect`` (which calls user code) off the timer's critical path."""

    def deadline_moved(self) -> None:
        """The earliest deadline got earlier. Called with the engine lock held."""

    def state_changed(self) -> None:
        """Runs finished or jobs changed. Called with the engine lock held."""

    def on_timer(self) -> bool:
        """True on the face's timer thread, where user code must not run."""


class _Timed:
    """A heap entry that is not a job's fire time: a jittered start, a timeout, a retry."""

    __slots__ = ()

    def fire(self, engine: Engine, now: datetime, effects: Effects) -> None:
        raise NotImplementedError


class _DelayedOffer(_Timed):
    """A jittered start, or a re-claim attempt after a lease held elsewhere expires."""

    __slots__ = ("key", "retries", "scheduled_at", "state")

    def __init__(
        self, state: JobState, scheduled_at: datetime, *, key: str | None, retries: int
    ) -> None:
        self.state = state
        self.scheduled_at = scheduled_at
        self.key = key
        self.retries = retries

    def fire(self, engine: Engine, now: datetime, effects: Effects) -> None:
        if not self.state.removed and engine.accepting:
            engine.offer(
                self.state, self.scheduled_at, now, effects, retries=self.retries, key=self.key
            )


class _PendingRetry(_Timed):
    """A failed attempt's retry, waiting for its time. It holds its job's singleton slot
    but is not a run yet: ``wait_idle`` does not wait for it."""

    __slots__ = ("run",)

    def __init__(self, run: Run) -> None:
        self.run = run

    def fire(self, engine: Engine, now: datetime, effects: Effects) -> None:
        state = self.run.state
        pending = state.pending_retry
        if pending is not None and self in pending:  # not dropped meanwhile
            pending.remove(self)
            if not pending:
                state.pending_retry = None
            engine.start_retry(self.run, now, effects)


class _UnclaimedProbe(_Timed):
    """An at-least-once job's occurrences that its locker failed to claim: claimed again,
    by the job's catch-up policy, once the locker's renew interval has passed."""

    __slots__ = ("state",)

    def __init__(self, state: JobState) -> None:
        self.state = state

    def fire(self, engine: Engine, now: datetime, effects: Effects) -> None:
        engine.probe_unclaimed(self.state, now, effects)


class _Timeout(_Timed):
    __slots__ = ("run",)

    def __init__(self, run: Run) -> None:
        self.run = run

    def fire(self, engine: Engine, now: datetime, effects: Effects) -> None:
        run = self.run
        if run.finished:
            return
        run.timed_out = True
        run.cancel()
        if run.spec.is_async:
            effects.append(run.interrupt)
        elif not run.spec.needs_loop and not run.reported:
            # A thread cannot be stopped: report the run timed out now, at its deadline,
            # and let it keep its slot until it returns.
            run.reported = True
            effects.append(engine.report_effect(lambda: run.report_timed_out(now)))


class Engine:
    """The one owner of scheduler state. See the module docstring.

    Fire times are compared as UTC timestamps, never as local datetimes: two aware
    datetimes of one zone compare by wall clock and ignore ``fold``, so 01:30 EDT and
    01:30 EST would look equal on the night clocks fall back.
    """

    _start_memo: tuple[datetime, float, datetime] | None = None
    """The latest ``start_at`` armed: (it, its timestamp, it in the engine's zone)."""

    def __init__(
        self,
        *,
        timezone: ZoneInfo,
        clock: Clock,
        max_concurrent: int | None,
        limit_mode: LimitMode,
        elector: Elector | None,
        clustered: bool,
        monitor: Monitor | None,
        logger: logging.Logger,
        driver: Driver,
        owner: JobOwner,
    ) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.tz = timezone
        self._utc = timezone.key in _UTC_KEYS
        # The clock, whether it is a FakeClock, and it read as a time.time() stamp.
        self.clock, self.fake_time = clock, isinstance(clock, FakeClock)
        self.stamp = stamp_function(clock)
        self.executor: Executor | None = None
        self.run_coroutine: Callable[[Any], Any] = _no_loop
        self.max_concurrent = max_concurrent
        self.limit_mode = limit_mode
        self.elector = elector
        self.clustered = clustered
        self.monitor = monitor
        self.log = logger
        self.driver = driver
        self.owner = owner
        self.jobs: dict[int, JobState] = {}
        self._names: dict[str, int] = {}
        # Fire times as sort keys (see _TICKS): a job's is valid while the job is armed
        # by its seq; a timeout's, a retry's, a delayed start's or a probe's entry is in
        # _timed.
        self._heap: list[int] = []
        self._timed: dict[int, _Timed] = {}
        self._seq = itertools.count(1)
        self._stale = self._running = 0
        self._queue: deque[Run] = deque()
        self._waiting = 0
        self._queued_jobs: set[JobState] = set()
        """Jobs that have (or had) runs queued for their singleton slot."""
        self._reports = self._settling = 0
        self.watchers = 0
        self.live_runs: set[Run] = set()
        self.started = self.accepting = self.shut_down = False
        self.catch_up_grace = 1.0
        self.node: str | None = None
        self.leading = False
        """What the elector last answered (a run asks it): this node leads."""
        self.history: deque[_Kept] = deque(maxlen=1000)
        """In-memory jobs' latest occurrences, kept cheaply: records are built when read."""
        self.store_locker: StoreLocker | None = None
        """Claims durable jobs' occurrences in the store (set by a store-backed face)."""
        self.store_sink: Callable[[RunRecord, Callable[[], None]], None] | None = None
        """Records a durable job's skip in the store, then calls its second argument."""
        self.on_expired: Callable[[JobState, str], None] | None = None
        """Told (off the lock) when a durable job ran out of fire times or runs."""
        self._unclaimed: dict[JobState, list[datetime]] = {}
        """Occurrences whose claim failed (a store error, or a locker's for an
        at-least-once job), by job, waiting to be caught up."""
        self._probing: set[JobState] = set()
        """Jobs with an ``_UnclaimedProbe`` in the heap."""
        self._probe_after: dict[JobState, timedelta] = {}
        """Jobs without a store whose locker failed a claim: its renew interval."""
        self.on_retry_dropped: Callable[[str], None] | None = None
        """Told (off the lock) the key of a durable occurrence whose pending retry was
        dropped, so that its store gives it up too."""

    def handle(self, state: JobState) -> Job:
        return Job(self.owner, state)

    # ---------------------------------------------------------------- registration

    def add(self, state: JobState, now: datetime) -> None:
        """Register a new job added by a call (stored jobs come through ``add_prepared``)."""
        if now.tzinfo is not self.tz:
            now = now.astimezone(self.tz)
        spec, job_id = state.spec, state.id
        if spec.stop_at is not None or type(state.rule) is Once:
            self._check_timing(state, now)
        with self.lock:
            if self.shut_down:
                self._require_open()
            if job_id in self.jobs:
                raise InvalidJob(f"a job with id {_uuid(job_id)} is already registered")
            if self.clustered:
                self._check_name_free(spec.name)
                self._names[spec.name] = self._names.get(spec.name, 0) + 1
            self.jobs[job_id] = state
            if self.started and not state.paused:
                self._arm_first(state, now)

    def add_prepared(
        self, states: Iterable[JobState], now: datetime
    ) -> list[tuple[JobState, InvalidJob]]:
        """Register many stored jobs at once (a store's load), under one hold of the lock:
        states already prepared with their store identity and progress, whose timing was
        checked when they were stored. Those whose id or name
        is taken are returned with the reason; the others are registered (and armed, if
        the engine runs)."""
        if now.tzinfo is not self.tz:
            now = now.astimezone(self.tz)
        refused: list[tuple[JobState, InvalidJob]] = []
        effects: Effects = []
        with self.lock:
            if self.shut_down:
                self._require_open()
            jobs, names = self.jobs, self._names
            for state in states:
                if state.id in jobs:
                    taken = InvalidJob(f"a job with id {_uuid(state.id)} is already registered")
                    refused.append((state, taken))
                    continue
                if self.clustered:
                    try:
                        self._check_name_free(state.spec.name)
                    except InvalidJob as exc:
                        refused.append((state, exc))
                        continue
                    names[state.spec.name] = names.get(state.spec.name, 0) + 1
                jobs[state.id] = state
                if self.started and not state.paused:
                    self._arm_or_expire(state, now, effects)
        self.apply(effects)
        return refused

    def forget(self, state: JobState, reason: str, *, cancel: bool) -> None:
        """Unregister a durable job that was removed in the store by someone else."""
        effects: Effects = []
        with self.lock:
            if not state.removed and self.jobs.get(state.id) is state:
                self._remove(state, reason, cancel=cancel, effects=effects)
        self.apply(effects)

    def sync_progress(self, state: JobState, runs: int, last_run: datetime | None) -> None:
        """Take a durable job's run count and last run from its row (other schedulers
        ran some of its occurrences)."""
        with self.lock:
            state.runs_started = max(state.runs_started, runs)
            if last_run is not None and (state.last_run is None or last_run > state.last_run):
                state.last_run = last_run.astimezone(self.tz)

    def _check_name_free(self, name: str) -> None:
        if self.clustered and self._names.get(name):
            raise InvalidJob(
                f"a job named {name!r} is already registered; with a locker or elector the "
                "name is part of each occurrence's key, so names must be unique"
            )

    def check_timing(self, spec: JobSpec, rule: Rule, now: datetime) -> None:
        """Reject a job that could never fire (``stop_at`` or every instant passed)."""
        self._check_timing(JobState(0, spec, rule), now)

    def _check_timing(self, state: JobState, now: datetime) -> None:
        spec, rule = state.spec, state.rule
        if spec.stop_at is not None and _ts(spec.stop_at) <= _ts(now):
            raise InvalidJob(f"stop_at {spec.stop_at.isoformat()} is not in the future")
        if type(rule) is not Once or spec.start_immediately:
            return
        if rule.instants and rule.next_after(now) is None:
            raise InvalidJob(f"every instant of {rule!r} is in the past")

    def remove(self, job_id: int) -> JobState:
        effects: Effects = []
        with self.lock:
            self._require_open()
            state = self.jobs.get(job_id)
            if state is None:
                raise JobNotFound(f"no job has id {_uuid(job_id)}")
            self._remove(state, "removed", cancel=True, effects=effects)
        self.apply(effects)
        return state

    def remove_state(self, state: JobState) -> None:
        effects: Effects = []
        with self.lock:
            self._require_open()
            if state.removed:
                raise JobNotFound(f"job {state.spec.name!r} ({_uuid(state.id)}) was removed")
            self._remove(state, "removed", cancel=True, effects=effects)
        self.apply(effects)

    def remove_by_tags(self, tags: Iterable[str]) -> int:
        wanted = frozenset(tags)
        effects: Effects = []
        with self.lock:
            self._require_open()
            doomed = [s for s in self.jobs.values() if s.spec.tags & wanted]
            for state in doomed:
                self._remove(state, "removed by tags", cancel=True, effects=effects)
        self.apply(effects)
        return len(doomed)

    def update(
        self, job_id: int, spec: JobSpec, rule: Rule, now: datetime, *, new_rule: bool
    ) -> JobState:
        now = now.astimezone(self.tz)
        effects: Effects = []
        with self.lock:
            self._require_open()
            state = self.jobs.get(job_id)
            if state is None:
                raise JobNotFound(f"no job has id {_uuid(job_id)}")
            old_spec, old_rule = state.spec, state.rule
            if spec.name != old_spec.name and self.clustered:
                self._check_name_free(spec.name)
                self._names[old_spec.name] -= 1
                self._names[spec.name] = self._names.get(spec.name, 0) + 1
            state.spec, state.rule = spec, rule
            try:
                self._check_timing(state, now)
            except InvalidJob:
                state.spec, state.rule = old_spec, old_rule
                raise
            if state in self._probe_after and not _claimed_again(spec):
                # its locker's failed claims now stand, as an at-most-once job's do
                self._unclaimed.pop(state, None)
                del self._probe_after[state]
            retimed = new_rule or old_rule != rule or _timing_changed(old_spec, spec)
            if retimed:
                state.resume_from = state.stored_next = None  # the old rule's phase is gone
            if retimed and self.started and not state.paused:
                self._disarm(state)
                self._arm_first(state, now)
            if self.monitor is not None:
                effects.append(self._hook_effect(lambda: self._monitor_job("registered", state)))
        self.apply(effects)
        return state

    def set_paused(
        self,
        state: JobState,
        paused: bool,
        now: datetime,
        *,
        reason: str | None = None,
        catch_up: bool = False,
    ) -> None:
        """Pause a job (keeping where its schedule stood), or resume it from there."""
        effects: Effects = []
        with self.lock:
            self._require_open()
            if state.removed:
                raise JobNotFound(f"job {state.spec.name!r} ({_uuid(state.id)}) was removed")
            if paused:
                state.pause_reason = reason
            if state.paused == paused:
                return
            state.paused = paused
            if paused:
                if state.next_fire is not None:
                    state.resume_from = state.next_fire
                self._drop_retry(state, effects)
                self._disarm(state)
            else:
                why = "while paused"
                if state.pause_reason:
                    why = f"while paused ({state.pause_reason})"
                state.pause_reason = None
                if self.started:
                    moment = now.astimezone(self.tz)
                    self._resume(state, moment, effects, catch_up=catch_up, why=why)
        self.apply(effects)

    def _resume(
        self, state: JobState, now: datetime, effects: Effects, *, catch_up: bool, why: str
    ) -> None:
        """Re-arm a paused or stopped job in its existing phase: what fell due meanwhile
        is one missed record (``catch_up``: the job's catch-up policy decides)."""
        resume_from, state.resume_from = state.resume_from, None
        if resume_from is None and state.stored_next is not None:
            # loaded paused from a store: its stored progress is where it stood
            resume_from, state.stored_next = state.stored_next.astimezone(self.tz), None
        if resume_from is None:
            self._arm_or_expire(state, now, effects)
            return
        if _ts(resume_from) > _ts(now):
            self._arm(state, resume_from)
            return
        try:
            following, following_stamp, passed = self._following(state, resume_from, now)
        except _RuleStuck as stuck:
            self._remove(state, str(stuck), cancel=False, effects=effects, expired=True)
            return
        gap = [resume_from, *passed]
        if catch_up:
            due, missed = self._catch_up(state, gap, now)
        else:
            due, missed = [], gap
        if missed:
            self._report_missed(state, missed, effects, why=why)
        if following is not None:
            self._arm(state, following, following_stamp)
        for moment in due:
            self._start(state, moment, now, effects, immediate=False)
        if following is None and not state.spec.interval_from_completion:
            self._remove(state, "no fire time left", cancel=False, effects=effects, expired=True)

    def _remove(
        self, state: JobState, reason: str, *, cancel: bool, effects: Effects, expired: bool = False
    ) -> None:
        """Unregister a job. ``expired``: it ran out of fire times or runs (not a call)."""
        if state.removed:
            return
        on_expired = self.on_expired
        if expired and state.durable is not None and on_expired is not None:
            effects.append(lambda: on_expired(state, reason))
        self._drop_retry(state, effects, admit=False)
        self._disarm(state)
        state.removed = True
        del self.jobs[state.id]
        state.detach_spec()  # a removed job is no reference cycle (OwnSpecState)
        if self._unclaimed or self._probe_after:
            self._unclaimed.pop(state, None)  # nothing of a removed job is caught up
            self._probe_after.pop(state, None)
        if self.clustered:
            self._names[state.spec.name] -= 1
        if cancel:
            state.cancelling = True
            for run in self.live_runs:
                if run.state is state:
                    run.cancel()
            self._drop_queued(state, Outcome.CANCELLED, effects)
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("job %s unregistered (%s)", state.spec.name, reason, extra=_extra(state))
        if self.monitor is not None:
            effects.append(self._hook_effect(lambda: self._monitor_job("unregistered", state)))
        self._signal_change()

    def _drop_queued(self, state: JobState, outcome: Outcome, effects: Effects) -> None:
        if not state.waiting and not self._queue:
            return
        dropped = list(state.waiting or ())
        state.waiting = None
        self._waiting -= len(dropped)
        if any(run.state is state for run in self._queue):
            dropped += [run for run in self._queue if run.state is state]
            self._queue = deque(run for run in self._queue if run.state is not state)
        for run in dropped:
            self._skip(run, outcome, None, effects)

    def _require_open(self) -> None:
        if self.shut_down:
            raise SchedulerShutDown("the scheduler was shut down; create a new one")

    # ---------------------------------------------------------------- lifecycle

    def start(self, now: datetime) -> bool:
        now = now.astimezone(self.tz)
        effects: Effects = []
        with self.lock:
            self._require_open()
            if self.started:
                return False
            self.started = self.accepting = True
            for state in list(self.jobs.values()):
                if state.paused:
                    continue
                if state.resume_from is not None:
                    why = "while the scheduler was stopped"
                    self._resume(state, now, effects, catch_up=False, why=why)
                else:
                    self._arm_or_expire(state, now, effects)
            for state in self._probe_after:  # stop() dropped their probes: ask again now
                if state in self._unclaimed:
                    self._probing.add(state)
                    self.push_timed(now, _UnclaimedProbe(state))
        self.apply(effects)
        return True

    def _arm_or_expire(self, state: JobState, now: datetime, effects: Effects) -> None:
        stop_at = state.spec.stop_at
        if stop_at is not None and _ts(stop_at) <= _ts(now):
            self._remove(
                state, "stop_at passed before start", cancel=False, effects=effects, expired=True
            )
            return
        if self._arm_first(state, now) is None:
            self._remove(state, "no fire time left", cancel=False, effects=effects, expired=True)

    def stop(self, outcome: Outcome, *, shut_down: bool) -> bool:
        """Stop firing; signal running runs to cancel; drop queued ones."""
        effects: Effects = []
        with self.lock:
            was_started = self.started
            self.started = self.accepting = False
            self.shut_down = self.shut_down or shut_down
            for state in self.jobs.values():
                if state.next_fire is not None and not shut_down:
                    state.resume_from = state.next_fire
                self._drop_retry(state, effects, admit=False, stopping=True)
                self._disarm(state)
                self._drop_queued(state, outcome, effects)
            dropped = _DelayedOffer | _PendingRetry | _UnclaimedProbe
            timed, kept = self._timed, []
            for key in self._heap:  # every job's fire time goes, and timed entries above
                if key & _TIMED:
                    seq = key >> _SEQ_SHIFT & _SEQ_MASK
                    if isinstance(timed[seq], dropped):
                        del timed[seq]
                    else:
                        kept.append(key)
            heapq.heapify(kept)
            self._heap = kept
            self._probing.clear()
            self._stale = 0
            for run in self.live_runs:
                run.cancel()
            self._signal_change()
        self.apply(effects)
        return was_started

    # ---------------------------------------------------------------- time

    def next_deadline(self) -> float | None:
        """The earliest heap entry's UTC timestamp (stale entries included)."""
        heap = self._heap
        return (heap[0] >> _TICK_SHIFT) / _TICKS if heap else None

    def due_together(self, limit: int) -> int:
        """How many heap entries share the earliest entry's fire time (stale ones
        included), counted up to ``limit``: the work the next deadline brings, so that a
        driver can start firing a large burst early enough to be done by its deadline.
        Walks only those entries (and the children that end the walk)."""
        heap = self._heap
        if not heap:
            return 0
        bound = ((heap[0] >> _TICK_SHIFT) + 1) << _TICK_SHIFT
        size, count, stack = len(heap), 0, [0]
        while stack and count < limit:
            index = stack.pop()
            if index < size and heap[index] < bound:
                count += 1
                stack.append(2 * index + 1)
                stack.append(2 * index + 2)
        return count

    def wake(
        self,
        now: datetime,
        *,
        batches: int | None = None,
        timed_by: float | None = None,
        until: float | None = None,
    ) -> bool:
        """Process the heap entries that are due at ``now``; True if some are left.

        Entries are taken in small batches, releasing the lock between them, so that
        runs dispatched from the first batch start while later ones are still being
        scheduled: a burst of a thousand due jobs does not wait for the last of them.
        ``batches`` caps the work (the async face yields to its loop between batches);
        so does ``until``, a ``time.time()`` stamp after which no further batch is
        taken (a driver firing ahead of a deadline stops when the deadline comes, to
        start the runs fired so far).

        ``timed_by``: when ``now`` is ahead of the clock (a driver firing just before a
        deadline, holding the runs until it comes), the clock's stamp. Only job fire
        times are taken ahead (see ``_fires_ahead``); a timeout, a retry, a delayed start
        or a gated job due after ``timed_by`` stops the batch (and counts as left), so
        that it acts on time.
        """
        now = now.astimezone(self.tz)
        stamp = now.timestamp()
        due_below = _keys_after(stamp, now)
        ahead_from = None if timed_by is None else _keys_after(timed_by)
        more, held_back = True, False
        while more and batches != 0 and not held_back:
            effects: Effects = []
            with self.lock:
                for _ in range(WAKE_BATCH):
                    heap = self._heap  # a compaction (or stop()) may replace the list
                    if not heap or heap[0] >= due_below:
                        break
                    if (
                        ahead_from is not None
                        and heap[0] >= ahead_from
                        and not self._fires_ahead(heap[0])
                    ):
                        held_back = True  # not to be taken ahead of its time
                        break
                    self._pop_due(now, stamp, effects)
                heap = self._heap
                more = bool(heap) and heap[0] < due_below
            self.apply(effects)
            if batches is not None:
                batches -= 1
            if until is not None and time.time() >= until:
                break
        return more

    def _fires_ahead(self, key: int) -> bool:
        """Whether a heap entry may be fired a little before its time, its runs held
        until it comes: a job's fire time, unless a gate would judge its run then (its
        singleton mode, the scheduler's ``max_concurrent``): a slot freed between the
        firing and the fire time would start a run it queued at once, early."""
        if key & _TIMED:
            return False
        state = self.jobs.get(key & _ID_MASK)
        return state is None or (state.spec.singleton is None and self.max_concurrent is None)

    def _pop_due(self, now: datetime, stamp: float, effects: Effects) -> None:
        key = heapq.heappop(self._heap)
        seq = key >> _SEQ_SHIFT & _SEQ_MASK
        if key & _TIMED:
            self._timed.pop(seq).fire(self, now, effects)
            return
        state = self.jobs.get(key & _ID_MASK)
        if state is None or state.armed != seq:
            self._stale -= 1
        else:
            self._fire(state, now, stamp, (key >> _TICK_SHIFT) / _TICKS, effects)

    def _fire(
        self, state: JobState, now: datetime, stamp: float, due_stamp: float, effects: Effects
    ) -> None:
        """Run a job's due fire time (whose UTC stamp is ``due_stamp``) at ``now``
        (``stamp``)."""
        scheduled = state.next_fire
        assert scheduled is not None  # noqa: S101 - an armed job always has its fire time
        state.next_fire = None
        immediate, state.immediate = state.immediate, False
        spec = state.spec
        try:
            following, following_stamp, passed = self._following(state, scheduled, now, stamp)
        except _RuleStuck as stuck:
            self.log.warning("job %s removed: %s", spec.name, stuck, extra=_extra(state, scheduled))
            self._remove(state, str(stuck), cancel=False, effects=effects, expired=True)
            return
        if passed or due_stamp < stamp - self.catch_up_grace:
            due, missed = self._catch_up(state, [scheduled, *passed], now)
            if missed:
                self._report_missed(state, missed, effects)
        else:
            due = [scheduled]
        if following is not None and not spec.interval_from_completion:
            self._arm(state, following, following_stamp)
        start = self.offer if spec.jitter is None else self._start  # offer: no frame more
        for moment in due:
            start(state, moment, now, effects, immediate=immediate and moment is scheduled)
        if following is None and not spec.interval_from_completion:
            self._remove(state, "no fire time left", cancel=False, effects=effects, expired=True)

    def _start(
        self,
        state: JobState,
        scheduled: datetime,
        now: datetime,
        effects: Effects,
        *,
        immediate: bool,
    ) -> None:
        jitter = state.spec.jitter
        if jitter is not None:
            delay = timedelta(seconds=jitter.total_seconds() * random.random())
            self.push_timed(now + delay, _DelayedOffer(state, scheduled, key=None, retries=0))
        else:
            self.offer(state, scheduled, now, effects, immediate=immediate)

    def _catch_up(
        self, state: JobState, due: list[datetime], now: datetime
    ) -> tuple[list[datetime], list[datetime]]:
        """Split due fire times into those that run and those recorded missed.

        The newest due fire time, if it is at most ``catch_up_grace`` old, is merely late
        and runs; every other one is missed. Of the missed, the job's policy picks what
        still runs: the latest (unless a later one runs anyway), none, or the newest
        ``catch_up_limit``; none older than ``catch_up_window``.
        """
        # Of several fire times due at one wake-up, only the newest can be merely late:
        # the earlier ones were superseded while the scheduler was not looking.
        newest = due[-1]
        late = [newest] if _ts(newest) >= _ts(now) - self.catch_up_grace else []
        missed = due[: len(due) - len(late)]
        spec = state.spec
        window = spec.catch_up_window
        eligible = missed
        if window is not None:
            oldest = _ts(now) - window.total_seconds()
            eligible = [moment for moment in missed if _ts(moment) >= oldest]
        if spec.catch_up == "skip" or not eligible:
            chosen: list[datetime] = []
        elif spec.catch_up == "latest":
            chosen = [] if late else eligible[-1:]
        else:
            chosen = eligible[-spec.catch_up_limit :]
        # ``chosen`` is a suffix of ``eligible``, itself a suffix of ``missed`` (all sorted)
        return [*chosen, *late], missed[: len(missed) - len(chosen)]

    def _following(
        self, state: JobState, scheduled: datetime, now: datetime, stamp: float | None = None
    ) -> tuple[datetime | None, float, list[datetime]]:
        """The fire time after ``scheduled`` and its UTC stamp (0 with none), and the
        later fire times ``now`` (whose UTC stamp is ``stamp``) already passed.

        A timer that wakes late (a suspended process, a stepped clock) runs only the
        latest due fire time; the earlier ones are reported missed, not replayed.
        """
        following = self._next_fire(state, scheduled)
        passed: list[datetime] = []
        if stamp is None:
            stamp = _ts(now)
        while following is not None:
            following_stamp = _ts(following)
            if following_stamp > stamp:
                return following, following_stamp, passed
            if len(passed) == _MISSED_LIMIT:
                following = self._next_fire(state, now)
                return following, 0.0 if following is None else _ts(following), passed
            passed.append(following)
            following = self._next_fire(state, following)
        return None, 0.0, passed

    def _next_fire(self, state: JobState, after: datetime) -> datetime | None:
        rule = state.rule
        if self._utc and type(rule) is Every and state.spec.stop_at is None:
            return after + rule.interval  # exact in UTC; the common case, kept cheap
        upcoming = rule.next_after(after)
        if upcoming is None:
            return None
        if _ts(upcoming) <= _ts(after):
            raise _RuleStuck(
                f"its rule {state.rule!r} returned {upcoming.isoformat()} as the time after "
                f"{after.isoformat()}, which does not advance"
            )
        stop_at = state.spec.stop_at
        if stop_at is not None and _ts(upcoming) > _ts(stop_at):
            return None
        return upcoming.astimezone(self.tz)

    def first_fire(self, state: JobState, after: datetime) -> datetime | None:
        """The first fire time of a job as if it were armed at ``after``."""
        return self._first_fire(state, after.astimezone(self.tz))

    def _first_fire(self, state: JobState, now: datetime) -> datetime | None:
        spec, rule = state.spec, state.rule
        if state.stored_next is not None:
            return state.stored_next.astimezone(self.tz)  # progress kept in a store
        if spec.traits.start_immediately or (type(rule) is Once and not rule.instants):
            return now
        try:
            start_at = _anchor(state)
            if start_at is not None:
                return self._first_from_start_at(state, start_at, now)
            if self.clustered and isinstance(rule, Every):
                return rule.anchored_after(_EPOCH, now).astimezone(self.tz)
            return self._next_fire(state, now)
        except _RuleStuck:
            return None

    def _first_from_start_at(
        self, state: JobState, start_at: datetime, now: datetime
    ) -> datetime | None:
        rule = state.rule
        kind = type(rule)  # rules are ABCs, whose isinstance is slow: try the exact types first
        if kind is Every or kind is EveryRandom or isinstance(rule, _INTERVAL_RULES):
            stamp, local = self._local_start(start_at)
            if stamp > _ts(now):
                return local
        if isinstance(rule, Every):
            return rule.anchored_after(start_at, now).astimezone(self.tz)
        moment = self._next_fire(state, (start_at - _TINY).astimezone(self.tz))
        stamp = _ts(now)
        for _ in range(_WALK_LIMIT):
            if moment is None or _ts(moment) > stamp:
                return moment
            moment = self._next_fire(state, moment)
        return self._next_fire(state, now)

    def _local_start(self, start_at: datetime) -> tuple[float, datetime]:
        """``start_at``'s timestamp, and ``start_at`` in the engine's zone. Jobs added in
        a loop often share one ``start_at`` object: the latest is remembered, so that
        they share its conversions (and one first fire time) too."""
        memo = self._start_memo
        if memo is not None and memo[0] is start_at:
            return memo[1], memo[2]
        stamp, local = _ts(start_at), start_at.astimezone(self.tz)
        self._start_memo = (start_at, stamp, local)
        return stamp, local

    def _arm_first(self, state: JobState, now: datetime) -> datetime | None:
        """Arm a job's first fire time; remember whether it is an immediate run."""
        first = self._first_fire(state, now)
        state.immediate = first is now  # _first_fire hands back ``now`` itself for those
        state.stored_next = None
        state.next_fire = first
        if first is not None:
            memo = self._start_memo
            stamp = memo[1] if memo is not None and memo[2] is first else first.timestamp()
            state.armed = self._push(stamp, state.id, first)
        return first

    def _arm(self, state: JobState, when: datetime | None, stamp: float | None = None) -> None:
        """Arm the job at ``when`` (``stamp``: its UTC stamp, when the caller has it)."""
        state.next_fire = when
        if when is not None:
            state.armed = self._push(_ts(when) if stamp is None else stamp, state.id, when)

    def _disarm(self, state: JobState) -> None:
        if state.next_fire is not None:
            state.next_fire = None
            self._stale += 1
        state.armed = 0
        if self._stale > 1024 and self._stale > len(self._heap) // 2:
            self._compact()

    def _compact(self) -> None:
        jobs = self.jobs
        self._heap = [
            key
            for key in self._heap
            if key & _TIMED
            or getattr(jobs.get(key & _ID_MASK), "armed", None) == key >> _SEQ_SHIFT & _SEQ_MASK
        ]
        heapq.heapify(self._heap)
        self._stale = 0

    def _push(self, stamp: float, target: int | _Timed, when: datetime) -> int:
        """Add a heap entry: a job's id (the job keeps the returned ``seq`` as ``armed``),
        or a timed entry."""
        heap = self._heap
        seq = next(self._seq)
        tick = round(stamp * _TICKS) if stamp < _ROUNDS_EXACTLY else (when - _EPOCH) // _TINY
        key = tick << _TICK_SHIFT | seq << _SEQ_SHIFT
        if isinstance(target, _Timed):
            key |= _TIMED
            self._timed[seq] = target
        else:
            key |= target
        if not heap or key < heap[0]:
            heapq.heappush(heap, key)
            self.driver.deadline_moved()
        else:
            heapq.heappush(heap, key)
        return seq

    def push_timed(self, when: datetime, entry: _Timed) -> None:
        self._push(when.timestamp(), entry, when)

    # ---------------------------------------------------------------- gates

    def offer(
        self,
        state: JobState,
        scheduled: datetime,
        now: datetime,
        effects: Effects,
        *,
        retries: int = 0,
        manual: bool = False,
        immediate: bool = False,
        key: str | None = None,
    ) -> Run:
        """Admit one occurrence through the singleton and concurrency gates."""
        if key is None and (manual or immediate):  # else the usual key, made when needed
            key = self._key(state, now, manual=manual, immediate=immediate)
        run = Run(self, state, scheduled, key, manual=manual, retries=retries)
        if state.spec.singleton is None:  # no singleton gate: straight to the limit gate
            self._admit(run, now, effects)
        else:
            self._gate(run, now, effects)
        return run

    def _gate(self, run: Run, now: datetime, effects: Effects) -> None:
        """The singleton gate (a pending retry holds the slot too), then the limit gate."""
        state = run.state
        singleton = state.spec.singleton
        if singleton is not None and (state.running or state.pending_retry):
            if singleton in (LimitMode.WAIT_LATEST, LimitMode.REPLACE):
                self._drop_retry(state, effects, admit=False)  # a new tick discards it
                if not state.running:
                    self._admit(run, now, effects)
                    return
                if singleton is LimitMode.REPLACE:
                    self._replace_running(state, effects)
            self._hold(run, effects)
            return
        self._admit(run, now, effects)

    def _hold(self, run: Run, effects: Effects) -> None:
        """A run whose job's singleton slot is taken: queue it, keep it as the latest, or
        skip it, as the job's singleton mode says."""
        singleton = run.spec.singleton
        waiting = run.state.waiting
        if singleton is LimitMode.WAIT:
            if len(waiting or ()) < _QUEUE_LIMIT:
                self._enqueue_for_job(run)
                return
        elif singleton in (LimitMode.WAIT_LATEST, LimitMode.REPLACE):
            while waiting:
                displaced = waiting.popleft()
                self._waiting -= 1
                self._skip(displaced, Outcome.SKIPPED_SINGLETON, None, effects)
            self._enqueue_for_job(run)
            return
        self._skip(run, Outcome.SKIPPED_SINGLETON, None, effects)

    def _replace_running(self, state: JobState, effects: Effects) -> None:
        """``REPLACE``: ask the job's running runs to stop; each ends ``CANCELLED``."""
        for run in self.live_runs:
            if run.state is state and not run.finished and not run.replaced:
                run.replaced = True
                run.retry_at = None  # a replaced run is not retried
                if run.outcome is not None:  # it ended, and only its listeners are left
                    run.outcome = Outcome.CANCELLED
                run.cancel()
                effects.append(run.interrupt)
                self.log.info(
                    "run of %s replaced by a newer occurrence: asked to stop",
                    state.spec.name,
                    extra=run.log_extra(),
                )

    def _drop_retry(
        self, state: JobState, effects: Effects, *, admit: bool = True, stopping: bool = False
    ) -> None:
        """Forget a job's pending retries: each occurrence keeps its last attempt's
        outcome. ``stopping``: the scheduler stops; a durable job's store keeps its
        retries, which another scheduler (or this one, restarted) runs."""
        pending = state.pending_retry
        if not pending:
            return
        state.pending_retry = None
        for entry in pending:
            self._forget_retry(entry.run, effects, stopping=stopping)
        if admit and state.waiting:
            self._admit_waiting(state, self.now(), effects)

    def _forget_retry(self, run: Run, effects: Effects, *, stopping: bool) -> None:
        state = run.state
        if not stopping:
            run.retry_at = None  # a release not yet written then writes no pending retry
        holder = run if run.kept else run.parent
        if holder is not None:
            # Given up: let the occurrence's claim go. (When the scheduler stops, its
            # lease runs out instead, and a node watching the occurrence takes it over.)
            effects.append(holder.stop_keeping_soon if stopping else holder.release_kept_soon)
        if self.log.isEnabledFor(logging.INFO):
            self.log.info(
                "pending retry of %s dropped (attempt %d was its last)",
                state.spec.name,
                run.attempt,
                extra=run.log_extra(),
            )
        if run.outcome is not None:
            self._record(run, run.outcome, run.error, effects)
        dropped = self.on_retry_dropped
        if state.durable is not None and dropped is not None and not stopping:
            key = run.key
            effects.append(lambda: dropped(key))

    def plan_retry(
        self, run: Run, outcome: Outcome, error: BaseException | None, ended: datetime
    ) -> None:
        """Decide whether a failed or timed-out attempt is retried, and when
        (``run.retry_at``). Called once per attempt, before its listeners."""
        retry = run.spec.retry
        if retry is None or run.attempt >= retry.attempts or not retry.retries(outcome, error):
            return
        when = ended + retry.wait(run.attempt)
        with self.lock:
            state = run.state
            # A job that ran out of fire times or runs still retries its last occurrence;
            # one removed by a call (``cancelling``) or paused does not.
            if state.paused or state.cancelling or run.replaced or not self.accepting:
                return
            stop_at = state.spec.stop_at
            if stop_at is not None and _ts(when) > _ts(stop_at):
                return
            if not retry.past_next:
                upcoming = self._upcoming_after(run)
                if upcoming is not None and _ts(when) >= _ts(upcoming):
                    self.log.info(
                        "run of %s will not be retried: its retry (at %s) would not start "
                        "before the next fire time (%s); past_next=True allows that",
                        run.spec.name,
                        when.isoformat(),
                        upcoming.isoformat(),
                        extra=run.log_extra(),
                    )
                    return
            run.retry_at = when

    def _upcoming_after(self, run: Run) -> datetime | None:
        """The job's next scheduled fire time after ``run``'s occurrence."""
        state = run.state
        if run.manual:
            return state.next_fire
        try:
            return self._next_fire(state, run.scheduled_at)
        except _RuleStuck:
            return None

    def _retry_later(self, run: Run) -> bool:
        """Park a finished attempt's planned retry on the heap (under the lock)."""
        when = run.retry_at
        state = run.state
        if when is None:
            return False
        if state.paused or state.cancelling or run.replaced:
            run.retry_at = None  # dropped: a store must not keep it pending either
            return False
        if not self.accepting:
            return False  # stopping: a store keeps the retry for another scheduler
        if run.lease is not None and run.keep_on_retry and run.parent is None:
            run.kept = True  # the occurrence stays claimed until its last attempt ends
        pending = _PendingRetry(run)
        if state.pending_retry is None:
            state.pending_retry = []
        state.pending_retry.append(pending)
        now = self.now()
        self.push_timed(when if _ts(when) > _ts(now) else now, pending)
        return True

    def start_retry(self, previous: Run, now: datetime, effects: Effects) -> None:
        """The next attempt of ``previous``'s occurrence: same key, ``attempt + 1``."""
        state = previous.state
        if state.cancelling or state.paused or not self.accepting:
            self._forget_retry(previous, effects, stopping=not self.accepting)
            return
        run = Run(self, state, previous.scheduled_at, previous.key, manual=previous.manual)
        run.attempt = run.base_attempt = previous.attempt
        run.attempt += 1
        run.actor = previous.actor
        run.prior = previous
        run.parent = previous if previous.kept else previous.parent
        self._gate(run, now, effects)

    def _enqueue_for_job(self, run: Run) -> None:
        state = run.state
        if state.waiting is None:
            state.waiting = deque()
        state.waiting.append(run)
        self._waiting += 1
        self._queued_jobs.add(state)

    def _admit(self, run: Run, now: datetime, effects: Effects) -> None:
        limit = self.max_concurrent
        if limit is not None and self._running >= limit:
            if self.limit_mode is LimitMode.WAIT and len(self._queue) < _QUEUE_LIMIT:
                self._queue.append(run)
            else:
                self._skip(run, Outcome.SKIPPED_LIMIT, None, effects)
            return
        self._running += 1
        run.state.running += 1
        run.admitted_at = now
        self.live_runs.add(run)
        effects.append(partial(self.driver.dispatch, run))

    def _key(self, state: JobState, now: datetime, *, manual: bool, immediate: bool) -> str | None:
        """The run's occurrence key; None means the usual one, computed when first needed."""
        name, rule = state.spec.name, state.rule
        if manual:
            return f"{name}@manual/{now.astimezone(UTC).isoformat()}/{uuid4().hex}"
        if not immediate or not (self.clustered or state.durable is not None):
            return None
        # An immediate first run: every node starting together must name it alike.
        if isinstance(rule, Once) and not rule.instants:
            return f"{name}@once"
        if isinstance(rule, Every):
            anchor = _anchor(state) or _EPOCH
            return occurrence_key(name, rule.anchored_after(anchor, now - rule.interval))
        upcoming = rule.next_after(now)
        return f"{name}@immediate/{occurrence_key(name, upcoming) if upcoming else 'none'}"

    # ---------------------------------------------------------------- runs

    def run_now(
        self, state: JobState, now: datetime, *, want_event: bool, actor: str | None = None
    ) -> Run:
        effects: Effects = []
        now = now.astimezone(self.tz)
        with self.lock:
            self._require_open()
            if state.removed:
                raise JobNotFound(f"job {state.spec.name!r} ({_uuid(state.id)}) was removed")
            run = self.offer(state, now, now, effects, manual=True)
            run.actor = actor
            if want_event:
                run.want_event()
        self.apply(effects)
        return run

    def begin(self, run: Run, now: datetime) -> Outcome | None:
        """The run passed its gates: count it and start its clock, or say why not."""
        # A fake clock may have moved on since the dispatch; the run started when
        # the clock dispatched it.
        if self.fake_time:
            now = run.admitted_at
        effects: Effects = []
        with self.lock:
            state, spec = run.state, run.spec
            if state.cancelling:
                return Outcome.CANCELLED
            if not self.accepting and not run.manual:
                return Outcome.SKIPPED_STOPPING
            # A durable job's runs are counted by its store, which removes it when they
            # are used up; this process's count is only what it has seen.
            max_runs = spec.max_runs if state.durable is None else None
            run.started_at = now
            if run.base_attempt:
                state.last_run = now
                if spec.timeout is not None:
                    self.push_timed(now + spec.timeout, _Timeout(run))
                return None  # a retry is the same occurrence: it counts no new run
            if max_runs is not None and state.runs_started >= max_runs:
                run.started_at = None
                return Outcome.SKIPPED_LIMIT
            state.runs_started += 1
            state.last_run = now
            if max_runs is not None and state.runs_started >= max_runs:
                reason = f"max_runs={max_runs} reached"
                self._remove(state, reason, cancel=False, effects=effects, expired=True)
            if spec.timeout is not None:
                self.push_timed(now + spec.timeout, _Timeout(run))
        if effects:
            self.apply(effects)
        return None

    def recover(
        self,
        state: JobState,
        scheduled_at: datetime,
        key: str,
        *,
        quiet: bool = True,
        attempt: int = 1,
    ) -> None:
        """Offer a stored occurrence again (a dead holder's claim, a retried run): its
        claim in the store decides whether and with which attempt it runs."""
        effects: Effects = []
        with self.lock:
            if state.removed or not self.accepting:
                return
            if any(run.state is state and run.key == key for run in self.live_runs):
                return
            if any(entry.run.key == key for entry in state.pending_retry or ()):
                return  # this scheduler retries it itself, when it is due
            when = scheduled_at.astimezone(self.tz)
            run = self.offer(state, when, self.now(), effects, retries=int(quiet), key=key)
            run.attempt = attempt
            if state.durable is None and attempt > 1:
                run.base_attempt = attempt - 1  # a retry by hand: claimed under its own key
        self.apply(effects)

    def note_unclaimed(self, run: Run, *, probe_after: timedelta | None = None) -> None:
        """An occurrence that could not be claimed: once the store (or locker) answers
        again, its job's catch-up policy decides whether it still runs.

        A durable job's are caught up when the store answers (a claim or the follower's
        read). ``probe_after``: a locker's renew interval, for an at-least-once job
        without a store, whose unclaimed occurrences are claimed again after it (and
        after it again while the locker keeps failing).
        """
        with self.lock:
            state = run.state
            if run.manual or run.base_attempt or run.retries or state.removed:
                return
            if probe_after is not None and not _claimed_again(state.spec):
                return  # updated to at-most-once while the claim was in flight
            missed = self._unclaimed.setdefault(state, [])
            if len(missed) < _MISSED_LIMIT:
                missed.append(run.scheduled_at)
            if probe_after is not None:
                self._probe_after[state] = probe_after
                self._probe_later(state)

    def _probe_later(self, state: JobState) -> None:
        """Push the job's ``_UnclaimedProbe`` one renew interval from now, unless it has
        one or the scheduler is stopped (``start`` pushes it then). Under the lock."""
        if self.accepting and state not in self._probing:
            self._probing.add(state)
            after = self._probe_after[state]
            self.push_timed(self.now() + after * 1.05 + _MARGIN, _UnclaimedProbe(state))

    @property
    def unclaimed_waiting(self) -> dict[JobState, list[datetime]]:
        """The occurrences, by job, that wait to be caught up after a store (or locker)
        outage (empty: none), as they are now."""
        if not self._unclaimed:
            return {}
        with self.lock:
            return {state: list(moments) for state, moments in self._unclaimed.items()}

    def unclaimed_of(self, state: JobState) -> list[datetime]:
        """``unclaimed_waiting`` for one job (empty: none)."""
        if not self._unclaimed:
            return []
        with self.lock:
            return list(self._unclaimed.get(state, ()))

    def catch_up_unclaimed(
        self, claimed: Run | None = None, *, noted: dict[JobState, list[datetime]]
    ) -> None:
        """The store (or locker) answers again: catch up what could not be claimed
        meanwhile, by each job's catch-up policy, with one missed record per job.

        Only the occurrences in ``noted`` (``unclaimed_waiting`` taken before the claim
        or read that found the store answering) are caught up: one whose claim failed
        meanwhile may belong to an outage that began after it, and its record would be
        written to a store that is down, and lost.

        ``claimed``: an occurrence of its job was just claimed, and runs anyway (as a late
        wake-up's newest fire time does); the job's noted occurrences older than it are
        caught up (newer ones wait for a later look). Without it (the follower read the
        store), a job is left alone while it has a run going, while its next fire time is
        due, or while its latest unclaimed occurrence is merely late: the next claim, or
        a later look, decides.
        """
        if not self._unclaimed or not noted:
            return
        effects: Effects = []
        with self.lock:
            now = self.now()
            for state, moments in self._take_unclaimed(claimed, noted, now).items():
                self._catch_up_unclaimed(state, moments, now, effects, superseded=claimed)
        self.apply(effects)

    def probe_unclaimed(self, state: JobState, now: datetime, effects: Effects) -> None:
        """An ``_UnclaimedProbe`` is due: claim the job's unclaimed occurrences again, by
        its catch-up policy (under the lock). While the job has a run going (a claim in
        flight, perhaps of a later occurrence) or its next fire time is due, it looks
        again later: that run decides first."""
        self._probing.discard(state)
        if state.removed or state not in self._unclaimed:
            return
        upcoming = state.next_fire
        if state.running or (upcoming is not None and _ts(upcoming) <= _ts(now)):
            self._probe_later(state)
            return
        moments = self._unclaimed.pop(state)
        self._catch_up_unclaimed(state, moments, now, effects, superseded=None)

    def _catch_up_unclaimed(
        self,
        state: JobState,
        moments: list[datetime],
        now: datetime,
        effects: Effects,
        *,
        superseded: Run | None,
    ) -> None:
        """Run or record missed one job's unclaimed occurrences (under the lock).
        ``superseded``: a later occurrence of the job that runs anyway."""
        if state.removed:
            return
        moments.sort(key=_ts)
        due: list[datetime] = []
        missed = moments  # paused or stopping: nothing runs now; the gap is recorded
        if not state.paused and self.accepting:
            due, missed = self._catch_up(state, moments, now)
        if superseded is not None and state.spec.catch_up != "all":
            due, missed = [], moments  # the later occurrence runs instead
        if missed:
            what = "store" if state.durable is not None else "locker"
            self._report_missed(state, missed, effects, why=f"while the {what} was unavailable")
        for moment in due:
            self._start(state, moment, now, effects, immediate=False)

    def _take_unclaimed(
        self, claimed: Run | None, noted: dict[JobState, list[datetime]], now: datetime
    ) -> dict[JobState, list[datetime]]:
        """The unclaimed occurrences ready to catch up (see ``catch_up_unclaimed``)."""
        taken: dict[JobState, list[datetime]] = {}
        stamp = _ts(now)
        if claimed is not None:
            cutoff = _ts(claimed.scheduled_at)
            candidates = [claimed.state] if claimed.state in self._unclaimed else []
        else:  # the store's read vouches for its own claims, not for another locker's
            candidates = [state for state in self._unclaimed if state.durable is not None]
        for state in candidates:
            waiting = self._unclaimed[state]
            known = set(noted.get(state, ()))
            if claimed is not None:
                moments = [moment for moment in waiting if moment in known and _ts(moment) < cutoff]
                ready = bool(moments)
            else:
                moments = [moment for moment in waiting if moment in known]
                upcoming = state.next_fire
                ready = (
                    bool(moments)
                    and not state.running
                    and max(_ts(moment) for moment in moments) < stamp - self.catch_up_grace
                    and (upcoming is None or _ts(upcoming) > stamp)
                )
            if not ready:
                continue
            taken[state] = moments
            chosen = set(moments)
            later = [moment for moment in waiting if moment not in chosen]
            if later:
                self._unclaimed[state] = later
            else:
                del self._unclaimed[state]
        return taken

    def claim_report(self, run: Run) -> bool:
        """True for the one caller that reports a run's end (its pipeline, or its timeout)."""
        with self.lock:
            if run.reported:
                return False
            run.reported = True
            return True

    def finish(self, run: Run) -> None:
        """Release the run's slot and admit whatever was waiting for it."""
        effects: Effects = []
        with self.lock:
            self._finish(run, effects)
        if effects:
            self.apply(effects)

    def finish_all(self, runs: deque[Run]) -> None:
        """``finish`` every run taken from ``runs`` (which another thread may be taking
        from too), a batch of them per hold of the lock. It never raises: what their
        finishing sets off (a run admitted in a slot one of them freed) failing is
        logged, and everything else is still done."""
        while runs:
            effects: Effects = []
            with self.lock:
                for _ in range(WAKE_BATCH):
                    try:
                        run = runs.popleft()
                    except IndexError:
                        break
                    self._finish(run, effects)
            for effect in effects:
                try:
                    effect()
                except Exception:
                    self.log.critical("finishing a burst's runs failed", exc_info=True)

    def _finish(self, run: Run, effects: Effects) -> None:
        if not run.finished:
            run.finished = True
            if run.lease is None or run.settled:
                self.live_runs.discard(run)
            else:
                self._settling += 1  # stays live until its claim is settled in the store
            if run.outcome is not None and (run.retry_at is None or not self._retry_later(run)):
                self._record_final(run, run.outcome, run.error, effects)
            state = run.state
            state.running -= 1
            self._running -= 1
            if state.spec.interval_from_completion and self._rearms_on_completion(run):
                self._arm(state, self._next_fire_or_none(state, self.now()))
            if state.waiting or self._queue:
                self._admit_waiting(state, self.now(), effects)
            if self.watchers:
                self._signal_change()

    def settled(self, run: Run) -> None:
        """A run's claim was released (its outcome written): it is no longer live."""
        with self.lock:
            if run.settled:
                return
            run.settled = True
            if run.finished:
                self.live_runs.discard(run)
                self._settling -= 1
                self._signal_change()

    def _rearms_on_completion(self, run: Run) -> bool:
        state = run.state
        return (
            state.spec.interval_from_completion
            and not run.manual
            and not state.removed
            and not state.paused
            and self.started
            and state.next_fire is None
        )

    def _next_fire_or_none(self, state: JobState, after: datetime) -> datetime | None:
        try:
            return self._next_fire(state, after)
        except _RuleStuck:
            return None

    def _admit_waiting(self, state: JobState, now: datetime, effects: Effects) -> None:
        if state.waiting and not state.running and not state.pending_retry:
            self._waiting -= 1
            self._admit(state.waiting.popleft(), now, effects)
        limit = self.max_concurrent
        while self._queue and (limit is None or self._running < limit):
            run = self._queue.popleft()
            held = run.state.running or run.state.pending_retry
            if run.spec.singleton is not None and held:
                self._hold(run, effects)
                continue
            self._admit(run, now, effects)

    def skip_running(self, run: Run, event: RunEvent) -> None:
        """A dispatched run that will not call its task (lock refused, before_run raised...)."""
        self._log_skip(run, event)
        run.outcome, run.error = event.outcome, event.exception
        run.report_skip(event)
        self.finish(run)

    def _skip(
        self, run: Run, outcome: Outcome, exception: BaseException | None, effects: Effects
    ) -> None:
        """An occurrence that never got a slot."""
        event = run.event(outcome, exception=exception)
        self._log_skip(run, event)
        self._record_final(run, outcome, exception, effects)
        if run.spec.interval_from_completion and not run.manual and self._rearms_free(run):
            self._arm(run.state, self._next_fire_or_none(run.state, event.scheduled_at))
        effects.append(self.report_effect(lambda: run.report_skip(event)))

    def _rearms_free(self, run: Run) -> bool:
        state = run.state
        return not state.running and not state.removed and state.next_fire is None and self.started

    def _log_skip(self, run: Run, event: RunEvent) -> None:
        outcome = event.outcome
        routine = outcome in (Outcome.SKIPPED_LOCKED, Outcome.SKIPPED_NOT_LEADER) or run.retries > 0
        level = logging.DEBUG if routine else logging.INFO
        if self.log.isEnabledFor(level):
            reason = f": {event.exception!r}" if event.exception is not None else ""
            self.log.log(
                level,
                "run of %s %s%s",
                run.spec.name,
                outcome.value if outcome else "skipped",
                reason,
                extra=run.log_extra(),
            )

    def _record_final(
        self, run: Run, outcome: Outcome, error: BaseException | None, effects: Effects
    ) -> None:
        """Record how an occurrence ended. A retry that never started leaves the record
        of its last attempt that did; the lease kept for the retries is let go."""
        prior = run.prior
        if run.started_at is None and prior is not None and prior.outcome is not None:
            self._record(prior, prior.outcome, prior.error, effects)
        else:
            self._record(run, outcome, error, effects)
        holder = run.parent
        if holder is not None:  # the last attempt: let the occurrence go
            effects.append(holder.release_kept_soon if self.accepting else holder.stop_keeping_soon)

    def _report_missed(
        self, state: JobState, missed: list[datetime], effects: Effects, *, why: str = ""
    ) -> None:
        """One record and one event for every missed fire time of one gap."""
        first, count = missed[0], len(missed)
        run = Run(self, state, first, occurrence_key(state.spec.name, first))
        event = run.event(Outcome.SKIPPED_MISSED, result=count)
        detail = f"{count} missed{' ' + why if why else ''}, the last at {missed[-1].isoformat()}"
        self.log.info(
            "job %s missed %d fire time(s) from %s to %s (downtime, a suspend, a late "
            "wake-up or a pause); its catch_up=%r policy decided what still ran",
            state.spec.name,
            count,
            first.isoformat(),
            missed[-1].isoformat(),
            state.spec.catch_up,
            extra=run.log_extra(),
        )
        self._record(run, Outcome.SKIPPED_MISSED, None, effects, count=count, detail=detail)
        effects.append(self.report_effect(lambda: run.report_skip(event)))

    def _record(
        self,
        run: Run,
        outcome: Outcome,
        error: BaseException | None,
        effects: Effects,
        *,
        count: int = 1,
        detail: str | None = None,
    ) -> None:
        """Keep the history record of one occurrence (under the lock).

        In-memory jobs go to ``history``; a durable job's skip goes to the store (a run
        that claimed its occurrence writes its outcome through the claim instead).
        """
        if outcome in _UNRECORDED:
            return
        if run.state.durable is None:
            if run.attempt > 1:  # an occurrence run again: its record replaces the old one
                key, state = run.key, run.state  # names (so keys) may repeat across jobs
                kept = [e for e in self.history if e[0].key != key or e[0].state is not state]
                if len(kept) != len(self.history):
                    self.history = deque(kept, maxlen=self.history.maxlen)
            stamp = run.ended_at  # a burst's run keeps when it ended
            ended = self.clock.now() if stamp is None else datetime.fromtimestamp(stamp, UTC)
            self.history.append((run, outcome, error, ended, count, detail))
            return
        sink = self.store_sink
        if sink is None or run.lease is not None or outcome is Outcome.ABANDONED:
            return
        record = run.record(outcome, error, self.now(), count=count, detail=detail)
        self._reports += 1  # wait_idle() waits until the record is written
        effects.append(lambda: sink(record, self._report_done))

    def _report_done(self) -> None:
        with self.lock:
            self._reports -= 1
            self._signal_change()

    def schedule_retry(self, run: Run, delay: timedelta) -> None:
        """Ask the locker again about the same occurrence (same key) after ``delay``: once a
        lease held elsewhere has expired (its holder may have died), or after a store
        error while recovering one. Gives up after ``_RETRY_LIMIT`` tries in a row."""
        with self.lock:
            if run.state.removed or not self.accepting or run.retries >= _RETRY_LIMIT:
                return
            when = self.now() + delay * 1.05 + _MARGIN
            retry = _DelayedOffer(run.state, run.scheduled_at, key=run.key, retries=run.retries + 1)
            self.push_timed(when, retry)

    # ---------------------------------------------------------------- reporting

    def report_effect(self, effect: Callable[[], None]) -> Callable[[], None]:
        self._reports += 1

        def counted() -> None:
            try:
                effect()
            finally:
                with self.lock:
                    self._reports -= 1
                    self._signal_change()

        return lambda: self.driver.report(counted)

    def _hook_effect(self, effect: Callable[[], None]) -> Callable[[], None]:
        """A monitor hook for a caller's own change (add, update, remove): it runs in the
        caller's thread once the lock is released, so it has happened when the call
        returns. Only the timer thread hands such hooks to the pool instead."""

        def run() -> None:
            if not self.driver.on_timer():
                effect()
                return
            with self.lock:
                deferred = self.report_effect(effect)
            deferred()

        return run

    def _monitor_job(self, what: str, state: JobState) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        hook = monitor.job_registered if what == "registered" else monitor.job_unregistered
        call_hook(self.log, hook, self.handle(state))

    def apply(self, effects: Effects) -> None:
        for effect in effects:
            effect()

    def _signal_change(self) -> None:
        """Wake waiters (``wait_idle``, shutdown). Called with the lock held; costs
        nothing while nobody waits, which is nearly always."""
        if self.watchers:
            self.changed.notify_all()
            self.driver.state_changed()

    def wait_changed(self, timeout: float | None) -> None:
        """Wait (holding the lock, as ``Condition.wait`` does) until state changes."""
        self.watchers += 1
        try:
            self.changed.wait(timeout)
        finally:
            self.watchers -= 1

    def now(self) -> datetime:
        """The scheduler clock's current time, in the scheduler's zone."""
        if type(self.clock) is SystemClock:
            return datetime.now(self.tz)  # the same instant, at half the cost of converting
        return self.clock.now().astimezone(self.tz)

    # ---------------------------------------------------------------- introspection

    def history_records(self) -> list[RunRecord]:
        """The kept in-memory history, oldest first, as records."""
        with self.lock:
            kept = list(self.history)
        return [
            run.record(outcome, error, finished.astimezone(self.tz), count=count, detail=detail)
            for run, outcome, error, finished, count, detail in kept
        ]

    def idle(self) -> bool:
        return (
            not self._running
            and not self._queue
            and self._waiting == self._waiting_for_retries()
            and not self._reports
            and not self._settling
        )

    def _waiting_for_retries(self) -> int:
        """Queued runs whose job's slot only a pending retry holds: they wait for a
        future run, which ``wait_idle`` does not wait for (under the lock)."""
        if not self._waiting:
            return 0
        blocked = 0
        for state in list(self._queued_jobs):
            if not state.waiting:
                self._queued_jobs.discard(state)
            elif not state.running and state.pending_retry:
                blocked += len(state.waiting)
        return blocked

    @property
    def jobs_waiting(self) -> int:
        return len(self._queue) + self._waiting

    def next_runs(self, state: JobState, count: int, now: datetime) -> list[datetime]:
        spec = state.spec
        if count <= 0 or state.removed:
            return []
        if spec.max_runs is not None:
            count = min(count, spec.max_runs - state.runs_started)
        moment = state.next_fire
        if moment is None:
            moment = self._first_fire(state, now.astimezone(self.tz))
        result: list[datetime] = []
        try:
            while moment is not None and len(result) < count:
                result.append(moment)
                moment = self._next_fire(state, moment)
        except _RuleStuck:
            pass
        return result


class _RuleStuck(Exception):
    """A rule returned a next time that does not advance."""


_ts: Callable[[datetime], float] = datetime.timestamp
"""A moment's POSIX timestamp (the method itself: a call with no Python frame)."""


_INTERVAL_RULES = (Every, EveryRandom)


def _claimed_again(spec: JobSpec) -> bool:
    """Whether a job's occurrences that its locker failed to claim are claimed again."""
    return spec.recovery is Recovery.AT_LEAST_ONCE and spec.locker is not None


def _anchor(state: JobState) -> datetime | None:
    """Where a job's fire times are measured from: ``start_at``, else (a durable interval
    job) the instant it was first stored, so that every scheduler agrees."""
    start_at = state.spec.start_at
    durable = state.durable
    if start_at is None and durable is not None and isinstance(state.rule, Every | EveryRandom):
        return durable.anchor
    return start_at


def _uuid(job_id: int) -> uuid.UUID:
    return uuid.UUID(int=job_id)


def _timing_changed(old: JobSpec, new: JobSpec) -> bool:
    return (
        old.start_at != new.start_at
        or old.stop_at != new.stop_at
        or old.start_immediately != new.start_immediately
        or old.interval_from_completion != new.interval_from_completion
    )


def _extra(state: JobState, scheduled: datetime | None = None) -> dict[str, object]:
    key = occurrence_key(state.spec.name, scheduled) if scheduled else None
    return {"job_name": state.spec.name, "job_id": str(_uuid(state.id)), "occurrence": key}


def _no_loop(awaitable: Any) -> Any:
    raise RuntimeError("this scheduler face has no loop to await on")


def _keys_after(stamp: float, when: datetime | None = None) -> int:
    """The least heap key after every entry due at ``stamp`` (``when``'s timestamp,
    counted exactly from it when given): entries below it are due."""
    if stamp < _ROUNDS_EXACTLY or when is None:
        return round(stamp * _TICKS) + 1 << _TICK_SHIFT
    return (when - _EPOCH) // _TINY + 1 << _TICK_SHIFT
