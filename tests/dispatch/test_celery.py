"""Runs handed to a real Celery worker on RabbitMQ, behind gnomon's guard."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from conftest import SchedulerFactory
from dispatch_support import (
    RABBITMQ_URL,
    REDIS_URL,
    Worker,
    delete_queues,
    require,
    runs_per_occurrence,
    settle,
    sink_entries,
    start_worker,
    unique,
    wait_for,
)
from fault_proxy import FaultProxy
from kombu.entity import Exchange, Queue

import gnomon
from gnomon import Outcome
from gnomon.celery import dispatch
from gnomon.testing import FakeClock


@dataclass
class CeleryEnv:
    worker: Worker
    app: Celery
    store_path: Path
    queue: str

    def forge(self, sink: str, headers: dict[str, object] | None = None) -> None:
        """Publish a message by hand, as a forger (or a stray client) would."""
        self.app.send_task(
            "dispatch_tests.record", args=[sink], queue=self.queue, headers=headers or {}
        )

    def settle(self) -> None:
        settle(self.worker, lambda marker: self.forge(unique("sink"), {marker: 1}))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryEnv]:
    require("rabbitmq")
    require("redis")
    root = tmp_path_factory.mktemp("celery")
    store_path = root / "store.db"
    queue = unique("gnomon_celery")
    worker = start_worker(
        "celery", queue=queue, store=f"sqlite:{store_path}", broker=RABBITMQ_URL, logs=root
    )
    app = Celery("gnomon-tests", broker=RABBITMQ_URL, backend=REDIS_URL)
    try:
        yield CeleryEnv(worker, app, store_path, queue)
    finally:
        worker.stop()
        _delete_queues(queue)


def _delete_queues(*names: str) -> None:
    delete_queues(RABBITMQ_URL, *names)


def _scheduled(
    make: SchedulerFactory, env: CeleryEnv, app: Celery | None = None, **target: object
) -> tuple[gnomon.Scheduler, FakeClock, str]:
    scheduler, clock = make(env.store_path)
    scheduler.register_broker("celery", app or env.app)
    name = unique("job")
    task = target.pop("task", "dispatch_tests.record")
    options = target.pop("options", {})
    scheduler.register(
        dispatch(str(task), queue=env.queue, **target),  # type: ignore[arg-type]
        name=f"{name}-target",
    )
    scheduler.add_job(f"{name}-target", gnomon.every("1s"), name=name, **options)  # type: ignore[arg-type]
    scheduler.start()
    return scheduler, clock, name


def test_each_occurrence_is_published_once_with_its_message_id_and_fencing_headers(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    sink = unique("sink")
    scheduler, clock, name = _scheduled(make_scheduler, env, args=[sink])
    clock.advance(timedelta(seconds=3))
    scheduler.wait_idle(30)
    records = scheduler.history(job=name)
    assert len(records) == 3
    assert {record.outcome for record in records} == {Outcome.SUCCESS}
    wait_for(lambda: len(sink_entries(sink)) >= 3, "three runs on the worker")
    env.settle()
    ran = {(e["occurrence"], e["token"], e["attempt"]) for e in sink_entries(sink)}
    assert len(sink_entries(sink)) == 3
    assert ran == {(r.occurrence_key, r.fencing_token, r.attempt) for r in records}
    for record in records:
        message = str(gnomon.message_id(record.occurrence_key, record.attempt))
        assert env.app.AsyncResult(message).get(timeout=30) == "recorded"


def test_track_reports_the_worker_outcome_and_error(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    scheduler, clock, name = _scheduled(
        make_scheduler, env, task="dispatch_tests.fail", track=True, options={"timeout": 30}
    )
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(60)
    [record] = scheduler.history(job=name)
    assert record.outcome is Outcome.FAILED
    assert "ValueError: boom from the worker" in (record.error or "")


def test_a_task_name_the_workers_do_not_know_is_reported_from_the_worker_result(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    scheduler, clock, name = _scheduled(
        make_scheduler, env, task="dispatch_tests.no_such_task", track=True, options={"timeout": 30}
    )
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(60)
    [record] = scheduler.history(job=name)
    assert record.outcome is Outcome.FAILED
    assert "NotRegistered" in (record.error or "")
    assert "dispatch_tests.no_such_task" in (record.error or "")


def test_a_publish_the_broker_refuses_to_confirm_fails_with_the_reason_and_is_retried(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    full = unique("gnomon_full")
    refusing = Queue(  # type: ignore[no-untyped-call]  # kombu is partly typed
        full,
        Exchange(full, "direct"),  # type: ignore[no-untyped-call]
        routing_key=full,
        queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    app = Celery("gnomon-tests-full", broker=RABBITMQ_URL)
    app.conf.task_queues = [refusing]
    try:
        scheduler, clock = make_scheduler(env.store_path)
        scheduler.register_broker("celery", app)
        name = unique("job")
        scheduler.register(dispatch("dispatch_tests.record", args=["x"], queue=full), name=name)
        retry = gnomon.Retry(attempts=3, delay="1s", jitter=False, past_next=True)
        scheduler.add_job(name, gnomon.every("1h"), name=name, retry=retry)
        scheduler.start()
        clock.advance(timedelta(hours=1))
        scheduler.wait_idle(30)
        for _ in range(2):
            clock.advance(timedelta(seconds=2))
            scheduler.wait_idle(30)
        [record] = scheduler.history(job=name)
    finally:
        _delete_queues(full)
    assert record.outcome is Outcome.FAILED
    assert record.attempts == 3
    assert "MessageNacked" in (record.error or ""), record.error


def test_a_message_the_broker_returns_as_unroutable_fails_with_the_reason(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    gone = unique("gnomon_gone")
    scheduler, clock = make_scheduler(env.store_path)
    scheduler.register_broker("celery", Celery("gnomon-tests-gone", broker=RABBITMQ_URL))
    name = unique("job")
    scheduler.register(dispatch("dispatch_tests.record", args=["x"], queue=gone), name=name)
    scheduler.add_job(name, gnomon.every("1s"), name=name)
    scheduler.start()
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(30)
    _delete_queues(gone)  # the publisher declared it once; now nothing is bound
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(30)
    second, first = scheduler.history(job=name)
    assert first.outcome is Outcome.SUCCESS
    assert second.outcome is Outcome.FAILED
    assert "NO_ROUTE" in (second.error or "")


def test_the_guard_drops_forged_stale_and_duplicate_messages_and_counts_them(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    sink = unique("sink")
    scheduler, clock, name = _scheduled(make_scheduler, env, args=[sink])
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(30)
    [record] = scheduler.history(job=name)
    wait_for(lambda: len(sink_entries(sink)) == 1, "the run on the worker")
    headers: dict[str, object] = {
        "gnomon_occurrence": record.occurrence_key,
        "gnomon_fencing_token": record.fencing_token,
        "gnomon_attempt": record.attempt,
        "gnomon_job": name,
        "gnomon_scheduled_at": record.scheduled_at.isoformat(),
    }
    dropped = len(env.worker.dropped())
    assert record.fencing_token is not None
    env.forge(sink, headers)  # a second publish with the same token: a duplicate
    env.forge(sink, {**headers, "gnomon_fencing_token": record.fencing_token - 1})  # stale
    env.forge(sink, {**headers, "gnomon_fencing_token": record.fencing_token + 1000})  # forged
    env.forge(sink)  # no gnomon headers at all
    env.settle()
    assert len(env.worker.dropped()) == dropped + 5  # the four, and the settling marker
    assert runs_per_occurrence(sink) == {record.occurrence_key: 1}


def test_a_connection_cut_mid_burst_loses_nothing_and_runs_no_message_twice(
    env: CeleryEnv, make_scheduler: SchedulerFactory
) -> None:
    sink = unique("sink")
    proxy = FaultProxy("127.0.0.1", 5672)
    try:
        app = Celery("gnomon-tests-proxy", broker=f"amqp://guest:guest@{proxy.url_host}//")
        retry = gnomon.Retry(attempts=5, delay="1s", jitter=False, past_next=True)
        scheduler, clock, name = _scheduled(
            make_scheduler, env, app=app, args=[sink], options={"retry": retry}
        )
        published = threading.Event()

        def sent() -> int:
            return len(scheduler.history(job=name, outcome=Outcome.SUCCESS, limit=1000))

        def cut_after_some() -> None:
            wait_for(lambda: sent() >= 3, "the first publishes of the burst")
            proxy.reset()
            published.set()

        proxy.delay(0.1)  # every confirm takes a while: the cut lands inside the burst

        cutter = threading.Thread(target=cut_after_some)
        cutter.start()
        clock.advance(timedelta(seconds=12))
        scheduler.wait_idle(60)
        cutter.join(60)
        assert published.is_set()
        proxy.heal()
        for _ in range(5):
            clock.advance(timedelta(seconds=2))
            scheduler.wait_idle(60)
        records = scheduler.history(job=name, limit=1000)
    finally:
        proxy.close()
    failed_once = [record for record in records if record.attempts > 1]
    assert failed_once, "the cut made no publish fail: it did not land mid-burst"
    assert {record.outcome for record in records} == {Outcome.SUCCESS}
    wait_for(
        lambda: set(runs_per_occurrence(sink)) >= {r.occurrence_key for r in records},
        "every occurrence on the worker",
    )
    env.settle()
    entries = sink_entries(sink)
    tokens = [(entry["occurrence"], entry["token"]) for entry in entries]
    assert len(tokens) == len(set(tokens)), "a message with one token ran twice"
    final = {(r.occurrence_key, r.fencing_token) for r in records}
    assert final <= set(tokens)
