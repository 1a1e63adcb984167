"""Store workloads S1-S4: gnomon's store-backed ``Scheduler`` on SQLite and PostgreSQL,
side by side with APScheduler 3's ``BackgroundScheduler`` and ``SQLAlchemyJobStore``.

    python bench/w_store.py             # the full run (~25 min): writes the "Stores"
                                        # section of bench/RESULTS.md and bench/results.json
    python bench/w_store.py --quick     # small sizes, one repetition, prints the section
    python bench/w_store.py --backends sqlite --workloads s1,s3 --reps 1

S1 durable ``add_job`` cost over 1k and 100k stored jobs; S2 start over 100k stored jobs
until the first fire, and memory per loaded job; S3 propagation of changes between two
processes on one store; S4 idle CPU over 10k stored jobs. Every measurement runs in a
fresh interpreter (``store_worker.py``) on a freshly prepared store: a SQLite file in a
temporary directory, or a PostgreSQL schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORKER = BENCH_DIR / "store_worker.py"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

CONTESTANTS = ("gnomon", "apscheduler3")
BACKENDS = ("sqlite", "postgres")
WORKLOADS = ("s1", "s2", "s3", "s4")


@dataclass(frozen=True, slots=True)
class Profile:
    """The sizes and durations of one kind of run."""

    name: str
    add_sizes: tuple[int, ...]
    adds: int
    warmup: int
    start_jobs: int
    lead: float
    changes: int
    max_pause: float
    propagation_jobs: int
    idle_jobs: int
    idle_seconds: float
    settle: float
    repetitions: int


FULL = Profile("full", (1_000, 100_000), 500, 10, 100_000, 1.0, 60, 0.3, 1_000, 10_000, 20, 1.0, 3)
QUICK = Profile("quick", (1_000, 10_000), 200, 10, 10_000, 1.0, 20, 0.3, 200, 1_000, 3, 1.0, 1)
SMOKE = Profile("smoke", (30, 300), 20, 2, 300, 0.5, 4, 0.05, 20, 200, 0.5, 0.2, 1)
PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}


@dataclass(frozen=True, slots=True)
class Case:
    """One workload on one backend, measured for each contestant."""

    key: str
    workload: str
    backend: str
    title: str
    prepare: int
    params: dict[str, Any]


def cases(profile: Profile, backends: tuple[str, ...], workloads: tuple[str, ...]) -> list[Case]:
    found: list[Case] = []
    params: dict[str, Any]
    for backend in backends:
        if "s1" in workloads:
            for n in profile.add_sizes:
                params = {"jobs": n, "adds": profile.adds, "warmup": profile.warmup}
                found.append(
                    Case(f"s1-{backend}-{n}", "add", backend, f"S1 add, {n:,} stored", n, params)
                )
        if "s2" in workloads:
            n = profile.start_jobs
            found.append(
                Case(f"s2-{backend}", "start", backend, f"S2 start, {n:,} stored", n,
                     {"jobs": n, "lead": profile.lead})
            )  # fmt: skip
            found.append(
                Case(f"s2mem-{backend}", "start_memory", backend, f"S2 memory, {n:,} stored", n,
                     {"jobs": n})
            )  # fmt: skip
        if "s3" in workloads:
            params = {"changes": profile.changes, "max_pause": profile.max_pause}
            found.append(
                Case(f"s3-{backend}", "propagate", backend, "S3 propagation",
                     profile.propagation_jobs, params)
            )  # fmt: skip
        if "s4" in workloads:
            params = {"seconds": profile.idle_seconds, "settle": profile.settle}
            found.append(
                Case(f"s4-{backend}", "idle", backend, f"S4 idle, {profile.idle_jobs:,} stored",
                     profile.idle_jobs, params)
            )  # fmt: skip
    return found


# ---------------------------------------------------------------- stores


class Stores:
    """Fresh stores for measurements: SQLite files (prepared once per contestant and
    size, then copied) and PostgreSQL schemas (prepared each time, dropped after)."""

    def __init__(self, pg_url: str) -> None:
        self.pg_url = pg_url
        self.root = Path(tempfile.mkdtemp(prefix="gnomon-bench-stores-"))
        self._prepared: dict[tuple[str, int], Path] = {}

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def fresh(self, contestant: str, backend: str, jobs: int) -> Iterator[dict[str, Any]]:
        if backend == "sqlite":
            with self._sqlite(contestant, jobs) as spec:
                yield spec
        else:
            with self._postgres(contestant, jobs) as spec:
                yield spec

    @contextmanager
    def _sqlite(self, contestant: str, jobs: int) -> Iterator[dict[str, Any]]:
        template = self._prepared.get((contestant, jobs))
        if template is None:
            template = self.root / f"template-{contestant}-{jobs}.db"
            prepare(contestant, {"backend": "sqlite", "path": str(template)}, jobs)
            self._prepared[(contestant, jobs)] = template
        path = self.root / f"{contestant}-{uuid.uuid4().hex[:8]}.db"
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{template}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{path}{suffix}")
        try:
            yield {"backend": "sqlite", "path": str(path)}
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    @contextmanager
    def _postgres(self, contestant: str, jobs: int) -> Iterator[dict[str, Any]]:
        schema = f"bench_{contestant[:6]}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        spec = {"backend": "postgres", "url": self.pg_url, "schema": schema}
        try:
            prepare(contestant, spec, jobs)
            yield spec
        finally:
            drop_schema(self.pg_url, schema)


def prepare(contestant: str, spec: dict[str, Any], jobs: int) -> None:
    result = work(contestant, "prepare", spec, {"jobs": jobs}, budget=900)
    if "error" in result:
        raise RuntimeError(f"preparing {jobs:,} jobs failed: {result['error']}")


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def postgres_reachable(url: str) -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` if it can."""
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        return (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
    return None


# ---------------------------------------------------------------- measuring


WORKER_ENV: dict[str, str] | None = None
"""The workers' environment: ``None`` (this one's) unless ``--at-commit`` set it."""


def work(
    contestant: str, workload: str, spec: dict[str, Any], params: dict[str, Any], budget: float
) -> dict[str, Any]:
    """One request to a fresh worker; its result, or the reason it failed."""
    request = {"contestant": contestant, "workload": workload, "store": spec, "params": params}
    command = [sys.executable, str(WORKER), json.dumps(request)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO_DIR, timeout=budget, check=False,
            env=WORKER_ENV,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {budget:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(stores: Stores, case: Case, contestant: str) -> dict[str, Any]:
    try:
        with stores.fresh(contestant, case.backend, case.prepare) as spec:
            return work(contestant, case.workload, spec, case.params, budget=900)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_all(
    stores: Stores, plan: list[Case], contestants: tuple[str, ...], repetitions: int
) -> list[dict[str, Any]]:
    """Every case for every contestant, repetition by repetition, the contestants'
    order rotating between repetitions."""
    records: list[dict[str, Any]] = []
    for rep in range(repetitions):
        shift = rep % len(contestants)
        order = contestants[shift:] + contestants[:shift]
        for case in plan:
            for contestant in order:
                started = time.monotonic()
                result = measure(stores, case, contestant)
                took = time.monotonic() - started
                note = f" FAILED: {result['error']}" if "error" in result else ""
                print(
                    f"[{rep + 1}/{repetitions}] {case.title} ({case.backend}) · {contestant}: "
                    f"{took:.1f} s{note}",
                    file=sys.stderr,
                    flush=True,
                )
                records.append(
                    {"case": case.key, "contestant": contestant, "backend": case.backend,
                     "rep": rep, **result}
                )  # fmt: skip
    return records


# ---------------------------------------------------------------- what is measured


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        capture_output=True,
        text=True,
        cwd=REPO_DIR,
        check=True,
    )
    return done.stdout.strip()


def pin_source(rev: str, root: Path) -> dict[str, Any]:
    """Measure gnomon's ``src/`` as of commit ``rev``: extract it (``git archive``, which
    changes nothing in the repository) and put it first on the workers' path, so that a
    run is not split across edits other people make to the working tree meanwhile."""
    global WORKER_ENV  # noqa: PLW0603 - one run's workers share the extracted source
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    target = root / "source"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit, "src"],
        capture_output=True,
        cwd=REPO_DIR,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    src = target / "src"
    WORKER_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(src), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    return {"commit": commit, "pinned": True, "path": _imported_from()}


def working_tree() -> dict[str, Any]:
    """What an unpinned run measures: the working tree, and whether it differs from HEAD."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--", "src"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "pinned": False, "path": _imported_from()}
    return {"commit": commit, "pinned": False, "dirty": dirty, "path": _imported_from()}


def _imported_from() -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import gnomon; print(gnomon.__file__)"],
        capture_output=True, text=True, cwd=REPO_DIR, env=WORKER_ENV, check=True,
    )  # fmt: skip
    return done.stdout.strip()


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--profile", choices=sorted(PROFILES), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, help="repetitions (default: 3 full, 1 quick)")
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("GNOMON_BENCH_PG", DEFAULT_PG_URL),
        help=f"PostgreSQL to measure on (default $GNOMON_BENCH_PG or {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--at-commit",
        metavar="REV",
        help="measure gnomon's src/ as of this commit (extracted with git archive) rather "
        "than the working tree",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="directory whose RESULTS.md and results.json get the stores results "
        "(default: bench/ for the full run, none for --quick)",
    )
    return parser.parse_args(argv)


def chosen(listed: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = set(listed.split(","))
    if unknown := names - set(valid):
        sys.exit(f"unknown {what} {', '.join(sorted(unknown))}; choose from {', '.join(valid)}")
    return tuple(name for name in valid if name in names)


def main(argv: list[str] | None = None) -> None:
    from _store_report import render_section, write_into

    args = parse_args(argv)
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    contestants = chosen(args.contestants, CONTESTANTS, "contestants")
    backends = chosen(args.backends, BACKENDS, "backends")
    workloads = chosen(args.workloads, WORKLOADS, "workloads")
    notes = []
    if "postgres" in backends and (why := postgres_reachable(args.pg_url)) is not None:
        backends = tuple(b for b in backends if b != "postgres")
        notes.append(f"PostgreSQL was not measured: {why}")
    plan = cases(profile, backends, workloads)
    repetitions = args.reps or profile.repetitions
    command = shlex.join(["python", "bench/w_store.py", *(sys.argv[1:] if argv is None else argv)])
    stores = Stores(args.pg_url)
    try:
        source = pin_source(args.at_commit, stores.root) if args.at_commit else working_tree()
        if source.get("dirty"):
            notes.append(
                "gnomon was measured from a working tree with uncommitted changes in src/."
            )
        started = time.time()
        records = run_all(stores, plan, contestants, repetitions)
    finally:
        stores.close()
    from _report import machine

    raw = {
        "command": command,
        "gnomon_source": source,
        "profile": profile.name,
        "sizes": asdict(profile),
        "repetitions": repetitions,
        "machine": machine(),
        "postgres": _postgres_version(args.pg_url) if "postgres" in backends else None,
        "started": started,
        "finished": time.time(),
        "notes": notes,
        "cases": [
            {
                "key": c.key,
                "title": c.title,
                "backend": c.backend,
                "prepared": c.prepare,
                "params": c.params,
            }
            for c in plan
        ],
        "records": records,
    }
    output = args.output or (BENCH_DIR if profile.name == "full" else None)
    if output is None:
        print(render_section(raw))
    else:
        write_into(output, raw)
        print(f"wrote the stores results into {output}", file=sys.stderr)


def _postgres_version(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except Exception:
        return None
    return None if row is None else str(row[0])


if __name__ == "__main__":
    main()
