"""The dashboard under load: server time of its pages, and what an open page costs.

    python bench/w_web.py                 # all three measurements (~3 min)
    python bench/w_web.py --only jobs     # or history, idle
    python bench/w_web.py --quick         # smaller sizes, a 20 s idle window

W1 jobs page: 10,000 jobs, paginated (50 a page), over a scheduler on a SQLite store and
over the bare store (``gnomon web``); first page, a deep page, a text filter, a tag
filter. W2 history page: one job with 1,000,000 records in a SQLite store (rows written
straight into its table, as the store writes them), paged by cursor as the dashboard
pages it: the first page; page 20, reached by following its "older" links from the
first; the middle page and the last, their URLs carrying the cursor the page before's
"older" link would (each checked to show the records it should); the failures filter's
first and middle pages. W3 idle: a scheduler with 100 jobs, its dashboard open in
headless Chromium (polling every 5 s), the process's CPU time over the window.

Server time is the ASGI app's own time for one request (in process, no network), the
median of the repetitions after one warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode
from zoneinfo import ZoneInfo

import httpx

import gnomon
from gnomon._stores import sqlite as sqlite_store
from gnomon._stores.contract import RunRecord
from gnomon.sqlite import SQLiteStore
from gnomon.web import _listing, dashboard
from gnomon.web._data import StoreSource

REPS = 15
OLDER_LINK = re.compile(r'<a href="([^"]*)" rel="next">')
SHOWN_KEY = re.compile(r'<td data-label="Scheduled"><a href="[^"]*/occurrence\?key=([^"]*)"')
"""The key of each record a history page lists (its link to the occurrence)."""


def task() -> None:
    pass


def timed(app: Any, paths: list[str], reps: int = REPS) -> dict[str, float]:
    """Median milliseconds of each GET, the app called in process."""

    async def measure() -> dict[str, float]:
        transport = httpx.ASGITransport(app=app)
        results = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            for path in paths:
                answer = await http.get(path)
                assert answer.status_code == 200, (path, answer.status_code)
                samples = []
                for _ in range(reps):
                    started = time.perf_counter()
                    await http.get(path)
                    samples.append((time.perf_counter() - started) * 1000)
                results[path] = statistics.median(samples)
        return results

    return asyncio.run(measure())


def jobs_page(root: Path, count: int) -> None:
    path = root / "jobs.db"
    store = SQLiteStore(path)
    scheduler = gnomon.Scheduler(store=store, timezone="UTC")
    scheduler.register(task, name="task")
    started = time.perf_counter()
    scheduler.start()
    for index in range(count):
        scheduler.add_job(
            "task", gnomon.every("1h"), name=f"job-{index:05d}", tags=[f"team-{index % 20}"]
        )
    print(f"W1: {count} jobs stored in {time.perf_counter() - started:.1f}s")
    paths = ["/", f"/?page={count // 100}", "/?q=job-0999", "/?tag=team-7"]
    for label, target in (("scheduler", scheduler), ("store", store)):
        results = timed(dashboard(target), paths)
        for page, ms in results.items():
            print(f"W1 jobs page over {label:9} {page:18} {ms:7.1f} ms")
    # The bare store's rows are kept until its change counter moves: time a fresh read too.
    samples = []
    for _ in range(5):
        source = StoreSource(store, ZoneInfo("UTC"))
        started = time.perf_counter()
        _listing.jobs_page(source, _listing.JobFilter("", "", ""), 1)
        samples.append((time.perf_counter() - started) * 1000)
    print(f"W1 jobs page over store     / after a change   {statistics.median(samples):7.1f} ms")
    scheduler.shutdown()
    store.close()


def history_page(root: Path, records: int) -> None:
    path = root / "history.db"
    store = SQLiteStore(path)
    scheduler = gnomon.Scheduler(store=store, timezone="UTC")
    scheduler.register(task, name="task")
    scheduler.start()
    job = scheduler.add_job("task", gnomon.every("1m"), name="busy")
    assert job is not None
    scheduler.shutdown()
    started = time.perf_counter()
    _fill(path, job.id, records)
    print(f"W2: {records} records written in {time.perf_counter() - started:.1f}s")
    app, base = dashboard(store), f"/jobs/{job.id}"
    page_20 = _follow_older(app, base, 20)
    [twentieth] = _keys_from(store.path, job.id, "", 19 * _listing.RECORDS_PER_PAGE, 1)
    assert _first_shown(app, page_20) == twentieth, page_20
    pages = {"first page": base, "page 20, by older links": page_20}
    for outcome, count in (("", records), ("failed", records // 20)):
        last = -(-count // _listing.RECORDS_PER_PAGE)
        for page in [last // 2 + 1] if outcome else [last // 2 + 1, last]:
            label = f"{'failures, ' if outcome else ''}page {page:,} of {last:,}"
            pages[label] = _page_by_cursor(app, store, job.id, outcome, page)
    pages["failures, first page"] = f"{base}?outcome=failed"
    results = timed(app, list(pages.values()))
    for label, url in pages.items():
        print(f"W2 history page over store {label:34} {results[url]:7.1f} ms")
    plan = sqlite3.connect(path).execute(
        "EXPLAIN QUERY PLAN SELECT * FROM gnomon_occurrences WHERE job_id = ? "
        "AND scheduled_ts <= ? AND (scheduled_ts < ? OR occurrence_key < ?) "
        "ORDER BY scheduled_ts DESC, occurrence_key DESC LIMIT 51",
        (job.id.bytes, 0.0, 0.0, ""),
    )
    print("W2 query plan:", "; ".join(row[-1] for row in plan))
    store.close()


def _get(app: Any, url: str) -> str:
    async def fetch() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            answer = await http.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
        return answer.text

    return asyncio.run(fetch())


def _follow_older(app: Any, base: str, page: int) -> str:
    """The URL of history page ``page``, reached as a reader reaches it: from the first
    page, by each page's "older" link."""
    url = base
    for _ in range(page - 1):
        found = OLDER_LINK.search(_get(app, url))
        assert found is not None, f"no older link on {url}"
        url = base + html.unescape(found.group(1))
    return url


def _page_by_cursor(
    app: Any, store: SQLiteStore, job_id: uuid.UUID, outcome: str, page: int
) -> str:
    """The URL of history page ``page`` (of the records ``outcome`` filters), with the
    cursor the page before's "older" link carries: its last record's. Checked: the page
    shows the record that follows that one."""
    size = _listing.RECORDS_PER_PAGE
    offset = (page - 1) * size - 1
    cursor_key, first_key = _keys_from(store.path, job_id, outcome, offset, 2)
    last_before = store.occurrence(cursor_key)
    assert last_before is not None, cursor_key
    query = {"outcome": outcome} if outcome else {}
    query.update(page=str(page), before=_listing.format_cursor(last_before))
    url = f"/jobs/{job_id}?{urlencode(query)}"
    assert _first_shown(app, url) == first_key, url
    return url


def _first_shown(app: Any, url: str) -> str:
    """The key of the first record the history page at ``url`` lists."""
    shown = SHOWN_KEY.search(_get(app, url))
    assert shown is not None, f"no record on {url}"
    return unquote(html.unescape(shown.group(1)))


def _keys_from(path: str, job_id: uuid.UUID, outcome: str, offset: int, count: int) -> list[str]:
    """The keys of ``count`` records from ``offset`` on, in history order (setup only:
    an offset walks every record before it)."""
    wanted = _listing.wanted_outcomes(outcome) or set()
    values = [each.value for each in wanted if each is not None]
    where = f" AND outcome IN ({', '.join('?' * len(values))})" if values else ""
    connection = sqlite3.connect(path)
    rows = connection.execute(
        "SELECT occurrence_key FROM gnomon_occurrences WHERE job_id = ?"  # noqa: S608
        f"{where} ORDER BY scheduled_ts DESC, occurrence_key DESC LIMIT ? OFFSET ?",
        (job_id.bytes, *values, count, offset),
    ).fetchall()
    connection.close()
    return [row[0] for row in rows]


def _fill(path: Path, job_id: uuid.UUID, count: int) -> None:
    connection = sqlite3.connect(path)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    outcomes = [gnomon.Outcome.SUCCESS] * 19 + [gnomon.Outcome.FAILED]
    batch = []
    with connection:
        for index in range(count):
            at = start + timedelta(minutes=index)
            outcome = outcomes[index % 20]
            record = RunRecord(
                occurrence_key=f"busy@{at.isoformat()}",
                job_id=job_id,
                job_name="busy",
                scheduled_at=at,
                started_at=at,
                finished_at=at + timedelta(seconds=2),
                outcome=outcome,
                node="bench",
                fencing_token=index + 1,
                error="RuntimeError: boom" if outcome is gnomon.Outcome.FAILED else None,
            )
            batch.append(sqlite_store._record_params(record))
            if len(batch) == 50_000:
                connection.executemany(sqlite_store._INSERT_RECORD, batch)
                batch.clear()
        connection.executemany(sqlite_store._INSERT_RECORD, batch)
    connection.close()


def idle(seconds: float) -> None:
    from playwright.sync_api import sync_playwright

    from gnomon._cli._web import WebServer

    scheduler = gnomon.Scheduler(timezone="UTC")
    for index in range(100):
        scheduler.add_job(task, gnomon.every("1h"), name=f"job-{index:03d}")
    scheduler.start()
    server = WebServer(dashboard(scheduler), ("127.0.0.1", 0))
    url = server.start()
    served = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = browser.new_page()
        page.on("request", lambda request: served.append(request.url))
        page.goto(url)
        page.wait_for_timeout(2000)
        served.clear()
        cpu = _cpu()
        wall = time.monotonic()
        page.wait_for_timeout(seconds * 1000)
        used = _cpu() - cpu
        elapsed = time.monotonic() - wall
        browser.close()
    server.close()
    scheduler.shutdown()
    print(
        f"W3 idle: {used / elapsed * 100:.2f}% of a core over {elapsed:.0f}s "
        f"({len(served)} polls of the jobs page of 100 jobs)"
    )


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("jobs", "history", "idle"))
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args(argv)
    runs: dict[str, Callable[[Path], None]] = {
        "jobs": lambda root: jobs_page(root, 1000 if arguments.quick else 10_000),
        "history": lambda root: history_page(root, 100_000 if arguments.quick else 1_000_000),
        "idle": lambda root: idle(20 if arguments.quick else 60),
    }
    with tempfile.TemporaryDirectory() as folder:
        for name, run in runs.items():
            if arguments.only in (None, name):
                run(Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
