"""Retries of durable jobs: claimed again in the store, surviving their scheduler."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from durable_support import SchedulerFactory, StoreFactory, wait_until

import gnomon
from gnomon import Outcome, Retry
from gnomon._stores.codec import decode_definition
from gnomon.testing import FakeClock

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


class Flaky:
    """A task that fails its first ``failures`` attempts of each occurrence."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.lock = threading.Lock()
        self.attempts: list[tuple[str, int, int | None]] = []
        self.done = threading.Event()

    def __call__(self, ctx: gnomon.JobContext) -> None:
        with self.lock:
            self.attempts.append((ctx.occurrence_key, ctx.attempt, ctx.fencing_token))
        if ctx.attempt <= self.failures:
            raise ConnectionError(f"attempt {ctx.attempt} fails")
        self.done.set()


def test_a_retry_is_the_same_occurrence_claimed_again_with_a_larger_token(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    flaky = Flaky(failures=2)
    s = make()
    s.register(flaky, name="flaky")
    s.start()
    s.add_job("flaky", gnomon.every("1h"), name="j", retry=Retry(delay="10s", jitter=False))
    clock.advance(HOUR)
    s.wait_idle()
    clock.advance(10 * SECOND)
    s.wait_idle()
    clock.advance(20 * SECOND)
    s.wait_idle()
    keys = {key for key, _, _ in flaky.attempts}
    assert len(keys) == 1
    assert [attempt for _, attempt, _ in flaky.attempts] == [1, 2, 3]
    tokens = [token for _, _, token in flaky.attempts]
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 3
    [record] = s.history(job="j")
    assert (record.outcome, record.attempt, record.attempts) == (Outcome.SUCCESS, 3, 3)


def test_an_exhausted_durable_retry_keeps_one_failed_record(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    flaky = Flaky(failures=5)
    s = make()
    s.register(flaky, name="flaky")
    s.start()
    s.add_job("flaky", gnomon.every("1h"), name="j", retry=Retry(attempts=2, jitter=False))
    clock.advance(HOUR)
    s.wait_idle()
    clock.advance(10 * SECOND)
    s.wait_idle()
    [record] = s.history(job="j")
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 2)
    assert record.error == "ConnectionError: attempt 2 fails"
    assert len(flaky.attempts) == 2


def test_a_pending_retry_survives_its_scheduler_and_runs_once_on_another(
    make: SchedulerFactory, new_store: StoreFactory, clock: FakeClock
) -> None:
    flaky = Flaky(failures=1)
    first = make()
    first.register(flaky, name="flaky")
    first.start()
    first.add_job("flaky", gnomon.every("1h"), name="j", retry=Retry(delay="10s", jitter=False))
    clock.advance(HOUR)
    first.wait_idle()
    first.shutdown()  # gone while its retry waits: the store keeps the retry
    assert [attempt for _, attempt, _ in flaky.attempts] == [1]
    # Another scheduler takes over once the retry is overdue by a lease ttl on the
    # store's clock (long since, here: the test's clock is months behind it).
    second = make(store=new_store())
    second.register(flaky, name="flaky")
    second.start()
    assert flaky.done.wait(20), "the retry never ran on the second scheduler"
    second.wait_idle()
    assert [attempt for _, attempt, _ in flaky.attempts] == [1, 2]
    [record] = second.history(job="j")
    assert (record.outcome, record.attempts) == (Outcome.SUCCESS, 2)


def test_pausing_a_job_drops_its_pending_retry_in_the_store(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    flaky = Flaky(failures=1)
    s = make()
    s.register(flaky, name="flaky")
    s.start()
    job = s.add_job("flaky", gnomon.every("1h"), name="j", retry=Retry(delay="10s", jitter=False))
    clock.advance(HOUR)
    s.wait_idle()
    job.pause("deploying")
    store = s.store
    assert store is not None
    wait_until(lambda: store.due_retries(grace=timedelta(0)) == [], "the store dropped it")
    clock.advance(10 * SECOND)
    s.wait_idle()
    assert len(flaky.attempts) == 1
    [record] = s.history(job="j")
    assert (record.outcome, record.attempts) == (Outcome.FAILED, 1)


def test_a_jobs_retry_is_stored_and_a_tasks_retry_stays_in_code(
    make: SchedulerFactory,
) -> None:
    s = make()

    def task() -> None:
        pass

    s.register(task, name="task", retry=Retry(attempts=5, on=(OSError,)))
    own = s.add_job("task", gnomon.every("1h"), name="own", retry=Retry(attempts=2))
    inherited = s.add_job("task", gnomon.every("1h"), name="inherited")
    store = s.store
    assert store is not None
    assert own is not None
    assert inherited is not None
    rows = {row.name: row for row in store.jobs()}
    assert decode_definition(rows["own"].definition).options["retry"] == Retry(attempts=2)
    assert decode_definition(rows["inherited"].definition).options["retry"] is None
    assert inherited._state.spec.retry == Retry(attempts=5, on=(OSError,))


def test_a_durable_jobs_retry_cannot_name_exception_classes(make: SchedulerFactory) -> None:
    s = make()
    s.register(lambda: None, name="task")
    with pytest.raises(gnomon.InvalidJob, match=r"s\.register\(func, retry=\.\.\.\)"):
        s.add_job("task", gnomon.every("1h"), name="j", retry=Retry(never_on=(KeyError,)))
