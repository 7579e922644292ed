"""`podium_desired_workers`: Little's law over the window, on a fake clock; the scrape cache.

The formula is checked on its own, then through the store: runs submitted, time moved on the
FakeClock, and the gauge compared with the formula over what the store holds.
"""

from __future__ import annotations

import pytest
from clocklib import eventually
from metricslib import Scrape

from podium.bus.base import Bus
from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.observe.metrics import Metrics
from podium.observe.scaling import Load, ScalingPolicy, desired_workers
from podium.settings import Settings
from podium.store.base import Store
from podium.store.records import WorkerInfo

POLICY = ScalingPolicy(window_s=300.0, drain_s=60.0, slots_per_worker=100)


@pytest.mark.parametrize(("load", "slots", "expected"), [
    (Load(arrived=0, mean_service_s=None, queued=0, running=0), 4, 0),  # idle: none
    (Load(arrived=600, mean_service_s=2.0, queued=0, running=0), 1, 4),  # λ=2/s × 2 s = 4
    (Load(arrived=600, mean_service_s=2.0, queued=0, running=0), 100, 1),
    (Load(arrived=0, mean_service_s=6.0, queued=100, running=0), 4, 3),  # 100×6/60 = 10 slots
    (Load(arrived=30, mean_service_s=1.0, queued=0, running=9), 4, 3),  # running hold slots
    (Load(arrived=5, mean_service_s=None, queued=3, running=2), 2, 3),  # no time yet: 1 each
])
def test_the_formula(load: Load, slots: int, expected: int) -> None:
    assert desired_workers(load, POLICY, slots) == expected


def test_the_floor_and_the_default_slots() -> None:
    idle = Load(arrived=0, mean_service_s=None, queued=0, running=0)
    assert desired_workers(idle, ScalingPolicy(min_workers=2), None) == 2
    busy = Load(arrived=0, mean_service_s=None, queued=150, running=50)
    assert desired_workers(busy, ScalingPolicy(slots_per_worker=100), None) == 2


SLOW = Workflow.model_validate(
    {"name": "scaling-slow", "steps": {"work": {"kind": "sim", "latency": "30s"}}}
)


def _beat(clock: FakeClock) -> WorkerInfo:
    return WorkerInfo(
        worker_id="w-scaling", host="h", pid=1, concurrency=4, active=4, state="running",
        started_at=clock.now(), heartbeat_at=clock.now(),
    )


async def test_desired_workers_follows_the_store_on_a_fake_clock(
    clocked_store: Store, bus: Bus, settings: Settings, clock: FakeClock
) -> None:
    four = settings.model_copy(update={"max_active_runs": 4})
    async with Engine(clocked_store, bus, four) as engine:
        metrics = Metrics.attach(engine)
        await clocked_store.heartbeat(_beat(clock))
        for _ in range(12):
            await engine.submit(SLOW)

        async def four_running() -> bool:
            return (await clocked_store.run_activity(0.0)).running == 4

        await eventually(four_running)
        clock.advance(10.0)  # the four have run 10 s; eight wait
        await clocked_store.heartbeat(_beat(clock))
        scrape = Scrape.parse(await metrics.exposition())

        expected = desired_workers(Load(12, 10.0, queued=8, running=4), metrics.state.policy, 4)
        assert expected == 2  # max(12/300 × 10, 4 running) + 8 × 10/60 = 5.33 slots, 4 a worker
        assert scrape.value("podium_desired_workers") == expected
        assert scrape.value("podium_run_arrival_rate") == pytest.approx(12 / 300)
        assert scrape.value("podium_run_service_seconds") == pytest.approx(10.0)
        assert scrape.value("podium_queue_depth", priority="normal") == 8
        assert scrape.value("podium_queue_oldest_wait_seconds", priority="normal") == 10.0
        assert scrape.value("podium_active_runs") == 4
        assert scrape.value("podium_workers", state="running") == 1
        assert scrape.value("podium_worker_slots", state="busy") == 4

        clock.advance(11.0)  # no heartbeat for 11 s: the worker is lost
        scrape = Scrape.parse(await metrics.exposition())
        assert scrape.value("podium_workers", state="lost") == 1
        assert scrape.value("podium_workers", state="running") == 0
        await engine.shutdown()


async def test_a_hammering_scraper_reads_the_store_once_a_second(
    clocked_store: Store, bus: Bus, settings: Settings, clock: FakeClock
) -> None:
    async with Engine(clocked_store, bus, settings) as engine:
        metrics = Metrics.attach(engine)
        for _ in range(50):
            await metrics.exposition()
        assert metrics.state.reads == 1
        clock.advance(0.5)
        await metrics.exposition()
        assert metrics.state.reads == 1
        clock.advance(0.5)
        await metrics.exposition()
        assert metrics.state.reads == 2
