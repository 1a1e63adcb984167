"""``gnomon check``: a valid file is described with its next fire times; a bad one names the
job and the field of every problem, and exits with status 1."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cli_support import Workspace

from gnomon._cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, main


def check(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["check", str(workspace.schedule)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_check_describes_each_job_with_its_rule_action_and_next_three_fire_times(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace.write(
        """
        [scheduler]
        timezone = "America/New_York"

        [[jobs]]
        name = "report"
        cron = "30 9 * * mon-fri"
        command = ["./report.sh", "--daily"]
        tags = ["reports"]

        [[jobs]]
        name = "greeting"
        once = "now"
        command = "echo hello"
        """
    )
    status, out, err = check(workspace, capsys)
    assert (status, err) == (EXIT_OK, "")
    assert "2 jobs, timezone America/New_York" in out
    report = out.split("\nreport\n")[1].split("\ngreeting\n")[0]
    assert "rule:    at 09:30 on Monday through Friday" in report
    assert "action:  command: ./report.sh --daily" in report
    assert "tags:    reports" in report
    shown = [
        line.split()[-1] for line in report.splitlines() if "-05:00" in line or "-04:00" in line
    ]
    assert len(shown) == 3
    times = [datetime.fromisoformat(text) for text in shown]
    assert all(t.hour == 9 and t.minute == 30 and t.weekday() < 5 for t in times)
    assert times == sorted(times)
    assert times[0] > datetime.now(UTC)
    assert "next:    at start" in out.split("\ngreeting\n")[1]


def test_check_previews_an_interval_job_from_its_start_at(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    workspace.write(
        f"""
        [scheduler]
        timezone = "UTC"

        [[jobs]]
        name = "later"
        every = "90m"
        start_at = {start.strftime("%Y-%m-%dT%H:%M:%S")}
        max_runs = 2
        command = "true"
        """
    )
    status, out, _ = check(workspace, capsys)
    assert status == EXIT_OK
    expected = [start, start + timedelta(minutes=90)]
    assert [m.isoformat() for m in expected] == [
        line.split()[-1] for line in out.splitlines() if line.strip().startswith(("next:", "20"))
    ]


BAD_FILES = {
    "not TOML": ('name = "x" = 3', ["gnomon.toml: is not valid TOML", "line 1"]),
    "missing name": ('[[jobs]]\nevery = "1m"\ncommand = "true"', ["jobs[1]: name is required"]),
    "no rule": ('[[jobs]]\nname = "a"\ncommand = "true"', ["job 'a': needs exactly one rule"]),
    "two rules": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncron = "* * * * *"\ncommand = "true"',
        ["job 'a': needs exactly one rule", "found cron, every"],
    ),
    "no action": ('[[jobs]]\nname = "a"\nevery = "1m"', ["job 'a': needs exactly one action"]),
    "bad duration": (
        '[[jobs]]\nname = "a"\nevery = "10 minutes"\ncommand = "true"',
        ["job 'a': every: every interval must be", "'10 minutes'"],
    ),
    "zero interval": (
        '[[jobs]]\nname = "a"\nevery = "0s"\ncommand = "true"',
        ["job 'a': every: every interval must be a positive duration, got '0s'"],
    ),
    "bad cron": (
        '[[jobs]]\nname = "nightly"\ncron = "61 * * * *"\ncommand = "true"',
        ["job 'nightly': cron:", "61"],
    ),
    "never fires": (
        '[[jobs]]\nname = "feb"\ncron = "0 0 30 2 *"\ncommand = "true"',
        ["job 'feb': cron:", "can never fire"],
    ),
    "bad weekday": (
        '[[jobs]]\nname = "w"\nweekly = { days = ["funday"], at = "09:00" }\ncommand = "true"',
        ["job 'w': weekly:", "funday"],
    ),
    "weekly without at": (
        '[[jobs]]\nname = "w"\nweekly = { days = ["mon"] }\ncommand = "true"',
        ["job 'w': weekly: at is required"],
    ),
    "bad timeout": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ntimeout = -5\ncommand = "true"',
        ["job 'a': timeout must be a positive duration, got -5"],
    ),
    "bad singleton": (
        '[[jobs]]\nname = "a"\nevery = "1m"\nsingleton = "always"\ncommand = "true"',
        [
            (
                "job 'a': singleton must be one of 'reschedule', 'wait', 'wait_latest', "
                "'replace', got 'always'"
            )
        ],
    ),
    "unknown field": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\ntimout = "5s"',
        ["job 'a': unknown field 'timout' (did you mean 'timeout'?)"],
    ),
    "duplicate names": (
        (
            '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\n'
            '[[jobs]]\nname = "a"\nevery = "2m"\ncommand = "true"'
        ),
        ["job 'a': name is used by an earlier job"],
    ),
    "bad timezone": (
        '[scheduler]\ntimezone = "Mars/Olympus"\n',
        ["[scheduler]: timezone 'Mars/Olympus' is not a known IANA zone name"],
    ),
    "bad max_concurrent": (
        "[scheduler]\nmax_concurrent = 0\n",
        ["[scheduler]: max_concurrent must be a whole number of at least 1, got 0"],
    ),
    "command with kwargs": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\nkwargs = { x = 1 }',
        ["job 'a': kwargs belongs to call"],
    ),
    "empty command": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = []',
        ["job 'a': command must be a shell string"],
    ),
    "start_at and start_immediately": (
        (
            '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\nstart_immediately = true\n'
            "start_at = 2030-01-01T00:00:00"
        ),
        ["job 'a': start_immediately=True and start_at are contradictory"],
    ),
    "bad catch_up": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\ncatch_up = "sometimes"',
        ["job 'a': catch_up must be one of 'latest', 'skip', 'all', got 'sometimes'"],
    ),
    "bad catch_up_window": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\ncatch_up_window = "soon"',
        ["job 'a': catch_up_window must be", "'soon'"],
    ),
    "bad catch_up_limit": (
        '[[jobs]]\nname = "a"\nevery = "1m"\ncommand = "true"\ncatch_up_limit = 0',
        ["job 'a': catch_up_limit must be a whole number of at least 1, got 0"],
    ),
    "bad scheduler catch_up": (
        '[scheduler]\ncatch_up = "never"\n',
        ["[scheduler]: catch_up must be one of 'latest', 'skip', 'all', got 'never'"],
    ),
    "state and store": (
        '[scheduler]\nstate = "a.db"\nstore = "sqlite:b.db"\n',
        ["[scheduler]: state and store are both given"],
    ),
    "unknown store scheme": (
        '[scheduler]\nstore = "mysql://root:s3cret@db/x"\n',
        ['[scheduler]: store must be "sqlite:PATH"', "mysql://root:***@db/x"],
    ),
    "empty sqlite path": (
        '[scheduler]\nstore = "sqlite:"\n',
        ['[scheduler]: store must be "sqlite:PATH"', "got 'sqlite:'"],
    ),
    "bad postgresql schema": (
        '[scheduler]\nstore = "postgresql://db/x?schema=9lives"\n',
        ["[scheduler]: store: ?schema= must be a plain identifier", "'9lives'"],
    ),
    "unknown locker scheme": (
        '[scheduler]\nlocker = "mysql://root:s3cret@db/x"\n',
        ["[scheduler]: locker must be a Redis or PostgreSQL URL", "mysql://root:***@db/x"],
    ),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_check_reports_a_bad_file_naming_the_job_and_field_and_exits_1(
    case: str, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragments = BAD_FILES[case]
    workspace.write(text)
    status, out, err = check(workspace, capsys)
    assert status == EXIT_INVALID
    assert out == ""
    for fragment in fragments:
        assert fragment in err
    assert "s3cret" not in err


def test_check_reports_every_problem_of_a_file_not_just_the_first(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace.write(
        """
        [[jobs]]
        name = "first"
        every = "soon"
        command = "true"

        [[jobs]]
        name = "second"
        cron = "* * *"
        command = "true"
        max_runs = 0
        """
    )
    status, _, err = check(workspace, capsys)
    assert status == EXIT_INVALID
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{workspace.schedule}: job 'first': every:")
    assert any("job 'second': cron:" in line for line in lines)
    assert any("job 'second': max_runs must be a whole number" in line for line in lines)


def test_call_finds_a_module_beside_the_schedule_file_and_checks_its_arguments(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    module = f"tasks_{uuid.uuid4().hex[:8]}"
    workspace.write("def greet(who, *, loud=False):\n    return who\n", f"{module}.py")
    workspace.write(
        f"""
        [[jobs]]
        name = "fits"
        every = "1h"
        call = "{module}:greet"
        args = ["world"]
        kwargs = {{ loud = true }}

        [[jobs]]
        name = "misfit"
        every = "1h"
        call = "{module}:greet"
        kwargs = {{ shout = true }}

        [[jobs]]
        name = "missing"
        every = "1h"
        call = "{module}:nothing_here"

        [[jobs]]
        name = "nomodule"
        every = "1h"
        call = "no_such_module_{module}:f"
        """
    )
    status, _, err = check(workspace, capsys)
    assert status == EXIT_INVALID
    assert "job 'fits'" not in err
    assert f"job 'missing': call '{module}:nothing_here': module '{module}' has no" in err
    assert "job 'nomodule': call" in err
    assert "cannot import" in err
    # Arguments are judged once the file's other fields are valid.
    workspace.write(
        f"""
        [[jobs]]
        name = "misfit"
        every = "1h"
        call = "{module}:greet"
        kwargs = {{ shout = true }}
        """
    )
    status, _, err = check(workspace, capsys)
    assert status == EXIT_INVALID
    assert "job 'misfit':" in err
    assert "do not fit" in err


def test_a_missing_schedule_file_is_reported_with_status_1(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = check(workspace, capsys)
    assert status == EXIT_INVALID
    assert err.strip() == f"{workspace.schedule}: no such file"


def test_the_real_command_exits_1_on_a_bad_file_and_2_on_bad_usage(workspace: Workspace) -> None:
    workspace.write('[[jobs]]\nname = "a"\nevery = "never"\ncommand = "true"\n')
    bad_file = workspace.gnomon("check")
    assert bad_file.returncode == EXIT_INVALID
    assert "gnomon.toml: job 'a': every:" in bad_file.stderr
    bad_usage = workspace.gnomon("check", "--no-such-option")
    assert bad_usage.returncode == EXIT_USAGE
    assert "usage: gnomon" in bad_usage.stderr
    no_command = workspace.gnomon()
    assert no_command.returncode == EXIT_USAGE
