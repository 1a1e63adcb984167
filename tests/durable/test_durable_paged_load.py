"""A scheduler loads its store page by page (``Store.jobs_page``), so that it never holds
every stored row at once; the jobs it ends with are the store's, whatever changed
between two pages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from durable_support import SchedulerFactory, StoreFactory

import gnomon
from gnomon import _durable
from gnomon._stores.contract import Store, StoredJob


def record(value: int) -> None:
    del value


def with_task(make: SchedulerFactory, **options: object) -> gnomon.Scheduler:
    scheduler = make(**options)
    scheduler.register(record, name="record")
    return scheduler


def add_jobs(scheduler: gnomon.Scheduler, count: int) -> list[gnomon.Job]:
    jobs = [
        scheduler.add_job("record", gnomon.every("1m"), args=[i], name=f"job-{i}")
        for i in range(count)
    ]
    assert all(job is not None for job in jobs)
    return [job for job in jobs if job is not None]


def paged_store(
    new_store: StoreFactory, between: Callable[[int], None]
) -> tuple[Store, list[list[StoredJob]]]:
    """A store whose loads are watched: ``between(n)`` runs after page ``n`` is read."""
    store = new_store()
    real = store.jobs_page
    pages: list[list[StoredJob]] = []

    def jobs_page(*, since: int, limit: int) -> list[StoredJob]:
        rows = real(since=since, limit=limit)
        pages.append(rows)
        between(len(pages))
        return rows

    store.jobs_page = jobs_page  # type: ignore[method-assign]
    return store, pages


def test_a_load_reads_the_store_a_page_at_a_time_and_mirrors_every_job(
    make: SchedulerFactory, new_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_durable, "_LOAD_BATCH", 2)
    added = add_jobs(with_task(make), 7)
    store, pages = paged_store(new_store, lambda _: None)
    b = with_task(make, store=store)
    b.start()
    assert [len(page) for page in pages] == [2, 2, 2, 1, 0]
    assert sorted(job.id for job in b.jobs()) == sorted(job.id for job in added)


def test_jobs_read_on_one_page_and_removed_or_changed_before_the_next_end_as_stored(
    make: SchedulerFactory, new_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_durable, "_LOAD_BATCH", 2)
    a = with_task(make)
    first, second, *rest = add_jobs(a, 5)

    def between(page: int) -> None:
        if page == 1:  # both were read live on the first page
            a.remove_job(first.id)
            a.update_job(second.id, tags=["changed"])

    store, pages = paged_store(new_store, between)
    b = with_task(make, store=store)
    b.start()
    assert {row.id for row in pages[0]} == {first.id, second.id}
    assert sorted(job.id for job in b.jobs()) == sorted(job.id for job in [second, *rest])
    assert b.get_job(second.id).tags == {"changed"}
    assert b.get_job(second.id).version == a.get_job(second.id).version
    assert b.get_job(rest[0].id).tags == frozenset()
