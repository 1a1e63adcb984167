"""A scheduler loads its store page by page (``Store.jobs_page``), so that it never holds
every stored row at once; the jobs it ends with are the store's, whatever changed
between two pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from durable_support import SchedulerFactory, StoreFactory

import gnomon
from gnomon import _durable
from gnomon._stores.contract import Store, StoredJob
from gnomon.testing import FakeClock, MemoryLocker, MemoryStore


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
    assert [len(page) for page in pages] == [2, 2, 2, 1]  # a short page is the last
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


def test_a_reload_mirrors_a_job_under_the_name_that_a_vanished_job_held(
    make: SchedulerFactory, new_store: StoreFactory
) -> None:
    # While this scheduler was cut off, its job was removed, the tombstone pruned and
    # another job stored under the name: the reload forgets the first before it judges
    # the second, whose name is then free (names are checked: the scheduler has a locker).
    a = with_task(make, locker=MemoryLocker())
    gone = a.add_job("record", gnomon.every("1m"), args=[1], name="report")
    assert gone is not None
    store = new_store()
    store.open()
    store.remove_job(gone.id)
    assert store.prune(store.now() + timedelta(days=1)) >= 1
    again = with_task(make, store=store).add_job(
        "record", gnomon.every("1m"), args=[2], name="report"
    )
    assert again is not None
    assert again.id != gone.id
    a._durable.load()  # type: ignore[union-attr] - as the follower reloads after an outage
    assert [job.id for job in a.jobs()] == [again.id]
    assert a._durable.parked() == {}  # type: ignore[union-attr]


def test_a_load_that_fails_midway_leaves_nothing_of_the_store_mirrored(
    make: SchedulerFactory, new_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_durable, "_LOAD_BATCH", 2)
    add_jobs(with_task(make), 5)

    def between(page: int) -> None:
        if page == 2:
            raise gnomon.StoreUnavailable("the store stopped answering (test)")

    store, pages = paged_store(new_store, between)
    b = with_task(make, store=store)
    with pytest.raises(gnomon.StoreUnavailable, match="stopped answering"):
        b.start()
    assert len(pages) == 2
    assert b.jobs() == []


class UnpagedStore(MemoryStore):
    """A store written before ``jobs_page``: the contract's default serves its loads."""

    def __init__(self) -> None:
        super().__init__()
        self.pages = 0

    def jobs_page(self, *, since: int, limit: int) -> list[StoredJob]:
        self.pages += 1
        return Store.jobs_page(self, since=since, limit=limit)


class SinceBlindStore(MemoryStore):
    """A faulty store whose pages ignore ``since``: every page is every row."""

    def jobs_page(self, *, since: int, limit: int) -> list[StoredJob]:
        return self.jobs(include_removed=True)


@pytest.mark.parametrize("store_class", [UnpagedStore, SinceBlindStore])
def test_a_store_that_does_not_page_is_loaded_whole_and_the_load_ends(
    store_class: type[MemoryStore], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_durable, "_LOAD_BATCH", 2)
    store = store_class()
    writer = gnomon.Scheduler(store=store, clock=clock, timezone="UTC")
    reader = gnomon.Scheduler(store=store, clock=clock, timezone="UTC")
    try:
        for s in (writer, reader):
            s.register(record, name="record")
        added = add_jobs(writer, 5)
        reader.start()
        assert sorted(job.id for job in reader.jobs()) == sorted(job.id for job in added)
        if isinstance(store, UnpagedStore):
            assert store.pages == 2  # every row, then nothing after the last
    finally:
        writer.shutdown()
        reader.shutdown()
