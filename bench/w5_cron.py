"""W5 cron math: µs per ``next_after`` for gnomon, cronsim and croniter, side by side.

Each engine walks the same chains of fire times: from each of 16 start instants spread
over 2026 (DST days included), 20 successive next fires, in UTC and in America/New_York.
cronsim and croniter are given their cheapest use, one iterator per start (so parsing is
paid once per 20 fires); gnomon's rule is built once, as a scheduler holds it. Every
figure is the median of several repetitions.

:func:`run` measures warm: a warm-up pass first, so gnomon's zone offsets are cached.
:func:`run_cold` measures every chain from a cold cache: before each chain gnomon gets a
rule built afresh (outside the timer, as a scheduler builds it once) and forgets every
zone's offsets (``forget_offsets``: what it read of the zone's TZif data or probed, and
the last fire time it returned), so the chain pays for reading or probing them again;
there is no warm-up pass. With ``construct=True`` gnomon's rule is built inside the
timer too, as cronsim and croniter parse inside theirs. :func:`construction` measures
building a rule alone.

Run standalone (``.venv/bin/python bench/w5_cron.py [--cold [--construct] |
--construction]``) or through ``bench/run.py``, which imports :func:`run` and
:func:`run_cold`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from croniter import croniter
from cronsim import CronSim

from gnomon._rule_zone import forget_offsets
from gnomon._rules import cron

REPETITIONS = 5
CHAIN = 20
ZONES: tuple[tzinfo, ...] = (UTC, ZoneInfo("America/New_York"))
STARTS = tuple(datetime(2026, 1, 3, 7, 11) + timedelta(days=22.7 * i) for i in range(16))

# (gnomon and cronsim expression, croniter's spelling, or None where it has no equivalent)
EXPRESSIONS: tuple[tuple[str, str | None], ...] = (
    ("* * * * *", "* * * * *"),
    ("*/5 * * * *", "*/5 * * * *"),
    ("0 * * * *", "0 * * * *"),
    ("*/15 9-17 * * *", "*/15 9-17 * * *"),
    ("23 0-20/2 * * *", "23 0-20/2 * * *"),
    ("0 */2 * * *", "0 */2 * * *"),
    ("30 2 * * *", "30 2 * * *"),
    ("0 9 * * 1-5", "0 9 * * 1-5"),
    ("15,45 8-18 * * mon-fri", "15,45 8-18 * * mon-fri"),
    ("0 22 * * 1-5", "0 22 * * 1-5"),
    ("5 4 * * sun", "5 4 * * sun"),
    ("0 0 1 * *", "0 0 1 * *"),
    ("0 0 L * *", "0 0 L * *"),
    ("0 0 LW * *", None),
    ("0 12 * * 5L", "0 12 * * L5"),
    ("0 9 * * mon#2", "0 9 * * mon#2"),
    ("0 0 13 * 5", "0 0 13 * 5"),
    ("0 0 1-7 * 1", "0 0 1-7 * 1"),
    ("0 0 1 1 *", "0 0 1 1 *"),
    ("0 0 29 2 *", "0 0 29 2 *"),
)


def _gnomon_chain(expr: str) -> Callable[[datetime], None]:
    rule = cron(expr)

    def chain(start: datetime) -> None:
        moment: datetime | None = start
        for _ in range(CHAIN):
            assert moment is not None
            moment = rule.next_after(moment)

    return chain


def _cronsim_chain(expr: str) -> Callable[[datetime], None]:
    def chain(start: datetime) -> None:
        iterator = CronSim(expr, start)
        for _ in range(CHAIN):
            next(iterator)

    return chain


def _croniter_chain(expr: str) -> Callable[[datetime], None]:
    def chain(start: datetime) -> None:
        iterator = croniter(expr, start)
        for _ in range(CHAIN):
            iterator.get_next(datetime)

    return chain


def _us_per_next(chains: dict[str, Callable[[datetime], None]], zone: tzinfo) -> dict[str, float]:
    """Median µs per next for each engine; repetitions interleave the engines so that a
    burst of load on the machine hits all of them alike."""
    starts = [start.replace(tzinfo=zone) for start in STARTS]
    timings: dict[str, list[float]] = {name: [] for name in chains}
    for chain in chains.values():  # warm-up: imports, caches, the zone's offsets
        for start in starts:
            chain(start)
    for _ in range(REPETITIONS):
        for name, chain in chains.items():
            began = time.perf_counter()
            for start in starts:
                chain(start)
            timings[name].append((time.perf_counter() - began) / (len(starts) * CHAIN))
    return {name: statistics.median(found) * 1e6 for name, found in timings.items()}


# A cold chain: ``prepare(start)`` runs untimed and returns the timed part.
ColdChain = Callable[[datetime], Callable[[], None]]


def _gnomon_cold(expr: str, *, construct: bool = False) -> ColdChain:
    def prepare(start: datetime) -> Callable[[], None]:
        built = None if construct else cron(expr)
        forget_offsets()

        def chain() -> None:
            rule = cron(expr) if built is None else built
            moment: datetime | None = start
            for _ in range(CHAIN):
                assert moment is not None
                moment = rule.next_after(moment)

        return chain

    return prepare


def _peer_cold(chain: Callable[[datetime], None]) -> ColdChain:
    """A peer keeps no cache between iterators: its chain as it is, parsing included."""
    return lambda start: lambda: chain(start)


def _us_per_next_cold(chains: dict[str, ColdChain], zone: tzinfo) -> dict[str, float]:
    """Median µs per next for each engine, every chain from a cold cache."""
    starts = [start.replace(tzinfo=zone) for start in STARTS]
    timings: dict[str, list[float]] = {name: [] for name in chains}
    for _ in range(REPETITIONS):
        for name, prepare in chains.items():
            spent = 0.0
            for start in starts:
                chain = prepare(start)
                began = time.perf_counter()
                chain()
                spent += time.perf_counter() - began
            timings[name].append(spent / (len(starts) * CHAIN))
    return {name: statistics.median(found) * 1e6 for name, found in timings.items()}


def _row(expr: str, croniter_expr: str | None, zone: tzinfo) -> dict[str, object]:
    chains = {"gnomon": _gnomon_chain(expr), "cronsim": _cronsim_chain(expr)}
    if croniter_expr is not None:
        chains["croniter"] = _croniter_chain(croniter_expr)
    return _figures(expr, zone, _us_per_next(chains, zone))


def _cold_row(
    expr: str, croniter_expr: str | None, zone: tzinfo, *, construct: bool
) -> dict[str, object]:
    chains = {
        "gnomon": _gnomon_cold(expr, construct=construct),
        "cronsim": _peer_cold(_cronsim_chain(expr)),
    }
    if croniter_expr is not None:
        chains["croniter"] = _peer_cold(_croniter_chain(croniter_expr))
    return _figures(expr, zone, _us_per_next_cold(chains, zone))


def _figures(expr: str, zone: tzinfo, us: dict[str, float]) -> dict[str, object]:
    croniter_us = us.get("croniter")
    return {
        "expression": expr,
        "zone": str(zone),
        "gnomon µs": round(us["gnomon"], 2),
        "cronsim µs": round(us["cronsim"], 2),
        "croniter µs": None if croniter_us is None else round(croniter_us, 2),
        "cronsim / ours": round(us["cronsim"] / us["gnomon"], 1),
        "croniter / ours": None if croniter_us is None else round(croniter_us / us["gnomon"], 1),
    }


def run() -> list[dict[str, object]]:
    """One row per (expression, zone): µs per next for each engine, and the ratios."""
    return [_row(expr, other, zone) for zone in ZONES for expr, other in EXPRESSIONS]


def run_cold(*, construct: bool = False) -> list[dict[str, object]]:
    """As :func:`run`, every chain from a cold cache; with ``construct``, gnomon's rule
    is built inside the timer."""
    return [
        _cold_row(expr, other, zone, construct=construct)
        for zone in ZONES
        for expr, other in EXPRESSIONS
    ]


def construction() -> list[dict[str, object]]:
    """µs to build one rule: gnomon's ``cron(expr)`` against ``CronSim(expr, start)``
    (which parses the expression) and ``croniter(expr, start)``."""
    start = STARTS[0].replace(tzinfo=UTC)
    builders: dict[str, Callable[[str, str | None], object]] = {
        "gnomon": lambda expr, _: cron(expr),
        "cronsim": lambda expr, _: CronSim(expr, start),
        "croniter": lambda _, other: None if other is None else croniter(other, start),
    }
    rows: list[dict[str, object]] = []
    for expr, other in EXPRESSIONS:
        row: dict[str, object] = {"expression": expr}
        for name, build in builders.items():
            skipped = name == "croniter" and other is None
            row[f"{name} µs"] = None if skipped else round(_us_per_call(build, expr, other), 1)
        rows.append(row)
    return rows


def _us_per_call(
    build: Callable[[str, str | None], object], expr: str, other: str | None, count: int = 200
) -> float:
    timings = []
    for _ in range(REPETITIONS):
        began = time.perf_counter()
        for _ in range(count):
            build(expr, other)
        timings.append((time.perf_counter() - began) / count)
    return statistics.median(timings) * 1e6


def _median_of(rows: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(v) for row in rows if isinstance(v := row[key], float))


def main() -> None:
    arguments = sys.argv[1:]
    if "--construction" in arguments:
        rows = construction()
    elif "--cold" in arguments or "--construct" in arguments:
        rows = run_cold(construct="--construct" in arguments)
    else:
        rows = run()
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join("n/a" if row[c] is None else str(row[c]) for c in columns))
    print()
    for key in columns[2:] if "zone" in columns else columns[1:]:
        print(f"median {key}: {_median_of(rows, key):.2f}")


if __name__ == "__main__":
    main()
