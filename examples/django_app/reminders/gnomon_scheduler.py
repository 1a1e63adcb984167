"""This process's gnomon scheduler: built on first use, one per process, on one store.

Nothing is started at import. The first call to ``get_scheduler()`` in a process builds
a ``Scheduler`` on ``settings.GNOMON_DB``, registers the tasks and starts it; a process
forked after that (its pid differs) builds its own. Every process of the site shares
the SQLite file, so a job added by one worker is run once, by whichever claims it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

import gnomon
from gnomon.sqlite import SQLiteStore

if TYPE_CHECKING:
    from gnomon.testing import FakeClock


def send_reminder(text: str, ctx: gnomon.JobContext) -> None:
    """The task: 'send' a reminder by appending a line to the outbox file."""
    with Path(settings.REMINDERS_OUTBOX).open("a", encoding="utf-8") as outbox:
        outbox.write(f"{ctx.occurrence_key} {text}\n")


def build_scheduler(clock: FakeClock | None = None) -> gnomon.Scheduler:
    """A new scheduler on the site's store, every task registered, not yet started."""
    scheduler = gnomon.Scheduler(
        store=SQLiteStore(settings.GNOMON_DB), clock=clock, timezone=settings.TIME_ZONE
    )
    # Stored jobs name their task; every process that runs or adds them registers it.
    scheduler.register(send_reminder, name="reminders.send")
    return scheduler


class _ProcessScheduler:
    """The one scheduler of this process, created lazily and replaced after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scheduler: gnomon.Scheduler | None = None
        self._pid = 0

    def get(self) -> gnomon.Scheduler:
        with self._lock:
            scheduler = self._scheduler
            if scheduler is None or self._pid != os.getpid():
                scheduler = build_scheduler()
                self._install(scheduler)
            return scheduler

    def current(self) -> gnomon.Scheduler | None:
        """The scheduler if this process has started one, else ``None``."""
        with self._lock:
            return self._scheduler if self._pid == os.getpid() else None

    def use(self, scheduler: gnomon.Scheduler) -> None:
        """Start ``scheduler`` and make it this process's (tests: one on a FakeClock)."""
        with self._lock:
            self._install(scheduler)

    def shutdown(self) -> None:
        with self._lock:
            scheduler, self._scheduler, self._pid = self._scheduler, None, 0
        if scheduler is not None:
            scheduler.shutdown()
            if scheduler.store is not None:
                scheduler.store.close()  # a scheduler never closes the store it was given

    def _install(self, scheduler: gnomon.Scheduler) -> None:
        scheduler.start()
        self._scheduler, self._pid = scheduler, os.getpid()


_process = _ProcessScheduler()
get_scheduler = _process.get
current_scheduler = _process.current
use_scheduler = _process.use
shutdown_scheduler = _process.shutdown
