"""``history`` and ``status`` without a usable state file exit 1 and say why."""

from __future__ import annotations

import pytest
from cli_support import Workspace

from gnomon._cli import EXIT_INVALID, main


@pytest.mark.parametrize("command", ["history", "status"])
def test_a_missing_state_file_is_reported_with_status_1(
    command: str, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(workspace.schedule)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert f"no state file at {workspace.state}" in err
    assert "created by 'gnomon run'" in err


def test_a_state_file_that_is_not_a_database_is_reported_with_status_1(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = workspace.root / "junk.sqlite3"
    junk.write_text("not a database, just text that is long enough to have a header")
    assert main(["status", "--state", str(junk)]) == EXIT_INVALID
    assert f"cannot use the state file {junk}" in capsys.readouterr().err


def test_the_schedule_files_state_setting_locates_the_state_file(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace.write('[scheduler]\nstate = "var/history.sqlite3"\n')
    assert main(["history", str(workspace.schedule)]) == EXIT_INVALID
    assert (
        f"no state file at {workspace.root / 'var' / 'history.sqlite3'}" in capsys.readouterr().err
    )
