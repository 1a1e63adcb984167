"""What the durable-job tests share: the fake clock's start, the factories' types, a
real-time wait and a store taken down."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import gnomon
from gnomon._stores.contract import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)

StoreFactory = Callable[[], Store]
SchedulerFactory = Callable[..., gnomon.Scheduler]

OUTAGE_CALLS = ("claim", "record", "seq", "jobs", "jobs_page")
"""What a scheduler asks its store while it runs: claims, records and the follower's reads."""


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` (a thread of the scheduler makes it true) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


class Outage:
    """Takes ``store`` down for ``OUTAGE_CALLS`` (they raise ``StoreUnavailable``) until
    ``end()``, as a database server that stops answering."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.working = {name: getattr(store, name) for name in OUTAGE_CALLS}

        def down(*args: object, **kwargs: object) -> object:
            raise gnomon.StoreUnavailable("the store is down (test)")

        for name in OUTAGE_CALLS:
            setattr(store, name, down)

    def end(self) -> None:
        for name, method in self.working.items():
            setattr(self.store, name, method)
