"""``JobContext``: what a task is told about its run, made lazily for runs and immutable."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from scheduler_support import SchedulerFactory

import gnomon
import gnomon._run
from gnomon._cancel import CancelEvent
from gnomon.testing import FakeClock

WHEN = datetime(2030, 1, 1, 12, tzinfo=UTC)


class _Seen(list[gnomon.JobContext]):
    def task(self, ctx: gnomon.JobContext) -> None:
        self.append(ctx)


def _direct(**changes: object) -> gnomon.JobContext:
    values: dict[str, object] = {
        "job_id": uuid.UUID(int=7),
        "job_name": "report",
        "scheduled_at": WHEN,
        "occurrence_key": "report@2030-01-01T12:00:00.000000Z",
        "fencing_token": 3,
        "attempt": 1,
    }
    values.update(changes)
    return gnomon.JobContext(**values)  # type: ignore[arg-type]


def test_a_run_context_names_its_job_and_occurrence(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen = _Seen()
    s = make_scheduler()
    job = s.add_job(seen.task, gnomon.every("1m"), name="report")
    s.start()
    clock.advance("1m")
    s.wait_idle()
    [ctx] = seen
    scheduled = clock.now()
    assert ctx.job_id == job.id
    assert ctx.job_name == "report"
    assert ctx.scheduled_at == scheduled
    assert ctx.occurrence_key == gnomon.occurrence_key("report", scheduled)
    assert (ctx.fencing_token, ctx.attempt) == (None, 1)
    assert not ctx.cancelled.is_set()


def test_a_context_read_after_its_run_was_asked_to_stop_shows_it_cancelled(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen: list[bool] = []
    s = make_scheduler()

    def task(ctx: gnomon.JobContext) -> None:
        s.remove_job(ctx.job_id)  # removal asks the running run to stop
        seen.append(ctx.cancelled.is_set())  # the event is made only now, already set

    s.add_job(task, gnomon.every("1m"))
    s.start()
    clock.advance("1m")
    s.wait_idle()
    assert seen == [True]


def test_a_context_cannot_be_changed() -> None:
    ctx = _direct()
    with pytest.raises(dataclasses.FrozenInstanceError, match="job_name"):
        ctx.job_name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="occurrence_key"):
        ctx.occurrence_key = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="attempt"):
        del ctx.attempt
    assert ctx.job_name == "report"


def test_contexts_compare_and_hash_by_value_without_their_event() -> None:
    first, second = _direct(), _direct(cancelled=threading.Event())
    second.cancelled.set()
    assert first == second
    assert hash(first) == hash(second)
    assert first != _direct(attempt=2)
    assert first != _direct(occurrence_key="report@other")
    assert first.__eq__("report") is NotImplemented


def test_a_context_made_directly_gets_its_own_event_unless_given_one() -> None:
    given = threading.Event()
    assert _direct(cancelled=given).cancelled is given
    assert isinstance(_direct().cancelled, threading.Event)
    assert _direct().cancelled is not _direct().cancelled
    made = _direct()
    made.cancelled.wait(0)
    assert copy.deepcopy(made) == made  # its own event copies, waited on or not


def test_a_context_made_positionally_keeps_every_field() -> None:
    ctx = gnomon.JobContext(uuid.UUID(int=1), "n", WHEN, "n@k", None, 2)
    assert (ctx.job_id, ctx.job_name, ctx.scheduled_at) == (uuid.UUID(int=1), "n", WHEN)
    assert (ctx.occurrence_key, ctx.fencing_token, ctx.attempt) == ("n@k", None, 2)


def test_a_context_shows_its_fields() -> None:
    text = repr(_direct())
    assert text.startswith("JobContext(job_id=UUID(")
    for part in (
        "job_name='report'",
        "occurrence_key='report@2030",
        "fencing_token=3",
        "attempt=1",
        "cancelled=<",
    ):
        assert part in text


def test_a_run_context_equals_one_made_directly_from_the_same_values(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen = _Seen()
    s = make_scheduler()
    s.add_job(seen.task, gnomon.every("1m"), name="report", start_at=clock.now() + timedelta(1))
    s.start()
    clock.advance("1d")
    s.wait_idle()
    [ctx] = seen
    made = gnomon.JobContext(ctx.job_id, "report", ctx.scheduled_at, ctx.occurrence_key, None, 1)
    assert made == ctx
    assert hash(made) == hash(ctx)


def test_a_run_context_copies_and_pickles_by_value(
    make_scheduler: SchedulerFactory, clock: FakeClock
) -> None:
    seen = _Seen()
    s = make_scheduler()
    s.add_job(seen.task, gnomon.every("1m"), name="report")
    s.start()
    clock.advance("1m")
    s.wait_idle()
    [ctx] = seen
    shallow = copy.copy(ctx)
    assert shallow == ctx
    assert shallow.cancelled is ctx.cancelled
    deep = copy.deepcopy(ctx)
    assert deep == ctx
    assert deep.cancelled is not ctx.cancelled
    ctx.cancelled.wait(0)  # a waiter's condition is not copied along
    loaded = pickle.loads(pickle.dumps(ctx))  # noqa: S301 - our own bytes, just made
    assert loaded == ctx
    assert loaded._source is None  # the copy holds the values, never the run
    assert loaded.occurrence_key == gnomon.occurrence_key("report", clock.now())
    assert not loaded.cancelled.is_set()


def test_a_context_matches_by_position_and_by_name() -> None:
    match _direct():
        case gnomon.JobContext(job_id, "report", scheduled_at, key, token, attempt):
            assert (job_id, scheduled_at, token, attempt) == (uuid.UUID(int=7), WHEN, 3, 1)
            assert key.startswith("report@")
        case _:
            pytest.fail("a context did not match its own fields")
    match _direct(attempt=2):
        case gnomon.JobContext(attempt=1):
            pytest.fail("matched another attempt")
        case gnomon.JobContext(attempt=2, job_name=name):
            assert name == "report"
        case _:
            pytest.fail("a context did not match by keyword")


def test_two_threads_reading_a_run_context_event_first_get_the_same_one(
    make_scheduler: SchedulerFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[threading.Event] = []
    lock = threading.Lock()
    s = make_scheduler()

    def slow_event() -> CancelEvent:
        time.sleep(0.01)  # lets the other readers in while the first makes the event
        return CancelEvent()

    monkeypatch.setattr(gnomon._run, "CancelEvent", slow_event)

    def task(ctx: gnomon.JobContext) -> None:
        barrier = threading.Barrier(8)

        def read() -> None:
            barrier.wait(5)
            event = ctx.cancelled
            with lock:
                events.append(event)

        readers = [threading.Thread(target=read) for _ in range(8)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(5)
        s.remove_job(ctx.job_id)  # asks the run to stop: the one event is set

    s.add_job(task, gnomon.every("1m"))
    s.start()
    clock.advance("1m")
    s.wait_idle()
    assert len(events) == 8
    assert all(event is events[0] for event in events)
    assert events[0].is_set()
