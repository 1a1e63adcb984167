"""Two ``gnomon run`` daemons sharing a Redis locker run each occurrence once between them."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable

import pytest
from cli_support import Daemon, Workspace, require_redis, wait_for

from gnomon._cli import EXIT_OK

StartDaemon = Callable[..., Daemon]


@pytest.mark.services
def test_two_daemons_with_a_redis_locker_run_each_occurrence_once(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    url = require_redis()
    job = f"tick_{uuid.uuid4().hex[:10]}"
    workspace.write(
        f"""
        [scheduler]
        locker = "{url}"

        [[jobs]]
        name = "{job}"
        every = "300ms"
        command = "true"
        """
    )
    first = start_daemon("--state", "first.sqlite3")
    second = start_daemon("--state", "second.sqlite3")
    first_state = Workspace(workspace.root)
    first_state.state = workspace.root / "first.sqlite3"
    second_state = Workspace(workspace.root)
    second_state.state = workspace.root / "second.sqlite3"
    query = "SELECT occurrence, outcome FROM runs"

    def both_saw_refusals() -> bool:
        rows = first_state.rows(query) + second_state.rows(query)
        return sum(outcome == "skipped_locked" for _, outcome in rows) >= 3

    wait_for("each node to find occurrences claimed by the other", both_saw_refusals)
    for daemon in (first, second):
        daemon.signal(signal.SIGTERM)
    assert [first.wait(), second.wait()] == [EXIT_OK, EXIT_OK]

    ran_first = {o for o, outcome in first_state.rows(query) if outcome == "success"}
    ran_second = {o for o, outcome in second_state.rows(query) if outcome == "success"}
    assert ran_first or ran_second
    assert not ran_first & ran_second, "an occurrence ran on both nodes"
    refused = {
        o
        for state in (first_state, second_state)
        for o, outcome in state.rows(query)
        if outcome == "skipped_locked"
    }
    assert refused & (ran_first | ran_second), "a refused occurrence must have run elsewhere"
