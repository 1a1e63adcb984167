"""Edge cases of durable retries and outage catch-up: what a pause leaves in the store."""

from __future__ import annotations

import threading
from datetime import timedelta

from durable_support import Outage, SchedulerFactory, StoreFactory, wait_until

import gnomon
from gnomon import Outcome, Retry
from gnomon._stores.contract import Store
from gnomon.testing import FakeClock

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
WAIT = 20.0


def test_pausing_while_after_error_runs_leaves_no_pending_retry_in_the_store(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    """A pause between the retry's planning and the run's end (here: while
    ``after_error`` runs) drops the retry: the store keeps no pending retry, and after
    ``resume()`` the old occurrence is not run again."""
    attempts: list[int] = []
    in_listener, go_on = threading.Event(), threading.Event()

    def flaky(ctx: gnomon.JobContext) -> None:
        attempts.append(ctx.attempt)
        raise ConnectionError(f"attempt {ctx.attempt} fails")

    def after_error(event: gnomon.RunEvent) -> None:
        if event.attempt == 1:
            in_listener.set()
            go_on.wait(WAIT)

    s = make()
    s.register(flaky, name="flaky", after_error=after_error)
    s.start()
    job = s.add_job("flaky", gnomon.every("1h"), name="j", retry=Retry(delay="10s", jitter=False))
    assert job is not None
    clock.advance(HOUR)
    assert in_listener.wait(WAIT)
    job.pause("deploying")  # the retry is planned; the run has not finished yet
    go_on.set()
    s.wait_idle()
    [record] = s.history(job="j")
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 1)
    store = s.store
    assert store is not None
    wait_until(lambda: store.due_retries(grace=timedelta(0)) == [], "no retry is left", 3.0)
    job.resume()
    clock.advance(10 * SECOND)
    s.wait_idle()
    assert attempts == [1]


def test_occurrences_unclaimed_in_an_outage_are_recorded_when_the_job_was_paused_meanwhile(
    make: SchedulerFactory, new_store: StoreFactory, clock: FakeClock
) -> None:
    """Occurrences that could not be claimed during an outage, of a job paused before
    the store answers again, are recorded ``SKIPPED_MISSED`` (none of them runs)."""
    seen: list[object] = []
    store = new_store()
    s = make(store=store)

    def task(ctx: gnomon.JobContext) -> None:
        seen.append(ctx.scheduled_at)

    s.register(task, name="task")
    s.start()
    job = s.add_job("task", gnomon.every("1m"), name="ticker", catch_up="skip")
    assert job is not None
    outage = Outage(store)
    clock.advance(5 * MINUTE + 30 * SECOND)  # five occurrences cannot be claimed
    s.wait_idle()
    job.pause("outage")  # set_paused still reaches the store
    outage.end()
    engine = s._engine
    wait_until(lambda: not engine.unclaimed_waiting, "the follower looked at them")
    job.resume()
    s.wait_idle()
    assert seen == []
    missed = sum(r.count for r in s.history(outcome=Outcome.SKIPPED_MISSED))
    assert missed == 5


class _HeldRead:
    """Holds the follower right after its read of the store's change counter succeeded,
    until the test lets it go on; tells when the follower has gone on to ``upkeep``."""

    def __init__(self, store: Store) -> None:
        self.read, self.go_on, self.upkept = threading.Event(), threading.Event(), threading.Event()
        self.armed = False
        seq, upkeep = store.seq, store.upkeep

        def held_seq() -> int:
            answer = seq()
            if self.armed and threading.current_thread().name == "gnomon-follower":
                self.armed = False
                self.read.set()
                self.go_on.wait(WAIT)
            return answer

        def noted_upkeep() -> None:
            upkeep()
            if self.go_on.is_set():
                self.upkept.set()

        store.seq = held_seq  # type: ignore[method-assign]
        store.upkeep = noted_upkeep  # type: ignore[method-assign]


def test_occurrences_unclaimed_while_the_follower_reads_the_store_are_recorded_after_the_outage(
    make: SchedulerFactory, new_store: StoreFactory, clock: FakeClock
) -> None:
    """The follower reads the store, then the store goes down and occurrences cannot be
    claimed before the follower catches up: that read is no sign that the store answers
    for them, so they are recorded ``SKIPPED_MISSED`` once it really answers again."""
    seen: list[object] = []
    store = new_store()
    held = _HeldRead(store)
    s = make(store=store)

    def task(ctx: gnomon.JobContext) -> None:
        seen.append(ctx.scheduled_at)

    s.register(task, name="task")
    s.start()
    job = s.add_job("task", gnomon.every("1m"), name="ticker", catch_up="skip")
    assert job is not None
    held.armed = True
    assert held.read.wait(WAIT)  # the follower's read succeeded; the store goes down now
    outage = Outage(store)
    clock.advance(5 * MINUTE + 30 * SECOND)  # five occurrences cannot be claimed
    s.wait_idle()
    held.go_on.set()
    assert held.upkept.wait(WAIT)  # the follower went past its catch-up, store still down
    s.wait_idle()
    outage.end()
    engine = s._engine
    wait_until(lambda: not engine.unclaimed_waiting, "the follower caught them up")
    s.wait_idle()
    assert seen == []
    missed = sum(r.count for r in s.history(outcome=Outcome.SKIPPED_MISSED))
    assert missed == 5
