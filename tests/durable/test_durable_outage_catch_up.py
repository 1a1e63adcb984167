"""Occurrences that could not be claimed while the store was down are caught up."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from durable_support import T0, Outage, SchedulerFactory, StoreFactory, wait_until

import gnomon
from gnomon import Outcome
from gnomon.testing import FakeClock

MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("catch_up", "ran", "missed"),
    [("latest", [5], 4), ("skip", [], 5), ("all", [1, 2, 3, 4, 5], 0)],
)
def test_occurrences_unclaimable_during_an_outage_follow_the_catch_up_policy(
    make: SchedulerFactory,
    new_store: StoreFactory,
    clock: FakeClock,
    catch_up: str,
    *,
    ran: list[int],
    missed: int,
) -> None:
    lock = threading.Lock()
    seen: list[object] = []

    def task(ctx: gnomon.JobContext) -> None:
        with lock:
            seen.append(ctx.scheduled_at)

    store = new_store()
    s = make(store=store)
    s.register(task, name="task")
    s.start()
    s.add_job("task", gnomon.every("1m"), name="ticker", catch_up=catch_up)
    outage = Outage(store)
    clock.advance(5 * MINUTE + timedelta(seconds=30))
    s.wait_idle()
    assert seen == []
    outage.end()
    wait_until(
        lambda: (
            len(seen) == len(ran)
            and (missed == 0 or bool(s.history(outcome=Outcome.SKIPPED_MISSED)))
        ),
        "the follower caught up",
    )
    s.wait_idle()
    assert sorted(seen) == [T0 + n * MINUTE for n in ran]  # type: ignore[type-var]
    skips = s.history(outcome=Outcome.SKIPPED_MISSED)
    if missed:
        [skip] = skips
        assert skip.count == missed
        assert skip.detail is not None
        assert "while the store was unavailable" in skip.detail
    else:
        assert skips == []


def test_a_missed_record_whose_write_failed_is_written_once_the_store_answers(
    make: SchedulerFactory, new_store: StoreFactory, clock: FakeClock
) -> None:
    # The store answers the follower's read (so the catch-up begins), then fails the
    # missed record's write: the record is kept and written at the next read.
    ran: list[object] = []

    def task(ctx: gnomon.JobContext) -> None:
        ran.append(ctx.scheduled_at)

    store = new_store()
    s = make(store=store)
    s.register(task, name="task")
    s.start()
    s.add_job("task", gnomon.every("1m"), name="ticker")
    outage = Outage(store)
    clock.advance(5 * MINUTE + timedelta(seconds=30))
    s.wait_idle()
    refused: list[gnomon.RunRecord] = []
    record = outage.working["record"]

    def record_failing_once(missed: gnomon.RunRecord) -> bool:
        if not refused:
            refused.append(missed)
            raise gnomon.StoreUnavailable("the store is down again (test)")
        return bool(record(missed))

    outage.working["record"] = record_failing_once
    outage.end()
    wait_until(lambda: bool(s.history(outcome=Outcome.SKIPPED_MISSED)), "the missed record")
    s.wait_idle()

    assert ran == [T0 + 5 * MINUTE]
    [written] = s.history(outcome=Outcome.SKIPPED_MISSED)
    assert [r.occurrence_key for r in refused] == [written.occurrence_key]
    assert written.count == 4
