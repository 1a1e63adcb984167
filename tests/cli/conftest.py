"""Fixtures for the ``gnomon`` command's tests: a workspace, and daemons stopped at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_support import Daemon, Workspace


@pytest.fixture(autouse=True)
def _restore_sys_path() -> Iterator[None]:
    """Loading a schedule in-process puts its directory on ``sys.path``; undo that."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
def start_daemon(workspace: Workspace) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def start(*arguments: str) -> Daemon:
        daemon = Daemon(workspace, *arguments)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()
        # Shown by pytest only when the test failed: the daemon's side of the story.
        print(f"--- log of gnomon run (pid {daemon.process.pid}) ---")
        print(daemon.log_path.read_text(encoding="utf-8"))
