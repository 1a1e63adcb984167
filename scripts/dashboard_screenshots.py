"""Refresh the dashboard's screenshots in docs/images/ (used by docs/dashboard.md and the
README).

    .venv/bin/python scripts/dashboard_screenshots.py

Builds a small scheduler with a few realistic jobs (one failing, one paused, one slow),
serves its dashboard on a loopback port, and photographs its pages with Debian's Chromium
(``apt-get install chromium``), driven by Playwright.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

import gnomon
from gnomon._cli._web import WebServer
from gnomon.testing import MemoryStore
from gnomon.web import dashboard

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
release = threading.Event()


def sync_orders() -> None:
    pass


def send_invoices(ctx: gnomon.JobContext) -> None:
    if ctx.attempt == 1:
        raise ConnectionError("smtp.example.com:587 refused the connection")


def rebuild_search_index() -> None:
    release.wait(30)


def rotate_logs() -> None:
    pass


def build() -> tuple[gnomon.Scheduler, dict[str, gnomon.Job]]:
    store = MemoryStore()
    scheduler = gnomon.Scheduler(store=store, node="web-1:4127", timezone="Europe/Riga")
    for func in (sync_orders, send_invoices, rebuild_search_index, rotate_logs):
        scheduler.register(func, name=func.__name__.replace("_", "-"))
    scheduler.start()
    jobs = {
        "sync": scheduler.add_job(
            "sync-orders", gnomon.every("15m"), name="sync-orders", tags=["shop"]
        ),
        "invoices": scheduler.add_job(
            "send-invoices",
            gnomon.cron("0 8 * * mon-fri"),
            name="send-invoices",
            tags=["billing", "email"],
        ),
        "search": scheduler.add_job(
            "rebuild-search-index", gnomon.daily("03:30"), name="rebuild-search-index"
        ),
        "logs": scheduler.add_job(
            "rotate-logs", gnomon.cron("0 0 * * sun"), name="rotate-logs", tags=["ops"]
        ),
    }
    found = {name: job for name, job in jobs.items() if job is not None}
    for _ in range(6):
        found["sync"].run_now(wait=True)
    found["invoices"].run_now(wait=True)
    found["invoices"].run_now(actor="alice", wait=True)
    found["logs"].run_now(wait=True)
    found["logs"].pause("disk migration until Friday (paused by alice)")
    found["search"].run_now()
    return scheduler, found


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    scheduler, jobs = build()
    auth = lambda request: "alice"  # noqa: E731 - a one-line demo auth
    server = WebServer(dashboard(scheduler, read_only=False, auth=auth), ("127.0.0.1", 0))
    url = server.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 640})
            page.goto(url)
            page.screenshot(path=IMAGES / "dashboard-jobs.png")
            # Tracebacks stay folded: they name the files of the machine that made them.
            page.goto(f"{url}jobs/{jobs['invoices'].id}")
            page.screenshot(path=IMAGES / "dashboard-job.png", full_page=True)
            page.goto(f"{url}jobs/{jobs['sync'].id}")
            page.locator("#history tr.rec a").first.click()
            page.set_viewport_size({"width": 1280, "height": 560})
            page.screenshot(path=IMAGES / "dashboard-occurrence.png")
            page.goto(f"{url}cluster")
            page.set_viewport_size({"width": 1280, "height": 320})
            page.screenshot(path=IMAGES / "dashboard-cluster.png")
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.goto(url)
            phone.screenshot(path=IMAGES / "dashboard-phone.png")
            browser.close()
    finally:
        release.set()
        server.close()
        scheduler.shutdown()
    for image in sorted(IMAGES.glob("dashboard-*.png")):
        sys.stdout.write(f"wrote {image.relative_to(IMAGES.parents[1])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
