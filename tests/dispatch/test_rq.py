"""Runs handed to real RQ workers on Redis, behind gnomon's guarded worker class."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from conftest import SchedulerFactory
from dispatch_support import (
    REDIS_URL,
    Worker,
    require,
    runs_per_occurrence,
    settle,
    sink_entries,
    start_worker,
    unique,
    wait_for,
)
from dispatch_workers import rq_fail, rq_record, rq_unguarded
from private_servers import PrivateRedis, wait_for_port

import gnomon
from gnomon import Outcome
from gnomon.rq import dispatch
from gnomon.testing import FakeClock


@dataclass
class RqEnv:
    worker: Worker
    connection: redis.Redis
    store_path: Path
    queue: str

    def settle(self) -> None:
        def marker(name: str) -> None:
            queue = rq.Queue(self.queue, connection=self.connection)
            queue.enqueue_call(rq_unguarded, job_id=name)

        settle(self.worker, marker)


def _start(kind_root: Path, broker: str) -> tuple[Worker, str, Path]:
    store_path = kind_root / "store.db"
    queue = unique("gnomon_rq")
    worker = start_worker(
        "rq", queue=queue, store=f"sqlite:{store_path}", broker=broker, logs=kind_root
    )
    return worker, queue, store_path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RqEnv]:
    require("redis")
    root = tmp_path_factory.mktemp("rq")
    worker, queue, store_path = _start(root, REDIS_URL)
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        yield RqEnv(worker, connection, store_path, queue)
    finally:
        worker.stop()
        connection.close()


def _scheduled(
    make: SchedulerFactory, env: RqEnv, func: Any, **target: Any
) -> tuple[gnomon.Scheduler, FakeClock, str]:
    options = target.pop("options", {})
    scheduler, clock = make(env.store_path)
    scheduler.register_broker("rq", env.connection)
    name = unique("job")
    scheduler.register(dispatch(func, queue=env.queue, **target), name=f"{name}-target")
    scheduler.add_job(f"{name}-target", gnomon.every("1s"), name=name, timeout=30, **options)
    scheduler.start()
    return scheduler, clock, name


def test_each_occurrence_is_enqueued_once_as_a_job_with_its_id_meta_and_ttl(
    env: RqEnv, make_scheduler: SchedulerFactory
) -> None:
    sink = unique("sink")
    scheduler, clock, name = _scheduled(make_scheduler, env, rq_record, args=[sink])
    clock.advance(timedelta(seconds=3))
    scheduler.wait_idle(30)
    records = scheduler.history(job=name)
    assert [record.outcome for record in records] == [Outcome.SUCCESS] * 3
    wait_for(lambda: len(sink_entries(sink)) >= 3, "three runs on the worker")
    env.settle()
    ran = [(e["occurrence"], e["token"], e["attempt"]) for e in sink_entries(sink)]
    assert sorted(ran) == sorted((r.occurrence_key, r.fencing_token, r.attempt) for r in records)
    for record in records:
        job_id = str(gnomon.message_id(record.occurrence_key, record.attempt))
        job = rq.job.Job.fetch(job_id, connection=env.connection)
        assert job.func_name == "dispatch_workers.rq_record"
        assert job.meta["gnomon_fencing_token"] == record.fencing_token
        assert job.ttl is not None
        assert 590 < job.ttl <= 610  # expires="10m", counted from the scheduled time


def test_the_guard_refuses_a_function_outside_the_ones_it_was_given(
    env: RqEnv, make_scheduler: SchedulerFactory
) -> None:
    scheduler, clock, name = _scheduled(make_scheduler, env, rq_unguarded)
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(30)
    [record] = scheduler.history(job=name)
    assert record.outcome is Outcome.SUCCESS  # the publish succeeded; the worker refuses
    env.settle()
    job_id = str(gnomon.message_id(record.occurrence_key, record.attempt))
    refusals = [entry for entry in env.worker.dropped() if job_id in entry]
    assert len(refusals) == 1
    assert "dispatch_workers.rq_unguarded" in refusals[0]
    job = rq.job.Job.fetch(job_id, connection=env.connection)
    assert job.get_status() == rq.job.JobStatus.CANCELED


def test_track_reports_the_job_failure_from_the_worker(
    env: RqEnv, make_scheduler: SchedulerFactory
) -> None:
    scheduler, clock, name = _scheduled(make_scheduler, env, rq_fail, track=True)
    clock.advance(timedelta(seconds=1))
    scheduler.wait_idle(60)
    [record] = scheduler.history(job=name)
    assert record.outcome is Outcome.FAILED
    assert "ValueError: boom from the worker" in (record.error or ""), record.error


class DurableRedis(PrivateRedis):
    """A private ``redis-server`` whose every write is on disk before it answers
    (``appendfsync always``): a crash loses nothing it acknowledged."""

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--dir", self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)


def test_a_private_redis_broker_killed_and_restarted_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, make_scheduler: SchedulerFactory
) -> None:
    require("redis")
    server = DurableRedis()
    server.start()
    worker, queue, store_path = _start(tmp_path, server.url)
    connection = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=2)
    env = RqEnv(worker, connection, store_path, queue)
    try:
        sink = unique("sink")
        retry = gnomon.Retry(attempts=10, delay="1s", jitter=False, past_next=True)
        scheduler, clock, name = _scheduled(
            make_scheduler, env, rq_record, args=[sink], options={"retry": retry}
        )
        clock.advance(timedelta(seconds=4))
        scheduler.wait_idle(30)
        wait_for(lambda: len(sink_entries(sink)) >= 4, "the first runs on the worker")
        env.settle()
        worker.stop(forget=False)  # what is published now waits in Redis, on disk
        clock.advance(timedelta(seconds=3))
        scheduler.wait_idle(30)
        server.kill()  # like a crash
        clock.advance(timedelta(seconds=3))
        scheduler.wait_idle(60)
        failed = [r for r in scheduler.history(job=name, limit=100) if r.outcome is Outcome.FAILED]
        server.start()
        for _ in range(4):
            clock.advance(timedelta(seconds=2))
            scheduler.wait_idle(60)
        worker.restart()
        records = scheduler.history(job=name, limit=100)
        assert len(records) == 4 + 3 + 3 + 4 * 2  # one occurrence per second advanced
        assert {record.outcome for record in records} == {Outcome.SUCCESS}
        assert failed, "no publish met the outage"
        wait_for(lambda: len(runs_per_occurrence(sink)) >= 18, "every occurrence on the worker")
        env.settle()
        assert runs_per_occurrence(sink) == {record.occurrence_key: 1 for record in records}
    finally:
        worker.stop()
        connection.close()
        server.close()
