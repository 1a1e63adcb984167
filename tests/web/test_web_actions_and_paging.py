"""The dashboard records its actions with their actor and shows them; history pages go
as deep as the history does, each one keyset-paged by the cursor its "older" link carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from web_support import SAME_ORIGIN, add, alice, client

import gnomon
from gnomon._stores.contract import RunRecord
from gnomon.testing import FakeClock, MemoryStore
from gnomon.web import dashboard

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FORM = {**SAME_ORIGIN, "content-type": "application/x-www-form-urlencoded"}


def tick() -> None:
    pass


@pytest.fixture
def scheduler() -> Iterator[gnomon.Scheduler]:
    s = gnomon.Scheduler(clock=FakeClock(START), timezone="UTC")
    s.start()
    yield s
    s.shutdown()


def acting(target: Any) -> Any:
    return dashboard(target, read_only=False, auth=alice, allowed_hosts=["testserver"])


def action_rows(page: str) -> list[list[str]]:
    """The Actions table's rows, each as its cells' text."""
    table = re.search(r'<section id="actions".*?</section>', page, re.S)
    assert table is not None
    rows = re.findall(r"<tr>\s*(<td.*?)</tr>", table.group(0), re.S)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td.*?</td>", row, re.S)]
        for row in rows
    ]


def test_pause_resume_and_remove_from_the_dashboard_are_recorded_with_the_actor(
    scheduler: gnomon.Scheduler,
) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="pausable")
    http = client(acting(scheduler))
    pause = http.post(f"/jobs/{job.id}/pause", headers=FORM, content="reason=deploy+%3Cfreeze%3E")
    assert pause.status_code == 303
    assert http.post(f"/jobs/{job.id}/resume", headers=SAME_ORIGIN).status_code == 303
    page = http.get(f"/jobs/{job.id}").text
    assert action_rows(page) == [
        ["2026-03-02 09:00:00 UTC", "resume", "alice", ""],
        ["2026-03-02 09:00:00 UTC", "pause", "alice", "deploy &lt;freeze&gt; (paused by alice)"],
    ]
    assert "<freeze>" not in page
    assert http.post(f"/jobs/{job.id}/remove", headers=SAME_ORIGIN).status_code == 303
    assert [(a.action, a.actor) for a in scheduler.actions(job=job.id)] == [
        ("remove", "alice"),
        ("resume", "alice"),
        ("pause", "alice"),
    ]


def test_a_job_page_without_actions_says_so(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="quiet")
    page = client(acting(scheduler)).get(f"/jobs/{job.id}").text
    assert action_rows(page) == []
    assert "No pause, resume or removal recorded." in page


def test_a_read_only_dashboard_over_a_store_shows_the_actions_kept_in_it() -> None:
    store = MemoryStore()
    with gnomon.Scheduler(store=store, timezone="UTC") as s:
        s.register(tick, name="tick")
        job = s.add_job("tick", gnomon.every("1h"), name="stored")
        assert job is not None
        job.pause("backup window", actor="carol")
    page = client(dashboard(store, allowed_hosts=["testserver"])).get(f"/jobs/{job.id}").text
    [row] = action_rows(page)
    assert row[1:] == ["pause", "carol", "backup window"]


def test_history_pages_by_cursor_past_the_old_forty_page_limit() -> None:
    store = MemoryStore()
    with gnomon.Scheduler(store=store, timezone="UTC") as s:
        s.register(tick, name="tick")
        job = s.add_job("tick", gnomon.every("1h"), name="busy")
        assert job is not None
    total = 41 * 50 + 7
    for n in range(total):
        at = START - timedelta(minutes=n // 2)  # two records a minute: ties on time
        record = RunRecord(f"busy@{n:05}", job.id, "busy", at, at, at, gnomon.Outcome.SUCCESS)
        assert store.record(record)
    http = client(dashboard(store, allowed_hosts=["testserver"]))
    seen: list[str] = []
    url: str | None = f"/jobs/{job.id}"
    pages = 0
    while url is not None:
        text = http.get(url).text
        pages += 1
        seen += re.findall(
            r'<tr class="rec [^"]*">\s*<td[^>]*><a href="[^"]*key=(busy%40\d+)"', text
        )
        older = re.search(r'<a href="([^"]+)" rel="next">older', text)
        url = None if older is None else f"/jobs/{job.id}" + older.group(1).replace("&amp;", "&")
        if pages == 42:
            assert "<span>page 42</span>" in text
            assert ">← newest</a>" in text
    assert pages == 42
    assert len(seen) == total
    assert len(set(seen)) == total
    newest_first = sorted(range(total), key=lambda n: (n // 2, -n))  # ties: by key, descending
    assert seen == [f"busy%40{n:05}" for n in newest_first]


def test_a_cursor_that_cannot_be_read_shows_the_first_page(scheduler: gnomon.Scheduler) -> None:
    job = add(scheduler, tick, gnomon.every("1h"), name="plain")
    for bad in ("nonsense", "2026-03-02T09:00:00|busy", "not-a-time|busy"):
        answer = client(acting(scheduler)).get(
            f"/jobs/{job.id}", params={"page": "9", "before": bad}
        )
        assert answer.status_code == 200
        assert "page 9" not in answer.text
