"""Real Celery, Dramatiq and RQ workers for the dispatch tests, each behind gnomon's guard.

Run in subprocesses. Configured by the environment:

- ``GNOMON_TEST_STORE``: ``sqlite:PATH`` or ``postgresql://...#schema``, the scheduler's
  store, which the guard reads claim tokens from;
- ``GNOMON_TEST_BROKER``: the broker URL (AMQP for Celery and Dramatiq, Redis for RQ);
- ``GNOMON_TEST_QUEUE``: the queue (Dramatiq declares its actors on it);
- ``GNOMON_TEST_TAG``: a prefix of the Redis keys this worker writes: ``<tag>:ready``
  once it consumes, ``<tag>:dropped`` (one entry per message the guard dropped).

The fenced sink: ``record(sink)`` pushes one JSON entry per execution onto the Redis list
``sink`` (in the shared Redis), with the message's occurrence, token and attempt.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import redis

from gnomon._dispatch import RedisLedger
from gnomon._stores.contract import Store

SINK_URL = os.environ.get("GNOMON_REDIS_URL", "redis://127.0.0.1:6379/0")
TAG = os.environ.get("GNOMON_TEST_TAG", "gnomon-dispatch-test")
BROKER = os.environ.get("GNOMON_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
QUEUE = os.environ.get("GNOMON_TEST_QUEUE", "default")
"""The queue a Dramatiq worker's actors are declared on (Dramatiq consumes only those)."""
sink_client = redis.Redis.from_url(SINK_URL)


def open_store(spec: str) -> Store:
    if spec.startswith("sqlite:"):
        from gnomon.sqlite import SQLiteStore

        return SQLiteStore(spec.removeprefix("sqlite:"))
    from gnomon.postgres import PostgresStore

    url, _, schema = spec.partition("#")
    return PostgresStore(url, schema=schema or "gnomon")


class _DroppedToRedis(logging.Handler):
    """Each message the guard drops, counted where the test can read it."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "guard dropped" in text:
            sink_client.rpush(f"{TAG}:dropped", text)


logging.getLogger("gnomon").addHandler(_DroppedToRedis(logging.WARNING))
LEDGER = RedisLedger(sink_client, prefix=f"{TAG}:admitted:")


def sink_entry(headers: dict[str, Any], worker: str) -> str:
    return json.dumps(
        {
            "occurrence": headers.get("gnomon_occurrence"),
            "token": headers.get("gnomon_fencing_token"),
            "attempt": headers.get("gnomon_attempt"),
            "worker": worker,
        }
    )


# ---------------------------------------------------------------- Celery


def _celery_app() -> Any:
    from celery import Celery
    from celery.signals import worker_ready

    from gnomon.celery import _headers, guard

    app = Celery("dispatch_tests", broker=BROKER, backend=SINK_URL)
    app.conf.worker_hijack_root_logger = False
    base = guard(open_store(os.environ["GNOMON_TEST_STORE"]), seen=LEDGER)

    @app.task(bind=True, base=base, name="dispatch_tests.record")  # type: ignore[untyped-decorator]  # celery is untyped
    def record(self: Any, sink: str) -> str:
        sink_client.rpush(sink, sink_entry(_headers(self.request), "celery"))
        return "recorded"

    @app.task(base=base, name="dispatch_tests.fail")  # type: ignore[untyped-decorator]  # celery is untyped
    def fail() -> None:
        raise ValueError("boom from the worker")

    def ready(**_: Any) -> None:
        sink_client.set(f"{TAG}:ready", "1")

    worker_ready.connect(ready, weak=False)
    return app


# ---------------------------------------------------------------- Dramatiq


def _dramatiq_broker() -> Any:
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.middleware import Middleware
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    from gnomon.dramatiq import guard

    class Ready(Middleware):
        def after_worker_boot(self, broker: Any, worker: Any) -> None:
            sink_client.set(f"{TAG}:ready", "1")

    broker = RabbitmqBroker(url=BROKER, confirm_delivery=True)
    results = Results(backend=RedisBackend(client=sink_client))  # type: ignore[no-untyped-call]
    broker.add_middleware(results)
    broker.add_middleware(guard(open_store(os.environ["GNOMON_TEST_STORE"]), seen=LEDGER))
    broker.add_middleware(Ready())
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="record", queue_name=QUEUE, store_results=True, max_retries=0)
    def record(sink: str) -> str:
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        options = {} if message is None else dict(message.options)
        sink_client.rpush(sink, sink_entry(options, "dramatiq"))
        return "recorded"

    @dramatiq.actor(actor_name="fail", queue_name=QUEUE, store_results=True, max_retries=0)
    def fail() -> None:
        raise ValueError("boom from the worker")

    broker.add_middleware(dramatiq.middleware.CurrentMessage())
    return broker


if os.environ.get("GNOMON_TEST_KIND") == "celery":
    celery_app = _celery_app()
if os.environ.get("GNOMON_TEST_KIND") == "dramatiq":
    dramatiq_broker = _dramatiq_broker()


# ---------------------------------------------------------------- RQ


def rq_record(sink: str) -> str:
    import rq

    job = rq.get_current_job()
    meta = {} if job is None else dict(job.meta)
    sink_client.rpush(sink, sink_entry(meta, "rq"))
    return "recorded"


def rq_fail() -> None:
    raise ValueError("boom from the worker")


def rq_unguarded() -> None:
    """Importable, but not among the guarded functions: the guard refuses it."""


def run_rq_worker(queue: str) -> None:
    import rq
    from rq.worker import SimpleWorker

    from gnomon.rq import guard

    connection = redis.Redis.from_url(BROKER)
    store = open_store(os.environ["GNOMON_TEST_STORE"])
    worker_class = guard(store, [rq_record, rq_fail], seen=LEDGER, worker_class=SimpleWorker)
    worker = worker_class([rq.Queue(queue, connection=connection)], connection=connection)
    sink_client.set(f"{TAG}:ready", "1")
    worker.work(with_scheduler=False, logging_level="WARNING")
