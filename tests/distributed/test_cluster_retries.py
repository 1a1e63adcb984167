"""Retries on a cluster: two schedulers share a Redis or PostgreSQL locker.

Both nodes run on one fake clock, so every fire time and every retry falls at the same
instant on both; only the claims go to the real server. Whichever node wins the first
claim, the assertions are the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from distributed_support import Backend, make_locker, store_url

import gnomon
from gnomon import Outcome
from gnomon.testing import FakeClock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
WAIT = 20.0


class Unavailable(Exception):
    """The task's deliberate, retryable failure."""


class Attempts:
    """Every attempt on every node: (node, attempt, fencing token, occurrence key)."""

    def __init__(self, failing_attempts: int) -> None:
        self.failing_attempts = failing_attempts
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int, int | None, str]] = []

    def __call__(self, ctx: gnomon.JobContext, node: str) -> None:
        with self.lock:
            self.seen.append((node, ctx.attempt, ctx.fencing_token, ctx.occurrence_key))
        if ctx.attempt <= self.failing_attempts:
            raise Unavailable(f"attempt {ctx.attempt} on {node}")


class Skips(gnomon.Monitor):
    """The occurrences a node skipped (a refused claim is not kept in its history)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[gnomon.RunEvent] = []

    def run_skipped(self, event: gnomon.RunEvent) -> None:
        with self.lock:
            self.events.append(event)


Cluster = tuple[FakeClock, list[gnomon.Scheduler], list[Skips]]


@pytest.fixture
def two_nodes(real_backend: Backend) -> Iterator[Cluster]:
    clock = FakeClock(T0)
    monitors = [Skips(), Skips()]
    nodes = [
        gnomon.Scheduler(
            clock=clock,
            timezone=ZoneInfo("UTC"),
            locker=make_locker(
                real_backend.kind, store_url(real_backend.kind), real_backend.namespace
            ),
            monitor=monitor,
            stop_timeout=WAIT,
        )
        for monitor in monitors
    ]
    try:
        yield clock, nodes, monitors
    finally:
        for node in nodes:
            node.shutdown()


def settle(clock: FakeClock, nodes: list[gnomon.Scheduler], step: timedelta) -> None:
    clock.advance(step)
    for node in nodes:
        node.wait_idle(timeout=WAIT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("failing_attempts", [1, 2])
def test_a_retry_is_claimed_again_with_a_larger_token_and_runs_once_across_two_nodes(
    two_nodes: Cluster, failing_attempts: int
) -> None:
    clock, nodes, monitors = two_nodes
    task = Attempts(failing_attempts)
    retry = gnomon.Retry(attempts=3, delay="10s", factor=1, jitter=False)
    for name, node in zip(("a", "b"), nodes, strict=True):
        node.add_job(task, gnomon.every("1h"), name="report", args=(name,), retry=retry)
        node.start()
    settle(clock, nodes, 60 * MINUTE)
    for _ in range(failing_attempts):
        settle(clock, nodes, timedelta(seconds=10))
    settle(clock, nodes, MINUTE)  # nothing more is due before the next hour

    attempts = [attempt for _, attempt, _, _ in task.seen]
    assert attempts == list(range(1, failing_attempts + 2)), task.seen
    assert len({node for node, _, _, _ in task.seen}) == 1  # the node that won attempt 1
    assert len({key for _, _, _, key in task.seen}) == 1  # one occurrence throughout
    tokens = [token for _, _, token, _ in task.seen if token is not None]
    assert len(tokens) == len(task.seen), f"every attempt holds a fencing token: {task.seen}"
    assert tokens == sorted(set(tokens)), f"fencing tokens must grow: {tokens}"

    winner = 0 if task.seen[0][0] == "a" else 1
    loser = 1 - winner
    [record] = nodes[winner].history()
    assert (record.outcome, record.attempts) == (Outcome.SUCCESS, failing_attempts + 1)
    assert record.fencing_token == tokens[-1]
    assert nodes[loser].history() == []
    [skip] = monitors[loser].events
    assert skip.outcome is Outcome.SKIPPED_LOCKED  # a refused claim is never retried
    assert (skip.attempt, skip.occurrence_key) == (1, record.occurrence_key)
    assert monitors[winner].events == []


@pytest.mark.timeout(60)
def test_exhausted_retries_on_a_cluster_end_failed_on_one_node_only(two_nodes: Cluster) -> None:
    clock, nodes, monitors = two_nodes
    task = Attempts(failing_attempts=99)
    retry = gnomon.Retry(attempts=2, delay="10s", jitter=False)
    for name, node in zip(("a", "b"), nodes, strict=True):
        node.add_job(task, gnomon.every("1h"), name="doomed", args=(name,), retry=retry)
        node.start()
    settle(clock, nodes, 60 * MINUTE)
    settle(clock, nodes, timedelta(seconds=10))
    settle(clock, nodes, MINUTE)
    assert [attempt for _, attempt, _, _ in task.seen] == [1, 2]
    records = [(r.outcome, r.attempts) for node in nodes for r in node.history()]
    assert records == [(Outcome.FAILED, 2)]
    skips = [event.outcome for monitor in monitors for event in monitor.events]
    assert skips == [Outcome.SKIPPED_LOCKED]


@pytest.mark.timeout(90)
def test_a_pending_retry_is_taken_over_by_another_node_when_its_node_dies(
    real_backend: Backend,
) -> None:
    """The node that ran attempt 1 keeps the occurrence claimed while its retry waits;
    when it dies, its lease runs out and a node watching the occurrence re-claims it
    (``AT_LEAST_ONCE``) and runs the retry, with a larger fencing token, once."""
    clock = FakeClock(T0)
    task = Attempts(failing_attempts=1)
    retry = gnomon.Retry(attempts=3, delay="10m", jitter=False)
    nodes = [
        gnomon.Scheduler(
            clock=clock,
            timezone=ZoneInfo("UTC"),
            locker=make_locker(
                real_backend.kind,
                store_url(real_backend.kind),
                real_backend.namespace,
                lease_ttl=timedelta(seconds=2),
            ),
            stop_timeout=WAIT,
        )
        for _ in range(2)
    ]
    try:
        for name, node in zip(("a", "b"), nodes, strict=True):
            node.add_job(
                task,
                gnomon.every("1h"),
                name="report",
                args=(name,),
                retry=retry,
                recovery=gnomon.Recovery.AT_LEAST_ONCE,
            )
            node.start()
        settle(clock, nodes, 60 * MINUTE)
        [(first_node, attempt, first_token, key)] = task.seen
        assert attempt == 1
        dead = nodes[0 if first_node == "a" else 1]
        survivor = nodes[1 if first_node == "a" else 0]
        dead.shutdown()  # dies while its retry waits: the lease is not released
        deadline = time.monotonic() + WAIT
        while len(task.seen) < 2:  # the survivor asks again each time its clock moves
            assert time.monotonic() < deadline, f"the retry was never taken over: {task.seen}"
            clock.advance(timedelta(seconds=3))
            survivor.wait_idle(timeout=WAIT)
            time.sleep(0.1)  # poll: the dead node's lease runs out on the server's clock
        clock.advance(20 * MINUTE)  # well past the dead node's planned retry
        survivor.wait_idle(timeout=WAIT)
        assert len(task.seen) == 2, task.seen
        [_, (node, attempt, token, same_key)] = task.seen
        assert node != first_node
        assert attempt == 2
        assert same_key == key
        assert token is not None
        assert first_token is not None
        assert token > first_token
        [record] = survivor.history()
        assert (record.outcome, record.attempts) == (Outcome.SUCCESS, 2)
    finally:
        for node in nodes:
            node.shutdown()
