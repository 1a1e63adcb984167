"""The "Stores" section of RESULTS.md, from the raw records of ``w_store.py``.

The section sits between two markers in RESULTS.md, and the raw records under the
``stores`` key of results.json, so that the store run and the main run (``run.py``)
each rewrite only their own part.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from _report import Medians, collect, fmt, median, table

BEGIN = "<!-- stores:begin -->"
END = "<!-- stores:end -->"
NOISY = 0.25
FLAT = 1.25
"""S1 counts as flat if the add at the largest size costs at most this times the smallest."""

LABELS = {"gnomon": "gnomon `Scheduler`", "apscheduler3": "APScheduler 3"}
BACKEND_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
STORE_LABELS = {
    ("gnomon", "sqlite"): "`SQLiteStore`",
    ("gnomon", "postgres"): "`PostgresStore`",
    ("apscheduler3", "sqlite"): "`SQLAlchemyJobStore` (sqlite:///)",
    ("apscheduler3", "postgres"): "`SQLAlchemyJobStore` (postgresql+psycopg://)",
}
LIMITS = {
    "sqlite": {"add_us": 300.0, "first_fire_s": 3.0, "latency_p99_ms": 1000.0},
    "postgres": {"add_us": 1500.0, "first_fire_s": 5.0, "latency_p99_ms": 300.0},
}
MEMORY_LIMIT = 1024.0
IDLE_LIMIT = 0.02

Values = Medians


def verdict(got: float | None, limit: float) -> str:
    if got is None:
        return "—"
    if got <= limit:
        return "met"
    return f"missed ({got / limit:.1f}x the target)"


# ---------------------------------------------------------------- sections


def add_sizes(raw: dict[str, Any], backend: str) -> list[int]:
    prefix = f"s1-{backend}-"
    return sorted(int(c["key"][len(prefix) :]) for c in raw["cases"] if c["key"].startswith(prefix))


def backends_of(raw: dict[str, Any]) -> list[str]:
    found = {c["backend"] for c in raw["cases"]}
    return [b for b in BACKEND_LABELS if b in found]


def target_rows(raw: dict[str, Any], values: Values) -> list[list[str]]:
    rows = []
    g = "gnomon"
    for backend in backends_of(raw):
        name = BACKEND_LABELS[backend]
        limits = LIMITS[backend]
        sizes = add_sizes(raw, backend)
        for n in sizes:
            got = median(values, f"s1-{backend}-{n}", g, "add_us")
            rows.append(
                [
                    f"S1 add_job, {n:,} stored, µs",
                    name,
                    f"≤ {limits['add_us']:g}",
                    fmt(got),
                    verdict(got, limits["add_us"]),
                ]
            )
        if len(sizes) > 1:
            low = median(values, f"s1-{backend}-{sizes[0]}", g, "add_us")
            high = median(values, f"s1-{backend}-{sizes[-1]}", g, "add_us")
            flat = None if low is None or high is None or low <= 0 else high / low
            rows.append(
                [
                    f"S1 flatness, add at {sizes[-1]:,} / at {sizes[0]:,}",
                    name,
                    f"≤ {FLAT:g}",
                    "—" if flat is None else f"{flat:.2f}",
                    verdict(flat, FLAT),
                ]
            )
        if any(c["key"] == f"s2-{backend}" for c in raw["cases"]):
            got = median(values, f"s2-{backend}", g, "first_fire_s")
            rows.append(
                [
                    "S2 construct → first fire, s",
                    name,
                    f"≤ {limits['first_fire_s']:g}",
                    fmt(got),
                    verdict(got, limits["first_fire_s"]),
                ]
            )
            got = median(values, f"s2mem-{backend}", g, "bytes_per_job")
            rows.append(
                [
                    "S2 memory per loaded job (tracemalloc), B",
                    name,
                    f"≤ {MEMORY_LIMIT:g}",
                    fmt(got),
                    verdict(got, MEMORY_LIMIT),
                ]
            )
            got = median(values, f"s2-{backend}", g, "rss_bytes_per_job")
            rows.append(
                [
                    "S2 memory per loaded job (RSS delta), B",
                    name,
                    f"≤ {MEMORY_LIMIT:g}",
                    fmt(got),
                    verdict(got, MEMORY_LIMIT),
                ]
            )
        if any(c["key"] == f"s3-{backend}" for c in raw["cases"]):
            got = median(values, f"s3-{backend}", g, "latency_p99_ms")
            rows.append(
                [
                    "S3 propagation p99, ms",
                    name,
                    f"≤ {limits['latency_p99_ms']:g}",
                    fmt(got),
                    verdict(got, limits["latency_p99_ms"]),
                ]
            )
        if any(c["key"] == f"s4-{backend}" for c in raw["cases"]):
            got = median(values, f"s4-{backend}", g, "cpu_seconds")
            rows.append(
                [
                    f"S4 idle CPU in {fmt(raw['sizes']['idle_seconds'])} s, s",
                    name,
                    f"≤ {IDLE_LIMIT:g}",
                    fmt(got),
                    verdict(got, IDLE_LIMIT),
                ]
            )
    return rows


def contestants(values: Values, case: str) -> list[str]:
    return [c for c in LABELS if (case, c) in values]


def who(contestant: str, backend: str) -> str:
    return f"{LABELS[contestant]}, {STORE_LABELS[(contestant, backend)]}"


def s1_section(raw: dict[str, Any], values: Values) -> list[str]:
    rows: list[list[str]] = []
    for backend in backends_of(raw):
        for n in add_sizes(raw, backend):
            case = f"s1-{backend}-{n}"
            rows.extend(
                [
                    BACKEND_LABELS[backend],
                    f"{n:,}",
                    who(c, backend),
                    *(
                        fmt(median(values, case, c, m))
                        for m in ("add_us", "add_p50_us", "add_p99_us", "add_cpu_us")
                    ),
                ]
                for c in contestants(values, case)
            )
    if not rows:
        return []
    adds = raw["sizes"]["adds"]
    return [
        "### S1 durable add_job",
        "",
        (
            f"{adds:,} `add_job` calls (after {raw['sizes']['warmup']} untimed ones) on a started "
            "scheduler whose store already holds N hourly jobs, none due. Mean µs per call "
            "(the target's figure), the per-call p50 and p99, and the process's CPU µs per "
            "call (every thread: gnomon's follower applies the rows it sees move; "
            "APScheduler 3's scheduler thread re-reads its store after each add)."
        ),
        "",
        *table(
            [
                "backend",
                "stored N",
                "contestant",
                "add, µs",
                "p50, µs",
                "p99, µs",
                "CPU µs per add",
            ],
            rows,
        ),
    ]


def s2_section(raw: dict[str, Any], values: Values) -> list[str]:
    rows: list[list[str]] = []
    for backend in backends_of(raw):
        case, mem = f"s2-{backend}", f"s2mem-{backend}"
        rows.extend(
            [
                BACKEND_LABELS[backend],
                who(c, backend),
                fmt(median(values, case, c, "start_s")),
                fmt(median(values, case, c, "first_fire_s")),
                fmt(median(values, case, c, "first_fire_late_ms")),
                fmt(median(values, mem, c, "bytes_per_job")),
                fmt(median(values, mem, c, "peak_bytes_per_job")),
                fmt(median(values, case, c, "rss_bytes_per_job")),
                fmt(median(values, case, c, "get_jobs_s")),
            ]
            for c in contestants(values, case)
        )
    if not rows:
        return []
    n = raw["sizes"]["start_jobs"]
    lead = raw["sizes"]["lead"]
    return [
        "### S2 start over stored jobs",
        "",
        (
            f"The store holds {n:,} hourly jobs (start times an hour or two ahead, none due) "
            f"and one job every second from {fmt(lead)} s after the scheduler's construction "
            "begins (stored beforehand by a scheduler that is never started). Timed from the "
            "construction: `start()` returning, and the first run of the every-second job "
            "(its lateness is that run's start minus the job's start time). Memory per stored "
            "job: retained by the started scheduler under `tracemalloc` (a separate process; "
            "peak during the start alongside), and the resident-set growth over construction "
            "and start in the timed process."
        ),
        "",
        (
            "APScheduler 3 reads its store lazily: `start()` asks for the next run time and "
            "later for the due jobs only, so neither its start nor its memory grows with the "
            "stored jobs; what gnomon pays at start it pays in `get_jobs()`, which unpickles "
            "every stored job (timed last, in the same process: the last column)."
        ),
        "",
        *table(
            [
                "backend",
                "contestant",
                "start(), s",
                "first fire, s",
                "first fire late, ms",
                "traced B/job",
                "traced peak B/job",
                "RSS B/job",
                "get_jobs(), s",
            ],
            rows,
        ),
    ]


def s3_section(raw: dict[str, Any], values: Values) -> list[str]:
    rows = []
    for backend in backends_of(raw):
        case = f"s3-{backend}"
        for c in contestants(values, case):
            made = median(values, case, c, "changes")
            missed = median(values, case, c, "missed")
            seen = None if made is None or missed is None else made - missed
            rows.append(
                [
                    BACKEND_LABELS[backend],
                    who(c, backend),
                    "—" if seen is None else f"{seen:.0f} / {made:.0f}",
                    *(
                        fmt(median(values, case, c, m))
                        for m in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms", "call_ms")
                    ),
                ]
            )
    if not rows:
        return []
    return [
        "### S3 propagation between processes",
        "",
        (
            f"Two started schedulers in two processes on one store (already holding "
            f"{raw['sizes']['propagation_jobs']:,} jobs). One makes {raw['sizes']['changes']} "
            "changes, cycling add, rule update, pause and resume, each after a random pause of "
            f"up to {fmt(raw['sizes']['max_pause'] * 1000)} ms; the other polls its own view "
            "(`get_job(id)`: presence, `.rule`, `.paused`) every millisecond. Latency runs "
            "from the start of the call making the change to the observer seeing it; the "
            "writer's call itself is the last column."
        ),
        "",
        (
            "gnomon's observer answers from its in-memory mirror, which its follower thread "
            "updates: woken by `LISTEN/NOTIFY` on PostgreSQL (polling every second as a "
            "backstop), polling every 500 ms on SQLite. APScheduler 3's `get_job` queries the "
            "store on every call, so its observer sees a change at its next query, but its "
            "scheduler thread never learns of another process's changes before its own next "
            "wake-up (APScheduler 3 does not support sharing a job store between schedulers)."
        ),
        "",
        *table(
            [
                "backend",
                "contestant",
                "changes seen / made",
                "p50, ms",
                "p99, ms",
                "max, ms",
                "writer's call, ms",
            ],
            rows,
        ),
    ]


def s4_section(raw: dict[str, Any], values: Values) -> list[str]:
    rows: list[list[str]] = []
    for backend in backends_of(raw):
        case = f"s4-{backend}"
        rows.extend(
            [
                BACKEND_LABELS[backend],
                who(c, backend),
                fmt(median(values, case, c, "cpu_seconds")),
                fmt(median(values, case, c, "rusage_seconds")),
            ]
            for c in contestants(values, case)
        )
    if not rows:
        return []
    seconds = fmt(raw["sizes"]["idle_seconds"])
    return [
        "### S4 idle",
        "",
        (
            f"A started scheduler over {raw['sizes']['idle_jobs']:,} stored hourly jobs, none "
            f"due; CPU seconds of the whole process over {seconds} s, from "
            f"{fmt(raw['sizes']['settle'])} s after `start()` returned "
            "(`time.process_time()`, and `getrusage` user + system alongside)."
        ),
        "",
        *table(["backend", "contestant", f"CPU in {seconds} s, s", "getrusage, s"], rows),
    ]


def noise_section(values: Values) -> list[str]:
    shown = {
        "add_us",
        "first_fire_s",
        "start_s",
        "bytes_per_job",
        "latency_p50_ms",
        "latency_p99_ms",
        "cpu_seconds",
        "rss_bytes_per_job",
    }
    rows = []
    for (case, contestant), metrics in sorted(values.items()):
        for metric, found in sorted(metrics.items()):
            if metric not in shown or len(found) < 2:
                continue
            middle = statistics.median(found)
            if middle > 0 and (max(found) - min(found)) / middle > NOISY:
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
        return []
    return [
        "### Noise",
        "",
        f"Figures whose spread (max - min) exceeds {NOISY:.0%} of their median:",
        "",
        *table(["case", "contestant", "metric", "min", "median", "max"], rows),
    ]


def failure_section(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"- {r['case']} · {LABELS[r['contestant']]} · repetition {r['rep'] + 1}: {r['error']}"
        for r in records
        if "error" in r
    ]
    return ["### Failures", "", *lines, ""] if lines else []


def environment(raw: dict[str, Any]) -> list[str]:
    versions: set[str] = set()
    pythons: set[str] = set()
    loads: list[float] = []
    for record in raw["records"]:
        found = dict(record.get("versions", {}))
        pythons.add(found.pop("python", "?"))
        versions.update(f"{k} {v}" for k, v in found.items())
        loads.extend(record.get("loadavg", []))
    m = raw["machine"]
    load = f"{min(loads):.2f} to {max(loads):.2f}" if loads else "unknown"
    postgres = f", PostgreSQL {raw['postgres']} over loopback" if raw.get("postgres") else ""
    source = raw.get("gnomon_source") or {}
    commit = source.get("commit")
    measured = (
        []
        if not commit
        else [
            f"- gnomon measured at commit `{commit[:10]}`"
            + (
                " (its `src/`, extracted with `git archive`)."
                if source.get("pinned")
                else (", working tree with uncommitted changes." if source.get("dirty") else ".")
            )
        ]
    )
    return [
        *measured,
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['system']}{postgres}.",
        f"- Python {', '.join(sorted(pythons))}; {', '.join(sorted(versions))}.",
        f"- Load average (1 min) at the start and end of each measurement: {load}.",
        *(f"- {note}" for note in raw.get("notes", [])),
    ]


def render_section(raw: dict[str, Any]) -> str:
    """The whole "Stores" section, markers included."""
    values = collect(raw["records"])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(raw["started"]))
    minutes = (raw["finished"] - raw["started"]) / 60
    reps = raw["repetitions"]
    lines = [
        BEGIN,
        "## Stores",
        "",
        (
            f"Measured {when} with `{raw['command']}` (profile `{raw['profile']}`, {reps} "
            f"repetition{'s' if reps != 1 else ''}, contestants interleaved, {minutes:.0f} min); "
            "every figure is the median over repetitions. gnomon's store-backed `Scheduler` "
            "beside APScheduler 3's `BackgroundScheduler` with `SQLAlchemyJobStore`, each "
            "with its defaults (gnomon's SQLite: WAL, `synchronous=NORMAL`; APScheduler's: "
            "SQLite's rollback journal, `synchronous=FULL`, an fsync per commit)."
        ),
        *(
            []
            if raw["profile"] == "full"
            else ["", "Sizes and durations are reduced: the targets hold for the full run only."]
        ),
        "",
        *environment(raw),
        "",
        "### Targets (gnomon)",
        "",
        *table(["figure", "backend", "target", "measured", "verdict"], target_rows(raw, values)),
        *s1_section(raw, values),
        *s2_section(raw, values),
        *s3_section(raw, values),
        *s4_section(raw, values),
        *noise_section(values),
        *failure_section(raw["records"]),
        END,
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- files


def splice(page: str, section: str) -> str:
    """``page`` with its stores section replaced by ``section`` (appended if absent)."""
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        return head + section + ("\n" + tail if tail else "")
    return page.rstrip("\n") + "\n\n" + section


def write_into(output: Path, raw: dict[str, Any]) -> None:
    """Put ``raw`` under ``stores`` in results.json and its section into RESULTS.md,
    leaving the rest of both files as they are."""
    output.mkdir(parents=True, exist_ok=True)
    results = output / "results.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    data["stores"] = raw
    results.write_text(json.dumps(data, indent=1) + "\n")
    page_path = output / "RESULTS.md"
    page = page_path.read_text() if page_path.exists() else "# Benchmark results\n"
    page_path.write_text(splice(page, render_section(raw)))


def carry_over(output: Path, raw: dict[str, Any], page: str) -> tuple[dict[str, Any], str]:
    """For ``run.py``, which rewrites both files: keep the stores results already in
    ``output`` (their raw records and their section)."""
    results = output / "results.json"
    if "stores" in raw or not results.exists():
        return raw, page
    try:
        kept = json.loads(results.read_text()).get("stores")
    except ValueError:
        return raw, page
    if not kept:
        return raw, page
    return {**raw, "stores": kept}, splice(page, render_section(kept))
