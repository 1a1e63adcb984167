"""The reminders view adds durable jobs, and they run: on a fake clock, and in real time."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from django.test import TestCase

import gnomon
from gnomon.testing import FakeClock
from reminders.gnomon_scheduler import (
    build_scheduler,
    current_scheduler,
    get_scheduler,
    shutdown_scheduler,
    use_scheduler,
)

MONDAY_9AM = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class ReminderTests(TestCase):
    def setUp(self) -> None:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.outbox = Path(directory.name) / "outbox.txt"
        settings = self.settings(
            GNOMON_DB=str(Path(directory.name) / "gnomon.sqlite3"),
            REMINDERS_OUTBOX=str(self.outbox),
        )
        settings.enable()
        self.addCleanup(settings.disable)
        self.addCleanup(shutdown_scheduler)  # cleanups run last first: before the files go

    def add_reminder(self, text: str, in_seconds: float) -> str:
        response = self.client.post("/reminders/", {"text": text, "in_seconds": in_seconds})
        assert response.status_code == 201, response.content
        return str(response.json()["name"])

    def sent(self) -> list[str]:
        return self.outbox.read_text().splitlines() if self.outbox.exists() else []

    def test_loading_the_app_starts_no_scheduler(self) -> None:
        assert current_scheduler() is None

    def test_a_reminder_runs_at_its_time_on_a_fake_clock(self) -> None:
        clock = FakeClock(MONDAY_9AM)
        use_scheduler(build_scheduler(clock=clock))
        name = self.add_reminder("stand up", in_seconds=90)
        scheduler = get_scheduler()
        [job] = scheduler.jobs()
        assert job.next_run == datetime(2026, 3, 2, 9, 1, 30, tzinfo=UTC)

        clock.advance("1m")
        scheduler.wait_idle()
        assert self.sent() == []

        clock.advance("30s")
        scheduler.wait_idle()  # waits until the run's record is written, too
        [record] = scheduler.history(job=name)
        assert record.outcome is gnomon.Outcome.SUCCESS
        assert record.scheduled_at == datetime(2026, 3, 2, 9, 1, 30, tzinfo=UTC)
        assert self.sent() == [f"{record.occurrence_key} stand up"]
        assert scheduler.jobs() == []  # a once() job is gone once it ran

    def test_a_reminder_runs_in_real_time(self) -> None:
        name = self.add_reminder("drink water", in_seconds=0.2)
        scheduler = get_scheduler()  # the view built and started it
        deadline = time.monotonic() + 10
        while not scheduler.history(job=name, outcome=gnomon.Outcome.SUCCESS):
            assert time.monotonic() < deadline, "the reminder did not run within 10 s"
            time.sleep(0.02)
        [line] = self.sent()
        assert line.endswith(" drink water")

    def test_a_reminder_without_text_is_refused(self) -> None:
        use_scheduler(build_scheduler(clock=FakeClock(MONDAY_9AM)))
        response = self.client.post("/reminders/", {"in_seconds": "5"})
        assert response.status_code == 400
        assert get_scheduler().jobs() == []

    def test_the_jobs_are_listed(self) -> None:
        use_scheduler(build_scheduler(clock=FakeClock(MONDAY_9AM)))
        name = self.add_reminder("later", in_seconds=3600)
        response = self.client.get("/reminders/")
        assert response.json() == {"jobs": [{"name": name, "next_run": "2026-03-02T10:00:00Z"}]}
