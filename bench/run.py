"""Run gnomon and its peers on the same workloads and write the results table.

    python bench/run.py            # the full run: a few dozen minutes, writes bench/RESULTS.md
    python bench/run.py --quick    # short and small, prints the table

Every measurement runs in a fresh interpreter of its contestant's own environment, and
repetition r of every contestant runs before repetition r + 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _plan import (
    APS4_PYTHON,
    BENCH_DIR,
    CONTESTANTS,
    PROFILES,
    REPO_DIR,
    WORKLOADS,
    Case,
    cases,
)
from _report import machine, render
from _store_report import carry_over

WORKER = BENCH_DIR / "worker.py"


def interpreter(contestant: str) -> Path:
    """The Python that runs ``contestant``: its own environment for APScheduler 4."""
    return APS4_PYTHON if contestant == "apscheduler4" else Path(sys.executable)


def measure(case: Case, contestant: str) -> dict[str, Any]:
    """One measurement in a fresh subprocess; its result, or the reason it failed."""
    request = {"contestant": contestant, "workload": case.workload, "params": case.params}
    command = [str(interpreter(contestant)), str(WORKER), json.dumps(request)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=REPO_DIR,
            timeout=case.budget_seconds(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {case.budget_seconds():.0f} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["no output"]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rotated(items: tuple[str, ...], by: int) -> tuple[str, ...]:
    """``items`` rotated left ``by`` places, so no contestant always goes first."""
    if not items:
        return items
    shift = by % len(items)
    return items[shift:] + items[:shift]


def run_all(plan: list[Case], repetitions: int) -> list[dict[str, Any]]:
    """Every case for every contestant, repetition by repetition."""
    records: list[dict[str, Any]] = []
    for rep in range(repetitions):
        for case in plan:
            for contestant in rotated(case.contestants, rep):
                started = time.monotonic()
                result = measure(case, contestant)
                took = time.monotonic() - started
                note = f" FAILED: {result['error']}" if "error" in result else ""
                print(
                    f"[{rep + 1}/{repetitions}] {case.title} · {contestant}: {took:.1f} s{note}",
                    file=sys.stderr,
                    flush=True,
                )
                records.append({"case": case.key, "contestant": contestant, "rep": rep, **result})
    return records


def available(requested: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """The requested contestants that can run here, and notes on those that cannot."""
    notes = []
    chosen = requested
    if "apscheduler4" in requested and not APS4_PYTHON.exists():
        chosen = tuple(c for c in requested if c != "apscheduler4")
        notes.append(
            "APScheduler 4 was not measured: its environment is missing (see bench/README.md)."
        )
    return chosen, notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short durations, small sizes")
    parser.add_argument("--profile", choices=sorted(PROFILES), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, help="repetitions (default: 3 full, 1 quick)")
    parser.add_argument(
        "--contestants",
        default=",".join(CONTESTANTS),
        help="comma-separated subset of: " + ", ".join(CONTESTANTS),
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of: " + ", ".join(WORKLOADS),
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: rebuild the table from a results.json",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="directory for RESULTS.md and results.json "
        "(default: bench/ for the full run, none for --quick)",
    )
    return parser.parse_args(argv)


def chosen(listed: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    """The names of a comma-separated option, in their usual order; unknown names exit."""
    names = set(listed.split(","))
    if unknown := names - set(valid):
        sys.exit(f"unknown {what} {', '.join(sorted(unknown))}; choose from {', '.join(valid)}")
    return tuple(name for name in valid if name in names)


def write(raw: dict[str, Any], output: Path | None) -> None:
    """Write the raw JSON and the table to ``output``, or print the table."""
    table = render(raw)
    if output is None:
        print(table)
        return
    output.mkdir(parents=True, exist_ok=True)
    raw, table = carry_over(output, raw, table)  # the stores results of w_store.py stay
    (output / "results.json").write_text(json.dumps(raw, indent=1) + "\n")
    (output / "RESULTS.md").write_text(table)
    print(f"wrote {output / 'RESULTS.md'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Plan, measure, and write or print the table."""
    args = parse_args(argv)
    if args.render is not None:
        write(json.loads(args.render.read_text()), args.output)
        return
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    contestants, notes = available(chosen(args.contestants, CONTESTANTS, "contestants"))
    plan = cases(profile, contestants, chosen(args.workloads, WORKLOADS, "workloads"))
    repetitions = args.reps or profile.repetitions
    started = time.time()
    records = run_all(plan, repetitions)
    raw = {
        "profile": profile.name,
        "repetitions": repetitions,
        "machine": machine(),
        "started": started,
        "finished": time.time(),
        "notes": notes,
        "cases": [{"key": c.key, "title": c.title, "params": c.params} for c in plan],
        "records": records,
    }
    write(raw, args.output or (BENCH_DIR if profile.name == "full" else None))


if __name__ == "__main__":
    main()
