"""The Locker contract (``gnomon._distributed``), checked against every store.

Real stores judge leases by their own clocks, which cannot be faked, so their timing
tests wait for real (ttl 0.5 s) and assert with margins; the memory store runs on a fake
clock and its exact lease edges are pinned separately below.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from distributed_support import Backend, run

from gnomon import InvalidRule, LeaseLost, Locker, LockHeld, OccurrenceAbandoned, Recovery
from gnomon._memory import MemoryLocker

TTL = 0.5
PAST_TTL = TTL + 0.25
CONTENDED_TTL = 3.0
"""For claims racing on one key: each waits for the others' transactions, and every
round trip must end within a third of the ttl, even on a loaded machine."""


def test_a_first_claim_is_attempt_one_with_the_requested_ttl(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        lease = await locker.acquire("job@1", locker.lease_ttl)
        assert (lease.key, lease.attempt, lease.ttl) == ("job@1", 1, timedelta(seconds=TTL))
        assert isinstance(lease.token, int)
        assert lease.token > 0

    backend.run(scenario())


def test_a_live_claim_is_refused_with_the_time_left_on_its_lease(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        await locker.acquire("job@1", locker.lease_ttl)
        await backend.pass_time(0.2)
        with pytest.raises(LockHeld) as refused:
            await locker.acquire("job@1", locker.lease_ttl)
        assert type(refused.value) is LockHeld
        assert refused.value.key == "job@1"
        left = refused.value.retry_after
        assert left is not None
        assert timedelta(0) < left <= timedelta(seconds=TTL - 0.2)

    backend.run(scenario())


def test_a_released_claim_is_refused_for_good(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        lease = await locker.acquire("job@1", locker.lease_ttl)
        await lease.release()
        await backend.pass_time(PAST_TTL)
        for recovery in Recovery:
            with pytest.raises(LockHeld) as refused:
                await locker.acquire("job@1", locker.lease_ttl, recovery=recovery)
            assert type(refused.value) is LockHeld
            assert refused.value.retry_after is None

    backend.run(scenario())


def test_tokens_grow_with_every_claim_on_any_key(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        tokens = [(await locker.acquire(f"job@{n}", locker.lease_ttl)).token for n in range(6)]
        assert tokens == sorted(tokens)
        assert len(set(tokens)) == len(tokens)

    backend.run(scenario())


def test_renewing_keeps_a_lease_past_its_first_ttl(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        lease = await locker.acquire("job@1", locker.lease_ttl)
        for _ in range(3):
            await backend.pass_time(TTL * 0.6)
            await lease.renew()
        with pytest.raises(LockHeld) as refused:
            await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        assert refused.value.retry_after is not None
        await lease.release()

    backend.run(scenario())


def test_renewing_an_expired_lease_raises_lease_lost(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        lease = await locker.acquire("job@1", locker.lease_ttl)
        await backend.pass_time(PAST_TTL)
        with pytest.raises(LeaseLost):
            await lease.renew()

    backend.run(scenario())


def test_at_least_once_reclaims_a_dead_holders_occurrence_as_attempt_two(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        dead = await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        await backend.pass_time(PAST_TTL)
        again = await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        assert again.attempt == 2
        assert again.token > dead.token
        with pytest.raises(LeaseLost):
            await dead.renew()
        with pytest.raises(LeaseLost):
            await dead.release()
        await again.renew()
        await again.release()
        with pytest.raises(LockHeld):
            await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)

    backend.run(scenario())


def test_at_most_once_reports_a_dead_holders_occurrence_abandoned_to_exactly_one_caller(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        nodes = await _connected_nodes(backend, 4, lease_ttl=CONTENDED_TTL)
        await nodes[0].acquire("job@1", nodes[0].lease_ttl)
        await backend.pass_time(CONTENDED_TTL + 0.25)
        answers = await asyncio.gather(
            *(node.acquire("job@1", node.lease_ttl) for node in nodes), return_exceptions=True
        )
        abandoned = [a for a in answers if isinstance(a, OccurrenceAbandoned)]
        plain = [a for a in answers if type(a) is LockHeld]
        assert len(abandoned) == 1, answers
        assert abandoned[0].attempt == 1
        assert len(plain) == len(nodes) - 1, answers
        assert all(refusal.retry_after is None for refusal in plain)

    backend.run(scenario())


def test_a_zombies_release_changes_nothing(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL)
        zombie = await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        await backend.pass_time(PAST_TTL)
        heir = await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        with pytest.raises(LeaseLost):
            await zombie.release()
        with pytest.raises(LockHeld) as refused:
            await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        assert refused.value.retry_after is not None  # still running under the heir
        await heir.renew()
        await heir.release()

    backend.run(scenario())


def test_concurrent_claims_of_one_occurrence_grant_exactly_one_lease(backend: Backend) -> None:
    async def scenario() -> None:
        nodes = await _connected_nodes(backend, 6, lease_ttl=CONTENDED_TTL)
        answers = await asyncio.gather(
            *(node.acquire("job@1", node.lease_ttl) for node in nodes), return_exceptions=True
        )
        granted = [a for a in answers if not isinstance(a, BaseException)]
        refused = [a for a in answers if isinstance(a, LockHeld)]
        assert len(granted) == 1, answers
        assert len(refused) == len(answers) - 1, answers

    backend.run(scenario())


async def _connected_nodes(backend: Backend, count: int, **timings: float) -> list[Locker]:
    """Lockers that already talked to the store, so a burst measures claims, not connects."""
    nodes = [backend.locker(**timings) for _ in range(count)]
    for n, node in enumerate(nodes):
        await node.acquire(f"warm-up@{n}", node.lease_ttl)
    return nodes


def test_a_claim_is_kept_for_the_retention_period_then_forgotten(backend: Backend) -> None:
    async def scenario() -> None:
        locker = backend.locker(lease_ttl=TTL, retention=TTL * 2)
        first = await locker.acquire("job@1", locker.lease_ttl)
        await first.release()
        await backend.pass_time(TTL)
        with pytest.raises(LockHeld):
            await locker.acquire("job@1", locker.lease_ttl)
        await backend.pass_time(TTL * 1.5)
        fresh = await locker.acquire("job@1", locker.lease_ttl)
        assert fresh.attempt == 1
        assert fresh.token > first.token

    backend.run(scenario())


def test_timings_default_to_30s_ttl_a_third_of_it_for_renewal_and_a_day_of_retention(
    backend: Backend,
) -> None:
    locker = backend.locker()
    assert locker.lease_ttl == timedelta(seconds=30)
    assert locker.renew_interval == timedelta(seconds=10)
    assert getattr(locker, "retention", None) == timedelta(hours=24)
    custom = backend.locker(lease_ttl="2s")
    assert custom.renew_interval == timedelta(seconds=2) / 3


@pytest.mark.parametrize(
    ("timings", "message"),
    [
        ({"lease_ttl": 0}, "lease_ttl must be a positive duration, got 0"),
        ({"lease_ttl": "soon"}, "lease_ttl must be"),
        ({"lease_ttl": 3, "renew_interval": 1.5}, "renew_interval must be at most a third"),
        ({"lease_ttl": 3, "retention": 2}, "retention must be at least lease_ttl (3s), got 2s"),
    ],
)
def test_invalid_timings_are_rejected_naming_the_value(
    backend: Backend, timings: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRule) as rejected:
        backend.locker(**timings)
    assert message in str(rejected.value)


# Exact lease edges, on the memory store's fake clock.


def test_a_lease_is_live_at_its_exact_expiry_and_takeable_just_after() -> None:
    from gnomon.testing import FakeClock

    clock = FakeClock()
    locker = MemoryLocker(lease_ttl=3, clock=clock)

    async def scenario() -> None:
        lease = await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        clock.advance(3)
        with pytest.raises(LockHeld) as refused:
            await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        assert refused.value.retry_after == timedelta(0)
        await lease.renew()  # still ours at the exact edge
        clock.advance(timedelta(seconds=3, microseconds=1))
        again = await locker.acquire("job@1", locker.lease_ttl, recovery=Recovery.AT_LEAST_ONCE)
        assert again.attempt == 2

    run(scenario())


def test_retention_ends_strictly_after_its_last_instant() -> None:
    from gnomon.testing import FakeClock

    clock = FakeClock()
    locker = MemoryLocker(lease_ttl=1, retention=10, clock=clock)

    async def scenario() -> None:
        await (await locker.acquire("job@1", locker.lease_ttl)).release()
        clock.advance(10)
        with pytest.raises(LockHeld):
            await locker.acquire("job@1", locker.lease_ttl)
        clock.advance(timedelta(microseconds=1))
        assert (await locker.acquire("job@1", locker.lease_ttl)).attempt == 1

    run(scenario())
