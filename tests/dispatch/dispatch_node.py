"""A scheduler process that hands one occurrence to Celery and stops between claim and
publish, so a test can kill or pause it exactly there.

Usage: ``dispatch_node.py STORE_URL SCHEMA JOB QUEUE SINK GATE_DIR``. The job fires every
10 minutes from two seconds after the node starts (``GATE_DIR/started`` holds that
instant). When the run reaches the publish it writes ``GATE_DIR/claimed`` and waits for
``GATE_DIR/open``.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from dispatch_support import RABBITMQ_URL

import gnomon
from gnomon.celery import dispatch
from gnomon.postgres import PostgresStore

LEASE = "2s"
RULE = gnomon.every("10m")


def gated_app(gate: Path) -> Celery:
    app = Celery("gnomon-node", broker=RABBITMQ_URL)
    send_task = app.send_task

    def held_send_task(*args: Any, **kwargs: Any) -> Any:
        (gate / "claimed").write_text(str(kwargs.get("headers")))
        while not (gate / "open").exists():
            time.sleep(0.02)
        return send_task(*args, **kwargs)

    app.send_task = held_send_task
    return app


def main(arguments: list[str]) -> None:
    url, schema, job, queue, sink, gate = arguments
    store = PostgresStore(url, schema=schema, lease_ttl=LEASE)
    scheduler = gnomon.Scheduler(store=store)
    scheduler.register_broker("celery", gated_app(Path(gate)))
    scheduler.register(dispatch("dispatch_tests.record", args=[sink], queue=queue), name=job)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    scheduler.add_job(job, RULE, name=job, start_at=at, recovery=gnomon.Recovery.AT_LEAST_ONCE)
    scheduler.start()
    (Path(gate) / "started").write_text(at.isoformat())
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:7])
