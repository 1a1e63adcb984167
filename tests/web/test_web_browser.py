"""The dashboard in a real browser: Debian's Chromium, driven by Playwright.

One browser serves the whole module; each test opens its own context (cookies, credentials)
and writes a screenshot to a temporary folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    HttpCredentials,
    Page,
    expect,
    sync_playwright,
)
from web_support import WAIT, add, launch, serve, wait_for

import gnomon
from gnomon._cli._web import TokenAuth
from gnomon.web import dashboard

TOKEN = "browser-test-token-0123456789"  # noqa: S105 - a test token
XSS = "<img src=x onerror=alert(1)>"
TOKEN_FILE = ("--web-token-file", "token.txt")
CREDENTIALS: HttpCredentials = {"username": "alice", "password": TOKEN}

expect.set_options(timeout=WAIT * 1000)


def tick() -> None:
    pass


def boom() -> None:
    raise ValueError("bad <b>input</b>")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


class Site:
    """A running scheduler with a few jobs, its dashboard served on a loopback port."""

    def __init__(self) -> None:
        self.scheduler = gnomon.Scheduler(timezone="Europe/Riga", node="browser-node")
        self.heartbeat = add(
            self.scheduler, tick, gnomon.every("1h"), name="heartbeat", tags=["core"]
        )
        self.broken = add(self.scheduler, boom, gnomon.every("1h"), name="broken")
        self.hostile = add(self.scheduler, boom, gnomon.every("1h"), name=XSS, tags=[XSS])
        self.scheduler.start()
        self.broken.run_now(wait=True)
        self.hostile.run_now(wait=True)
        app = dashboard(self.scheduler, read_only=False, auth=TokenAuth(TOKEN))
        self.server = serve(app)
        self.url: str = self.server.url

    def close(self) -> None:
        self.server.close()
        self.scheduler.shutdown()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    running = Site()
    yield running
    running.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        http_credentials=CREDENTIALS, viewport={"width": 1280, "height": 800}
    )
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda message: _console(message, problems))
    opened.on("pageerror", lambda error: problems.append(str(error)))
    yield opened
    context.close()
    # No script error and no Content-Security-Policy violation on any page a test opened.
    assert problems == []


def test_the_jobs_page_shows_a_jobs_next_run(site: Site, page: Page, shots: Path) -> None:
    page.goto(site.url)
    row = page.locator("tr", has=page.get_by_role("link", name="heartbeat", exact=True))
    next_run = site.heartbeat.next_run
    assert next_run is not None
    shown = row.locator('td[data-label="Next run"] time')
    expect(shown).to_have_attribute("datetime", _utc(next_run))
    expect(shown).to_contain_text(next_run.strftime("%Y-%m-%d %H:%M:%S"))
    expect(row.locator("td[data-label=Rule]")).to_have_text("every 1h")
    page.screenshot(path=shots / "jobs.png", full_page=True)


def test_next_runs_are_shown_in_the_zone_the_viewer_chooses_too(site: Site, page: Page) -> None:
    page.goto(site.url)
    row = page.locator("tr", has=page.get_by_role("link", name="heartbeat", exact=True))
    viewer = row.locator('td[data-label="Next run"] time .viewer')
    next_run = site.heartbeat.next_run
    assert next_run is not None
    page.select_option("#zone", "Asia/Tokyo")
    tokyo = next_run.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    expect(viewer).to_have_text(f"{tokyo} Asia/Tokyo")
    page.reload()
    expect(viewer).to_have_text(f"{tokyo} Asia/Tokyo")  # the choice is remembered
    page.select_option("#zone", "")
    expect(viewer).to_have_count(0)  # the scheduler's zone alone


def test_run_now_adds_the_history_row_without_reloading(
    site: Site, page: Page, shots: Path
) -> None:
    page.goto(f"{site.url}jobs/{site.heartbeat.id}")
    rows = page.locator("#history tr.rec")
    expect(rows).to_have_count(0)
    page.evaluate("window.stillTheSamePage = true")
    page.get_by_role("button", name="Run now").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("SUCCESS")
    expect(rows.first.locator('td[data-label="By"]')).to_have_text("alice")
    expect(page.locator("#notice")).to_have_text("Run started.")
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=shots / "run-now.png", full_page=True)


def test_a_failing_job_shows_its_escaped_traceback(site: Site, page: Page, shots: Path) -> None:
    page.goto(f"{site.url}jobs/{site.broken.id}")
    failure = page.locator("#history tr.more").first
    expect(failure.locator("p.error")).to_have_text("ValueError: bad <b>input</b>")
    failure.get_by_text("traceback", exact=True).click()
    traceback = failure.locator("pre.tb")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text('raise ValueError("bad <b>input</b>")')
    expect(traceback.locator("b")).to_have_count(0)
    page.screenshot(path=shots / "traceback.png", full_page=True)


def test_a_hostile_job_name_renders_as_text_and_runs_no_script(
    site: Site, page: Page, shots: Path
) -> None:
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    page.goto(site.url)
    name = page.locator("a.name").filter(has_text=XSS)
    expect(name).to_have_text(XSS)
    expect(page.locator("a.tag").filter(has_text=XSS)).to_have_text(XSS)
    assert page.locator("img").count() == 0
    name.click()
    expect(page.locator("h1.jobname")).to_have_text(XSS)
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert dialogs == []
    assert page.evaluate("typeof window.stillTheSamePage") == "undefined"
    page.screenshot(path=shots / "hostile-name.png", full_page=True)


def test_an_action_without_the_token_is_refused(site: Site, browser: Browser) -> None:
    context = browser.new_context()
    try:
        page = context.request.get(site.url)
        assert page.status == 401
        assert page.headers["www-authenticate"].startswith("Basic")
        anonymous = context.new_page()
        # A document of the dashboard's origin that needs no token: its stylesheet.
        anonymous.goto(f"{site.url}static/gnomon.css")
        status = anonymous.evaluate(
            "id => fetch(`/jobs/${id}/run`, {method: 'POST'}).then(r => r.status)",
            str(site.heartbeat.id),
        )
        assert status == 401
    finally:
        context.close()
    site.scheduler.wait_idle(WAIT)
    assert all(r.actor != "token" for r in site.scheduler.history(job=site.heartbeat))


def test_a_cross_origin_post_is_refused(site: Site, browser: Browser) -> None:
    before = len(site.scheduler.history(job=site.heartbeat))
    target = f"{site.url}jobs/{site.heartbeat.id}/run"
    attacker = _AttackerSite(target)
    # The victim's browser holds the dashboard's credentials.
    context = browser.new_context(http_credentials=CREDENTIALS)
    try:
        page = context.new_page()
        page.goto(attacker.url)
        with page.expect_response(target) as answer:
            page.get_by_role("button", name="Win a prize").click()
        assert answer.value.status == 403
        expect(page.locator("body")).to_contain_text("Refused")
    finally:
        context.close()
        attacker.close()
    site.scheduler.wait_idle(WAIT)
    assert len(site.scheduler.history(job=site.heartbeat)) == before


def test_pause_with_a_reason_shows_on_the_page_and_in_gnomon_status(
    browser: Browser, tmp_path: Path, shots: Path
) -> None:
    (tmp_path / "token.txt").write_text(TOKEN + "\n", encoding="utf-8")
    (tmp_path / "gnomon.toml").write_text(
        textwrap.dedent(
            """
            [scheduler]
            timezone = "UTC"

            [[jobs]]
            name = "nightly"
            cron = "0 3 * * *"
            command = "true"
            """
        ),
        encoding="utf-8",
    )
    log = tmp_path / "daemon.log"
    with log.open("w", encoding="utf-8") as output:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gnomon", "run", "--web", "127.0.0.1:0", *TOKEN_FILE],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_for(
            "the dashboard's address in the daemon's log",
            lambda: _address(log.read_text(encoding="utf-8")),
        )
        context = browser.new_context(http_credentials=CREDENTIALS)
        page = context.new_page()
        page.goto(url)
        row = page.locator("tr", has=page.get_by_role("link", name="nightly", exact=True))
        row.get_by_label("pause reason for nightly").fill("disk maintenance")
        row.get_by_role("button", name="Pause").click()
        expect(row.locator(".reason")).to_have_text("disk maintenance (paused by alice)")
        expect(row.get_by_role("button", name="Resume")).to_be_visible()
        page.screenshot(path=shots / "paused.png", full_page=True)
        row.get_by_role("link", name="nightly", exact=True).click()
        recorded = page.locator("#actions tbody tr")
        expect(recorded.locator('[data-label="Action"]')).to_have_text(["pause"])
        expect(recorded.locator('[data-label="By"]')).to_have_text(["alice"])
        context.close()
        status = subprocess.run(
            [sys.executable, "-m", "gnomon", "status"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        assert "nightly (paused: disk maintenance (paused by alice))" in status.stdout
    finally:
        daemon.terminate()
        daemon.wait(timeout=WAIT)
    assert daemon.returncode == 0, log.read_text(encoding="utf-8")


def test_mounted_under_a_path_in_a_fastapi_app_it_works_end_to_end(
    browser: Browser, shots: Path
) -> None:
    from fastapi import FastAPI

    scheduler = gnomon.Scheduler(timezone="UTC")
    job = add(scheduler, tick, gnomon.every("1h"), name="mounted-job")
    scheduler.start()
    api = FastAPI()

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    api.mount(
        "/ops/scheduler",
        dashboard(scheduler, read_only=False, auth=lambda request: "ops"),
    )
    server = serve(api)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}ops/scheduler/")
        brand = page.locator(".brand")
        expect(brand).to_have_css("font-weight", "700")  # the stylesheet loaded under the mount
        page.get_by_role("link", name="mounted-job", exact=True).click()
        expect(page).to_have_url(f"{server.url}ops/scheduler/jobs/{job.id}")
        page.get_by_role("button", name="Run now").click()
        rows = page.locator("#history tr.rec")
        expect(rows).to_have_count(1)
        expect(rows.first.locator('td[data-label="By"]')).to_have_text("ops")
        page.get_by_role("link", name="Cluster").click()
        expect(page).to_have_url(f"{server.url}ops/scheduler/cluster")
        page.screenshot(path=shots / "mounted.png", full_page=True)
    finally:
        context.close()
        server.close()
        scheduler.shutdown()


def test_on_a_phone_the_jobs_table_fits_the_screen(
    site: Site, browser: Browser, shots: Path
) -> None:
    context = browser.new_context(
        http_credentials=CREDENTIALS, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        page = context.new_page()
        page.goto(site.url)
        expect(page.get_by_role("link", name="heartbeat", exact=True)).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        page.screenshot(path=shots / "phone.png", full_page=True)
    finally:
        context.close()


# ---------------------------------------------------------------- helpers


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type == "error":
        problems.append(message.text)


def _utc(moment: Any) -> str:
    from datetime import UTC

    return str(moment.astimezone(UTC).isoformat(timespec="seconds"))


def _address(log: str) -> str | None:
    match = re.search(r"dashboard on (http://\S+/)", log)
    return match.group(1) if match else None


class _AttackerSite:
    """Another origin, whose page posts a form to the dashboard."""

    def __init__(self, target: str) -> None:
        html = (
            "<!doctype html><title>prize</title>"
            f'<form method="post" action="{target}"><button>Win a prize</button></form>'
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=WAIT)
