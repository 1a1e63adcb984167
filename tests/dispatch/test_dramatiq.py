"""Runs handed to a real Dramatiq worker on RabbitMQ, behind gnomon's guard middleware."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from conftest import SchedulerFactory
from dispatch_support import (
    PIKA_URL,
    Worker,
    delete_queues,
    require,
    settle,
    sink_client,
    sink_entries,
    start_worker,
    unique,
    wait_for,
)
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

import gnomon
from gnomon import Outcome
from gnomon.dramatiq import dispatch
from gnomon.testing import FakeClock


@dataclass
class DramatiqEnv:
    worker: Worker
    broker: Any
    store_path: Path
    queue: str

    def settle(self) -> None:
        def marker(name: str) -> None:
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=self.queue,
                actor_name="record",
                args=(unique("sink"),),
                kwargs={},
                options={name: 1},
            )
            self.broker.enqueue(message)

        settle(self.worker, marker)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DramatiqEnv]:
    require("rabbitmq")
    require("redis")
    root = tmp_path_factory.mktemp("dramatiq")
    store_path = root / "store.db"
    queue = unique("gnomon_dramatiq")
    worker = start_worker(
        "dramatiq", queue=queue, store=f"sqlite:{store_path}", broker=PIKA_URL, logs=root
    )
    broker = RabbitmqBroker(url=PIKA_URL, confirm_delivery=True)
    results = Results(backend=RedisBackend(client=sink_client()))  # type: ignore[no-untyped-call]
    broker.add_middleware(results)
    try:
        yield DramatiqEnv(worker, broker, store_path, queue)
    finally:
        broker.close()
        worker.stop()
        delete_queues(PIKA_URL, queue, f"{queue}.DQ", f"{queue}.XQ")


def _scheduled(
    make: SchedulerFactory, env: DramatiqEnv, actor: str, **target: Any
) -> tuple[gnomon.Scheduler, FakeClock, str]:
    scheduler, clock = make(env.store_path)
    scheduler.register_broker("dramatiq", env.broker)
    name = unique("job")
    scheduler.register(dispatch(actor, queue=env.queue, **target), name=f"{name}-target")
    scheduler.add_job(f"{name}-target", gnomon.every("1s"), name=name, timeout=30)
    scheduler.start()
    return scheduler, clock, name


def test_each_occurrence_is_enqueued_once_with_its_message_id_and_fencing_options(
    env: DramatiqEnv, make_scheduler: SchedulerFactory
) -> None:
    sink = unique("sink")
    scheduler, clock, name = _scheduled(make_scheduler, env, "record", args=[sink])
    clock.advance(timedelta(seconds=3))
    scheduler.wait_idle(30)
    records = scheduler.history(job=name)
    assert [record.outcome for record in records] == [Outcome.SUCCESS] * 3
    wait_for(lambda: len(sink_entries(sink)) >= 3, "three runs on the worker")
    env.settle()
    ran = [(e["occurrence"], e["token"], e["attempt"]) for e in sink_entries(sink)]
    assert sorted(ran) == sorted((r.occurrence_key, r.fencing_token, r.attempt) for r in records)
    message_ids = {str(gnomon.message_id(r.occurrence_key, r.attempt)) for r in records}
    assert {str(result) for result in _results(records, env)} == {"recorded"}
    assert len(message_ids) == 3


def _results(records: list[gnomon.RunRecord], env: DramatiqEnv) -> list[object]:
    backend = RedisBackend(client=sink_client())
    found = []
    for record in records:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=env.queue,
            actor_name="record",
            args=(),
            kwargs={},
            options={},
            message_id=str(gnomon.message_id(record.occurrence_key, record.attempt)),
        )
        found.append(backend.get_result(message, block=True, timeout=30_000))
    return found


def test_track_reports_the_actor_failure_from_the_results_backend(
    env: DramatiqEnv, make_scheduler: SchedulerFactory
) -> None:
    scheduler, clock, name = _scheduled(make_scheduler, env, "fail", track=True)
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(60)
    [record] = scheduler.history(job=name)
    assert record.outcome is Outcome.FAILED
    assert "ValueError: boom from the worker" in (record.error or ""), record.error


def test_track_returns_the_actor_result(env: DramatiqEnv, make_scheduler: SchedulerFactory) -> None:
    sink = unique("sink")
    scheduler, clock, name = _scheduled(make_scheduler, env, "record", args=[sink], track=True)
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(60)
    [record] = scheduler.history(job=name)
    assert record.outcome is Outcome.SUCCESS
    assert len(sink_entries(sink)) == 1
