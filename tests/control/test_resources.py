"""Resource admission: queue, degrade, reject; reservations released on every
path, and after SIGKILL of their holder once its lease-long TTL passes. Both stores."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from clocklib import advance_until
from holders import kill_while_holding
from limitlib import eventually, settings_with
from resource_holder import CAPACITIES, LEASE_S

from podium.bus import open_bus
from podium.clock import FakeClock
from podium.control.admission import pool_name
from podium.engine.engine import Engine
from podium.errors import AdmissionRejected
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store


def sim_workflow(name: str, steps: dict[str, dict[str, Any]], **fields: Any) -> Workflow:
    body = {sid: {"kind": "sim", "retry": {"attempts": 1}, **spec} for sid, spec in steps.items()}
    return Workflow.model_validate({"name": name, "steps": body, **fields})


def one_step(name: str, cpu: float, latency: str = "200ms", **fields: Any) -> Workflow:
    return sim_workflow(name, {"work": {"latency": latency, "resources": {"cpu": cpu}}}, **fields)


@asynccontextmanager
async def engine_on(store: Store, settings: Settings) -> AsyncIterator[Engine]:
    async with open_bus("memory://") as bus, Engine(store, bus, settings) as engine:
        yield engine


def cpu_in_use(engine: Engine) -> float:
    pool = engine.control.pools._pools.get(pool_name("cpu"))
    return 0.0 if pool is None else pool.in_use


async def test_runs_that_do_not_fit_wait_queued_and_never_overlap(store: Store) -> None:
    settings = settings_with(resources={"cpu": 2})
    heavy = one_step("heavy", 2, "100ms")
    async with engine_on(store, settings) as engine:
        ids = await asyncio.gather(*(engine.submit(heavy) for _ in range(4)))
        summaries = await asyncio.gather(*(engine.wait(i) for i in ids))
        assert cpu_in_use(engine) == 0
    assert [s.status for s in summaries] == ["succeeded"] * 4
    spans = sorted((s.steps["work"].started_at, s.steps["work"].finished_at)
                   for s in summaries)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


async def test_the_head_of_the_queue_waits_and_nothing_jumps_it(store: Store) -> None:
    settings = settings_with(resources={"cpu": 2})
    async with engine_on(store, settings) as engine:
        blocker = await engine.submit(one_step("blocker", 1, "300ms"))
        await eventually(lambda: _true(cpu_in_use(engine) == 1))
        big = await engine.submit(one_step("big", 2, "10ms"))  # must wait for the blocker
        small = await engine.submit(one_step("small", 1, "10ms"))  # would fit, but waits too
        done = [await engine.wait(i) for i in (blocker, big, small)]
    started = {s.workflow: s.steps["work"].started_at for s in done}
    assert all(s.status == "succeeded" for s in done)
    assert started["big"] < started["small"]


async def _true(value: bool) -> bool:
    return value


async def test_degrade_drops_optional_steps_to_fit_and_says_which_resource(
    store: Store,
) -> None:
    settings = settings_with(resources={"cpu": 3})
    degradable = sim_workflow(
        "degradable",
        {
            "main": {"latency": "10ms", "resources": {"cpu": 1}},
            "extra": {"latency": "10ms", "resources": {"cpu": 2}, "optional": True},
            "after": {"needs": ["extra"], "latency": "10ms", "trigger": "all_done"},
        },
        on_constrained="degrade",
    )
    async with engine_on(store, settings) as engine:
        blocker = await engine.submit(one_step("blocker", 2, "500ms"))
        await eventually(lambda: _true(cpu_in_use(engine) == 2))
        summary = await engine.run(degradable)  # 3 cpu at its peak, 1 free: drops `extra`
        events = [e for _, e in await store.list_events(summary.run_id)]
        await engine.wait(blocker)
    assert summary.status == "degraded"  # it finished, but not as designed
    assert summary.steps["main"].status == "succeeded"
    assert summary.steps["extra"].status == "skipped"
    assert "dropped to fit the free resources" in (summary.steps["extra"].error or "")
    assert summary.steps["after"].status == "succeeded"
    [skipped] = [e for e in events if e.event_type == "agent.task.skipped"]
    assert "cpu (needs 3, 1 free)" in skipped.payload["reason"]


async def test_degrade_without_pressure_runs_every_step(store: Store) -> None:
    settings = settings_with(resources={"cpu": 3})
    degradable = sim_workflow(
        "roomy",
        {"main": {"resources": {"cpu": 1}},
         "extra": {"resources": {"cpu": 2}, "optional": True}},
        on_constrained="degrade",
    )
    async with engine_on(store, settings) as engine:
        summary = await engine.run(degradable)
    assert {s.status for s in summary.steps.values()} == {"succeeded"}
    assert summary.status == "succeeded"


async def test_reject_fails_at_submit_naming_the_resource_the_need_and_what_is_free(
    store: Store,
) -> None:
    settings = settings_with(resources={"cpu": 2, "memory": "1Gi"})
    rejecting = one_step("rejecting", 1, "10ms", on_constrained="reject")
    async with engine_on(store, settings) as engine:
        blocker = await engine.submit(one_step("blocker", 2, "300ms"))
        await eventually(lambda: _true(cpu_in_use(engine) == 2))
        with pytest.raises(AdmissionRejected) as caught:
            await engine.submit(rejecting)
        runs_before = len(await store.list_runs())
        await engine.wait(blocker)
        after = await engine.run(rejecting)  # free again: admitted
    message = str(caught.value)
    assert "cpu" in message and "needs 1" in message and "0 is free now" in message
    assert runs_before == 1  # nothing was persisted for the rejected run
    assert after.status == "succeeded"


@pytest.mark.parametrize("mode", ["queue", "degrade", "reject"])
async def test_a_peak_above_the_whole_capacity_is_rejected_whatever_on_constrained_says(
    store: Store, mode: str
) -> None:
    settings = settings_with(resources={"cpu": 2})
    too_big = one_step("too-big", 3, on_constrained=mode)
    async with engine_on(store, settings) as engine:
        with pytest.raises(AdmissionRejected, match=r"needs 3 cpu .* 2 exist in all"):
            await engine.submit(too_big)
    assert await store.list_runs() == []


async def test_agent_instances_count_agent_steps_running_at_once(store: Store) -> None:
    settings = settings_with(resources={"agent_instances": 2})
    fan = Workflow.model_validate({
        "name": "agents",
        "agents": {"bot": {"kind": "sim", "latency": "10ms"}},
        "steps": {"a": {"agent": "bot"}, "b": {"agent": "bot"}, "c": {"agent": "bot"}},
    })
    async with engine_on(store, settings) as engine:
        with pytest.raises(AdmissionRejected, match="needs 3 agent_instances"):
            await engine.submit(fan)


@pytest.mark.parametrize("ending", ["success", "failure", "cancel"])
async def test_reservations_are_released_however_the_run_ends(
    store: Store, ending: str
) -> None:
    settings = settings_with(resources={"cpu": 2})
    spec: dict[str, Any] = {"latency": "10ms", "resources": {"cpu": 2}}
    if ending == "failure":
        spec["fail_rate"] = 1.0
    if ending == "cancel":
        spec["latency"] = "1h"
    workflow = sim_workflow(f"ends-{ending}", {"work": spec})
    async with engine_on(store, settings) as engine:
        run_id = await engine.submit(workflow)
        if ending == "cancel":
            await eventually(lambda: _true(cpu_in_use(engine) == 2))
            await engine.cancel(run_id)
        summary = await engine.wait(run_id)
        assert engine.control.admission.held(run_id) is None
        assert cpu_in_use(engine) == 0
        follower = await engine.run(one_step("follower", 2, "10ms"))
    expected = {"success": "succeeded", "failure": "failed", "cancel": "cancelled"}[ending]
    assert summary.status == expected
    assert follower.status == "succeeded"


async def test_a_killed_holders_reservation_comes_back_after_its_ttl(store_url: str) -> None:
    await kill_while_holding("resource_holder.py", store_url)
    # The holder kept real time: this clock starts where it died, at most a lease after its
    # share was last renewed.
    clock = FakeClock(start=time.time())
    settings = settings_with(resources=CAPACITIES).model_copy(update={"lease_s": LEASE_S})
    async with open_store(store_url, clock=clock) as store, engine_on(store, settings) as engine:
        [share] = await store.list_shares()
        run = asyncio.ensure_future(engine.run(one_step("after-crash", 2, "10ms")))
        await advance_until(clock, run.done, 0.05)
        summary = await run
    assert share.amount == 2.0  # the dead holder's, still live at first
    assert summary.status == "succeeded"
    assert clock.now() >= share.expires_at  # it had to wait for the expiry
