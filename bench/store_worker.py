"""One store measurement in a fresh interpreter: ``python store_worker.py '<json request>'``.

The request names a contestant (``gnomon`` or ``apscheduler3``), a workload, the store
(``{"backend": "sqlite", "path": ...}`` or ``{"backend": "postgres", "url": ...,
"schema": ...}``) and the workload's parameters; the last line printed is the JSON
result. Run by ``w_store.py``; also handy on its own to profile one case, e.g.::

    python bench/store_worker.py '{"contestant": "gnomon", "workload": "prepare",
        "store": {"backend": "sqlite", "path": "/tmp/s.db"}, "params": {"jobs": 100000}}'
    py-spy record -o add.svg -- python bench/store_worker.py '{"contestant": "gnomon",
        "workload": "add", "store": {"backend": "sqlite", "path": "/tmp/s.db"},
        "params": {"jobs": 100000, "adds": 500, "warmup": 10}}'
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

SIDES = {"gnomon": "store_gnomon", "apscheduler3": "store_aps3"}


def _measure(side: Any, request: dict[str, Any]) -> dict[str, Any]:
    store, p = request["store"], request["params"]
    observer = [
        sys.executable,
        os.path.abspath(__file__),
        json.dumps({**request, "workload": "observe"}),
    ]
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "prepare": lambda: side.prepare(store, p["jobs"]),
        "add": lambda: side.add_cost(store, p["jobs"], p["adds"], p["warmup"]),
        "start": lambda: side.start(store, p["jobs"], p["lead"]),
        "start_memory": lambda: side.start_memory(store, p["jobs"]),
        "propagate": lambda: side.propagation(store, p["changes"], p["max_pause"], observer),
        "observe": lambda: side.observer(store),
        "idle": lambda: side.idle(store, p["seconds"], p["settle"]),
    }
    return measures[request["workload"]]()


def main(request_text: str) -> None:
    """Measure what the request asks and print the result as the last line."""
    request = json.loads(request_text)
    # Both libraries log late and skipped runs; writing them out would be measured too.
    logging.disable(logging.WARNING)
    side = importlib.import_module(SIDES[request["contestant"]])
    load_before = os.getloadavg()
    metrics = _measure(side, request)
    result = {
        "metrics": metrics,
        "versions": {"python": platform.python_version(), **side.versions()},
        "loadavg": [load_before[0], os.getloadavg()[0]],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
