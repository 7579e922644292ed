"""The store side of capacity pools and token buckets, on SQLite and PostgreSQL.

The store keeps time by a FakeClock: expiry and refill are driven by advancing it, exactly."""

from __future__ import annotations

import asyncio

import pytest

from podium.clock import FakeClock
from podium.store import Store, open_store
from podium.store.pools import ShareRequest


@pytest.fixture
def store(clocked_store: Store) -> Store:
    return clocked_store


def ask(pool: str, amount: float, capacity: float = 5, in_use: float = 0) -> ShareRequest:
    return ShareRequest(pool, amount, amount, in_use, capacity)


async def test_shares_never_sum_past_the_capacity_and_unmet_demand_is_visible(
    store: Store,
) -> None:
    [a] = await store.set_shares("A", [ask("p", 4)], 30)
    [b] = await store.set_shares("B", [ask("p", 4)], 30)
    assert (a.granted, b.granted) == (4, 1)
    assert (b.others_unmet, b.others_active) == (0, 1)
    [seen] = await store.pool_contention("A", ["p"])
    assert (seen.granted, seen.others_unmet, seen.others_active) == (4, 3, 1)
    [a] = await store.set_shares("A", [ask("p", 2)], 30)  # A shrinks: B may grow
    [b] = await store.set_shares("B", [ask("p", 4)], 30)
    assert (a.granted, b.granted) == (2, 3)
    assert sorted((s.holder, s.amount, s.wanted) for s in await store.list_shares()) == [
        ("A", 2, 2), ("B", 3, 4),
    ]


async def test_concurrent_holders_on_two_connections_never_overbook(store_url: str) -> None:
    async with open_store(store_url) as one, open_store(store_url) as two:
        grants = await asyncio.gather(*(
            (one if i % 2 else two).set_shares(f"h{i}", [ask("p", 3, capacity=10)], 30)
            for i in range(12)
        ))
    assert sum(g[0].granted for g in grants) == 10


async def test_an_unrenewed_share_expires_and_frees_its_capacity(
    store: Store, clock: FakeClock
) -> None:
    await store.set_shares("dead", [ask("p", 5)], 0.25)
    [before] = await store.set_shares("alive", [ask("p", 5)], 30)
    clock.advance(0.25)  # not past its expiry yet: still held
    [still] = await store.set_shares("alive", [ask("p", 5)], 30)
    clock.advance(0.125)
    [after] = await store.set_shares("alive", [ask("p", 5)], 30)
    assert (before.granted, still.granted, after.granted) == (0, 0, 5)


async def test_renew_keeps_and_drop_hands_back_every_share(
    store: Store, clock: FakeClock
) -> None:
    await store.set_shares("A", [ask("p", 2), ask("q", 1)], 0.25)
    await store.renew_shares("A", 30)
    clock.advance(29.5)
    assert {s.pool for s in await store.list_shares()} == {"p", "q"}
    await store.drop_shares("A")
    assert await store.list_shares() == []
    [nothing] = await store.set_shares("B", [ask("p", 0)], 30)  # asking nothing keeps no row
    assert nothing.granted == 0 and await store.list_shares() == []


async def test_a_bucket_starts_full_refills_with_time_and_caps_at_its_burst(
    store: Store, clock: FakeClock
) -> None:
    assert await store.take_tokens("k", 10, 5, 4) == 4
    assert await store.take_tokens("k", 10, 5, 4) == 1  # no time passed: nothing refilled
    assert await store.take_tokens("k", 10, 5, 4) == 0
    clock.advance(0.25)  # 2.5 tokens come back
    assert await store.take_tokens("k", 10, 5, 4) == 2.5
    clock.advance(1.0)
    assert await store.take_tokens("k", 10, 5, 100) == 5  # never more than the burst


async def test_debt_goes_negative_and_giving_back_is_capped(
    store: Store, clock: FakeClock
) -> None:
    assert await store.take_tokens("d", 0.001, 100, 150, allow_debt=True) == 150
    [level] = await store.list_buckets()
    assert level.tokens == -50
    assert await store.take_tokens("d", 0.001, 100, 10) == 0  # in debt: nothing to take
    assert await store.take_tokens("d", 0.001, 100, -500) == -500
    [level] = await store.list_buckets()
    assert level.tokens == pytest.approx(100) and level.level_at(clock.now()) <= 100
