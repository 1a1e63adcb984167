"""What one benchmark run measures: contestants, their interpreters, and the workloads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _harness import TimedSpec

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
APS4_PYTHON = BENCH_DIR / ".envs" / "aps4" / "bin" / "python"

CONTESTANTS = ("gnomon", "gnomon-async", "apscheduler3", "apscheduler4", "schedule")
GNOMON_FACES = ("gnomon", "gnomon-async")
PEERS = ("apscheduler3", "apscheduler4", "schedule")
LABELS = {
    "gnomon": "gnomon `Scheduler`",
    "gnomon-async": "gnomon `AsyncScheduler`",
    "apscheduler3": "APScheduler 3",
    "apscheduler4": "APScheduler 4",
    "schedule": "schedule",
}

APS4_MAX_W1_JOBS = 10_000
"""APScheduler 4 pays a portal round trip per call, which 100k adds make take minutes."""

W1_TAGS = ("bench", "w1")
"""The tags of every job of W1 with options (where the contestant has tags)."""


def w1_start_times(n: int) -> list[datetime]:
    """W1 with options: each job's own start time, an hour or two from now (so that
    none fires while measured), made before the timed loop as a caller would have it."""
    base = datetime.now(UTC) + timedelta(hours=1)
    return [base + timedelta(seconds=i % 3600) for i in range(n)]


@dataclass(frozen=True, slots=True)
class Profile:
    """The sizes and durations of one kind of run."""

    name: str
    scale_sizes: tuple[int, ...]
    removals: int
    burst_jobs: int
    burst_seconds: float
    latency_jobs: int
    latency_seconds: float
    idle_jobs: int
    idle_seconds: float
    lead: float
    grace: float
    repetitions: int


FULL = Profile("full", (1_000, 10_000, 100_000), 1_000, 1_000, 20, 200, 30, 10_000, 20, 2.5, 1.0, 3)
QUICK = Profile("quick", (1_000, 10_000), 200, 200, 3, 50, 3, 1_000, 2, 1.5, 0.5, 1)
SMOKE = Profile("smoke", (300,), 50, 50, 1, 20, 1, 200, 0.5, 0.5, 0.3, 1)
PROFILES = {profile.name: profile for profile in (FULL, QUICK, SMOKE)}


@dataclass(frozen=True, slots=True)
class Case:
    """One workload at one size, measured for each of ``contestants``."""

    key: str
    group: str
    workload: str
    title: str
    params: dict[str, Any]
    contestants: tuple[str, ...]

    def budget_seconds(self) -> float:
        """How long one measurement may take before it is abandoned."""
        if self.workload == "timed":
            p = self.params
            return float(p["lead"] + p["settle"] + p["cpu_span"] + p["grace"]) + 120
        return 900


def burst_spec(profile: Profile) -> TimedSpec:
    """W2: every job due at the same instant, each second."""
    return TimedSpec(
        jobs=profile.burst_jobs,
        interval=1.0,
        first_fire=0.0,
        stagger=0.0,
        lead=profile.lead,
        cpu_from=-0.5,
        cpu_span=profile.burst_seconds,
        settle=0.0,
        grace=profile.grace,
        counted=profile.burst_seconds,
    )


def latency_spec(profile: Profile) -> TimedSpec:
    """W3: jobs each second, their starts spread evenly across the second."""
    return TimedSpec(
        jobs=profile.latency_jobs,
        interval=1.0,
        first_fire=0.0,
        stagger=1.0 / profile.latency_jobs,
        lead=profile.lead,
        cpu_from=-0.5,
        cpu_span=profile.latency_seconds,
        settle=0.0,
        grace=profile.grace,
        counted=profile.latency_seconds,
    )


def idle_spec(profile: Profile) -> TimedSpec:
    """W4: hourly jobs, none due while the CPU is read."""
    return TimedSpec(
        jobs=profile.idle_jobs,
        interval=3600.0,
        first_fire=3600.0,
        stagger=0.0,
        lead=0.0,
        cpu_from=0.0,
        cpu_span=profile.idle_seconds,
        settle=1.0,
        grace=0.0,
        counted=profile.idle_seconds,
    )


WORKLOADS = ("w1", "w2", "w3", "w4", "w5")


def cases(profile: Profile, contestants: tuple[str, ...], workloads: tuple[str, ...]) -> list[Case]:
    """The cases of ``profile`` among ``contestants`` and ``workloads``, in running order."""
    return [case for case in all_cases(profile, contestants) if case.group in workloads]


def all_cases(profile: Profile, contestants: tuple[str, ...]) -> list[Case]:
    """Every case of ``profile`` among ``contestants``, in the order they run."""
    scale_side = tuple(c for c in contestants if c != "gnomon-async")
    found: list[Case] = []
    for n in profile.scale_sizes:
        sides = tuple(c for c in scale_side if c != "apscheduler4" or n <= APS4_MAX_W1_JOBS)
        params = {"n": n, "removals": profile.removals}
        found.append(Case(f"w1-{n}", "w1", "w1", f"W1 scale, {n:,} jobs", params, sides))
        found.append(Case(f"w1mem-{n}", "w1", "w1mem", f"W1 memory, {n:,} jobs", {"n": n}, sides))
        found.append(
            Case(f"w1opt-{n}", "w1", "w1opt", f"W1 with options, {n:,} jobs", params, sides)
        )
    for key, title, spec in (
        ("w2", "W2 burst", burst_spec(profile)),
        ("w3", "W3 latency", latency_spec(profile)),
        ("w4", "W4 idle", idle_spec(profile)),
    ):
        found.append(Case(key, key, "timed", title, asdict(spec), contestants))
    if contestants:
        # W4's control: what the machine's CPU clock counts for an interpreter that only
        # sleeps as long (the project's own, the one most contestants run in).
        floor_side = "gnomon" if "gnomon" in contestants else contestants[0]
        span = {"cpu_span": idle_spec(profile).cpu_span}
        found.append(Case("w4floor", "w4", "w4floor", "W4 floor", span, (floor_side,)))
    if (BENCH_DIR / "w5_cron.py").exists() and "gnomon" in contestants:
        found.append(Case("w5", "w5", "w5", "W5 cron math", {}, ("gnomon",)))
        found.append(Case("w5cold", "w5", "w5cold", "W5 cron math, cold cache", {}, ("gnomon",)))
    return found
