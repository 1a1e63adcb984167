"""Two ``gnomon run`` daemons, each on its own state file, sharing a Redis locker run each
occurrence once between them.

Each state file anchors an ``every`` job where it was first stored, so the two daemons
would not share fire times; a cron rule gives both the same ones.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
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
        cron = "* * * * * *"
        command = "echo $GNOMON_OCCURRENCE >> runs.txt"
        """
    )
    first = start_daemon("--state", "first.sqlite3")
    second = start_daemon("--state", "second.sqlite3")
    # Every second (a cron rule: both daemons compute the same fire times).
    wait_for("four runs between them", lambda: len(workspace.lines("runs.txt")) >= 4)
    for daemon in (first, second):
        daemon.signal(signal.SIGTERM)
    assert [first.wait(), second.wait()] == [EXIT_OK, EXIT_OK]

    ran = Counter(workspace.lines("runs.txt"))
    assert set(ran.values()) == {1}, "an occurrence ran on both nodes"
    query = "SELECT occurrence_key FROM gnomon_occurrences WHERE outcome = 'success'"
    recorded = [
        key
        for state in ("first.sqlite3", "second.sqlite3")
        for (key,) in workspace.rows(query, workspace.root / state)
    ]
    assert Counter(recorded) == ran
