"""Edge cases of the run policies: retries under a locker, and the gates a retry meets.

Each test drives one scheduler on the fake clock. The locker is a ``MemoryLocker`` judged
on the same clock, wrapped to log every claim and release in the order they happen.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from scheduler_support import WAIT, Boom, Gates, SchedulerFactory, seconds, wait_until

import gnomon
from gnomon import Outcome, Recovery, Retry
from gnomon._memory import _MemoryLease
from gnomon.testing import FakeClock, MemoryLocker

HOUR = timedelta(hours=1)


class LoggingLocker(MemoryLocker):
    """A ``MemoryLocker`` that logs ``("claim", key)`` and ``("release", key)`` in order."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(lease_ttl="30s", clock=clock)
        self.log: list[tuple[str, str]] = []
        self._log_lock = threading.Lock()

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: Recovery = Recovery.AT_MOST_ONCE
    ) -> gnomon.Lease:
        lease = await super().acquire(key, ttl, recovery=recovery)
        with self._log_lock:
            self.log.append(("claim", key))
        return lease

    def _release(self, lease: _MemoryLease) -> None:
        super()._release(lease)
        with self._log_lock:
            self.log.append(("release", lease.key))

    def entries(self) -> list[tuple[str, str]]:
        with self._log_lock:
            return list(self.log)


def always_fails(ctx: gnomon.JobContext) -> None:
    raise Boom(f"attempt {ctx.attempt} fails")


def settle(scheduler: gnomon.Scheduler, clock: FakeClock, step: timedelta) -> None:
    clock.advance(step)
    scheduler.wait_idle(timeout=WAIT)


def released(locker: LoggingLocker, key: str) -> Callable[[], bool]:
    return lambda: ("release", key) in locker.entries()


def test_the_first_attempts_lease_stays_claimed_until_the_third_attempt_has_ended(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    """Under a locker the first attempt's lease is kept and renewed while the retries
    wait and run: with ``attempts=3`` it is still held while the third attempt waits, so
    that a node dying then leaves a claim for a watching node to take over."""
    locker = LoggingLocker(clock)
    s = make_scheduler(locker=locker)
    s.add_job(
        always_fails,
        gnomon.every("1h"),
        name="kept",
        retry=Retry(3, "10s", factor=1.0, jitter=False),
    )
    s.start()
    settle(s, clock, HOUR)  # attempt 1 fails: its lease is kept for the retry
    settle(s, clock, seconds(10))  # attempt 2 fails: attempt 3 waits
    settle(s, clock, seconds(10))  # attempt 3 fails: the occurrence is over
    [record] = s.history()
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 3)
    key = record.occurrence_key
    wait_until(released(locker, key), "the occurrence is released", timeout=WAIT)
    log = locker.entries()
    third = log.index(("claim", f"{key}/attempt-3"))
    assert log.index(("release", key)) > third, log


def test_a_retry_skipped_by_the_scheduler_wide_limit_lets_its_kept_lease_go(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    """A retry that never gets a slot (``max_concurrent`` reached, ``RESCHEDULE``) is
    skipped; the first attempt's kept lease is let go then, rather than renewed for as
    long as the scheduler lives, and the occurrence keeps its failed record."""
    locker = LoggingLocker(clock)
    gate = gates()
    s = make_scheduler(locker=locker, max_concurrent=1)
    s.add_job(
        always_fails,
        gnomon.every("1h"),
        name="limited",
        retry=Retry(2, "10s", jitter=False),
    )
    busy = s.add_job(gate.wait, gnomon.every("1000h"), name="busy")
    assert busy is not None
    s.start()
    settle(s, clock, HOUR)  # attempt 1 fails: its lease is kept for the retry
    [first_key] = {key for verb, key in locker.entries() if verb == "claim"}
    busy.run_now()  # takes the only slot
    clock.advance(seconds(10))  # the retry is due: no slot, skipped
    gate.open()
    s.wait_idle(timeout=WAIT)
    # The occurrence keeps its last real attempt's record: the retry never started.
    skipped = [r for r in s.history() if r.occurrence_key == first_key]
    assert [(r.outcome, r.attempts) for r in skipped] == [(Outcome.FAILED, 1)]
    deadline = time.monotonic() + 2.0
    while not released(locker, first_key)() and time.monotonic() < deadline:
        time.sleep(0.005)
    s.shutdown()
    gc.collect()  # a keeper task left pending is reported here, not in a later test
    assert released(locker, first_key)(), locker.entries()


def test_a_rule_changed_while_paused_sets_the_next_fire_from_now_on_resume(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    """A rule changed while the job is paused replaces the phase the pause kept:
    ``resume()`` arms the new rule's next fire time, not the old rule's."""
    s = make_scheduler()
    job = s.add_job(lambda: None, gnomon.every("1h"), name="re-ruled")
    assert job is not None
    s.start()
    clock.advance(timedelta(minutes=10))
    job.pause()
    s.update_job(job.id, rule=gnomon.every("1m"))
    clock.advance(timedelta(minutes=1))
    job.resume()
    next_run = job.next_run
    assert next_run is not None
    assert next_run <= clock.now() + timedelta(minutes=1), next_run


def test_replace_drops_the_retry_of_a_run_it_replaced_while_after_error_ran(
    make_scheduler: SchedulerFactory, clock: FakeClock, gates: Gates
) -> None:
    """``REPLACE``: a tick that arrives while a failed run is still in ``after_error`` (its
    retry already planned) replaces it: the new tick runs next, the old occurrence is not
    retried, and the replaced run is recorded ``CANCELLED``."""
    gate = gates()
    seen: list[tuple[int, object]] = []

    def fails_first(ctx: gnomon.JobContext) -> None:
        seen.append((ctx.attempt, ctx.scheduled_at))
        if len(seen) == 1:
            raise Boom("the first run fails")

    def after_error(event: gnomon.RunEvent) -> None:
        if event.attempt == 1:
            gate.wait()

    s = make_scheduler()
    s.add_job(
        fails_first,
        gnomon.every("1m"),
        name="replaced",
        singleton=gnomon.LimitMode.REPLACE,
        retry=Retry(3, "10s", jitter=False),
        after_error=after_error,
    )
    s.start()
    first, second = clock.now() + timedelta(minutes=1), clock.now() + timedelta(minutes=2)
    clock.advance(timedelta(minutes=1))
    wait_until(lambda: len(seen) == 1, "the first run failed")
    clock.advance(timedelta(minutes=1))  # the 2m tick replaces the run still in after_error
    gate.open()
    s.wait_idle(timeout=WAIT)
    settle(s, clock, seconds(1))  # anything due at once has run
    assert seen == [(1, first), (1, second)]
    outcomes = {r.scheduled_at: r.outcome for r in s.history()}
    assert outcomes[first] is Outcome.CANCELLED
