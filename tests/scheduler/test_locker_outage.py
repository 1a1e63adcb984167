"""A locker that fails to answer: an at-least-once job's occurrence is claimed again.

Each test drives one scheduler on the fake clock with a ``MemoryLocker`` judged on the
same clock, wrapped so that a test can make it fail (as an unreachable Redis does) or hold
one claim in flight. Its lease ttl is 3 s, so its renew interval, after which an
unclaimed occurrence is claimed again, is 1 s.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from scheduler_support import T0, WAIT, Boom, SchedulerFactory, Tally, seconds

import gnomon
from gnomon import Outcome, Recovery
from gnomon.testing import FakeClock, MemoryLocker, MemoryStore


class FlakyLocker(MemoryLocker):
    """A ``MemoryLocker`` that fails every claim while ``down`` is set, and holds the
    claim of ``held_key`` (once ``entered`` is set) until ``release_held`` is set."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(lease_ttl="3s", clock=clock)
        self.down = threading.Event()
        self.failures = Tally()
        self.claims = Tally()
        self.held_key: str | None = None
        self.entered = threading.Event()
        self.release_held = threading.Event()

    async def acquire(
        self, key: str, ttl: timedelta, *, recovery: Recovery = Recovery.AT_MOST_ONCE
    ) -> gnomon.Lease:
        if key == self.held_key:
            self.entered.set()
            await asyncio.to_thread(self.release_held.wait, WAIT)
        if self.down.is_set():
            self.failures.hit(key)
            raise Boom(f"the lock store is unreachable for {key}")
        lease = await super().acquire(key, ttl, recovery=recovery)
        self.claims.hit(key)
        return lease


def at(offset: float) -> datetime:
    return T0 + seconds(offset)


def recorder(tally: Tally) -> Callable[[gnomon.JobContext], None]:
    """A task that records the fire time of each run."""

    def task(ctx: gnomon.JobContext) -> None:
        tally.hit(ctx.scheduled_at)

    return task


def settle(scheduler: gnomon.Scheduler, clock: FakeClock, step: float) -> None:
    clock.advance(seconds(step))
    scheduler.wait_idle(timeout=WAIT)


def records(scheduler: gnomon.Scheduler, name: str) -> list[gnomon.RunRecord]:
    return sorted(scheduler.history(job=name), key=lambda r: (r.scheduled_at, r.outcome is None))


def at_least_once_job(
    make_scheduler: SchedulerFactory,
    clock: FakeClock,
    name: str,
    interval: float,
    *,
    held_at: float | None = None,
    store: MemoryStore | None = None,
    **options: Any,
) -> tuple[gnomon.Scheduler, FlakyLocker, Tally]:
    """A started scheduler on a ``FlakyLocker`` (and ``store``) with one at-least-once job,
    every ``interval`` seconds, whose runs record their fire times in the tally;
    ``held_at``: the fire time whose claim the locker holds in flight."""
    locker = FlakyLocker(clock)
    if held_at is not None:
        locker.held_key = gnomon.occurrence_key(name, at(held_at))
    s = (
        make_scheduler(locker=locker)
        if store is None
        else make_scheduler(locker=locker, store=store)
    )
    ran = Tally()
    s.add_job(
        recorder(ran),
        gnomon.every(interval),
        name=name,
        recovery=Recovery.AT_LEAST_ONCE,
        **options,
    )
    s.start()
    return s, locker, ran


def first_claim_failed(
    make_scheduler: SchedulerFactory, clock: FakeClock, name: str
) -> tuple[gnomon.Scheduler, FlakyLocker, Tally, gnomon.Job]:
    """``at_least_once_job`` every 60 s whose first occurrence failed to be claimed."""
    s, locker, ran = at_least_once_job(make_scheduler, clock, name, 60)
    locker.down.set()
    settle(s, clock, 60)
    assert locker.failures.count == 1
    [job] = s.jobs()
    return s, locker, ran, job


def locker_back(
    s: gnomon.Scheduler, locker: FlakyLocker, clock: FakeClock, seconds_after: int = 5
) -> None:
    """The locker answers again; ``seconds_after`` renew intervals (1 s) pass, each settled."""
    locker.down.clear()
    for _ in range(seconds_after):
        settle(s, clock, 1)


def test_an_at_least_once_occurrence_whose_claim_failed_runs_once_the_locker_answers(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    lock_errors = Tally()
    s, locker, ran = at_least_once_job(
        make_scheduler, clock, "report", 60, after_lock_error=lock_errors.hit
    )
    locker.down.set()
    settle(s, clock, 60)
    assert ran.count == 0
    [error] = lock_errors.values
    assert error.outcome is Outcome.SKIPPED_LOCK_ERROR
    locker.down.clear()

    settle(s, clock, 0.5)  # within the renew interval: not yet
    assert ran.count == 0
    clock.advance(seconds(1))
    ran.wait_for(1)
    s.wait_idle(timeout=WAIT)

    assert ran.values == [at(60)]
    assert lock_errors.count == 1
    assert [(r.scheduled_at, r.outcome) for r in records(s, "report")] == [
        (at(60), Outcome.SUCCESS)
    ]


def test_an_at_most_once_occurrence_whose_claim_failed_is_not_claimed_again(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    locker = FlakyLocker(clock)
    s = make_scheduler(locker=locker)
    ran = Tally()
    s.add_job(ran.hit, gnomon.every(60), name="report")
    s.start()
    locker.down.set()
    settle(s, clock, 60)
    locker_back(s, locker, clock)

    assert ran.count == 0
    assert locker.failures.count == 1
    assert records(s, "report") == []


def test_a_long_locker_outage_runs_only_the_latest_occurrence_and_records_the_rest_missed(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, locker, ran = at_least_once_job(make_scheduler, clock, "sync", 10)
    locker.down.set()
    for _ in range(32):  # fire times at 10, 20 and 30 s, and claims again between them
        settle(s, clock, 1)
    # A claim again 1.1 s after each failure: every other step of a second.
    assert locker.failures.count >= 3 + 10
    locker_back(s, locker, clock, 3)

    assert ran.values == [at(30)]  # catch_up="latest": the newest unclaimed one runs
    missed = [r for r in records(s, "sync") if r.outcome is Outcome.SKIPPED_MISSED]
    assert [(r.scheduled_at, r.count) for r in missed] == [(at(10), 1), (at(20), 1)]
    assert all("while the locker was unavailable" in (r.detail or "") for r in missed)


def test_catch_up_all_runs_every_occurrence_a_locker_outage_left_unclaimed(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, locker, ran = at_least_once_job(make_scheduler, clock, "ledger", 10, catch_up="all")
    locker.down.set()
    for _ in range(25):
        settle(s, clock, 1)
    locker_back(s, locker, clock, 3)

    assert sorted(ran.values) == [at(10), at(20)]
    assert not [r for r in records(s, "ledger") if r.outcome is Outcome.SKIPPED_MISSED]


def test_a_removed_job_stops_being_claimed_again(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, locker, ran, job = first_claim_failed(make_scheduler, clock, "gone")
    job.remove()
    locker_back(s, locker, clock)

    assert (ran.count, locker.failures.count, locker.claims.count) == (0, 1, 0)
    assert s._engine.unclaimed_waiting == {}  # nothing of the job is kept


def test_a_job_updated_to_at_most_once_leaves_its_failed_claims_unclaimed(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, locker, ran, job = first_claim_failed(make_scheduler, clock, "turned")
    s.update_job(job.id, recovery=Recovery.AT_MOST_ONCE)
    locker_back(s, locker, clock)

    assert (ran.count, locker.failures.count, locker.claims.count) == (0, 1, 0)
    assert s._engine.unclaimed_waiting == {}
    settle(s, clock, 60)  # its next occurrence is claimed and runs, as at-most-once
    assert ran.values == [at(120)]


def test_a_claim_in_flight_when_the_job_turns_at_most_once_is_not_claimed_again(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, locker, ran = at_least_once_job(make_scheduler, clock, "turning", 60, held_at=60)
    clock.advance(seconds(60))
    assert locker.entered.wait(WAIT)  # the claim of the 60 s occurrence is in flight
    locker.down.set()
    [job] = s.jobs()
    s.update_job(job.id, recovery=Recovery.AT_MOST_ONCE)
    locker.release_held.set()
    locker.failures.wait_for(1)  # the claim asked before the update fails after it
    s.wait_idle(timeout=WAIT)
    locker_back(s, locker, clock)

    assert (ran.count, locker.claims.count) == (0, 0)
    assert s._engine.unclaimed_waiting == {}


def test_a_claim_that_succeeds_leaves_newer_occurrences_failed_meanwhile_to_be_caught_up(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    # The success shows that the locker answered when this claim was asked, not later:
    # a newer occurrence that failed while it was in flight is not taken as superseded.
    s, locker, ran = at_least_once_job(make_scheduler, clock, "slow", 10, held_at=10)
    clock.advance(seconds(10))
    assert locker.entered.wait(WAIT)  # the claim of the 10 s occurrence is in flight
    locker.down.set()
    clock.advance(seconds(10))
    locker.failures.wait_for(1)  # the 20 s occurrence failed to be claimed
    locker.down.clear()
    locker.release_held.set()
    ran.wait_for(1)
    s.wait_idle(timeout=WAIT)
    assert ran.values == [at(10)]

    settle(s, clock, 1.5)  # the renew interval has passed: 20 s is claimed again

    assert ran.values == [at(10), at(20)]
    assert not [r for r in records(s, "slow") if r.outcome is Outcome.SKIPPED_MISSED]


def test_a_restart_claims_again_at_once_what_a_stop_left_unclaimed(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    s, locker, ran = at_least_once_job(make_scheduler, clock, "paused-node", 10)
    locker.down.set()
    settle(s, clock, 10)
    s.stop_jobs()
    locker.down.clear()
    settle(s, clock, 5)  # stopped: the pending claim was dropped, nothing is asked
    assert (ran.count, locker.failures.count, locker.claims.count) == (0, 1, 0)
    s.start()
    ran.wait_for(1)
    s.wait_idle(timeout=WAIT)
    assert ran.values == [at(10)]
    settle(s, clock, 5)  # and the schedule goes on

    assert ran.values == [at(10), at(20)]


def test_a_job_with_a_run_going_is_claimed_again_only_once_that_run_has_ended(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    # The run going may be a later occurrence, whose claim decides first: with
    # catch_up="latest" it supersedes the unclaimed one, which is recorded missed.
    s, locker, ran = at_least_once_job(make_scheduler, clock, "busy", 10, held_at=20)
    locker.down.set()
    settle(s, clock, 10)  # the 10 s occurrence fails to be claimed
    locker.down.clear()
    clock.jump(seconds(10))
    clock.advance(seconds(0))  # one wake-up: the probe (due at 11.1 s), then the 20 s tick
    assert locker.entered.wait(WAIT)  # the 20 s occurrence's claim is in flight
    clock.advance(seconds(2))  # the probe is due again: it waits for that claim
    locker.release_held.set()
    ran.wait_for(1)
    s.wait_idle(timeout=WAIT)
    settle(s, clock, 2)

    assert ran.values == [at(20)]
    missed = [r for r in records(s, "busy") if r.outcome is Outcome.SKIPPED_MISSED]
    assert [r.scheduled_at for r in missed] == [at(10)]


def test_a_store_read_leaves_alone_what_the_locker_failed_to_claim_for_a_job_not_stored(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    # A successful read of the store vouches for the store's claims only: the locker is
    # asked again after its renew interval, not at every read.
    s, locker, _ = at_least_once_job(
        make_scheduler, clock, "not-stored", 60, store=MemoryStore(), durable=False
    )
    locker.down.set()
    settle(s, clock, 60)
    assert locker.failures.count == 1
    settle(s, clock, 1.05)  # past the 1 s catch-up grace; the claim again is due at 61.1 s
    engine = s._engine
    for _ in range(3):  # what the follower does after each successful read
        engine.catch_up_unclaimed(noted=engine.unclaimed_waiting)
        s.wait_idle(timeout=WAIT)

    assert locker.failures.count == 1
    settle(s, clock, 0.1)
    assert locker.failures.count == 2
