"""The schedule file's run-policy keys: ``retry = {...}`` and the new singleton modes."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from cli_support import Daemon, Workspace, wait_for

from gnomon import InvalidJob, LimitMode, Retry
from gnomon._cli import EXIT_OK
from gnomon._cli._config import InvalidSchedule, load_schedule

StartDaemon = Callable[..., Daemon]


def test_a_failing_command_is_retried_and_history_shows_its_attempts(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    # Fails twice, then succeeds: the counter file tells the attempts apart.
    workspace.write(
        """
        [[jobs]]
        name = "flaky"
        once = "now"
        command = "echo x >> tries; test $(wc -l < tries) -ge 3"
        retry = { attempts = 4, delay = "100ms", jitter = false }
        """
    )
    daemon = start_daemon()
    wait_for("the third attempt to succeed", lambda: workspace.outcomes("flaky") == ["success"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    assert len(workspace.lines("tries")) == 3
    (record,) = workspace.history()
    assert (record["outcome"], record["attempt"], record["attempts"]) == ("success", 3, 3)
    table = workspace.gnomon("history")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert "ATTEMPTS" in header.split()
    assert " 3 " in row


def test_an_exhausted_retry_leaves_one_failed_record_with_every_attempt(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "broken"
        once = "now"
        command = "echo x >> tries; exit 7"
        retry = { attempts = 2, delay = "100ms", jitter = false }
        """
    )
    daemon = start_daemon()
    wait_for("both attempts", lambda: len(workspace.lines("tries")) == 2)
    wait_for("the final outcome", lambda: workspace.outcomes("broken") == ["failed"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    [record] = workspace.history()
    assert (record["outcome"], record["attempts"], record["exit_status"]) == ("failed", 2, 7)


def test_the_retry_table_and_the_new_singleton_modes_are_read(workspace: Workspace) -> None:
    path = workspace.write(
        """
        [[jobs]]
        name = "latest"
        every = "1m"
        command = "true"
        singleton = "wait_latest"
        retry = { attempts = 3, delay = "10s", factor = 3, max_delay = "1m", past_next = true }

        [[jobs]]
        name = "replace"
        every = "1m"
        command = "true"
        singleton = "replace"
        """
    )
    latest, replace = load_schedule(path).jobs
    assert latest.singleton is LimitMode.WAIT_LATEST
    assert latest.retry == Retry(attempts=3, delay="10s", factor=3, max_delay="1m", past_next=True)
    assert replace.singleton is LimitMode.REPLACE
    assert replace.retry is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("{ attempts = 0 }", "attempts must be a whole number of at least 1"),
        ('{ delay = "-1s" }', "delay must be a positive duration"),
        ("{ factor = 0.5 }", "factor must be a number of at least 1"),
        ('{ delay = "1m", max_delay = "10s" }', "max_delay (10s) must be at least the delay"),
        ("{ tries = 3 }", "unknown key(s) tries"),
        ('"3 times"', "retry must be a table"),
    ],
)
def test_a_bad_retry_table_names_what_is_wrong(
    workspace: Workspace, value: str, fragment: str
) -> None:
    path = workspace.write(
        f"""
        [[jobs]]
        name = "bad"
        every = "1m"
        command = "true"
        retry = {value}
        """
    )
    with pytest.raises(InvalidSchedule) as raised:
        load_schedule(path)
    assert fragment in str(raised.value)


def test_an_unknown_singleton_mode_lists_the_four_valid_ones(workspace: Workspace) -> None:
    path = workspace.write(
        """
        [[jobs]]
        name = "bad"
        every = "1m"
        command = "true"
        singleton = "latest"
        """
    )
    with pytest.raises(InvalidSchedule) as raised:
        load_schedule(path)
    assert "'reschedule', 'wait', 'wait_latest', 'replace'" in str(raised.value)
    assert isinstance(InvalidJob("x"), ValueError)
