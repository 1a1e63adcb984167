"""The shipped example schedule (the README's first command) is valid and visibly runs."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from cli_support import Daemon, Workspace

from gnomon._cli import EXIT_OK

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
StartDaemon = Callable[..., Daemon]


def test_the_example_schedule_checks_clean(workspace: Workspace) -> None:
    result = workspace.gnomon("check", str(EXAMPLES / "gnomon.toml"))
    assert result.returncode == EXIT_OK, result.stderr
    assert "5 jobs" in result.stdout.splitlines()[0]


def test_the_example_schedule_greets_and_beats_within_seconds(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    for name in ("gnomon.toml", "tasks.py"):
        shutil.copy(EXAMPLES / name, workspace.root / name)
    daemon = start_daemon()
    daemon.wait_for_record(
        "the greeting's run", lambda r: r.get("job") == "hello" and r.get("outcome") == "success"
    )
    beat = daemon.wait_for_record(
        "a heartbeat line", lambda r: str(r.get("message", "")).startswith("heartbeat at ")
    )
    assert beat["job"] == "heartbeat"
    daemon.signal(signal.SIGINT)
    assert daemon.wait() == EXIT_OK
