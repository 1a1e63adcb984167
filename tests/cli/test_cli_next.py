"""``gnomon next EXPR``: a cron expression's description and its next fire times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from cli_support import Workspace
from cronsim import CronSim

from gnomon._cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, main


def run_next(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, list[str], str]:
    status = main(["next", *arguments])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def test_next_prints_the_description_then_n_fire_times_matching_cronsim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")
    before = datetime.now(zone)
    status, lines, err = run_next(
        capsys, "*/20 9-17 * * mon-fri", "-n", "4", "--timezone", "America/New_York"
    )
    assert (status, err) == (EXIT_OK, "")
    assert "Monday through Friday" in lines[0]
    shown = [datetime.fromisoformat(line) for line in lines[1:]]
    assert len(shown) == 4
    reference = CronSim("*/20 9-17 * * mon-fri", before.replace(second=0, microsecond=0))
    expected = [next(reference) for _ in range(4)]
    assert [t.astimezone(UTC) for t in shown] == [t.astimezone(UTC) for t in expected]
    assert all(t.utcoffset() == t.astimezone(zone).utcoffset() for t in shown)


def test_next_with_seconds_reads_a_leading_seconds_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, lines, _ = run_next(
        capsys, "*/10 * * * * *", "--seconds", "-n", "3", "--timezone", "UTC"
    )
    assert status == EXIT_OK
    shown = [datetime.fromisoformat(line) for line in lines[1:]]
    assert [t.second % 10 for t in shown] == [0, 0, 0]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(shown)] == [10, 10]


def test_next_rejects_an_invalid_expression_with_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, lines, err = run_next(capsys, "0 0 31 2 *")
    assert (status, lines) == (EXIT_INVALID, [])
    assert err.startswith("gnomon next: error: cron expression '0 0 31 2 *' can never fire")


@pytest.mark.parametrize(
    "arguments",
    [["* * * * *", "-n", "0"], ["* * * * *", "--timezone", "Nowhere/City"], []],
    ids=["zero count", "unknown zone", "no expression"],
)
def test_next_usage_errors_exit_2(workspace: Workspace, arguments: list[str]) -> None:
    result = workspace.gnomon("next", *arguments)
    assert result.returncode == EXIT_USAGE
    assert "usage: gnomon next" in result.stderr
