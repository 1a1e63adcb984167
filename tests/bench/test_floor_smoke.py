"""``bench/floor.py`` at a tiny size, so that the script behind the W2 floor cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "floor.py"
ROW = re.compile(r"^\| (?P<label>.+?) \| \**(?P<value>[0-9.]+)\** \|(?: (?P<ratio>[0-9.]+) \|)?$")


@pytest.fixture(scope="module")
def tables() -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The steps' table (label: µs) and the per-run table (label: µs, ratio)."""
    command = [sys.executable, str(SCRIPT), "--reps", "1", "--jobs", "20", "--bursts", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    steps: dict[str, float] = {}
    per_run: dict[str, tuple[float, float]] = {}
    for line in done.stdout.splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        value = float(match["value"])
        if match["ratio"] is None:
            steps[match["label"].strip("*")] = value
        else:
            per_run[match["label"]] = (value, float(match["ratio"]))
    return steps, per_run


def test_every_step_is_timed_and_the_floor_is_their_sum(
    tables: tuple[dict[str, float], dict[str, tuple[float, float]]],
) -> None:
    steps = dict(tables[0])
    floor = steps.pop("floor: the steps' sum")
    assert len(steps) == 9
    assert all(value > 0 for value in steps.values()), steps
    assert floor == pytest.approx(sum(steps.values()), abs=0.06)  # each row rounded to 0.01


def test_schedule_the_floor_and_both_faces_are_compared_to_schedule(
    tables: tuple[dict[str, float], dict[str, tuple[float, float]]],
) -> None:
    steps, per_run = tables
    assert len(per_run) == 4
    (base, base_ratio), *_ = per_run.values()
    assert base > 0
    assert base_ratio == 1.0
    assert per_run["the floor above"][0] == steps["floor: the steps' sum"]
    for label, (value, ratio) in per_run.items():
        assert value > 0, label
        assert ratio == pytest.approx(value / base, abs=0.051), label
    assert any("`Scheduler`" in label for label in per_run)
    assert any("`AsyncScheduler`" in label for label in per_run)
