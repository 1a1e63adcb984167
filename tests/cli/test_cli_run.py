"""``gnomon run``: the real daemon in a subprocess, on real schedule files, on short intervals.

Every wait ends on an observable event (a record in the store, a log record, a file), with
a generous timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable

from cli_support import WAIT, Daemon, Workspace, wait_for

from gnomon._cli import EXIT_INVALID, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE
from gnomon._cli._actions import KILL_GRACE

StartDaemon = Callable[..., Daemon]
STORE_LEASE = 30.0
"""Seconds a claim outlives its holder in the command's store (``SQLiteStore``'s default)."""


def unique_module(workspace: Workspace, source: str) -> str:
    """A module beside the schedule file, named so that no other test shares it."""
    name = f"tasks_{uuid.uuid4().hex[:8]}"
    workspace.write(source, f"{name}.py")
    return name


def test_commands_and_callables_run_and_each_run_is_logged_and_recorded(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    module = unique_module(
        workspace,
        "from pathlib import Path\ndef mark(path, *, text):\n    Path(path).write_text(text)\n",
    )
    workspace.write(
        f"""
        [scheduler]
        timezone = "UTC"

        [[jobs]]
        name = "tick"
        every = "300ms"
        command = "echo tick from $GNOMON_JOB"

        [[jobs]]
        name = "mark"
        once = "now"
        call = "{module}:mark"
        args = ["marker.txt"]
        kwargs = {{ text = "called" }}
        """
    )
    daemon = start_daemon()
    wait_for("two tick runs", lambda: workspace.outcomes("tick")[:2] == ["success", "success"])
    wait_for("the callable's run", lambda: workspace.outcomes("mark") == ["success"])
    assert (workspace.root / "marker.txt").read_text() == "called"

    started = daemon.wait_for_record(
        "a tick start", lambda r: r.get("job") == "tick" and r["message"] == "run started"
    )
    assert started["occurrence"].startswith("tick@")
    ended = daemon.wait_for_record(
        "a tick end",
        lambda r: r.get("occurrence") == started["occurrence"] and r["message"] == "run succeeded",
    )
    assert ended["outcome"] == "success"
    assert ended["exit_status"] == 0
    assert 0 <= ended["duration"] < 5
    daemon.wait_for_record(
        "the command's output line",
        lambda r: r.get("job") == "tick" and r["message"] == "tick from tick",
    )

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK


def test_a_failed_command_is_logged_with_its_exit_status_and_output_tail(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "broken"
        once = "now"
        command = "echo first line; echo to stderr >&2; exit 3"
        """
    )
    daemon = start_daemon()
    failed = daemon.wait_for_record(
        "the failure", lambda r: r.get("job") == "broken" and r.get("outcome") == "failed"
    )
    assert failed["message"] == "run failed: exited with status 3"
    assert failed["exit_status"] == 3
    assert failed["output"] == "first line\nto stderr"
    assert failed["level"] == "ERROR"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    (row,) = workspace.rows("SELECT outcome, error FROM gnomon_occurrences")
    assert row == ("failed", "CommandFailed: exited with status 3")


def test_a_failed_commands_exit_status_and_output_tail_are_in_its_history(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "broken"
        once = "now"
        command = "echo first line; echo to stderr >&2; exit 3"
        """
    )
    daemon = start_daemon()
    wait_for("the failure", lambda: workspace.outcomes("broken") == ["failed"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    (row,) = workspace.rows("SELECT outcome, exit_status, output FROM gnomon_occurrences")
    assert row == ("failed", 3, "first line\nto stderr")
    listed = workspace.history("--failed")
    assert [(r["job"], r["outcome"], r["exit_status"]) for r in listed] == [("broken", "failed", 3)]


def test_sigint_during_a_run_lets_it_finish_and_exits_0(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [scheduler]
        stop_timeout = "20s"

        [[jobs]]
        name = "slow"
        once = "now"
        command = "sleep 1; echo finished"
        """
    )
    daemon = start_daemon()
    daemon.wait_for_record("the run's start", lambda r: r["message"] == "run started")
    daemon.signal(signal.SIGINT)
    assert daemon.wait() == EXIT_OK
    assert workspace.rows("SELECT outcome, exit_status FROM gnomon_occurrences") == [("success", 0)]
    assert any(r["message"] == "finished" for r in daemon.records())


def test_sigterm_terminates_a_run_that_outlives_the_stop_timeout_and_exits_3(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [scheduler]
        stop_timeout = "1s"

        [[jobs]]
        name = "endless"
        once = "now"
        command = "sleep 300 & echo $! > child.pid; wait"
        """
    )
    daemon = start_daemon()
    child_pid = int(
        wait_for("the child's pid", lambda: _read(workspace.root / "child.pid").strip() or None)
    )
    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_TERMINATED
    # stop_timeout, then SIGTERM to the whole process group (sleep obeys at once).
    assert time.monotonic() - signalled < 1.0 + KILL_GRACE + 2.0
    assert not _process_exists(child_pid), "the command's background child survived"
    ((outcome, detail),) = workspace.rows(
        "SELECT outcome, COALESCE(detail, error) FROM gnomon_occurrences"
    )
    assert outcome in {"cancelled", "failed"}
    assert detail
    assert any("terminating them" in str(r["message"]) for r in daemon.records())


def _read(path: os.PathLike[str]) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers; its state says it is gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sighup_adds_removes_and_changes_jobs_and_survives_a_broken_file(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "old"
        every = "200ms"
        command = "echo old"

        [[jobs]]
        name = "kept"
        every = "200ms"
        command = "echo kept-v1"
        """
    )
    daemon = start_daemon()
    wait_for("runs of the first schedule", lambda: "success" in workspace.outcomes("old"))

    workspace.write(
        """
        [[jobs]]
        name = "kept"
        every = "200ms"
        command = "echo kept-v2"

        [[jobs]]
        name = "new"
        every = "200ms"
        command = "echo new"
        """
    )
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for_message("reloaded")
    assert "1 added, 1 removed, 1 changed, 0 unchanged" in reloaded["message"]
    old_runs = len(workspace.outcomes("old"))
    wait_for("runs of the added job", lambda: workspace.outcomes("new")[:2] == ["success"] * 2)
    daemon.wait_for_record("the changed command's output", lambda r: r["message"] == "kept-v2")
    # At most one run of the removed job can have been in flight at the reload.
    assert len(workspace.outcomes("old")) <= old_runs + 1

    workspace.write("[[jobs]]\nname = 'kept'\nevery = 'whenever'\ncommand = 'true'\n")
    daemon.signal(signal.SIGHUP)
    failure = daemon.wait_for_message("reload failed")
    assert failure["level"] == "ERROR"
    assert "job 'kept': every:" in failure["message"]
    runs_before = len(workspace.outcomes("new"))
    wait_for("the kept schedule to go on", lambda: len(workspace.outcomes("new")) > runs_before + 1)

    status = json.loads(workspace.gnomon("status", "--json").stdout)
    assert [job["name"] for job in status["jobs"]] == ["kept", "new"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK


def test_history_survives_kill_9_and_the_next_daemon_catches_up_and_abandons_the_dead_run(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "tick"
        every = "200ms"
        command = "true"

        [[jobs]]
        name = "long"
        every = "1h"
        start_immediately = true
        command = "sleep 60"
        """
    )
    daemon = start_daemon()
    wait_for("ticks", lambda: workspace.outcomes("tick")[:3] == ["success"] * 3)
    wait_for("the long run to be recorded", lambda: workspace.outcomes("long") == ["running"])
    daemon.process.kill()
    daemon.wait()
    assert workspace.outcomes("tick").count("success") >= 3
    assert workspace.outcomes("long") == ["running"]
    query = "SELECT MAX(scheduled_ts) FROM gnomon_occurrences WHERE job_name = 'tick'"
    ((last,),) = workspace.rows(query)
    # Let ticks fall due while no daemon runs, longer ago than the catch-up grace (1 s).
    wait_for("missed ticks", lambda: time.time() > last + 2.0, timeout=5)

    second = start_daemon()
    second.wait_for_message("gnomon started")
    missed = "SELECT count, detail FROM gnomon_occurrences WHERE outcome = 'skipped_missed'"
    ((count, detail),) = wait_for("the missed ticks' record", lambda: workspace.rows(missed))
    # catch_up = "latest" (the default): the latest missed tick ran, the others are counted.
    assert count >= 5
    assert detail.startswith(f"{count} missed, the last at ")
    # The dead daemon's claim runs out (the store's 30 s lease); at most once: abandoned.
    wait_for(
        "the dead daemon's run abandoned",
        lambda: workspace.outcomes("long") == ["abandoned"],
        timeout=STORE_LEASE + WAIT,
    )
    second.signal(signal.SIGTERM)
    assert second.wait() == EXIT_OK


def test_history_and_status_show_the_state_while_the_daemon_runs_and_after(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [scheduler]
        timezone = "Europe/Paris"

        [[jobs]]
        name = "ok"
        every = "200ms"
        command = "true"

        [[jobs]]
        name = "bad"
        every = "1h"
        start_immediately = true
        command = "exit 4"

        [[jobs]]
        name = "yearly"
        cron = "0 0 1 1 *"
        command = "true"
        """
    )
    daemon = start_daemon()
    wait_for("two runs of ok", lambda: workspace.outcomes("ok")[:2] == ["success", "success"])
    wait_for("the failure", lambda: workspace.outcomes("bad") == ["failed"])

    def yearly_next_run() -> str | None:
        document = json.loads(workspace.gnomon("status", "--json").stdout)
        return {job["name"]: job for job in document["jobs"]}["yearly"]["next_run"]

    next_run = wait_for("the daemon to publish next runs", yearly_next_run)
    assert next_run.endswith("+01:00")
    assert "-01-01T00:00:00" in next_run
    status = json.loads(workspace.gnomon("status", "--json").stdout)
    assert status["daemon"]["running"] is True
    node = f"{socket.gethostname()}:{daemon.process.pid}"
    assert [n["node"] for n in status["daemon"]["nodes"]] == [node]
    jobs = {job["name"]: job for job in status["jobs"]}
    assert (jobs["ok"]["last_outcome"], jobs["ok"]["failures_24h"]) == ("success", 0)
    assert (jobs["bad"]["last_outcome"], jobs["bad"]["failures_24h"]) == ("failed", 1)
    assert jobs["yearly"]["last_run"] is None
    assert jobs["ok"]["source"] == str(workspace.schedule.resolve())
    assert jobs["bad"]["task"] == "command:bad"

    table = workspace.gnomon("status").stdout.splitlines()
    assert table[0].startswith(f"daemon: running on 1 node: {node} (since ")
    header = table[2]
    assert header.split("  ")[0] == "JOB"
    rows = {line.split()[0]: line for line in table[3:]}
    assert set(rows) == {"ok", "bad", "yearly"}
    column = header.index("FAILURES (24H)")
    assert rows["bad"][column:].strip() == "1"

    history = workspace.gnomon("history", "--job", "ok", "--limit", "1").stdout.splitlines()
    assert len(history) == 2
    assert history[1].split()[0] == "ok"
    # "ok" runs every 200 ms: its newest occurrence may still be going.
    assert {"success", "running"} & set(history[1].split())
    everything = workspace.gnomon("history", "--job", "ok", "--limit", "1000").stdout
    assert "success" in everything.split()

    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    after = json.loads(workspace.gnomon("status", "--json").stdout)
    assert after["daemon"] == {"running": False, "nodes": []}
    assert all(job["next_run"] is None for job in after["jobs"])
    assert workspace.gnomon("status").stdout.startswith("daemon: not running")
    records = workspace.history()
    # A tick claimed just as SIGTERM arrives is recorded skipped_stopping, not run.
    ok_outcomes = {r["outcome"] for r in records if r["job"] == "ok"}
    assert "success" in ok_outcomes
    assert ok_outcomes <= {"success", "skipped_stopping"}
    assert [(r["outcome"], r["exit_status"]) for r in records if r["job"] == "bad"] == [
        ("failed", 4)
    ]


def test_passwords_in_urls_are_masked_in_logs_history_and_status(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "leaky"
        once = "now"
        command = "echo connecting to postgresql://app:hunter2@db/prod; exit 1"
        """
    )
    daemon = start_daemon()
    wait_for("the failure", lambda: workspace.outcomes("leaky") == ["failed"])
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    # A store URL with a password is shown without it.
    remote = workspace.write(
        """
        [scheduler]
        store = "postgresql://app:hunter2@127.0.0.1:1/x?schema=elsewhere"

        [[jobs]]
        name = "tick"
        every = "1h"
        command = "true"
        """,
        "remote.toml",
    )
    checked = workspace.gnomon("check", remote.name)
    assert "store postgresql://app:***@127.0.0.1:1/x (schema elsewhere)" in checked.stdout
    texts = [
        checked.stdout,
        workspace.gnomon("status").stdout,
        workspace.gnomon("status", "--json").stdout,
        workspace.gnomon("history", "--json").stdout,
        workspace.gnomon("history").stdout,
        workspace.gnomon("check").stdout,
    ]
    log = daemon.log_path.read_text()
    assert "postgresql://app:***@db/prod" in log
    for text in [log, *texts]:
        assert "hunter2" not in text
    assert "hunter2" not in str(workspace.rows("SELECT * FROM gnomon_occurrences"))
    assert "hunter2" not in str(workspace.rows("SELECT * FROM gnomon_jobs"))


def test_run_usage_errors_exit_2_and_a_bad_file_exits_1(workspace: Workspace) -> None:
    bad_metrics = workspace.gnomon("run", "--metrics", "here:port")
    assert bad_metrics.returncode == EXIT_USAGE
    assert "--metrics must be [HOST:]PORT" in bad_metrics.stderr
    missing = workspace.gnomon("run", "absent.toml")
    assert missing.returncode == EXIT_INVALID
    assert "absent.toml: no such file" in missing.stderr


def test_an_idle_daemon_stops_at_once_on_sigterm(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write('[[jobs]]\nname = "hourly"\nevery = "1h"\ncommand = "true"\n')
    daemon = start_daemon()
    daemon.wait_for_message("gnomon started")
    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=WAIT) == EXIT_OK
    assert time.monotonic() - signalled < 5


def test_the_text_log_shows_the_job_the_outcome_and_the_output_tail_indented(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "broken"
        once = "now"
        command = "echo first line; echo second line; exit 3"
        """
    )
    daemon = start_daemon("--log-format", "text")
    failure = daemon.wait_for_message("[broken] run failed: exited with status 3")
    assert failure.get("raw") is True
    assert " ERROR " in failure["message"]
    assert "outcome=failed" in failure["message"]
    assert "exit_status=3" in failure["message"]
    lines = daemon.log_path.read_text().splitlines()
    at = lines.index(failure["message"])
    assert lines[at + 1 : at + 3] == ["    | first line", "    | second line"]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK


def test_occurrences_that_do_not_run_are_recorded_with_their_reason(
    workspace: Workspace, start_daemon: StartDaemon
) -> None:
    workspace.write(
        """
        [scheduler]
        max_concurrent = 1

        [[jobs]]
        name = "busy"
        every = "200ms"
        singleton = "reschedule"
        command = "sleep 0.5"

        [[jobs]]
        name = "crowded"
        every = "200ms"
        command = "true"
        """
    )
    daemon = start_daemon()
    query = "SELECT job_name, outcome FROM gnomon_occurrences WHERE outcome LIKE 'skipped_%'"

    def both_skips() -> bool:
        found = {outcome for _, outcome in workspace.rows(query)}
        return {"skipped_singleton", "skipped_limit"} <= found

    wait_for("a singleton skip and a limit skip", both_skips)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == EXIT_OK
    found = {(r["job"], r["outcome"], r["detail"]) for r in workspace.history()}
    assert (
        "busy",
        "skipped_singleton",
        "the job's previous run was still going (singleton)",
    ) in found
    assert any(
        outcome == "skipped_limit" and detail == "max_concurrent runs were already going"
        for _, outcome, detail in found
    )
