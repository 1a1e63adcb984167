"""Helpers for the dispatch tests: service probes, worker subprocesses, the fenced sink."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
RABBITMQ_URL = os.environ.get("GNOMON_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
PIKA_URL = RABBITMQ_URL.removesuffix("//") + "/%2F" if RABBITMQ_URL.endswith("//") else RABBITMQ_URL
"""The same broker as pika (Dramatiq) spells it: the default virtual host is ``%2F``."""
REDIS_URL = os.environ.get("GNOMON_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("GNOMON_REQUIRE_SERVICES") == "1"
WAIT = 60.0


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:10]}"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    """Skip (or, with GNOMON_REQUIRE_SERVICES=1, fail) when ``service`` is not answering."""
    url, port = {
        "rabbitmq": (RABBITMQ_URL, 5672),
        "redis": (REDIS_URL, 6379),
        "postgres": (POSTGRES_URL, 5432),
    }[service]
    if _answers(url, port):
        return
    problem = f"{service} at {urlsplit(url).hostname}:{urlsplit(url).port or port} is not answering"
    if REQUIRE_SERVICES:
        pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
    pytest.skip(problem)


def sink_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` (no fixed sleeps elsewhere): fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Worker:
    """A worker subprocess behind gnomon's guard."""

    kind: str
    queue: str
    tag: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    command: list[str]

    def dropped(self) -> list[str]:
        entries = sink_client().lrange(f"{self.tag}:dropped", 0, -1)
        return [entry.decode() if isinstance(entry, bytes) else str(entry) for entry in entries]

    def stop(self, *, forget: bool = True) -> None:
        """Stop the worker; ``forget``: also delete its keys (ledger, drops, readiness)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                # A worker blocked on its broker may take a while; the test is done with it.
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        client = sink_client()
        client.delete(f"{self.tag}:ready")
        if forget:
            for key in client.scan_iter(f"{self.tag}:*"):
                client.delete(key)

    def restart(self) -> None:
        """A new worker process with the same ledger (a fleet's worker replaced)."""
        self.stop(forget=False)
        self.process = _spawn(self.command, self.env, self.log)
        _wait_ready(self)


def worker_command(kind: str, queue: str) -> list[str]:
    if kind == "celery":
        return [
            sys.executable, "-m", "celery", "-A", "dispatch_workers:celery_app", "worker",
            "-Q", queue, "-P", "solo", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "WARNING", "-n", f"{queue}@%h",
        ]  # fmt: skip
    if kind == "dramatiq":
        return [
            sys.executable, "-m", "dramatiq", "dispatch_workers:dramatiq_broker",
            "--processes", "1", "--threads", "2", "--queues", queue,
        ]  # fmt: skip
    return [
        sys.executable, "-c", f"import dispatch_workers; dispatch_workers.run_rq_worker({queue!r})"
    ]  # fmt: skip


def start_worker(kind: str, *, queue: str, store: str, broker: str, logs: Path) -> Worker:
    tag = unique(f"w_{kind}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(SRC)]),
        "GNOMON_TEST_KIND": kind,
        "GNOMON_TEST_STORE": store,
        "GNOMON_TEST_BROKER": broker,
        "GNOMON_TEST_TAG": tag,
        "GNOMON_TEST_QUEUE": queue,
    }
    command = worker_command(kind, queue)
    log = logs / f"{tag}.log"
    worker = Worker(kind, queue, tag, _spawn(command, env, log), log, env, command)
    try:
        _wait_ready(worker)
    except BaseException:
        worker.stop()
        raise
    return worker


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE)


def _wait_ready(worker: Worker) -> None:
    client = sink_client()

    def ready() -> bool:
        if worker.process.poll() is not None:
            pytest.fail(f"the {worker.kind} worker exited:\n{worker.log.read_text()[-3000:]}")
        return bool(client.get(f"{worker.tag}:ready"))

    wait_for(ready, f"the {worker.kind} worker to start")


def sink_entries(sink: str) -> list[dict[str, Any]]:
    return [json.loads(entry) for entry in sink_client().lrange(sink, 0, -1)]


def runs_per_occurrence(sink: str) -> Counter[str]:
    return Counter(str(entry["occurrence"]) for entry in sink_entries(sink))


def settle(worker: Worker, send_marker: Callable[[str], None]) -> None:
    """Wait until the worker has handled everything queued before now: send a message the
    guard drops (unfenced, with a header named ``marker``), which a single in-order
    consumer reaches last."""
    marker = unique("marker")
    send_marker(marker)
    wait_for(
        lambda: any(marker in entry for entry in worker.dropped()),
        f"the {worker.kind} worker to drain",
    )


def delete_queues(url: str, *names: str) -> None:
    """Delete RabbitMQ queues a test declared."""
    from kombu.connection import Connection

    with Connection(url) as connection:  # type: ignore[no-untyped-call]  # kombu is partly typed
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)


def close_quietly(close: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        close()
