"""The Elector contract (``gnomon._distributed``), checked against every store.

On real stores the nodes campaign with their renewal tasks (``start()``) and the tests
wait in real time (ttl 0.6 s); the memory store runs on a fake clock and campaigns inline
from ``is_leader()``, so its lease edges are exact.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from distributed_support import Backend, eventually, run

from gnomon import Elector, InvalidRule
from gnomon._claims import ElectorTimings
from gnomon._memory import CampaigningElector, MemoryElector
from gnomon.testing import FakeClock

TTL = 0.6
RETRY = 0.2


async def _nodes(backend: Backend, count: int) -> list[Elector]:
    nodes = [backend.elector(lease_ttl=TTL, retry_interval=RETRY) for _ in range(count)]
    if not backend.fake_time:
        for node in nodes:
            await node.start()
    return nodes


async def _leaders(nodes: list[Elector]) -> list[tuple[int, int]]:
    answers = [await node.is_leader() for node in nodes]
    return [(n, token) for n, token in enumerate(answers) if token is not None]


async def _crash(node: Elector) -> None:
    """Stop a node the way a crash does: no more renewals, no stepping down."""
    assert isinstance(node, CampaigningElector)
    task = node._task
    if task is not None:
        # A store client can swallow a cancel (see CampaigningElector._campaign_forever):
        # cancel again until the campaign ends.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)
    else:  # a node that campaigns inline must not campaign again
        node._task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    node._term = None  # so that closing it later cannot step down


async def _new_leader(backend: Backend, nodes: list[Elector], within: float) -> tuple[int, int]:
    async def check() -> tuple[int, int] | None:
        leaders = await _leaders(nodes)
        assert len(leaders) <= 1, leaders
        return leaders[0] if leaders else None

    if backend.fake_time:
        answer = await check()
        assert answer is not None
        return answer
    return await eventually(check, within)


def test_exactly_one_of_several_nodes_leads(backend: Backend) -> None:
    async def scenario() -> None:
        nodes = await _nodes(backend, 3)
        leaders = await _leaders(nodes)
        assert len(leaders) == 1, leaders

    backend.run(scenario())


def test_a_leader_keeps_its_term_and_token_while_it_renews(backend: Backend) -> None:
    async def scenario() -> None:
        nodes = await _nodes(backend, 2)
        [(leader, token)] = await _leaders(nodes)
        for _ in range(6):
            await backend.pass_time(TTL / 2)
            assert await _leaders(nodes) == [(leader, token)]

    backend.run(scenario())


def test_closing_the_leader_steps_down_and_a_follower_takes_a_larger_token(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        nodes = await _nodes(backend, 3)
        [(leader, token)] = await _leaders(nodes)
        await nodes[leader].close()
        assert await nodes[leader].is_leader() is None
        survivors = [node for n, node in enumerate(nodes) if n != leader]
        _, heir_token = await _new_leader(backend, survivors, within=RETRY + 1.0)
        assert heir_token > token

    backend.run(scenario())


def test_a_dead_leader_is_replaced_within_ttl_plus_retry_interval(backend: Backend) -> None:
    async def scenario() -> None:
        nodes = await _nodes(backend, 3)
        [(leader, token)] = await _leaders(nodes)
        await _crash(nodes[leader])
        survivors = [node for n, node in enumerate(nodes) if n != leader]
        if backend.fake_time:
            await backend.pass_time(TTL)
            assert await _leaders(survivors) == []  # the lease is live to its last instant
            await backend.pass_time(1e-6)
        started = asyncio.get_running_loop().time()
        _, heir_token = await _new_leader(backend, survivors, within=TTL + RETRY + 1.0)
        waited = asyncio.get_running_loop().time() - started
        assert heir_token > token
        assert waited <= TTL + RETRY + 0.5

    backend.run(scenario())


def test_a_node_stops_answering_leader_at_its_own_deadline() -> None:
    clock = FakeClock()
    node = MemoryElector(lease_ttl=10, clock=clock)

    async def scenario() -> None:
        await node.start()  # renews on a real-time task; the fake clock never lets it
        token = await node.is_leader()
        assert token is not None
        # its deadline: ttl x (1 - 1% drift) - 0.1 s safety = 9.8 s after the request
        clock.advance(timedelta(seconds=9.79))
        assert await node.is_leader() == token
        clock.advance(timedelta(seconds=0.02))
        assert await node.is_leader() is None
        await node.close()

    run(scenario())


def test_is_leader_answers_none_after_close(backend: Backend) -> None:
    async def scenario() -> None:
        [node] = await _nodes(backend, 1)
        assert await node.is_leader() is not None
        await node.close()
        assert await node.is_leader() is None

    backend.run(scenario())


def test_elector_timings_default_to_15s_ttl_and_a_third_of_it_between_campaigns(
    backend: Backend,
) -> None:
    node = backend.elector()
    assert isinstance(node, CampaigningElector)
    assert (node.lease_ttl, node.retry_interval) == (timedelta(seconds=15), timedelta(seconds=5))


def test_a_retry_interval_longer_than_the_ttl_is_rejected(backend: Backend) -> None:
    with pytest.raises(
        InvalidRule, match=r"retry_interval must be at most lease_ttl \(2s\), got 3s"
    ):
        backend.elector(lease_ttl=2, retry_interval=3)


class _SwallowsOneCancel(CampaigningElector):
    """An elector whose second round trip swallows a cancellation, as a store client can
    (on Python 3.11, ``asyncio.wait_for`` returns a reply that arrives with the cancel).
    The first round finds another leader, so the second comes after ``retry_interval``."""

    def __init__(self) -> None:
        super().__init__(ElectorTimings.parse(60, 0.01), local_clock=time.monotonic)
        self.rounds = 0
        self.in_flight = asyncio.Event()
        self.cancel_seen = asyncio.Event()
        self.cleanup = asyncio.Event()
        self.resigned: list[int] = []
        self.stores_closed = 0

    async def _claim_term(self) -> int | None:
        self.rounds += 1
        if self.rounds == 1:
            return None
        self.in_flight.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancel_seen.set()
            await self.cleanup.wait()
        return 7

    async def _resign(self, token: int) -> None:
        self.resigned.append(token)

    async def _close_store(self) -> None:
        self.stores_closed += 1


def test_close_ends_the_campaign_even_when_the_store_client_swallows_the_cancel() -> None:
    node = _SwallowsOneCancel()
    node.cleanup.set()

    async def scenario() -> None:
        await node.start()
        await node.in_flight.wait()
        async with asyncio.timeout(10) as limit:  # the campaign would otherwise go on
            await node.close()
        assert not limit.expired(), "close waited for a campaign round after it"

    run(scenario())
    assert node.rounds == 2, "no round after close"
    assert node.resigned == [7], "the term the swallowed round won is given up"
    assert node.stores_closed == 1


def test_cancelling_close_propagates_to_its_caller() -> None:
    node = _SwallowsOneCancel()

    async def scenario() -> None:
        await node.start()
        await node.in_flight.wait()
        closing = asyncio.get_running_loop().create_task(node.close())
        await node.cancel_seen.wait()  # close waits for the campaign's cleanup
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        node.cleanup.set()
        assert node._task is not None
        await asyncio.wait({node._task})

    run(scenario())
    assert node.resigned == [], "a cancelled close does not go on to step down"
    assert node.stores_closed == 1, "but it still releases its connections"
