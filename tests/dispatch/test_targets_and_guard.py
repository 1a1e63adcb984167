"""Dispatch targets, broker registration and the worker-side fence, without a broker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from celery import Celery
from dispatch_support import REDIS_URL, require, unique
from dramatiq.brokers.rabbitmq import RabbitmqBroker

import gnomon
from gnomon._dispatch import Fence, MemoryLedger, RedisLedger
from gnomon.celery import dispatch
from gnomon.testing import FakeClock, MemoryStore

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_message_id_is_the_same_for_an_occurrence_and_attempt_and_differs_otherwise() -> None:
    first = gnomon.message_id("report@2026-03-01T09:00:00.000000Z", 1)
    assert isinstance(first, uuid.UUID)
    assert first == gnomon.message_id("report@2026-03-01T09:00:00.000000Z", 1)
    assert first != gnomon.message_id("report@2026-03-01T09:00:00.000000Z", 2)
    assert first != gnomon.message_id("report@2026-03-01T09:00:01.000000Z", 1)


@pytest.mark.parametrize(("key", "attempt"), [("", 1), ("k", 0), ("k", True), (3, 1)])
def test_message_id_rejects_a_bad_key_or_attempt(key: object, attempt: object) -> None:
    with pytest.raises(ValueError, match=r"occurrence key|attempt"):
        gnomon.message_id(key, attempt)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"args": [datetime(2026, 1, 1, tzinfo=UTC)]}, r"args\[0\] is a datetime"),
        ({"args": [float("nan")]}, r"args\[0\] is nan"),
        ({"kwargs": {"when": {1: "x"}}}, r"kwargs\['when'\] has the key 1"),
        ({"args": "abc"}, "args must be a list or tuple"),
        ({"queue": ""}, "queue must be a non-empty str"),
        ({"expires": "0s"}, "expires"),
        ({"track": "yes"}, "track must be True or False"),
        ({"broker": "kafka"}, "broker must be one of celery, dramatiq, rq, got 'kafka'"),
    ],
)
def test_dispatch_refuses_what_a_message_cannot_carry(given: dict[str, object], named: str) -> None:
    with pytest.raises(gnomon.InvalidJob, match=named):
        dispatch("app.tasks.report", **given)  # type: ignore[arg-type]


def test_register_broker_refuses_an_unknown_kind_and_a_wrong_object() -> None:
    scheduler = gnomon.Scheduler(clock=FakeClock(T0))
    try:
        with pytest.raises(gnomon.InvalidOption, match="one of celery, dramatiq, rq, got 'kafka'"):
            scheduler.register_broker("kafka", object())
        with pytest.raises(gnomon.InvalidOption, match=r"takes a celery\.Celery app, got 'amqp"):
            scheduler.register_broker("celery", "amqp://guest@localhost//")
        with pytest.raises(gnomon.InvalidOption, match=r"takes the redis\.Redis connection"):
            scheduler.register_broker("rq", Celery("x"))
    finally:
        scheduler.shutdown()


def test_a_dramatiq_broker_that_does_not_confirm_deliveries_is_refused() -> None:
    scheduler = gnomon.Scheduler(clock=FakeClock(T0))
    try:
        with pytest.raises(gnomon.InvalidOption, match="confirm_delivery=True"):
            scheduler.register_broker("dramatiq", RabbitmqBroker(url="amqp://127.0.0.1:1/%2F"))
    finally:
        scheduler.shutdown()


def test_a_target_waits_as_an_unknown_task_until_its_broker_is_registered() -> None:
    store = MemoryStore()
    scheduler = gnomon.Scheduler(clock=FakeClock(T0), store=store)
    try:
        name = scheduler.register(dispatch("app.tasks.report"), name="report-target")
        assert name == "report-target"
        with pytest.raises(gnomon.UnknownTask, match="report-target"):
            scheduler.add_job("report-target", gnomon.every("1m"), name="report")
        scheduler.register_broker("celery", Celery("app", broker="amqp://u:secret@h//"))
        job = scheduler.add_job("report-target", gnomon.every("1m"), name="report")
        assert job is not None
    finally:
        scheduler.shutdown()


def test_a_stored_job_of_a_target_holds_no_url_credential_or_path() -> None:
    store = MemoryStore()
    scheduler = gnomon.Scheduler(clock=FakeClock(T0), store=store)
    try:
        scheduler.register_broker(
            "celery", Celery("app", broker="amqp://u:s3cr3t@broker.example//")
        )
        target = dispatch("app.tasks.report", args=[1], queue="reports")
        scheduler.register(target, name="report-target")
        scheduler.add_job(
            target,  # type: ignore[call-overload]  # a target object is found as its task, too
            gnomon.every("1m"),
            name="report",
        )
        [row] = store.jobs()
    finally:
        scheduler.shutdown()
    assert row.task == "report-target"
    text = f"{row.task} {row.definition}"
    for secret in ("s3cr3t", "broker.example", "amqp", "app.tasks.report", "gnomon.celery"):
        assert secret not in text


# ---------------------------------------------------------------- the fence


@pytest.fixture
def ran() -> tuple[MemoryStore, gnomon.RunRecord]:
    """A store holding one finished occurrence, with its claim token."""
    store = MemoryStore()
    clock = FakeClock(T0)
    scheduler = gnomon.Scheduler(clock=clock, store=store)
    scheduler.register(lambda: None, name="noop")
    scheduler.add_job("noop", gnomon.every("1m"), name="job")
    scheduler.start()
    clock.advance(timedelta(minutes=1))
    scheduler.wait_idle(10)
    [record] = scheduler.history(job="job")
    scheduler.shutdown()
    return store, record


def _headers(record: gnomon.RunRecord, **changes: object) -> dict[str, object]:
    return {
        "gnomon_occurrence": record.occurrence_key,
        "gnomon_fencing_token": record.fencing_token,
        "gnomon_attempt": record.attempt,
        "gnomon_job": record.job_name,
        "gnomon_scheduled_at": record.scheduled_at.isoformat(),
        **changes,
    }


def test_the_fence_admits_the_current_token_once_and_drops_a_second_message(
    ran: tuple[MemoryStore, gnomon.RunRecord],
) -> None:
    store, record = ran
    fence = Fence(store)
    first = fence.check(_headers(record))
    assert first.admitted
    fence.finished(first)
    assert not fence.check(_headers(record)).admitted
    assert (fence.admitted, fence.dropped) == (1, 1)


def test_the_fence_passes_a_redelivery_of_an_admitted_unfinished_message(
    ran: tuple[MemoryStore, gnomon.RunRecord],
) -> None:
    store, record = ran
    fence = Fence(store)
    assert fence.check(_headers(record), redelivered=False).admitted
    assert fence.check(_headers(record), redelivered=True).admitted
    assert not fence.check(_headers(record), redelivered=False).admitted  # a second publish


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"gnomon_fencing_token": -1}, "is not the current claim token"),
        ({"gnomon_fencing_token": "7"}, "no fencing token"),
        ({"gnomon_occurrence": None}, "no gnomon occurrence headers"),
        ({"gnomon_occurrence": "job@2000-01-01T00:00:00.000000Z"}, "not the current claim"),
        ({"gnomon_scheduled_at": "yesterday"}, "unreadable gnomon_scheduled_at"),
        ({"gnomon_scheduled_at": "2026-03-01T09:01:00"}, "naive gnomon_scheduled_at"),
    ],
)
def test_the_fence_drops_a_forged_or_stale_message_and_says_why(
    ran: tuple[MemoryStore, gnomon.RunRecord], changes: dict[str, object], reason: str
) -> None:
    store, record = ran
    fence = Fence(store)
    if changes.get("gnomon_fencing_token") == -1:
        assert record.fencing_token is not None
        changes = {"gnomon_fencing_token": record.fencing_token - 1}
    verdict = fence.check(_headers(record, **changes))
    assert not verdict.admitted
    assert reason in verdict.reason
    assert fence.dropped == 1


def test_a_redis_ledger_is_shared_by_every_worker_of_a_fleet(
    ran: tuple[MemoryStore, gnomon.RunRecord],
) -> None:
    require("redis")
    store, record = ran
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"{unique('ledger')}:"
    try:
        one = Fence(store, seen=RedisLedger(client, prefix=prefix))
        other = Fence(store, seen=client)
        other.ledger = RedisLedger(client, prefix=prefix)
        verdict = one.check(_headers(record))
        one.finished(verdict)
        assert verdict.admitted
        assert not other.check(_headers(record)).admitted
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


def test_a_guard_needs_a_store_and_a_usable_ledger() -> None:
    with pytest.raises(gnomon.InvalidOption, match="needs the scheduler's gnomon store"):
        Fence("sqlite:jobs.db")  # type: ignore[arg-type]
    with pytest.raises(gnomon.InvalidOption, match="seen must be None"):
        Fence(MemoryStore(), seen="redis://localhost")
    assert isinstance(Fence(MemoryStore()).ledger, MemoryLedger)


def test_the_async_face_registers_brokers_and_targets_alike() -> None:
    async def scenario() -> None:
        scheduler = gnomon.AsyncScheduler(clock=FakeClock(T0), store=MemoryStore())
        try:
            scheduler.register(dispatch("app.tasks.report"), name="report-target")
            with pytest.raises(gnomon.UnknownTask, match="report-target"):
                await scheduler.add_job("report-target", gnomon.every("1m"), name="report")
            scheduler.register_broker("celery", Celery("app"))
            assert await scheduler.add_job("report-target", gnomon.every("1m"), name="report")
        finally:
            await scheduler.shutdown()

    asyncio.run(scenario())
