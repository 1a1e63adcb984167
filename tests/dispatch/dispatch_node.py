"""A scheduler process that hands one occurrence to Celery and stops between claim and
publish, so a test can kill or pause it exactly there.

Usage: ``dispatch_node.py STORE_URL SCHEMA JOB AT_ISO QUEUE SINK GATE_DIR``. When the run
reaches the publish it writes ``GATE_DIR/claimed`` and waits for ``GATE_DIR/open``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery
from dispatch_support import RABBITMQ_URL

import gnomon
from gnomon.celery import dispatch
from gnomon.postgres import PostgresStore

LEASE = "2s"


def gated_app(gate: Path) -> Celery:
    app = Celery("gnomon-node", broker=RABBITMQ_URL)
    send_task = app.send_task

    def held_send_task(*args: Any, **kwargs: Any) -> Any:
        (gate / "claimed").write_text(str(kwargs.get("headers")))
        while not (gate / "open").exists():
            time.sleep(0.02)
        return send_task(*args, **kwargs)

    app.send_task = held_send_task  # type: ignore[method-assign]
    return app


def main(url: str, schema: str, job: str, at: str, queue: str, sink: str, gate: str) -> None:
    store = PostgresStore(url, schema=schema, lease_ttl=LEASE)
    scheduler = gnomon.Scheduler(store=store)
    scheduler.register_broker("celery", gated_app(Path(gate)))
    scheduler.register(dispatch("dispatch_tests.record", args=[sink], queue=queue), name=job)
    when = datetime.fromisoformat(at)
    scheduler.add_job(job, gnomon.once(when), name=job, recovery=gnomon.Recovery.AT_LEAST_ONCE)
    scheduler.start()
    (Path(gate) / "started").write_text("1")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(*sys.argv[1:8])
