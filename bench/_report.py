"""Turn the raw measurements of one run into the Markdown results table."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

from _plan import GNOMON_FACES, LABELS, PEERS

Medians = dict[tuple[str, str], dict[str, list[float]]]
"""(case, contestant) -> metric -> the value of every repetition."""

NOISY = 0.25
"""A spread (max - min) above this fraction of the median is listed as noise."""

LATENESS_METRICS = ("lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms")
SHOWN = {
    "w1": ("add_us", "add_cpu_us", "remove_in_order_us", "remove_random_us"),
    "w1mem": ("bytes_per_job",),
    "w2": ("runs_done", *LATENESS_METRICS, "cpu_us_per_run"),
    "w3": ("runs_done", *LATENESS_METRICS),
    "w4": ("cpu_seconds",),
}
"""The metrics the tables show, by workload; the others stay in the raw JSON."""


@dataclass(frozen=True, slots=True)
class Target:
    """One row of the issue's targets table."""

    label: str
    case: str
    metric: str
    faces: tuple[str, ...]
    limit: float


def targets(largest: int | None) -> list[Target]:
    """The performance targets, W1 read at the largest size measured (if any)."""
    thread, both = ("gnomon",), GNOMON_FACES
    scale = (
        []
        if largest is None
        else [
            Target(f"W1 add at {largest:,}, µs/job", f"w1-{largest}", "add_us", thread, 6),
            Target(
                f"W1 add with options at {largest:,}, µs/job",
                f"w1opt-{largest}",
                "add_us",
                thread,
                8,
            ),
            Target(
                f"W1 random removal at {largest:,}, µs",
                f"w1-{largest}",
                "remove_random_us",
                thread,
                10,
            ),
            Target(
                f"W1 memory at {largest:,}, B/job", f"w1mem-{largest}", "bytes_per_job", thread, 500
            ),
        ]
    )
    return [
        *scale,
        Target("W2 lateness p50, ms", "w2", "lateness_p50_ms", both, 8),
        Target("W2 lateness p99, ms", "w2", "lateness_p99_ms", both, 30),
        Target("W2 CPU per run, µs", "w2", "cpu_us_per_run", thread, 30),
        Target("W3 lateness p50, ms", "w3", "lateness_p50_ms", thread, 0.2),
        Target("W3 lateness p99, ms", "w3", "lateness_p99_ms", thread, 0.4),
        Target("W3 lateness p50, ms", "w3", "lateness_p50_ms", ("gnomon-async",), 0.7),
        Target("W3 lateness p99, ms", "w3", "lateness_p99_ms", ("gnomon-async",), 1.4),
        Target("W4 idle CPU, s", "w4", "cpu_seconds", both, 0.001),
    ]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def collect(records: Iterable[dict[str, Any]]) -> Medians:
    """Every numeric metric of every (case, contestant), across repetitions."""
    values: Medians = defaultdict(lambda: defaultdict(list))
    for record in records:
        for metric, value in record.get("metrics", {}).items():
            if isinstance(value, int | float) and not math.isnan(value):
                values[(record["case"], record["contestant"])][metric].append(float(value))
    return values


def median(values: Medians, case: str, contestant: str, metric: str) -> float | None:
    """The median of a metric over repetitions, or ``None`` if it was not measured."""
    found = values.get((case, contestant), {}).get(metric)
    return statistics.median(found) if found else None


def fmt(value: float | None) -> str:
    """A figure with as many digits as are worth reading."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    text = f"{value:.2g}"
    return f"{value:.7f}".rstrip("0") if "e" in text else text


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return [*lines, ""]


def ratio(peer: float | None, ours: float | None) -> str:
    """How many times the peer's figure is gnomon's (above 1: gnomon is better)."""
    if peer is None or ours is None or ours <= 0:
        return "—"
    return f"{peer / ours:.1f}x"


def contestants_of(values: Medians, case: str) -> list[str]:
    """Contestants measured in ``case``, in the usual order."""
    return [c for c in LABELS if (case, c) in values]


def environment(records: list[dict[str, Any]]) -> tuple[set[str], set[str], str]:
    """The Pythons and library versions the workers reported, and the load they saw."""
    pythons: set[str] = set()
    versions: set[str] = set()
    loads: list[float] = []
    for record in records:
        found = dict(record.get("versions", {}))
        pythons.add(found.pop("python", "?"))
        versions.update(f"{name} {v}" for name, v in found.items())
        loads.extend(record.get("loadavg", []))
    load = f"{min(loads):.2f} to {max(loads):.2f}" if loads else "unknown"
    return pythons, versions, load


def header(raw: dict[str, Any]) -> list[str]:
    m = raw["machine"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(raw["started"]))
    minutes = (raw["finished"] - raw["started"]) / 60
    reps = raw["repetitions"]
    pythons, versions, load = environment(raw["records"])
    return [
        "# Benchmark results",
        "",
        (
            f"Measured {when} with `python bench/run.py` (profile `{raw['profile']}`, "
            f"{reps} repetition{'s' if reps != 1 else ''} interleaved across contestants, "
            f"{minutes:.0f} min). Every figure is the median over repetitions; lower is better "
            "except runs done."
        ),
        *(
            []
            if raw["profile"] == "full"
            else ["", "Sizes and durations are reduced: the targets hold for the full run only."]
        ),
        "",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['system']}.",
        (
            f"- Python: {', '.join(sorted(pythons))} for every contestant; "
            f"versions: {', '.join(sorted(versions))}."
        ),
        (
            f"- Load average (1 min) at the start and end of each measurement: {load}. "
            "The machine was shared with other work, so read the spreads under *Noise*."
        ),
        *(f"- {note}" for note in raw.get("notes", [])),
        "",
    ]


def target_section(values: Medians, largest: int | None, cron_us: float | None) -> list[str]:
    rows = []
    for target in targets(largest):
        for face in target.faces:
            got = median(values, target.case, face, target.metric)
            verdict = "—" if got is None else ("met" if got <= target.limit else "missed")
            rows.append([target.label, LABELS[face], f"≤ {target.limit:g}", fmt(got), verdict])
    for metric, label in (("lateness_p50_ms", "p50"), ("lateness_p99_ms", "p99")):
        theirs = median(values, "w2", "schedule", metric)
        if theirs is None:
            continue
        for face in GNOMON_FACES:
            got = median(values, "w2", face, metric)
            verdict = "—" if got is None else ("met" if got <= theirs else "missed")
            limit = f"≤ schedule's {fmt(theirs)}"
            rows.append([f"W2 lateness {label}, ms", LABELS[face], limit, fmt(got), verdict])
    if cron_us is not None:
        rows.append(
            [
                "W5 µs per next (median)",
                "rules",
                "≤ 10",
                fmt(cron_us),
                "met" if cron_us <= 10 else "missed",
            ]
        )
    return [
        "## Targets",
        "",
        *table(["workload", "gnomon face", "target", "measured", "verdict"], rows),
    ]


def scale_row(values: Medians, n: int, contestant: str) -> list[str]:
    timings = SHOWN["w1"]
    return [
        LABELS[contestant],
        *(fmt(median(values, f"w1-{n}", contestant, metric)) for metric in timings),
        fmt(median(values, f"w1mem-{n}", contestant, "bytes_per_job")),
    ]


def scale_section(values: Medians, sizes: list[int], removals: int) -> list[str]:
    lines = [
        "## W1 scale",
        "",
        (
            "Add N interval jobs (periods 1-2 h) to a running scheduler, then remove "
            f"min(N/2, {removals:,}) of them in insertion order and as many more at random; "
            "memory is traced separately with `tracemalloc` in a fresh process. CPU µs is "
            "the process's CPU time per add, which a busy machine inflates less than wall time."
        ),
        "",
    ]
    for n in sizes:
        rows = [scale_row(values, n, c) for c in contestants_of(values, f"w1-{n}")]
        lines += [
            f"### {n:,} jobs",
            "",
            *table(
                [
                    "contestant",
                    "add, µs",
                    "add, CPU µs",
                    "remove in order, µs",
                    "remove at random, µs",
                    "B/job",
                ],
                rows,
            ),
        ]
    return lines


OPTIONS_GIVEN = {
    "gnomon": "`name`, `args`, `tags`, `start_at`",
    "apscheduler3": "`id`, `name`, `args`, start date (trigger); no tags",
    "apscheduler4": "`id`, `args`, start time (trigger); no name, no tags",
    "schedule": "`args` (`do`), `tag`; no name, no start time",
}
"""What each contestant's add of W1 with options is given, and what it has no option for."""


def options_section(values: Medians, sizes: list[int]) -> list[str]:
    lines = [
        "## W1 with options",
        "",
        (
            "W1 again, with each job given what users usually give it: its own name, an "
            "argument, two tags and its own start time, as far as the contestant has such "
            "options (see the last column). Start times are made before the timed loop; so "
            "are the triggers that carry them for APScheduler 3 and 4."
        ),
        "",
    ]
    for n in sizes:
        case = f"w1opt-{n}"
        rows = [
            [
                LABELS[c],
                *(fmt(median(values, case, c, metric)) for metric in SHOWN["w1"]),
                OPTIONS_GIVEN.get(c, "—"),
            ]
            for c in contestants_of(values, case)
        ]
        if not rows:
            continue
        header = [
            "contestant",
            "add, µs",
            "add, CPU µs",
            "remove in order, µs",
            "remove at random, µs",
            "given",
        ]
        lines += [f"### {n:,} jobs, with options", "", *table(header, rows)]
    return lines


def timed_section(
    values: Medians, case: str, title: str, intro: str, columns: list[tuple[str, str]]
) -> list[str]:
    rows = []
    for c in contestants_of(values, case):
        row = [LABELS[c]]
        for metric, _ in columns:
            if metric == "runs":
                done = median(values, case, c, "runs_done")
                expected = median(values, case, c, "runs_expected")
                row.append(f"{fmt(done)} / {fmt(expected)}")
            else:
                row.append(fmt(median(values, case, c, metric)))
        rows.append(row)
    return [
        f"## {title}",
        "",
        intro,
        "",
        *table(["contestant", *(label for _, label in columns)], rows),
    ]


LATENESS = [
    ("lateness_p50_ms", "lateness p50, ms"),
    ("lateness_p99_ms", "p99, ms"),
    ("lateness_max_ms", "max, ms"),
]


def ratio_section(values: Medians, sizes: list[int]) -> list[str]:
    headline = [(f"W1 add at {n:,}", f"w1-{n}", "add_us") for n in sizes]
    headline += [(f"W1 add with options at {n:,}", f"w1opt-{n}", "add_us") for n in sizes]
    headline += [(f"W1 random removal at {n:,}", f"w1-{n}", "remove_random_us") for n in sizes]
    headline += [(f"W1 memory at {n:,}", f"w1mem-{n}", "bytes_per_job") for n in sizes[-1:]]
    headline += [
        ("W2 lateness p50", "w2", "lateness_p50_ms"),
        ("W2 lateness p99", "w2", "lateness_p99_ms"),
        ("W2 CPU per run", "w2", "cpu_us_per_run"),
        ("W3 lateness p50", "w3", "lateness_p50_ms"),
        ("W3 lateness p99", "w3", "lateness_p99_ms"),
        ("W4 idle CPU", "w4", "cpu_seconds"),
    ]
    rows = []
    for label, case, metric in headline:
        for face in GNOMON_FACES:
            ours = median(values, case, face, metric)
            if ours is None:
                continue
            rows.append(
                [
                    label,
                    LABELS[face],
                    *(ratio(median(values, case, p, metric), ours) for p in PEERS),
                ]
            )
    return [
        "## Ratios",
        "",
        (
            "Each peer's median divided by gnomon's: 3.0x means gnomon needs a third of "
            "the peer's time, memory or lateness."
        ),
        "",
        *table(["figure", "gnomon face", *(f"vs {LABELS[p]}" for p in PEERS)], rows),
    ]


def cron_rows(records: list[dict[str, Any]], case: str = "w5") -> list[dict[str, object]]:
    """W5's rows (or those of ``case``) with every number replaced by its median over
    repetitions."""
    runs = [r["metrics"]["rows"] for r in records if r["case"] == case and "metrics" in r]
    if not runs:
        return []
    merged = []
    for i, first in enumerate(runs[0]):
        row: dict[str, object] = {}
        for key, value in first.items():
            same = [run[i].get(key) for run in runs if i < len(run)]
            numbers = [float(v) for v in same if is_number(v)]
            row[key] = statistics.median(numbers) if is_number(value) and numbers else value
        merged.append(row)
    return merged


def cron_median_us(rows: list[dict[str, object]]) -> float | None:
    """gnomon's median µs per ``next_after`` over W5's expressions, if its rows say so."""
    figures = [
        float(v)
        for row in rows
        for key, v in row.items()
        if "gnomon" in key.lower() and is_number(v)
    ]
    return statistics.median(figures) if figures else None


def is_number(value: object) -> TypeGuard[int | float]:
    """True for an int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def cron_cell(value: object) -> str:
    if value is None:
        return "—"
    return fmt(float(value)) if is_number(value) else str(value)


def cron_section(rows: list[dict[str, object]]) -> list[str]:
    if not rows:
        return []
    return [
        "## W5 cron math",
        "",
        (
            "From `bench/w5_cron.py`: µs per `next_after` against cronsim and croniter; the last "
            "row is the median over expressions."
        ),
        "",
        *cron_table(rows),
    ]


def cron_table(rows: list[dict[str, object]]) -> list[str]:
    """One row per expression and zone, then the median of every column."""
    columns = list(rows[0])
    body = [[cron_cell(row.get(c)) for c in columns] for row in rows]
    summary = []
    for column in columns:
        numbers = [float(v) for row in rows if is_number(v := row.get(column))]
        summary.append(f"**{fmt(statistics.median(numbers))}**" if numbers else "**median**")
    return table(columns, [*body, summary])


def cold_cron_section(rows: list[dict[str, object]]) -> list[str]:
    """W5 from a cold cache, with its two targets: ahead of cronsim on every row, and a
    median ratio of at least 10."""
    if not rows:
        return []
    ratios = [float(v) for row in rows if is_number(v := row.get("cronsim / ours"))]
    slowest = min(ratios, default=0.0)
    middle = statistics.median(ratios) if ratios else 0.0
    return [
        "## W5 cron math, cold cache",
        "",
        (
            "From `bench/w5_cron.py --cold`: as W5, but before each chain of 20 fires "
            "gnomon gets a rule built afresh (outside the timer) and forgets every zone's "
            "offsets, and nothing is warmed up; cronsim and croniter parse inside the "
            "chain, as in W5."
        ),
        "",
        *table(
            ["target", "measured", "verdict"],
            [
                [
                    "faster than cronsim on every row",
                    f"slowest row {slowest:.1f}x",
                    "met" if slowest > 1 else "missed",
                ],
                [
                    "median cronsim / ours ≥ 10",
                    f"{middle:.1f}x",
                    "met" if middle >= 10 else "missed",
                ],
            ],
        ),
        *cron_table(rows),
    ]


def noise_section(values: Medians) -> list[str]:
    rows = []
    for (case, contestant), metrics in sorted(values.items()):
        for metric, found in sorted(metrics.items()):
            if metric not in SHOWN.get(case.split("-")[0], ()):
                continue
            middle = statistics.median(found)
            if len(found) > 1 and middle > 0 and (max(found) - min(found)) / middle > NOISY:
                rows.append(
                    [
                        case,
                        LABELS[contestant],
                        metric,
                        fmt(min(found)),
                        fmt(middle),
                        fmt(max(found)),
                    ]
                )
    if not rows:
        return [
            "## Noise",
            "",
            f"Every spread (max - min) was within {NOISY:.0%} of its median.",
            "",
        ]
    return [
        "## Noise",
        "",
        f"Figures whose spread (max - min) exceeds {NOISY:.0%} of their median:",
        "",
        *table(["case", "contestant", "metric", "min", "median", "max"], rows),
    ]


def failure_section(records: list[dict[str, Any]], params: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for r in records:
        where = f"{r['case']} · {LABELS[r['contestant']]} · repetition {r['rep'] + 1}"
        if "error" in r:
            lines.append(f"- {where}: {r['error']}")
        elif late_setup(r, params.get(r["case"], {})):
            lines.append(
                f"- {where}: setup took {r['metrics']['setup_seconds']:.2f} s, past the first "
                "fire time, so the first runs were late because of it."
            )
    return ["## Failures", "", *lines, ""] if lines else []


def late_setup(record: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether adding the jobs of a timed workload overran its first fire time."""
    setup = record["metrics"].get("setup_seconds")
    return setup is not None and setup > spec["lead"] + spec["first_fire"]


def render(raw: dict[str, Any]) -> str:
    """The whole results page."""
    records: list[dict[str, Any]] = raw["records"]
    values = collect(records)
    sizes = sorted(c["params"]["n"] for c in raw["cases"] if c["key"].startswith("w1-"))
    params = {c["key"]: c["params"] for c in raw["cases"]}
    cron = cron_rows(records)
    lines = header(raw)
    lines += target_section(values, sizes[-1] if sizes else None, cron_median_us(cron))
    lines += ratio_section(values, sizes)
    if sizes:
        lines += scale_section(values, sizes, params[f"w1-{sizes[0]}"]["removals"])
        lines += options_section(values, sizes)
    lines += timed_sections(values, params)
    lines += cron_section(cron) + cold_cron_section(cron_rows(records, "w5cold"))
    lines += noise_section(values) + failure_section(records, params)
    return "\n".join(lines)


def timed_sections(values: Medians, params: dict[str, dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if "w2" in params:
        p = params["w2"]
        lines += timed_section(
            values,
            "w2",
            "W2 burst",
            (
                f"{p['jobs']:,} jobs with a 1 s interval, all due at the same instant, for "
                f"{fmt(p['counted'])} s; no-op task. Lateness is the task's start minus its "
                "intended fire time; CPU is the whole process's over the window, per run "
                "started in it."
            ),
            [("runs", "runs done / expected"), *LATENESS, ("cpu_us_per_run", "CPU per run, µs")],
        )
    if "w3" in params:
        p = params["w3"]
        lines += timed_section(
            values,
            "w3",
            "W3 latency",
            (
                f"{p['jobs']:,} jobs with a 1 s interval, starts spread evenly across the second, "
                f"for {fmt(p['counted'])} s."
            ),
            [("runs", "runs done / expected"), *LATENESS],
        )
    if "w4" in params:
        p = params["w4"]
        lines += timed_section(
            values,
            "w4",
            "W4 idle",
            (
                f"{p['jobs']:,} hourly jobs; CPU seconds used by the whole process over "
                f"{fmt(p['cpu_span'])} s with nothing due, from {fmt(p['settle'])} s after start."
            ),
            [("cpu_seconds", f"CPU in {fmt(p['cpu_span'])} s, s")],
        )
        lines += floor_note(values, p["cpu_span"])
    return lines


def floor_note(values: Medians, span: float) -> list[str]:
    """W4's control: the CPU time counted for an interpreter that only sleeps as long."""
    for contestant in contestants_of(values, "w4floor"):
        floor = median(values, "w4floor", contestant, "cpu_seconds")
        note = (
            f"Floor: a fresh interpreter of the same environment that only sleeps for "
            f"{fmt(span)} s is counted {fmt(floor)} s of CPU on this machine (its CPU clock's "
            "own cost, the median of the repetitions); a figure near it is the machine's, "
            "not the scheduler's."
        )
        return [note, ""]
    return []
