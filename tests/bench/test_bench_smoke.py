"""The benchmark suite, run on gnomon alone at tiny sizes, so that its code cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "bench" / "run.py"
FACES = ("gnomon", "gnomon-async")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    output = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        str(RUNNER),
        "--profile",
        "smoke",
        "--workloads",
        "w1,w2,w3,w4",
        "--contestants",
        ",".join(FACES),
        "--output",
        str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    raw = json.loads((output / "results.json").read_text())
    return raw, (output / "RESULTS.md").read_text()


def metrics(raw: dict[str, Any], case: str, contestant: str) -> dict[str, float]:
    found = [r for r in raw["records"] if r["case"] == case and r["contestant"] == contestant]
    assert len(found) == 1, f"expected one record of {case} for {contestant}, got {found}"
    assert "error" not in found[0], found[0]["error"]
    result: dict[str, float] = found[0]["metrics"]
    return result


def test_every_measurement_of_the_smoke_run_succeeds(smoke_run: tuple[dict[str, Any], str]) -> None:
    raw, _ = smoke_run
    assert [r for r in raw["records"] if "error" in r] == []
    assert {r["case"] for r in raw["records"]} == {
        "w1-300",
        "w1mem-300",
        "w1opt-300",
        "w2",
        "w3",
        "w4",
        "w4floor",
    }


def test_scale_workload_times_adds_and_removals_and_traces_memory(
    smoke_run: tuple[dict[str, Any], str],
) -> None:
    raw, _ = smoke_run
    timing = metrics(raw, "w1-300", "gnomon")
    assert timing["add_us"] > 0
    assert timing["remove_in_order_us"] > 0
    assert timing["remove_random_us"] > 0
    assert timing["removals"] == 50
    assert metrics(raw, "w1mem-300", "gnomon")["bytes_per_job"] > 0
    with_options = metrics(raw, "w1opt-300", "gnomon")
    assert with_options["add_us"] > 0
    assert with_options["removals"] == 50


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("case", ["w2", "w3"])
def test_timed_workloads_see_every_run_start_on_or_after_its_fire_time(
    smoke_run: tuple[dict[str, Any], str], case: str, face: str
) -> None:
    raw, _ = smoke_run
    found = metrics(raw, case, face)
    assert 0 < found["runs_done"] <= found["runs_expected"]
    # A negative lateness would mean a run started before its fire time (or a broken probe).
    assert found["lateness_p50_ms"] >= -0.5
    assert found["lateness_p50_ms"] <= found["lateness_p99_ms"] <= found["lateness_max_ms"]
    assert found["cpu_seconds"] > 0


@pytest.mark.parametrize("face", FACES)
def test_idle_workload_reads_cpu_while_no_job_is_due(
    smoke_run: tuple[dict[str, Any], str], face: str
) -> None:
    raw, _ = smoke_run
    found = metrics(raw, "w4", face)
    assert found["runs_total"] == 0
    assert 0 <= found["cpu_seconds"] < 0.5


def test_idle_workload_has_its_floor_a_sleeping_interpreter_measured_and_shown(
    smoke_run: tuple[dict[str, Any], str],
) -> None:
    raw, page = smoke_run
    floor = metrics(raw, "w4floor", "gnomon")["cpu_seconds"]
    assert 0 <= floor < 0.5
    assert "Floor: a fresh interpreter of the same environment that only sleeps" in page


def test_results_page_has_the_targets_ratios_and_every_workload(
    smoke_run: tuple[dict[str, Any], str],
) -> None:
    _, page = smoke_run
    for heading in (
        "## Targets",
        "## Ratios",
        "## W1 scale",
        "## W2 burst",
        "## W3 latency",
        "## W4 idle",
    ):
        assert heading in page
    assert "gnomon `AsyncScheduler`" in page
