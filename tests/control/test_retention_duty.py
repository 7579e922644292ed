"""The retention duty: an engine whose `[retention]` sets `finished_runs` runs `podium gc` every
`every` on its clock (no sleeping: the FakeClock moves), one process at a time per store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from podium.bus import Bus
from podium.clock import FakeClock
from podium.control.config import ControlConfig, Retention
from podium.control.retention import FIRST_PASS_MAX_S, RetentionDuty
from podium.engine.engine import Engine
from podium.errors import PodiumError
from podium.settings import Settings
from podium.store import Batch, RunState, StepState, Store

DAY = 86400.0


async def seed_finished(store: Store, run_id: str, finished_at: float) -> None:
    run = RunState(run_id, "wf", "1", "d1", {}, status="succeeded", created_at=finished_at - 1,
                   started_at=finished_at - 1, finished_at=finished_at)
    step = StepState(run_id, "a", status="succeeded")
    await store.write(Batch(definitions={"d1": b"{}"}, runs={run_id: run},
                            steps={step.key: step}))


def settings_with(retention: Retention) -> Settings:
    return Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5,
                    control=ControlConfig(retention=retention))


async def test_an_engine_deletes_old_runs_every_period(
    clocked_store: Store, bus: Bus, clock: FakeClock
) -> None:
    store = clocked_store
    await seed_finished(store, "old", clock.now() - 31 * DAY)
    await seed_finished(store, "young", clock.now() - 20 * DAY)
    retention = Retention(finished_runs="30d", every="1h")

    async with Engine(store, bus, settings_with(retention)) as engine:
        duty = engine.control.retention
        await clock.run_for(FIRST_PASS_MAX_S - 1)
        assert duty.passes == [] and await store.get_run("old") is not None

        await clock.run_for(2)  # the first pass
        await _settled(duty, 1)
        assert await store.get_run("old") is None and await store.get_steps("old") == []
        assert await store.get_run("young") is not None
        assert duty.passes[-1].runs == 1

        clock.advance(10 * DAY)  # young is 30 days old now; the duty wakes once
        await _settled(duty, 2)
        assert await store.get_run("young") is None
        assert len(duty.passes) == 2


async def _settled(duty: RetentionDuty, passes: int) -> None:
    # A pass's batches wait on the store's writer thread: real I/O, not the clock.
    for _ in range(500):
        if len(duty.passes) >= passes:
            return
        await _io_tick()
    raise AssertionError(f"{passes} pass(es) expected, {len(duty.passes)} done")


async def _io_tick() -> None:
    await asyncio.sleep(0.01)  # real time: the store's writer thread, not the clock


async def test_without_finished_runs_no_duty_runs(clocked_store: Store, bus: Bus) -> None:
    async with Engine(clocked_store, bus, settings_with(Retention())) as engine:
        assert not engine.control.retention.wanted
        assert engine.control.retention._task is None


async def test_a_failed_pass_is_logged_and_the_duty_goes_on(
    clocked_store: Store, clock: FakeClock
) -> None:
    calls: list[int] = []

    class Flaky:
        def __getattr__(self, name: str) -> Any:
            return getattr(clocked_store, name)

        async def delete_finished_runs(self, *args: Any, **kw: Any) -> Any:
            calls.append(1)
            if len(calls) == 1:
                raise PodiumError("store down")
            return await clocked_store.delete_finished_runs(*args, **kw)

    flaky: Any = Flaky()
    duty = RetentionDuty(flaky, Retention(finished_runs="1d", every="1h"), clock)
    duty.start()
    await clock.run_for(FIRST_PASS_MAX_S + 1)
    await _wait_for(lambda: len(calls) == 1 and clock.sleepers == 1)  # asleep again
    await clock.run_for(3600)
    await _settled(duty, 1)
    await duty.close()
    assert len(calls) == 2 and duty.passes[-1].runs == 0


async def _wait_for(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await _io_tick()
    raise AssertionError("not reached")


@pytest.mark.parametrize("bad", ["soon", "-1d", "0"])
def test_a_bad_retention_setting_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Retention(finished_runs=bad)
