"""A scheduler on a PostgreSQL store rides out the server's restart (a private server)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from private_servers import PrivatePostgres

import gnomon
from gnomon import Outcome

pytestmark = pytest.mark.slow


class Outcomes(gnomon.Monitor):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.skipped: list[Outcome | None] = []
        self.finished: list[Outcome | None] = []

    def run_skipped(self, event: gnomon.RunEvent) -> None:
        with self.lock:
            self.skipped.append(event.outcome)

    def run_finished(self, event: gnomon.RunEvent) -> None:
        with self.lock:
            self.finished.append(event.outcome)


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def test_a_scheduler_rides_out_a_postgres_restart_without_losing_a_change(
    private_postgres: PrivatePostgres,
) -> None:
    from gnomon.postgres import PostgresStore

    store = PostgresStore(
        private_postgres.url, schema=f"outage_{uuid.uuid4().hex[:8]}", timeout=2.0,
        lease_ttl="3s", poll_interval="200ms",
    )  # fmt: skip
    monitor = Outcomes()
    runs = threading.Semaphore(0)
    s = gnomon.Scheduler(store=store, timezone="UTC", monitor=monitor, stop_timeout=10)
    s.register(runs.release, name="beat")
    try:
        s.start()
        s.add_job("beat", gnomon.every("300ms"), name="beat")
        assert runs.acquire(timeout=10)

        private_postgres.stop_immediate()
        with pytest.raises(gnomon.StoreUnavailable):
            s.add_job("beat", gnomon.every("1s"), name="during")
        assert [job.name for job in s.jobs()] == ["beat"]
        eventually(
            lambda: Outcome.SKIPPED_LOCK_ERROR in monitor.skipped,
            "the loaded job keeps firing and reports occurrences it cannot claim",
        )

        private_postgres.start()
        while runs.acquire(blocking=False):
            pass
        assert runs.acquire(timeout=30), "claims succeed again once the server is back"
        after = s.add_job("beat", gnomon.every("1s"), name="after")
        assert after is not None
        assert {job.name for job in s.jobs()} == {"beat", "after"}
        stored = store.get_job(name="during")
        assert stored is None, "the change that raised was not written"
    finally:
        s.shutdown()
        store.close()
