"""``/healthz``'s verdict: healthy while the scheduler keeps up, and why not otherwise."""

from __future__ import annotations

import signal
import types
from datetime import UTC, datetime, timedelta

from cli_support import Workspace

from gnomon._cli._config import load_schedule
from gnomon._cli._daemon import STUCK_AFTER, Daemon


def test_health_names_a_stopped_scheduler_a_stalled_main_loop_and_an_overdue_job(
    workspace: Workspace,
) -> None:
    workspace.write('[[jobs]]\nname = "hourly"\nevery = "1h"\ncommand = "true"\n')
    daemon = Daemon(load_schedule(workspace.schedule))
    assert daemon.health() == "the scheduler is not running"
    daemon.start()
    try:
        assert daemon.health() is None

        daemon._last_beat = datetime.now(UTC) - STUCK_AFTER - timedelta(seconds=1)
        assert "main loop last ran at" in (daemon.health() or "")
        daemon._last_beat = datetime.now(UTC)

        real = daemon.jobs["hourly"]
        overdue = datetime.now(UTC) - STUCK_AFTER - timedelta(seconds=1)
        daemon.jobs["hourly"] = types.SimpleNamespace(next_run=overdue)  # type: ignore[assignment]
        assert (daemon.health() or "").startswith("job 'hourly' was due at")
        daemon.jobs["hourly"] = real
        assert daemon.health() is None
    finally:
        assert daemon.stop(signal.SIGTERM) is False
