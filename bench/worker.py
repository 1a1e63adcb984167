"""One measurement in a fresh interpreter: ``python worker.py '<json request>'``.

The request names a contestant, a workload and its parameters; the last line printed is
the JSON result. Run by ``run.py`` in each contestant's own environment.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from _harness import TimedSpec, cpu_seconds, sleep_until, summarise_timed

SIDES: dict[str, tuple[str, str]] = {
    "gnomon": ("side_gnomon", "thread"),
    "gnomon-async": ("side_gnomon", "async"),
    "apscheduler3": ("side_aps3", "thread"),
    "apscheduler4": ("side_aps4", "async"),
    "schedule": ("side_schedule", "loop"),
}
"""Contestant name: (module in this directory, face it runs W2-W4 on)."""


def _measure_w5(side: Any, face: str, params: dict[str, Any]) -> dict[str, Any]:
    del side, face, params
    import w5_cron  # type: ignore[import-not-found,unused-ignore]

    rows: list[dict[str, object]] = w5_cron.run()
    return {"rows": rows}


def _measure_w5_cold() -> dict[str, Any]:
    import w5_cron  # type: ignore[import-not-found,unused-ignore]

    rows: list[dict[str, object]] = w5_cron.run_cold()
    return {"rows": rows}


def _measure(side: Any, face: str, workload: str, params: dict[str, Any]) -> dict[str, Any]:
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "w1": lambda: side.scale(params["n"], params["removals"]),
        "w1opt": lambda: side.scale_options(params["n"], params["removals"]),
        "w1mem": lambda: side.memory(params["n"]),
        "timed": lambda: _timed(side, face, params),
        "w5": lambda: _measure_w5(side, face, params),
        "w5cold": _measure_w5_cold,
        "w4floor": lambda: _sleeping_cpu(params["cpu_span"]),
    }
    return measures[workload]()


def _sleeping_cpu(span: float) -> dict[str, float]:
    """W4's floor: the CPU time this interpreter is counted while it only sleeps."""
    began = cpu_seconds()
    sleep_until(time.time() + span)
    return {"cpu_seconds": cpu_seconds() - began}


def _timed(side: Any, face: str, params: dict[str, Any]) -> dict[str, float]:
    spec = TimedSpec(**params)
    return summarise_timed(side.timed(spec, face), spec)


def main(request_text: str) -> None:
    """Measure what the request asks and print the result as the last line."""
    request = json.loads(request_text)
    # Every library logs skipped and late runs; writing them out would be measured too.
    logging.disable(logging.WARNING)
    module, face = SIDES[request["contestant"]]
    side = importlib.import_module(module)
    load_before = os.getloadavg()
    metrics = _measure(side, face, request["workload"], request["params"])
    result = {
        "metrics": metrics,
        "versions": {"python": platform.python_version(), **side.versions()},
        "loadavg": [load_before[0], os.getloadavg()[0]],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
