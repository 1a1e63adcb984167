"""The public namespace is curated: ``__all__`` is sorted and matches what is exported."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gnomon
import gnomon.testing
import gnomon.web


@pytest.mark.parametrize("module", [gnomon, gnomon.testing, gnomon.web])
def test_all_is_sorted_and_lists_exactly_the_public_names(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    public = {name for name in vars(module) if not name.startswith("_")}
    public -= {"annotations"}
    submodules = {name for name in public if type(getattr(module, name)).__name__ == "module"}
    assert exported == sorted(exported)
    assert set(exported) == public - submodules


def test_contract_names_are_exported() -> None:
    contract = {
        "Scheduler", "AsyncScheduler", "Job", "JobContext", "RunEvent", "Outcome",
        "LimitMode", "Recovery", "Monitor", "Locker", "Lease", "Elector", "Weekday",
        "cron", "every", "every_random", "daily", "weekly", "monthly", "once",
        "GnomonError", "InvalidRule", "InvalidJob", "JobNotFound", "SchedulerShutDown",
        "ShutdownTimedOut", "LockHeld", "LeaseLost",
    }  # fmt: skip
    assert contract <= set(gnomon.__all__)


def test_importing_gnomon_imports_no_driver() -> None:
    code = (
        "import sys, gnomon, gnomon.testing; "
        "print(sorted(m for m in ('redis', 'psycopg', 'psycopg_pool', 'prometheus_client', "
        "'starlette', 'jinja2', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_error_hierarchy_uses_builtin_bases() -> None:
    assert issubclass(gnomon.InvalidRule, ValueError)
    assert issubclass(gnomon.InvalidJob, ValueError)
    assert issubclass(gnomon.InvalidJobArguments, TypeError)
    assert issubclass(gnomon.InvalidJobArguments, gnomon.InvalidJob)
    assert issubclass(gnomon.JobNotFound, LookupError)
    assert issubclass(gnomon.SchedulerShutDown, RuntimeError)
    assert issubclass(gnomon.ShutdownTimedOut, TimeoutError)
    for name in gnomon.__all__:
        value = getattr(gnomon, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, gnomon.GnomonError), name
