"""Python functions for examples/gnomon.toml (``call = "tasks:greet"``)."""

from __future__ import annotations

import gnomon


def greet(name: str) -> None:
    print(f"hello from {name}: the schedule is running", flush=True)


def report(ctx: gnomon.JobContext, *, pages: int) -> str:
    """A slow job that stops early when gnomon cancels it (timeout, removal or stop)."""
    for page in range(1, pages + 1):
        if ctx.cancelled.wait(1.0):
            return f"cancelled after {page - 1} of {pages} pages"
        print(f"report {ctx.occurrence_key}: page {page} of {pages}", flush=True)
    return f"{pages} pages"
