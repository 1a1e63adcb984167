"""The dashboard over HTTP: every page, every action, every refusal."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from web_support import SAME_ORIGIN, add, alice, client, drop_schema, require_postgres

import gnomon
from gnomon.sqlite import SQLiteStore
from gnomon.testing import FakeClock, MemoryStore
from gnomon.web import dashboard

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WRONG: dict[str, Any] = {"target": "jobs.db", "auth": "secret", "read_only": "no"}
"""Values of the wrong type, for the checks a type checker would not let through."""


def tick() -> None:
    pass


def boom() -> None:
    raise ValueError("bad <b>input</b> & more")


def greet(name: str, *, loud: bool = False) -> None:
    pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def scheduler(clock: FakeClock) -> Iterator[gnomon.Scheduler]:
    s = gnomon.Scheduler(clock=clock, timezone="Europe/Riga")
    s.start()
    yield s
    s.shutdown()


def app_for(target: Any, **options: Any) -> Any:
    options.setdefault("allowed_hosts", ["testserver"])
    return dashboard(target, **options)


def acting(target: Any, **options: Any) -> Any:
    return app_for(target, read_only=False, auth=alice, **options)


def test_jobs_page_lists_each_job_with_link_tags_rule_and_next_run(
    scheduler: gnomon.Scheduler,
) -> None:
    job = add(scheduler, tick, gnomon.every("15m"), name="sync-orders", tags=["shop", "hourly"])
    page = client(app_for(scheduler)).get("/")
    assert page.status_code == 200
    assert f'href="/jobs/{job.id}">sync-orders</a>' in page.text
    assert '<td data-label="Rule">every 15m</td>' in page.text
    assert ">shop</a>" in page.text
    assert ">hourly</a>" in page.text
    # 09:15 UTC is 11:15 in Riga (EET), the scheduler's zone; the UTC instant rides along.
    assert '<time datetime="2026-03-02T09:15:00+00:00" class="t">2026-03-02 11:15:00' in page.text
    assert "no runs yet" in page.text


def test_jobs_page_shows_last_outcome_recent_strip_paused_reason_and_running(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    ok = add(scheduler, tick, gnomon.every("1m"), name="ok-job")
    bad = add(scheduler, boom, gnomon.every("1m"), name="bad-job")
    clock.advance("2m")
    scheduler.wait_idle(10)
    bad.pause("disk full")
    text = client(app_for(scheduler)).get("/").text
    row_ok = _row(text, ok.id)
    row_bad = _row(text, bad.id)
    assert row_ok.count('class="cell ok"') == 2
    assert "✓</span> SUCCESS" in row_ok
    assert row_bad.count('class="cell bad"') == 2
    assert "✗</span> FAILED" in row_bad
    assert "PAUSED" in row_bad
    assert "disk full" in row_bad
    assert "PAUSED" not in row_ok


def test_jobs_page_marks_a_job_running_now(scheduler: gnomon.Scheduler) -> None:
    import threading

    release = threading.Event()
    started = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    job = add(scheduler, slow, gnomon.every("1h"), name="slow")
    job.run_now()
    assert started.wait(10)
    try:
        assert "running now" in _row(client(app_for(scheduler)).get("/").text, job.id)
    finally:
        release.set()
    scheduler.wait_idle(10)
    assert "running now" not in _row(client(app_for(scheduler)).get("/").text, job.id)


def test_jobs_page_filters_by_tag_text_and_last_outcome(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    add(scheduler, tick, gnomon.every("1m"), name="alpha", tags=["red"])
    add(scheduler, boom, gnomon.every("1m"), name="beta", tags=["blue"])
    add(scheduler, tick, gnomon.every("1h"), name="gamma", tags=["blue"])
    clock.advance("1m")
    scheduler.wait_idle(10)
    http = client(app_for(scheduler))
    assert _names(http.get("/?tag=blue").text) == ["beta", "gamma"]
    assert _names(http.get("/?q=ALP").text) == ["alpha"]
    assert _names(http.get("/?outcome=FAILED").text) == ["beta"]
    assert _names(http.get("/?outcome=SUCCESS").text) == ["alpha"]
    assert _names(http.get("/?tag=blue&q=gam").text) == ["gamma"]
    assert "No job matches." in http.get("/?q=nothing-like-it").text


def test_jobs_page_is_paginated(scheduler: gnomon.Scheduler) -> None:
    for index in range(120):
        add(scheduler, tick, gnomon.every("1h"), name=f"job-{index:03d}")
    http = client(app_for(scheduler))
    first = http.get("/")
    assert _names(first.text) == [f"job-{i:03d}" for i in range(50)]
    assert "page 1 of 3" in first.text
    third = http.get("/?page=3")
    assert _names(third.text) == [f"job-{i:03d}" for i in range(100, 120)]
    assert 'href="?page=2" rel="prev"' in third.text


def test_job_page_shows_definition_next_ten_fire_times_and_history(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = add(
        scheduler,
        tick,
        gnomon.every("10m"),
        name="report",
        tags=["daily"],
        timeout="30s",
        max_runs=50,
    )
    clock.advance("20m")
    scheduler.wait_idle(10)
    text = client(app_for(scheduler)).get(f"/jobs/{job.id}").text
    assert '<h1 class="jobname">report</h1>' in text
    assert "<dt>Rule</dt><dd>every 10m</dd>" in text
    assert "test_web_http.tick" in text
    assert "<dt>Timeout</dt><dd>30s</dd>" in text
    assert "<dt>Max runs</dt><dd>50</dd>" in text
    upcoming = re.search(r'<section id="upcoming".*?</section>', text, re.S)
    assert upcoming is not None
    times = re.findall(r'<time datetime="([^"]+)"', upcoming.group(0))
    assert times == [
        (START + timedelta(minutes=10 * n)).isoformat(timespec="seconds") for n in range(3, 13)
    ]
    history = _history(text)
    assert len(history) == 2
    assert all("SUCCESS" in row for row in history)


def test_arguments_are_shown_only_with_show_arguments(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, greet, gnomon.every("1h"), args=["secret-name"], kwargs={"loud": True})
    hidden = client(app_for(scheduler)).get(f"/jobs/{job.id}").text
    assert "secret-name" not in hidden
    assert "Arguments" not in hidden
    shown = client(app_for(scheduler, show_arguments=True)).get(f"/jobs/{job.id}").text
    assert "<dt>args[0]</dt><dd><code>&#39;secret-name&#39;</code></dd>" in shown
    assert "<dt>loud</dt><dd><code>True</code></dd>" in shown


def test_a_failure_shows_error_type_message_and_escaped_traceback(
    scheduler: gnomon.Scheduler,
) -> None:
    job = add(scheduler, boom, gnomon.every("1h"), name="fails")
    job.run_now(wait=True)
    text = client(app_for(scheduler)).get(f"/jobs/{job.id}").text
    assert '<p class="error">ValueError: bad &lt;b&gt;input&lt;/b&gt; &amp; more</p>' in text
    traceback = re.search(r'<pre class="tb">(.*?)</pre>', text, re.S)
    assert traceback is not None
    assert "Traceback (most recent call last)" in traceback.group(1)
    assert "raise ValueError(&#34;bad &lt;b&gt;input&lt;/b&gt; &amp; more&#34;)" in traceback.group(
        1
    )
    assert "<b>" not in text


def test_history_filters_by_outcome_and_paginates(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    flaky_calls = []

    def flaky() -> None:
        flaky_calls.append(1)
        if len(flaky_calls) % 3 == 0:
            raise RuntimeError("every third")

    job = add(scheduler, flaky, gnomon.every("1m"), name="flaky")
    for _ in range(60):
        clock.advance("1m")
        scheduler.wait_idle(10)
    http = client(app_for(scheduler))
    first = http.get(f"/jobs/{job.id}")
    assert len(_history(first.text)) == 50
    older = re.search(r'<a href="(\?page=2&amp;before=[^"]+)" rel="next">', first.text)
    assert older is not None
    second = http.get(f"/jobs/{job.id}" + older.group(1).replace("&amp;", "&"))
    assert len(_history(second.text)) == 10
    assert 'rel="next"' not in second.text
    failed = http.get(f"/jobs/{job.id}?outcome=failed")
    assert len(_history(failed.text)) == 20
    assert all("FAILED" in row for row in _history(failed.text))
    succeeded = http.get(f"/jobs/{job.id}?outcome=SUCCESS")
    assert len(_history(succeeded.text)) == 40


def test_occurrence_page_shows_attempts_node_token_and_timings() -> None:
    store = MemoryStore()
    s = gnomon.Scheduler(store=store, node="node-a", timezone="UTC")
    s.register(boom, name="boom")
    s.start()
    try:
        job = s.add_job("boom", gnomon.every("1h"), name="stored")
        assert job is not None
        job.run_now(wait=True)
        s.wait_idle(10)
        record = s.history(job=job)[0]
        http = client(app_for(s))
        text = http.get(f"/jobs/{job.id}").text
        link = f"/jobs/{job.id}/occurrence?key="
        assert link in text
        page = http.get(f"/jobs/{job.id}/occurrence", params={"key": record.occurrence_key})
        assert page.status_code == 200
        body = page.text
        assert "<dt>Node</dt><dd>node-a</dd>" in body
        assert f"<dt>Fencing token</dt><dd>{record.fencing_token}</dd>" in body
        assert record.fencing_token is not None
        assert "<dt>Attempts</dt><dd>1 (last: attempt 1)</dd>" in body
        assert "<dt>Started</dt><dd><time" in body
        assert "<dt>Finished</dt><dd><time" in body
        assert "ValueError: bad &lt;b&gt;input&lt;/b&gt;" in body
        assert "Traceback (most recent call last)" in body
        missing = http.get(f"/jobs/{job.id}/occurrence", params={"key": "nope@x"})
        assert missing.status_code == 404
    finally:
        s.shutdown()


def test_cluster_page_lists_nodes_with_leader_and_last_heartbeat(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    s = gnomon.Scheduler(store=store, node="web-1", timezone="UTC")
    s.start()
    try:
        text = client(app_for(store)).get("/cluster").text
        assert '<td data-label="Node">web-1</td>' in text
        assert "No elector: every scheduler here claims occurrences" in text
        assert "</span> member</span>" in text
        assert 'data-label="Last heartbeat"><time' in text
    finally:
        s.shutdown()
        store.close()


def test_a_store_alone_is_shown_read_only(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    s = gnomon.Scheduler(store=store, timezone="UTC")
    s.register(tick, name="tick")
    s.start()
    try:
        job = s.add_job("tick", gnomon.cron("0 9 * * 1-5"), name="weekday", tags=["ops"])
        assert job is not None
        job.run_now(wait=True)
        job.pause("holiday")
        http = client(app_for(store))
        jobs = http.get("/").text
        assert f'href="/jobs/{job.id}">weekday</a>' in jobs
        assert "holiday" in jobs
        assert ">ops</a>" in jobs
        assert "Run now" not in jobs
        assert "read-only" in jobs
        page = http.get(f"/jobs/{job.id}").text
        assert "SUCCESS" in page
        assert "weekday" in page
        refused = http.post(f"/jobs/{job.id}/run", headers=SAME_ORIGIN)
        assert refused.status_code == 403
    finally:
        s.shutdown()
        store.close()


def test_a_store_job_page_lists_ten_fire_times_in_the_phase_of_its_anchor(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    s = gnomon.Scheduler(store=store, timezone="UTC")
    s.register(tick, name="tick")
    s.start()
    try:
        job = s.add_job("tick", gnomon.every("1h"), name="hourly")
        assert job is not None
        row = store.get_job(job_id=job.id)
        assert row is not None
        text = client(app_for(store)).get(f"/jobs/{job.id}").text
        upcoming = re.search(r'<section id="upcoming".*?</section>', text, re.S)
        assert upcoming is not None
        times = [
            datetime.fromisoformat(t)
            for t in re.findall(r'<time datetime="([^"]+)"', upcoming.group(0))
        ]
        anchor = row.anchor.replace(microsecond=0)
        assert times == [anchor + timedelta(hours=n) for n in range(1, 11)]
    finally:
        s.shutdown()
        store.close()


@pytest.mark.services
def test_a_postgres_store_is_shown_with_its_jobs_history_and_nodes() -> None:
    from gnomon.postgres import PostgresStore

    url = require_postgres()
    schema = f"web_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(url, schema=schema)
    s = gnomon.Scheduler(store=store, node="pg-node", timezone="UTC")
    s.register(boom, name="boom")
    try:
        s.start()
        job = s.add_job("boom", gnomon.every("1h"), name="pg-job", tags=["pg"])
        assert job is not None
        job.run_now(wait=True)
        s.wait_idle(10)
        http = client(app_for(store))
        assert f'href="/jobs/{job.id}">pg-job</a>' in http.get("/").text
        page = http.get(f"/jobs/{job.id}").text
        assert "ValueError: bad &lt;b&gt;input&lt;/b&gt; &amp; more" in page
        assert "Traceback (most recent call last)" in page
        assert len(_history(page)) == 1
        assert '<td data-label="Node">pg-node</td>' in http.get("/cluster").text
    finally:
        s.shutdown()
        store.close()
        drop_schema(schema)


# ---------------------------------------------------------------- actions


def test_run_now_runs_the_job_and_records_the_actor(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="manual")
    http = client(acting(scheduler))
    response = http.post(f"/jobs/{job.id}/run", headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job.id}?done=run"
    scheduler.wait_idle(10)
    [record] = scheduler.history(job=job)
    assert record.outcome is gnomon.Outcome.SUCCESS
    assert record.actor == "alice"
    page = http.get(response.headers["location"]).text
    assert "Run started." in page
    assert '<td data-label="By">alice</td>' in page


def test_run_now_from_the_jobs_page_goes_back_to_it(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="manual")
    response = client(acting(scheduler)).post(f"/jobs/{job.id}/run?back=jobs", headers=SAME_ORIGIN)
    assert response.headers["location"] == "/?done=run"
    scheduler.wait_idle(10)


def test_pause_keeps_the_reason_with_the_actor_and_resume_clears_it(
    scheduler: gnomon.Scheduler,
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="pausable")
    http = client(acting(scheduler))
    response = http.post(
        f"/jobs/{job.id}/pause",
        headers={**SAME_ORIGIN, "content-type": "application/x-www-form-urlencoded"},
        content="reason=deploy+%3Cfreeze%3E",
    )
    assert response.status_code == 303
    assert job.paused
    assert job.pause_reason == "deploy <freeze> (paused by alice)"
    page = http.get(f"/jobs/{job.id}").text
    assert "deploy &lt;freeze&gt; (paused by alice)" in page
    assert ">Resume</button>" in page
    assert http.post(f"/jobs/{job.id}/resume", headers=SAME_ORIGIN).status_code == 303
    assert not scheduler.get_job(job.id).paused
    assert ">Pause</button>" in http.get(f"/jobs/{job.id}").text


def test_pause_without_a_reason_names_the_actor(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="pausable")
    client(acting(scheduler)).post(f"/jobs/{job.id}/pause", headers=SAME_ORIGIN)
    assert job.pause_reason == "paused by alice"


def test_retry_runs_a_failed_occurrence_again_recording_the_actor() -> None:
    store = MemoryStore()
    s = gnomon.Scheduler(store=store, timezone="UTC")
    attempts: list[int] = []

    def once_bad(ctx: gnomon.JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")

    s.register(once_bad, name="once_bad")
    s.start()
    try:
        job = s.add_job("once_bad", gnomon.every("1h"), name="retryable")
        assert job is not None
        job.run_now(wait=True)
        s.wait_idle(10)
        [failed] = s.history(job=job)
        assert failed.outcome is gnomon.Outcome.FAILED
        http = client(acting(s))
        page = http.get(f"/jobs/{job.id}").text
        assert ">Retry</button>" in page
        response = http.post(
            f"/jobs/{job.id}/retry",
            params={"key": failed.occurrence_key, "back": "job"},
            headers=SAME_ORIGIN,
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/jobs/{job.id}?done=retry"

        def retried() -> bool:
            records = s.history(job=job)
            return bool(records) and records[0].outcome is gnomon.Outcome.SUCCESS

        import time

        deadline = time.monotonic() + 20
        while not retried() and time.monotonic() < deadline:
            s.wait_idle(10)
            time.sleep(0.05)
        [record] = s.history(job=job)
        assert record.outcome is gnomon.Outcome.SUCCESS
        assert record.attempt == 2
        assert record.occurrence_key == failed.occurrence_key
        assert attempts == [1, 2]
    finally:
        s.shutdown()


def test_retry_of_an_unknown_occurrence_is_refused_and_changes_nothing(
    scheduler: gnomon.Scheduler,
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="x")
    response = client(acting(scheduler)).post(
        f"/jobs/{job.id}/retry", params={"key": "x@nothing"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 404
    assert scheduler.history() == []


def test_remove_asks_for_confirmation_then_removes(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="doomed")
    http = client(acting(scheduler))
    page = http.get(f"/jobs/{job.id}").text
    assert f'href="/jobs/{job.id}/remove">Remove</a>' in page
    confirm = http.get(f"/jobs/{job.id}/remove")
    assert confirm.status_code == 200
    assert "Remove this job?" in confirm.text
    assert f'<form method="post" action="/jobs/{job.id}/remove"' in confirm.text
    assert scheduler.jobs() == [job]
    response = http.post(f"/jobs/{job.id}/remove", headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert response.headers["location"] == "/?done=remove"
    assert scheduler.jobs() == []
    assert http.get(f"/jobs/{job.id}").status_code == 404
    assert http.post(f"/jobs/{job.id}/run", headers=SAME_ORIGIN).status_code == 404


def test_actions_take_no_task_arguments_from_the_browser(scheduler: gnomon.Scheduler) -> None:
    seen: list[object] = []

    def record(value: str = "default") -> None:
        seen.append(value)

    job = add(scheduler, record, gnomon.every("1h"), name="args")
    client(acting(scheduler)).post(
        f"/jobs/{job.id}/run?value=evil&args=evil",
        headers={**SAME_ORIGIN, "content-type": "application/x-www-form-urlencoded"},
        content="value=evil&args=%5B1%5D&kwargs=%7B%7D",
    )
    scheduler.wait_idle(10)
    assert seen == ["default"]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("action", ["run", "pause", "resume", "remove", "retry"])
def test_a_post_without_origin_or_fetch_site_is_refused_403(
    scheduler: gnomon.Scheduler, action: str
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="guarded")
    response = client(acting(scheduler)).post(f"/jobs/{job.id}/{action}?key=k")
    assert response.status_code == 403
    assert "Origin" in response.text
    assert scheduler.jobs() == [job]
    assert not job.paused


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://testserver.evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "same-origin", "origin": "http://evil.example"},
        {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
    ],
)
def test_a_cross_origin_post_is_refused_403(
    scheduler: gnomon.Scheduler, headers: dict[str, str]
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="guarded")
    response = client(acting(scheduler)).post(f"/jobs/{job.id}/run", headers=headers)
    assert response.status_code == 403
    scheduler.wait_idle(10)
    assert scheduler.history() == []


def test_a_same_origin_fetch_site_alone_is_accepted(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="guarded")
    response = client(acting(scheduler)).post(
        f"/jobs/{job.id}/run", headers={"sec-fetch-site": "same-origin"}
    )
    assert response.status_code == 303
    scheduler.wait_idle(10)
    assert len(scheduler.history()) == 1


@pytest.mark.parametrize("action", ["run", "pause", "resume", "remove", "retry"])
def test_every_action_is_refused_403_in_read_only_mode(
    scheduler: gnomon.Scheduler, action: str
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="guarded")
    http = client(app_for(scheduler, auth=alice))
    response = http.post(f"/jobs/{job.id}/{action}?key=k", headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert "read-only" in response.text
    assert scheduler.jobs() == [job]
    assert "Run now" not in http.get("/").text


@pytest.mark.parametrize("answer", [False, None, ""])
def test_failed_auth_is_refused_401_on_pages_and_actions(
    scheduler: gnomon.Scheduler, answer: object
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="guarded")
    http = client(app_for(scheduler, read_only=False, auth=lambda request: answer))
    assert http.get("/").status_code == 401
    assert http.get(f"/jobs/{job.id}").status_code == 401
    assert http.get("/cluster").status_code == 401
    assert http.post(f"/jobs/{job.id}/run", headers=SAME_ORIGIN).status_code == 401
    scheduler.wait_idle(10)
    assert scheduler.history() == []


def test_auth_may_be_async_and_true_means_anonymous(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="anon")

    async def anyone(request: Request) -> bool:
        return request.headers.get("x-user") == "ok"

    http = client(app_for(scheduler, read_only=False, auth=anyone))
    assert http.get("/").status_code == 401
    assert http.get("/", headers={"x-user": "ok"}).status_code == 200
    response = http.post(f"/jobs/{job.id}/run", headers={**SAME_ORIGIN, "x-user": "ok"})
    assert response.status_code == 303
    scheduler.wait_idle(10)
    assert scheduler.history()[0].actor == "anonymous"


@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.test:8421", ""])
def test_a_host_not_allowed_is_refused(scheduler: gnomon.Scheduler, host: str) -> None:
    http = client(app_for(scheduler, allowed_hosts=["testserver", "dash.internal"]))
    assert http.get("/", headers={"host": host}).status_code == 400
    assert http.get("/", headers={"host": "dash.internal:8421"}).status_code == 200


def test_the_default_allowed_hosts_are_the_loopback_names(scheduler: gnomon.Scheduler) -> None:
    http = client(dashboard(scheduler))
    assert http.get("/").status_code == 400
    for host in ("localhost:8421", "127.0.0.1:8421", "[::1]:8421", "localhost"):
        assert http.get("/", headers={"host": host}).status_code == 200


def test_pages_and_static_files_carry_the_security_headers(scheduler: gnomon.Scheduler) -> None:
    http = client(app_for(scheduler))
    for path in ("/", "/cluster", "/static/gnomon.css", "/static/gnomon.js", "/nope"):
        headers = http.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "style-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    refused = http.get("/", headers={"host": "evil.example"})
    assert refused.headers["x-frame-options"] == "DENY"


def test_pages_have_no_inline_script_or_style(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    job = add(scheduler, boom, gnomon.every("1m"), name="any")
    clock.advance("1m")
    scheduler.wait_idle(10)
    http = client(acting(scheduler))
    for path in ("/", f"/jobs/{job.id}", "/cluster", f"/jobs/{job.id}/remove"):
        text = http.get(path).text
        assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/gnomon.js" defer>']
        assert "<style" not in text
        assert " style=" not in text
        assert " on" + "click=" not in text


def test_a_hostile_job_name_is_escaped_everywhere(
    scheduler: gnomon.Scheduler, clock: FakeClock
) -> None:
    name = "<img src=x onerror=alert(1)>"
    job = add(scheduler, boom, gnomon.every("1m"), name=name, tags=['"><script>x</script>'])
    clock.advance("1m")
    scheduler.wait_idle(10)
    http = client(acting(scheduler))
    for path in ("/", f"/jobs/{job.id}", f"/jobs/{job.id}/remove"):
        text = http.get(path).text
        assert "<img" not in text
        assert "<script>x" not in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_unknown_pages_and_jobs_are_404(scheduler: gnomon.Scheduler) -> None:
    http = client(app_for(scheduler))
    assert http.get("/nope").status_code == 404
    assert http.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert http.get("/jobs/not-a-uuid").status_code == 404
    assert http.put("/", headers=SAME_ORIGIN).status_code == 405


def test_mounted_under_a_path_every_link_and_form_carries_it(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="mounted")
    outer = Starlette(routes=[Mount("/ops/scheduler", acting(scheduler))])
    http = client(outer)
    text = http.get("/ops/scheduler/").text
    assert 'href="/ops/scheduler/static/gnomon.css"' in text
    assert f'href="/ops/scheduler/jobs/{job.id}">mounted</a>' in text
    assert f'action="/ops/scheduler/jobs/{job.id}/run?back=jobs"' in text
    assert http.get("/ops/scheduler/static/gnomon.js").status_code == 200
    response = http.post(f"/ops/scheduler/jobs/{job.id}/run", headers=SAME_ORIGIN)
    assert response.headers["location"] == f"/ops/scheduler/jobs/{job.id}?done=run"
    assert http.get(response.headers["location"]).status_code == 200
    scheduler.wait_idle(10)


def test_an_async_scheduler_is_shown_and_acted_on() -> None:
    asyncio.run(_async_scenario())


async def _async_scenario() -> None:
    import httpx

    async with gnomon.AsyncScheduler(timezone="UTC") as s:
        job = await s.add_job(tick, gnomon.every("1h"), name="async-job")
        assert job is not None
        transport = httpx.ASGITransport(app=acting(s))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert "async-job" in (await http.get("/")).text
            response = await http.post(f"/jobs/{job.id}/pause", headers=SAME_ORIGIN)
            assert response.status_code == 303
            assert job.paused
            assert job.pause_reason == "paused by alice"
            response = await http.post(f"/jobs/{job.id}/run", headers=SAME_ORIGIN)
            assert response.status_code == 303
            await s.wait_idle(10)
            assert (await s.history(job=job))[0].actor == "alice"


# ---------------------------------------------------------------- options


def test_actions_without_auth_are_an_invalid_option(scheduler: gnomon.Scheduler) -> None:
    with pytest.raises(gnomon.InvalidOption, match="read_only=False needs auth"):
        dashboard(scheduler, read_only=False)


def test_a_store_alone_cannot_be_acted_on() -> None:
    with pytest.raises(gnomon.InvalidOption, match="read-only: pass the scheduler"):
        dashboard(MemoryStore(), read_only=False, auth=alice)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda s: dashboard(WRONG["target"]), "'jobs.db'"),
        (lambda s: dashboard(s, allowed_hosts="localhost"), "'localhost'"),
        (lambda s: dashboard(s, allowed_hosts=[""]), "''"),
        (lambda s: dashboard(s, auth=WRONG["auth"]), "'secret'"),
        (lambda s: dashboard(s, read_only=WRONG["read_only"]), "'no'"),
        (lambda s: dashboard(s, title=""), "''"),
    ],
)
def test_bad_options_are_invalid_options_naming_the_value(
    scheduler: gnomon.Scheduler, call: Any, named: str
) -> None:
    with pytest.raises(gnomon.InvalidOption, match=re.escape(named)):
        call(scheduler)


def test_the_title_is_shown(scheduler: gnomon.Scheduler) -> None:
    text = client(app_for(scheduler, title="Billing <ops>")).get("/").text
    assert "<title>Jobs · Billing &lt;ops&gt;</title>" in text


# ---------------------------------------------------------------- the CLI's token auth


def test_token_auth_takes_a_bearer_token_or_basic_password() -> None:
    from gnomon._cli._web import TokenAuth

    token = "t0ken-with-enough-characters"  # noqa: S105 - a test token
    auth = TokenAuth(token)

    class Fake:
        def __init__(self, header: str) -> None:
            self.headers = {"authorization": header}

    basic = base64.b64encode(f"bob:{token}".encode()).decode()
    wrong = base64.b64encode(b"bob:wrong").decode()
    assert auth(Fake(f"Bearer {token}")) == "token"
    assert auth(Fake(f"Basic {basic}")) == "bob"
    assert auth(Fake(f"Bearer {token}x")) is None
    assert auth(Fake(f"Basic {wrong}")) is None
    assert auth(Fake("Basic !!!")) is None
    assert auth(Fake("")) is None


# ---------------------------------------------------------------- helpers


def _row(text: str, job_id: uuid.UUID) -> str:
    """The jobs table's row of one job."""
    match = re.search(
        rf'<tr[^>]*>\s*<td data-label="Job"><a class="name" href="/jobs/{job_id}".*?</tr>',
        text,
        re.S,
    )
    assert match is not None, f"no row for job {job_id}"
    return match.group(0)


def _names(text: str) -> list[str]:
    return re.findall(r'<a class="name" href="/jobs/[^"]+">([^<]*)</a>', text)


def _history(text: str) -> list[str]:
    return re.findall(r'<tr class="rec .*?</tr>', text, re.S)
