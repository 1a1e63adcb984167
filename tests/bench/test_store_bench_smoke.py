"""The store benchmark (bench/w_store.py), run on gnomon and SQLite at tiny sizes, so that
its code cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
RUNNER = BENCH / "w_store.py"


@pytest.fixture(scope="module")
def store_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    output = tmp_path_factory.mktemp("bench-stores")
    (output / "RESULTS.md").write_text("# Benchmark results\n\nthe main run's tables\n")
    command = [
        sys.executable,
        str(RUNNER),
        "--profile",
        "smoke",
        "--contestants",
        "gnomon",
        "--backends",
        "sqlite",
        "--output",
        str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    raw = json.loads((output / "results.json").read_text())["stores"]
    return raw, (output / "RESULTS.md").read_text()


def metrics(raw: dict[str, Any], case: str) -> dict[str, float]:
    found = [r for r in raw["records"] if r["case"] == case and r["contestant"] == "gnomon"]
    assert len(found) == 1, f"expected one record of {case}, got {found}"
    assert "error" not in found[0], found[0]["error"]
    result: dict[str, float] = found[0]["metrics"]
    return result


def test_every_store_workload_is_measured(store_run: tuple[dict[str, Any], str]) -> None:
    raw, _ = store_run
    assert [r for r in raw["records"] if "error" in r] == []
    assert {r["case"] for r in raw["records"]} == {
        "s1-sqlite-30",
        "s1-sqlite-300",
        "s2-sqlite",
        "s2mem-sqlite",
        "s3-sqlite",
        "s4-sqlite",
    }


def test_add_cost_runs_over_every_prepared_job(store_run: tuple[dict[str, Any], str]) -> None:
    raw, _ = store_run
    for n in (30, 300):
        found = metrics(raw, f"s1-sqlite-{n}")
        assert found["loaded_jobs"] == n
        assert 0 < found["add_p50_us"] <= found["add_p99_us"]
        assert found["add_us"] > 0


def test_start_fires_the_due_job_no_earlier_than_its_time(
    store_run: tuple[dict[str, Any], str],
) -> None:
    raw, _ = store_run
    found = metrics(raw, "s2-sqlite")
    assert found["loaded_jobs"] >= 300
    assert found["first_fire_s"] >= found["lead_s"] - 0.001
    assert 0 < found["start_s"] < found["first_fire_s"]
    assert metrics(raw, "s2mem-sqlite")["bytes_per_job"] > 0


def test_propagation_sees_every_change(store_run: tuple[dict[str, Any], str]) -> None:
    raw, _ = store_run
    found = metrics(raw, "s3-sqlite")
    assert found["missed"] == 0
    assert 0 < found["latency_p50_ms"] <= found["latency_p99_ms"] <= found["latency_max_ms"]


def test_idle_reads_cpu(store_run: tuple[dict[str, Any], str]) -> None:
    raw, _ = store_run
    found = metrics(raw, "s4-sqlite")
    assert found["loaded_jobs"] == 200
    assert 0 <= found["cpu_seconds"] < 0.5


def test_the_section_joins_the_results_page_and_replaces_itself(
    store_run: tuple[dict[str, Any], str],
) -> None:
    raw, page = store_run
    assert page.startswith("# Benchmark results\n\nthe main run's tables\n")
    assert page.count("## Stores") == 1
    for heading in ("### Targets (gnomon)", "### S1", "### S2", "### S3", "### S4"):
        assert heading in page
    sys.path.insert(0, str(BENCH))
    try:
        from _store_report import render_section, splice
    finally:
        sys.path.remove(str(BENCH))
    again = splice(page, render_section(raw))
    assert again == page
