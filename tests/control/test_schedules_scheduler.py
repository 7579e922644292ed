"""The scheduler on both stores: ticks fire once across schedulers, missed ticks fire once,
schedules survive restarts, `at` fires once, and a dead scheduler's claimed tick is finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import schedule_steps
from clocklib import advance_until, step_through
from schedule_steps import RAN, make_schedule

from podium.bus import open_bus
from podium.clock import SYSTEM_CLOCK, Clock, FakeClock
from podium.control.schedules import parse_spec, tick_run_id
from podium.engine.engine import Engine
from podium.engine.scheduler import FIRED_EVENT, Scheduler
from podium.settings import Settings
from podium.store import Store, open_store
from podium.store.schedules import Schedule


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    RAN.clear()
    yield
    RAN.clear()


@asynccontextmanager
async def engine_on(
    url: str, settings: Settings, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[Engine]:
    """An engine with its own store connection: what a second process would have."""
    async with (
        open_store(url, clock=clock) as store,
        open_bus("memory://") as bus,
        Engine(store, bus, settings) as engine,
    ):
        yield engine


def ran(count: int) -> Callable[[], bool]:
    return lambda: sum(RAN.values()) >= count


async def wait_until_ran(count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(RAN.values()) < count:
        assert time.monotonic() < deadline, f"only {sum(RAN.values())} of {count} runs ran"
        await asyncio.sleep(0.02)


async def scheduled_runs(store: Store, workflow: str = "ticked") -> list[str]:
    return [r.run_id for r in await store.list_runs(workflow=workflow, limit=10_000)]


async def test_two_schedulers_racing_never_fire_a_tick_twice(
    store_url: str, settings: Settings
) -> None:
    now = time.time()
    spec = parse_spec("every", "1s", now=now)
    async with engine_on(store_url, settings) as one, engine_on(store_url, settings) as two:
        for i in range(10):
            await one.store.add_schedule(make_schedule(spec, name=f"s{i}", next_at=now - 0.5))
        first, second = Scheduler(one), Scheduler(two)
        fired: list[str] = []
        for round_ in range(3):  # three ticks of each schedule, both schedulers racing each
            at = now + round_
            results = await asyncio.gather(first.tick(at), second.tick(at), first.tick(at))
            fired.extend(run_id for result in results for run_id in result)
        assert len(fired) == len(set(fired)) == 30
        await asyncio.gather(*(one.wait_done(r) for r in fired if one.knows(r)))
        await asyncio.gather(*(two.wait_done(r) for r in fired if two.knows(r)))
        await wait_until_ran(30)
        assert sorted(await scheduled_runs(one.store)) == sorted(fired)
        events = [e for _, e in await one.store.list_events() if e.event_type == FIRED_EVENT]
    assert sorted(RAN) == sorted(fired)
    assert set(RAN.values()) == {1}
    assert sorted(e.payload["run_id"] for e in events) == sorted(fired)


async def test_two_scheduler_loops_fire_each_tick_once(
    store_url: str, settings: Settings, clock: FakeClock
) -> None:
    now = clock.now()
    spec = parse_spec("every", "200ms", now=now)
    async with (
        engine_on(store_url, settings, clock) as one,
        engine_on(store_url, settings, clock) as two,
    ):
        schedule = make_schedule(spec, next_at=now + 0.2)
        await one.store.add_schedule(schedule)
        async with Scheduler(one, poll_interval_s=0.01), Scheduler(two, poll_interval_s=0.01):
            await advance_until(clock, ran(5), 0.01)
        runs = await scheduled_runs(one.store)
        for run_id in runs:
            await (one if one.knows(run_id) else two).wait_done(run_id)
        stored = await one.store.get_schedule(schedule.schedule_id)
        events = [e for _, e in await one.store.list_events() if e.event_type == FIRED_EVENT]
    assert stored is not None and stored.next_at is not None
    ticks = round((stored.next_at - (now + 0.2)) / 0.2)
    assert 5 <= len(runs) <= ticks  # at most one run per tick (a late round skips, not doubles)
    assert len(events) == len(runs)
    assert set(RAN.values()) == {1}
    assert sorted(RAN) == sorted(runs)


@pytest.mark.parametrize(("kind", "text"), [("every", "1s"), ("cron", "* * * * *")])
async def test_ticks_missed_during_downtime_fire_once(
    engine: Engine, kind: str, text: str
) -> None:
    now = time.time()
    schedule = make_schedule(parse_spec(kind, text, now=now), next_at=now - 3 * 3600)
    await engine.store.add_schedule(schedule)
    scheduler = Scheduler(engine)
    fired = await scheduler.tick()
    assert fired == [tick_run_id(schedule.schedule_id, now - 3 * 3600)]
    assert await scheduler.tick() == []
    await engine.wait_done(fired[0])
    after = await engine.store.get_schedule(schedule.schedule_id)
    assert after is not None and after.next_at is not None
    assert time.time() < after.next_at <= time.time() + 60
    assert after.last_run_id == fired[0]
    assert await scheduled_runs(engine.store) == fired
    assert dict(RAN) == {fired[0]: 1}


async def test_a_schedule_survives_a_restart(
    store_url: str, settings: Settings, clock: FakeClock
) -> None:
    now = clock.now()
    async with engine_on(store_url, settings, clock) as before:
        schedule = make_schedule(parse_spec("every", "1h", now=now), next_at=now + 0.3)
        await before.store.add_schedule(schedule)
        assert await Scheduler(before).tick() == []  # not due yet; then the process ends
    async with engine_on(store_url, settings, clock) as after, Scheduler(after):
        await advance_until(clock, ran(1), 0.05)
        [run_id] = await scheduled_runs(after.store)
        summary = await after.wait(run_id)
    assert run_id == tick_run_id(schedule.schedule_id, now + 0.3)
    assert summary.status == "succeeded"


async def test_an_at_schedule_fires_once_and_stays_listed_as_done(
    clocked_engine: Engine, clock: FakeClock
) -> None:
    engine = clocked_engine
    now = clock.now()
    spec = parse_spec("at", "2099-01-01T00:00", now=now)
    schedule = make_schedule(spec, next_at=now + 0.1)
    await engine.store.add_schedule(schedule)
    async with Scheduler(engine, poll_interval_s=0.01):
        await advance_until(clock, ran(1), 0.01)
        [run_id] = await scheduled_runs(engine.store)
        await engine.wait_done(run_id)
        await step_through(clock, 0.3, 0.01)  # more polls: nothing more fires
    assert await scheduled_runs(engine.store) == [run_id]
    done = await engine.store.get_schedule(schedule.schedule_id)
    assert done is not None and done.done
    assert done.last_run_id == run_id
    assert dict(RAN) == {run_id: 1}


async def test_fired_event_names_the_schedule_tick_and_run(engine: Engine) -> None:
    now = time.time()
    schedule = make_schedule(parse_spec("every", "1m", now=now), next_at=now - 1)
    await engine.store.add_schedule(schedule)
    [run_id] = await Scheduler(engine).tick()
    await engine.wait_done(run_id)
    events = [e for _, e in await engine.store.list_events(run_id)]
    fired = [e for e in events if e.event_type == FIRED_EVENT]
    assert len(fired) == 1
    assert fired[0].payload["schedule"] == schedule.name
    assert fired[0].payload["run_id"] == run_id
    assert fired[0].payload["tick"].endswith("Z")
    run = await engine.store.get_run(run_id)
    assert run is not None and run.inputs == {"n": 1}


async def claimed_then_died(store: Store, schedule: Schedule, tick: float) -> None:
    """What a scheduler that died between its claim and its submit leaves behind."""
    await store.add_schedule(schedule)
    assert await store.claim_schedule_tick(schedule.schedule_id, tick, tick + 60, tick)


async def test_a_tick_claimed_by_a_dead_scheduler_is_submitted_by_another(
    engine: Engine,
) -> None:
    now = time.time()
    schedule = make_schedule(parse_spec("every", "1m", now=now), next_at=now - 120)
    await claimed_then_died(engine.store, schedule, now - 120)
    scheduler = Scheduler(engine, claim_timeout_s=60)
    [run_id] = await scheduler.tick()
    assert run_id == tick_run_id(schedule.schedule_id, now - 120)
    await engine.wait_done(run_id)
    assert dict(RAN) == {run_id: 1}
    finished = await engine.store.get_schedule(schedule.schedule_id)
    assert finished is not None and finished.pending_tick is None


async def test_a_tick_whose_run_exists_is_not_submitted_again(engine: Engine) -> None:
    now = time.time()
    schedule = make_schedule(parse_spec("every", "1m", now=now), next_at=now - 120)
    await claimed_then_died(engine.store, schedule, now - 120)
    run_id = tick_run_id(schedule.schedule_id, now - 120)
    # It died after its submit committed, before it cleared the pending tick.
    workflow = schedule_steps.counted_workflow()
    await engine.submit(workflow, {"n": 1}, run_id=run_id)
    await engine.wait_done(run_id)
    assert await Scheduler(engine, claim_timeout_s=60).tick() == [run_id]
    await asyncio.sleep(0.1)
    assert dict(RAN) == {run_id: 1}
    assert await scheduled_runs(engine.store) == [run_id]
    events = [e for _, e in await engine.store.list_events(run_id)]
    assert [e.event_type for e in events].count("run.queued") == 1


async def test_a_fresh_claim_of_a_live_scheduler_is_left_alone(engine: Engine) -> None:
    now = time.time()
    schedule = make_schedule(parse_spec("every", "1m", now=now), next_at=now - 1)
    await engine.store.add_schedule(schedule)
    assert await engine.store.claim_schedule_tick(schedule.schedule_id, now - 1, now + 59, now)
    assert await Scheduler(engine, claim_timeout_s=60).tick() == []
    assert dict(RAN) == {}
