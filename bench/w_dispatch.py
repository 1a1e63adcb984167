"""Dispatch overhead per occurrence: gnomon's claim + publish + confirm (+ finish) against
celery beat's publish path, both on RabbitMQ over loopback.

    python bench/w_dispatch.py                 # ~10 s per path: prints p50/p90/p99 in ms
    python bench/w_dispatch.py --seconds 60    # the soak
    python bench/w_dispatch.py --store postgresql://postgres@127.0.0.1:5432/test
    python bench/w_dispatch.py --replicas 60   # three `gnomon run` replicas on PostgreSQL,
                                               # one killed and one paused, for 60 s

Paths measured, each for ``--seconds`` (one sample per occurrence):

- ``gnomon claim+publish+confirm``: ``Store.claim`` of a fresh occurrence key (a fencing
  token, its history row), the run's publish through ``gnomon.celery`` with publisher
  confirms and ``mandatory``, then ``Store.finish``: what one replica does per occurrence.
- ``gnomon engine``: a ``Scheduler`` on the same store and a fake clock advanced one second
  per occurrence: the same work plus the engine, timed per occurrence end to end.
- ``celery beat send_task``: what ``celery.beat.Scheduler.apply_async`` does per entry
  (``app.send_task`` on beat's producer), without confirms (beat's default) and with
  ``confirm_publish`` (what it takes not to lose messages silently).

Nothing consumes the benchmark's queue; it is deleted at the end. Target: gnomon's p50
at most 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery import Celery
from kombu.connection import Connection

import gnomon
from gnomon._stores.contract import ClaimRequest, Store
from gnomon.celery import dispatch
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock

BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100) if len(ordered) > 1 else ordered * 99
    return (
        f"n={len(ordered):6d}  p50={cut[49] * 1000:7.3f} ms  p90={cut[89] * 1000:7.3f} ms  "
        f"p99={cut[98] * 1000:7.3f} ms"
    )


def timed(seconds: float, step: Callable[[int], None]) -> list[float]:
    samples: list[float] = []
    end = time.monotonic() + seconds
    index = 0
    while time.monotonic() < end:
        begun = time.perf_counter()
        step(index)
        samples.append(time.perf_counter() - begun)
        index += 1
    return samples


@contextmanager
def opened_store(url: str | None) -> Iterator[Store]:
    if url is None:
        with tempfile.TemporaryDirectory() as directory:
            store = SQLiteStore(Path(directory) / "bench.db")
            try:
                yield store
            finally:
                store.close()
        return
    from gnomon.postgres import PostgresStore

    schema = f"bench_dispatch_{uuid.uuid4().hex[:8]}"
    shared = PostgresStore(url, schema=schema)
    try:
        yield shared
    finally:
        shared.close()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def gnomon_path(store: Store, app: Celery, queue: str, seconds: float) -> list[float]:
    """Claim, publish with confirm, finish: by hand, one fresh occurrence per sample."""
    scheduler = gnomon.Scheduler(store=store)
    scheduler.register_broker("celery", app)
    scheduler.register(dispatch("bench.task", queue=queue), name="bench-target")
    job = scheduler.add_job("bench-target", gnomon.every("1h"), name="bench")
    assert job is not None
    task = scheduler._tasks.require("bench-target").func  # the registered, bound target
    base = datetime.now(UTC).replace(microsecond=0)

    def step(index: int) -> None:
        scheduled = base + timedelta(seconds=index)
        key = gnomon.occurrence_key("bench", scheduled)
        request = ClaimRequest(
            key, job.id, "bench", scheduled, "bench", "bench", timedelta(seconds=30)
        )
        claim = store.claim(request)
        context = gnomon.JobContext(job.id, "bench", scheduled, key, claim.token, claim.attempt)
        task(context)
        store.finish(key, claim.token, gnomon.Outcome.SUCCESS, finished_at=datetime.now(UTC))

    try:
        return timed(seconds, step)
    finally:
        scheduler.shutdown()


def engine_path(store: Store, app: Celery, queue: str, seconds: float) -> list[float]:
    """The whole scheduler: a fake clock advanced one occurrence at a time."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    scheduler = gnomon.Scheduler(store=store, clock=clock)
    scheduler.register_broker("celery", app)
    scheduler.register(dispatch("bench.task", queue=queue), name="engine-target")
    scheduler.add_job("engine-target", gnomon.every("1s"), name="engine")
    scheduler.start()

    def step(_: int) -> None:
        clock.advance(timedelta(seconds=1))
        scheduler.wait_idle(30)

    try:
        return timed(seconds, step)
    finally:
        scheduler.shutdown()


def beat_path(app: Celery, queue: str, seconds: float) -> list[float]:
    """``celery.beat.Scheduler.apply_async``: ``send_task`` on beat's own producer."""
    with app.producer_or_acquire() as producer:

        def step(_: int) -> None:
            app.send_task("bench.task", queue=queue, producer=producer)

        return timed(seconds, step)


def replicas_scenario(seconds: int) -> None:
    """The test suite's three-replica scenario (20 s there), run for ``seconds``: every
    occurrence must reach the workers' fenced sink exactly once."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GNOMON_DISPATCH_SCENARIO_SECONDS": str(seconds)}
    test = "tests/dispatch/test_replicas.py::test_three_replicas_publish_every_occurrence_once"
    test += "_while_one_is_killed_and_one_paused"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    raise SystemExit(subprocess.call(command, cwd=root, env=env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per path (soak: 60)")
    parser.add_argument("--store", default=None, help="a postgresql:// URL (default: SQLite)")
    parser.add_argument("--broker", default=BROKER)
    parser.add_argument(
        "--replicas", type=int, default=None, metavar="SECONDS", help="the HA scenario instead"
    )
    options = parser.parse_args()
    if options.replicas is not None:
        replicas_scenario(options.replicas)
        return
    queue = f"bench_dispatch_{uuid.uuid4().hex[:8]}"
    gnomon_app = Celery("bench-gnomon", broker=options.broker)
    beat_app = Celery("bench-beat", broker=options.broker)
    confirming_beat = Celery("bench-beat-confirm", broker=options.broker)
    confirming_beat.conf.broker_transport_options = {"confirm_publish": True}
    print(f"dispatch overhead per occurrence, {options.seconds:g} s per path, queue {queue}")
    try:
        with opened_store(options.store) as store:
            print("gnomon claim+publish+confirm+finish ", percentiles(
                gnomon_path(store, gnomon_app, queue, options.seconds)
            ))  # fmt: skip
            print("gnomon engine, end to end           ", percentiles(
                engine_path(store, gnomon_app, queue, options.seconds)
            ))  # fmt: skip
        print("celery beat send_task (no confirm)  ", percentiles(
            beat_path(beat_app, queue, options.seconds)
        ))  # fmt: skip
        print("celery beat send_task (confirm)     ", percentiles(
            beat_path(confirming_beat, queue, options.seconds)
        ))  # fmt: skip
    finally:
        with Connection(options.broker) as connection:  # type: ignore[no-untyped-call]
            connection.channel().queue_delete(queue)


if __name__ == "__main__":
    main()
