"""Helpers for the dashboard's tests: an HTTP test client, a real server, a browser."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import gnomon

with warnings.catch_warnings():
    # Starlette's test client warns that it will move off httpx; that is its business.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T = TypeVar("T")

HOST = "testserver"
SAME_ORIGIN = {"origin": f"http://{HOST}"}
"""What a browser sends with a POST from the dashboard's own page."""
WAIT = 20.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def client(app: Any) -> TestClient:
    return TestClient(app, base_url=f"http://{HOST}", follow_redirects=False)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def alice(request: Any) -> str:
    """An ``auth`` that lets everyone in as alice."""
    return "alice"


def serve(app: Any) -> Any:
    """``app`` under uvicorn on a free loopback port, on its own thread; ``.url``, ``.close()``."""
    from gnomon._cli._web import WebServer

    server = WebServer(app, ("127.0.0.1", 0))
    server.start()
    return server


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless (Playwright never downloads a browser here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def add(scheduler: gnomon.Scheduler, func: Any, rule: gnomon.Rule, **options: Any) -> gnomon.Job:
    """``scheduler.add_job``, which returns a job here (``None`` only for a tombstone)."""
    job: gnomon.Job | None = scheduler.add_job(func, rule, **options)
    assert job is not None
    return job


POSTGRES_URL = os.environ.get("GNOMON_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """The PostgreSQL URL; skip when none answers, unless services are required (then fail)."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        problem = f"no PostgreSQL answers at {POSTGRES_URL} ({type(error).__name__})"
        if os.environ.get("GNOMON_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{problem}, and GNOMON_REQUIRE_SERVICES=1")
        pytest.skip(f"{problem}; set GNOMON_POSTGRES_URL to run this test")
    return POSTGRES_URL


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
