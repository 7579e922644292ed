"""The schedules table on both stores: add/get/list/remove, and the tick claim's compare-and-set."""

from __future__ import annotations

import asyncio
import time

from schedule_steps import make_schedule

from podium.control.schedules import parse_spec
from podium.store import Store, open_store


async def test_schedules_are_added_listed_found_and_removed_by_id_or_name(store: Store) -> None:
    every = parse_spec("every", "1m", now=time.time())
    first = make_schedule(every, name="nightly")
    second = make_schedule(every, name="hourly")
    assert await store.add_schedule(first)
    assert await store.add_schedule(second)
    assert [s.name for s in await store.list_schedules()] == ["hourly", "nightly"]
    found = await store.get_schedule("nightly")
    assert found == first
    assert await store.get_schedule(first.schedule_id) == first
    assert await store.get_schedule("weekly") is None
    removed = await store.remove_schedule(second.schedule_id)
    assert removed == second
    assert await store.remove_schedule("nightly") == first
    assert await store.remove_schedule("nightly") is None
    assert await store.list_schedules() == []


async def test_a_taken_name_adds_nothing(store: Store) -> None:
    every = parse_spec("every", "1m", now=time.time())
    assert await store.add_schedule(make_schedule(every, name="dup"))
    assert not await store.add_schedule(make_schedule(every, name="dup"))
    assert len(await store.list_schedules()) == 1


async def test_only_one_claim_of_a_tick_succeeds(store: Store) -> None:
    now = time.time()
    every = parse_spec("every", "1m", now=now)
    schedule = make_schedule(every, next_at=now - 1)
    await store.add_schedule(schedule)
    assert [s.schedule_id for s in await store.due_schedules(now, now - 30)] == [
        schedule.schedule_id
    ]
    tick = now - 1
    assert await store.claim_schedule_tick(schedule.schedule_id, tick, now + 59, now)
    assert not await store.claim_schedule_tick(schedule.schedule_id, tick, now + 59, now)
    claimed = await store.get_schedule(schedule.schedule_id)
    assert claimed is not None
    assert (claimed.next_at, claimed.pending_tick, claimed.pending_since) == (now + 59, tick, now)
    assert await store.due_schedules(now + 100, now - 30) == []  # pending: nobody else fires it
    assert await store.next_schedule_at() is None
    await store.finish_schedule_tick(schedule.schedule_id, tick, "run-1", now)
    done = await store.get_schedule(schedule.schedule_id)
    assert done is not None
    assert (done.pending_tick, done.last_run_id, done.last_fired_at) == (None, "run-1", now)
    assert await store.next_schedule_at() == now + 59


async def test_a_stale_pending_tick_is_taken_over_by_one_caller(store: Store) -> None:
    now = time.time()
    schedule = make_schedule(parse_spec("every", "1m", now=now), next_at=now - 1)
    await store.add_schedule(schedule)
    await store.claim_schedule_tick(schedule.schedule_id, now - 1, now + 59, now - 60)
    stale = await store.due_schedules(now, now - 30)
    assert [s.pending_tick for s in stale] == [now - 1]
    assert await store.reclaim_schedule_tick(schedule.schedule_id, now - 1, now - 60, now)
    assert not await store.reclaim_schedule_tick(schedule.schedule_id, now - 1, now - 60, now)
    assert await store.due_schedules(now, now - 30) == []


async def test_racing_claims_from_two_connections_take_each_tick_once(store_url: str) -> None:
    now = time.time()
    spec = parse_spec("every", "1s", now=now)
    async with open_store(store_url) as one, open_store(store_url) as two:
        schedules = [make_schedule(spec, name=f"s{i}", next_at=now - 5) for i in range(20)]
        for schedule in schedules:
            await one.add_schedule(schedule)

        async def claim_all(store: Store) -> list[str]:
            won = []
            for s in schedules:
                if await store.claim_schedule_tick(s.schedule_id, now - 5, now + 1, now):
                    won.append(s.schedule_id)
                await asyncio.sleep(0)
            return won

        first, second = await asyncio.gather(claim_all(one), claim_all(two))
    assert sorted(first + second) == sorted(s.schedule_id for s in schedules)
    assert not set(first) & set(second)
