"""``s.actions()``: every pause, resume and removal of a job, with who asked and when.

Durable jobs keep their actions in the store (every scheduler on it sees them, and they
outlive the job); jobs kept in memory keep theirs in the scheduler, ``history_limit`` of
them. Both faces record alike.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from durable_support import T0, SchedulerFactory, StoreFactory

import gnomon
from gnomon.testing import FakeClock


def report() -> None:
    pass


def summary(actions: list[gnomon.ActionRecord]) -> list[tuple[str, str, str | None, str | None]]:
    return [(a.job_name, a.action, a.actor, a.detail) for a in actions]


def test_durable_actions_are_stored_with_actor_and_seen_by_every_scheduler_on_the_store(
    make: SchedulerFactory, clock: FakeClock
) -> None:
    s, other = make(), make()
    for scheduler in (s, other):
        scheduler.register(report, name="report")
    s.start()
    job = s.add_job("report", gnomon.every("1h"), name="daily")
    assert job is not None
    job.pause("deploy freeze", actor="alice")
    clock.advance("1m")
    job.resume(actor="bob")
    clock.advance("1m")
    job.pause()
    assert summary(other.actions()) == [
        ("daily", "pause", None, None),
        ("daily", "resume", "bob", None),
        ("daily", "pause", "alice", "deploy freeze"),
    ]
    first = other.actions()[-1]
    assert first.job_id == job.id
    assert first.at == T0


def test_a_removed_durable_job_keeps_its_actions_by_id_and_by_name(make: SchedulerFactory) -> None:
    s = make()
    s.register(report, name="report")
    s.start()
    job = s.add_job("report", gnomon.every("1h"), name="gone")
    assert job is not None
    job.remove(actor="alice")
    assert summary(s.actions(job=job.id)) == [("gone", "remove", "alice", None)]
    assert summary(s.actions(job="gone")) == [("gone", "remove", "alice", None)]
    assert s.store is not None
    assert s.store.get_job(job_id=job.id) is not None  # a tombstone; the action is apart


def test_remove_job_and_remove_by_tags_record_removals_without_an_actor(
    make: SchedulerFactory,
) -> None:
    s = make()
    s.register(report, name="report")
    s.start()
    one = s.add_job("report", gnomon.every("1h"), name="one")
    assert one is not None
    s.add_job("report", gnomon.every("1h"), name="two", tags=["nightly"])
    s.remove_job(one.id)
    assert s.remove_by_tags("nightly") == 1
    assert summary(s.actions()) == [("two", "remove", None, None), ("one", "remove", None, None)]


def test_an_action_the_store_cannot_record_is_done_and_logged(
    make: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    s = make()
    s.register(report, name="report")
    s.start()
    job = s.add_job("report", gnomon.every("1h"), name="daily")
    assert job is not None
    store = s.store
    assert store is not None

    def down(record: gnomon.ActionRecord) -> None:
        raise gnomon.StoreUnavailable("the store is down (test)")

    store.record_action = down  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="gnomon"):
        job.pause("disk", actor="alice")
    assert job.paused
    assert "the pause of job 'daily' by alice was done, but could not be recorded" in caplog.text


def test_in_memory_actions_are_kept_up_to_history_limit_newest_first(clock: FakeClock) -> None:
    with gnomon.Scheduler(clock=clock, timezone="UTC", history_limit=3) as s:
        job = s.add_job(report, gnomon.every("1h"), name="local")
        assert job is not None
        for n in range(3):
            job.pause(f"round {n}", actor="alice")
            clock.advance("1s")
            job.resume()
        kept = s.actions()
        assert summary(kept) == [
            ("local", "resume", None, None),
            ("local", "pause", "alice", "round 2"),
            ("local", "resume", None, None),
        ]
        assert kept[0].at == T0 + timedelta(seconds=3)
        assert summary(s.actions(job=job, limit=1)) == [("local", "resume", None, None)]


def test_an_action_on_a_removed_job_raises_and_records_nothing(clock: FakeClock) -> None:
    with gnomon.Scheduler(clock=clock, timezone="UTC") as s:
        job = s.add_job(report, gnomon.every("1h"), name="local")
        assert job is not None
        job.remove(actor="alice")
        with pytest.raises(gnomon.JobNotFound):
            job.pause(actor="bob")
        assert summary(s.actions()) == [("local", "remove", "alice", None)]


def test_a_bad_actor_or_limit_or_job_is_refused_naming_the_value(clock: FakeClock) -> None:
    with gnomon.Scheduler(clock=clock, timezone="UTC") as s:
        job = s.add_job(report, gnomon.every("1h"), name="local")
        assert job is not None
        with pytest.raises(TypeError, match=r"an actor is a string .* got 42"):
            job.pause("x", actor=42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="an actor is a string"):
            job.remove(actor=b"alice")  # type: ignore[arg-type]
        with pytest.raises(gnomon.InvalidOption, match=r"limit must be .* got 0"):
            s.actions(limit=0)
        with pytest.raises(gnomon.InvalidOption, match="job must be a Job, a job id"):
            s.actions(job=3)  # type: ignore[arg-type]
        assert not job.paused
        assert s.actions() == []


def test_the_async_face_records_and_reads_actions_alike(new_store: StoreFactory) -> None:
    store = new_store()

    async def scenario() -> list[gnomon.ActionRecord]:
        async with gnomon.AsyncScheduler(store=store, timezone="UTC") as s:
            s.register(report, name="report")
            stored = await s.add_job("report", gnomon.every("1h"), name="stored")
            local = await s.add_job(report, gnomon.every("1h"), name="local", durable=False)
            assert stored is not None
            assert local is not None
            await stored.pause("migration", actor="alice")
            await local.pause(actor="bob")
            await stored.resume(catch_up=True, actor="carol")
            await local.remove(actor="dave")
            return await s.actions()

    assert sorted(summary(asyncio.run(scenario()))) == [
        ("local", "pause", "bob", None),
        ("local", "remove", "dave", None),
        ("stored", "pause", "alice", "migration"),
        ("stored", "resume", "carol", None),
    ]
