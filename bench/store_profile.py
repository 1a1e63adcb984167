"""Profile one window of a store workload with py-spy and print where its time goes.

    python bench/store_profile.py add --backend sqlite --jobs 100000
    python bench/store_profile.py load --backend postgres --jobs 100000
    python bench/store_profile.py idle --backend sqlite --jobs 10000 --seconds 20
    python bench/store_profile.py memory --backend sqlite --jobs 100000

The store is prepared first (as ``w_store.py`` does), then this process starts a
gnomon ``Scheduler`` on it, attaches ``py-spy record`` to itself (every thread, idle
samples left out, so for ``idle`` the samples are CPU) for the window only — the adds,
the start, or the idle seconds — and prints the functions with the largest inclusive
and self shares of the samples, by thread. ``memory`` instead groups what
``tracemalloc`` saw a start keep by the line that allocated it. ``--raw`` keeps py-spy's
folded stacks (``flamegraph.pl`` or speedscope read them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import store_gnomon  # noqa: E402
from w_store import DEFAULT_PG_URL, drop_schema  # noqa: E402


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        sys.exit("py-spy is missing: pip install py-spy (the bench extra has it)")
    return found


class Spy:
    """py-spy recording this very process until stopped."""

    def __init__(self, out: Path, rate: int) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [py_spy(), "record", "--pid", str(os.getpid()), "--threads", "--format", "raw",
             "--rate", str(rate), "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)  # let it attach

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=60)
        if not self.out.exists():
            sys.exit(f"py-spy wrote nothing: {err.strip()}")


def report(raw: Path, top: int) -> None:
    """Inclusive and self shares of the samples, per function, over every thread."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], [f for f in frames[1:] if f]
        total += count
        threads[thread] += count
        names = [_function(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
    if not total:
        print("no samples (nothing ran on a CPU in the window)")
        return
    print(f"{total} samples")
    print("\nby thread:")
    for name, count in threads.most_common():
        print(f"  {count / total:6.1%}  {name}")
    print(f"\ninclusive (top {top}):")
    for name, count in inclusive.most_common(top):
        print(f"  {count / total:6.1%}  {name}")
    print(f"\nself (top {top}):")
    for name, count in own.most_common(top):
        print(f"  {count / total:6.1%}  {name}")


def _function(frame: str) -> str:
    """``name (path:line)`` without the line, so that one function is one entry."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def store_spec(backend: str, root: Path, pg_url: str) -> dict[str, str]:
    if backend == "sqlite":
        return {"backend": "sqlite", "path": str(root / "jobs.db")}
    return {"backend": "postgres", "url": pg_url, "schema": f"bench_prof_{uuid.uuid4().hex[:8]}"}


def prepare(spec: dict[str, str], jobs: int) -> None:
    request = {
        "contestant": "gnomon",
        "workload": "prepare",
        "store": spec,
        "params": {"jobs": jobs},
    }
    subprocess.run(
        [sys.executable, str(BENCH_DIR / "store_worker.py"), json.dumps(request)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("window", choices=("add", "load", "idle", "memory"))
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--adds", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep py-spy's folded stacks here")
    parser.add_argument("--pg-url", default=os.environ.get("GNOMON_BENCH_PG", DEFAULT_PG_URL))
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="gnomon-profile-"))
    spec = store_spec(args.backend, root, args.pg_url)
    raw = args.raw or root / "profile.txt"
    try:
        prepare(spec, args.jobs)
        if args.window == "memory":
            memory(spec, args.jobs, args.top)
            return
        if args.window == "load":
            spy = Spy(raw, args.rate)
            began = time.perf_counter()
            s = store_gnomon.started(spec)
            print(f"start over {args.jobs:,} stored jobs: {time.perf_counter() - began:.2f} s")
            spy.stop()
        else:
            s = store_gnomon.started(spec)
            spy = Spy(raw, args.rate)
            if args.window == "add":
                base = datetime.now(UTC) + timedelta(hours=1)
                began = time.perf_counter()
                for i in range(args.adds):
                    s.add_job(
                        "t", store_gnomon.HOURLY, args=[i], start_at=base + timedelta(seconds=i)
                    )
                took = time.perf_counter() - began
                print(
                    f"{args.adds} adds over {args.jobs:,} stored: "
                    f"{took / args.adds * 1e6:.0f} µs each"
                )
            else:
                cpu = time.process_time()
                time.sleep(args.seconds)
                print(f"idle {args.seconds:g} s: {time.process_time() - cpu:.4f} s of CPU")
            spy.stop()
        store_gnomon._stop(s)
        report(raw, args.top)
    finally:
        if spec["backend"] == "postgres":
            drop_schema(spec["url"], spec["schema"])
        shutil.rmtree(root, ignore_errors=True)


def memory(spec: dict[str, str], jobs: int, top: int) -> None:
    """What a start keeps, by the line that allocated it, in bytes per stored job."""
    store_gnomon.open_store(spec)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    s = store_gnomon.started(spec)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    kept = sum(stat.size_diff for stat in stats)
    print(f"kept {kept / jobs:,.0f} B per stored job over {jobs:,}")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("src/")[-1].split("lib/python3.11/")[-1]
        print(
            f"  {stat.size_diff / jobs:7,.0f} B/job  {stat.count_diff / jobs:5.2f} blocks/job  "
            f"{where}:{frame.lineno}"
        )
    store_gnomon._stop(s)


if __name__ == "__main__":
    main()
