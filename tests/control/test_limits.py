"""Concurrency caps and rate limits (issue items 2 and 3): counted server-side, on both stores."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from clocklib import advance_until, step_through
from limitlib import counting_server, eventually, http_workflow, max_in_window, settings_with

from podium.bus import open_bus
from podium.clock import FakeClock
from podium.control.config import AgentControl
from podium.control.limits import LimitsGuard
from podium.engine.engine import Engine
from podium.model.workflow import Limits
from podium.store import Store, open_store


async def _run_all(engine: Engine, workflow, count: int, **inputs: str) -> list[str]:  # type: ignore[no-untyped-def]
    ids = await asyncio.gather(*(engine.submit(workflow, inputs) for _ in range(count)))
    summaries = await asyncio.gather(*(engine.wait(i) for i in ids))
    return [s.status for s in summaries]


async def _true(value: bool) -> bool:
    return value


async def test_a_thundering_herd_never_has_more_than_max_concurrent_calls_in_flight(
    store: Store,
) -> None:
    with counting_server() as server:
        workflow = http_workflow(
            f"{server.url}/call/t?delay=0.02", limits={"max_concurrent": 5}
        )
        async with open_bus("memory://") as bus, Engine(store, bus, settings_with()) as engine:
            statuses = await _run_all(engine, workflow, 1000)
            assert any(isinstance(g, LimitsGuard) for g in engine.control.guards)
    assert statuses == ["succeeded"] * 1000
    assert len(server.calls) == 1000
    assert server.peak <= 5
    assert server.peak == 5  # the cap is reached, not just respected by running one at a time


async def test_two_engines_on_one_store_share_one_cap(store_url: str) -> None:
    settings = settings_with(agents={"caller": AgentControl(limits=Limits(max_concurrent=4))})
    with counting_server() as server:
        workflow = http_workflow(f"{server.url}/call/t?delay=0.01")
        async with (
            open_store(store_url) as store_a,
            open_store(store_url) as store_b,
            open_bus("memory://") as bus_a,
            open_bus("memory://") as bus_b,
            Engine(store_a, bus_a, settings) as one,
            Engine(store_b, bus_b, settings) as two,
        ):
            first, second = await asyncio.gather(
                _run_all(one, workflow, 150), _run_all(two, workflow, 150)
            )
            shares = await store_a.list_shares()
    assert first + second == ["succeeded"] * 300
    assert server.peak <= 4
    assert {s.pool for s in shares} <= {"agent:caller"}


async def test_the_global_cap_bounds_every_step_attempt(store: Store) -> None:
    settings = settings_with(limits={"max_concurrent": 3})
    with counting_server() as server:
        plain = http_workflow(f"{server.url}/call/a?delay=0.01", name="plain")
        other = http_workflow(f"{server.url}/call/b?delay=0.01", name="other")
        async with open_bus("memory://") as bus, Engine(store, bus, settings) as engine:
            assert [type(g) for g in engine.control.guards] == [LimitsGuard]
            statuses = await asyncio.gather(
                _run_all(engine, plain, 60), _run_all(engine, other, 60)
            )
    assert statuses == [["succeeded"] * 60] * 2
    assert server.peak == 3


async def test_calls_queued_behind_a_busy_agent_leave_global_slots_to_others(
    store: Store,
) -> None:
    # Global cap 3; one agent may run one call at a time, held until the test lets it go. Its
    # queued calls wait for the agent's slot without holding global ones, so another
    # workflow's call runs now.
    settings = settings_with(limits={"max_concurrent": 3})
    with counting_server() as server:
        busy = http_workflow(
            f"{server.url}/call/busy?held=busy", name="busy", limits={"max_concurrent": 1}
        )
        free = http_workflow(f"{server.url}/call/free", name="free")
        async with open_bus("memory://") as bus, Engine(store, bus, settings) as engine:
            busy_ids = [await engine.submit(busy) for _ in range(6)]
            await eventually(lambda: _true(server.now == 1))  # the busy calls are in line
            free_id = await engine.submit(free)
            assert (await asyncio.wait_for(engine.wait(free_id), 30)).status == "succeeded"
            for run_id in busy_ids:
                run = await store.get_run(run_id)
                assert run is not None and run.finished_at is None  # still held or queued
            server.gate.set()
            for run_id in busy_ids:
                assert (await engine.wait(run_id)).status == "succeeded"
    assert server.peak == 1 + 1  # the busy agent's one call, then the free one beside it


async def test_rpm_spreads_calls_over_time(clocked_store: Store, clock: FakeClock) -> None:
    # rpm 600: 10 calls a second, a burst of one second's worth.
    settings = settings_with(agents={"caller": AgentControl(limits=Limits(rpm=600))})
    with counting_server(clock.monotonic) as server:
        workflow = http_workflow(f"{server.url}/call/t")
        async with (
            open_bus("memory://") as bus,
            Engine(clocked_store, bus, settings) as engine,
        ):
            runs = asyncio.ensure_future(_run_all(engine, workflow, 40))
            await advance_until(clock, runs.done, 0.05)
            statuses = await runs
    assert statuses == ["succeeded"] * 40
    starts = [at for _, at in server.starts]
    # At most the burst (10) plus the rate over the window, plus slack: the server stamps a
    # call when it arrives, a little after the grant when the engine lags the fake clock.
    assert max_in_window(starts, 1.0) <= 10 + 10 + 4
    assert max_in_window(starts, 2.0) <= 10 + 20 + 4
    assert max(starts) - min(starts) >= 2.0  # 40 calls at 10/s after a burst of 10


async def test_one_tenant_flooding_does_not_block_another(store: Store) -> None:
    limits = {"max_concurrent": 1, "key": "{{ inputs.tenant }}"}
    with counting_server() as server:
        workflow = http_workflow(
            f"{server.url}/call/{{{{ inputs.tenant }}}}?held=big&delay=0.01", limits=limits
        )
        async with open_bus("memory://") as bus, Engine(store, bus, settings_with()) as engine:
            flood = [await engine.submit(workflow, {"tenant": "big"}) for _ in range(40)]
            await eventually(lambda: _true(server.now == 1))  # the flood's first call is held
            small = await asyncio.wait_for(engine.run(workflow, {"tenant": "small"}), 30)
            big_done_when_small_ran = sum(1 for t, *_ in server.calls if t == "big")
            server.gate.set()
            await asyncio.gather(*(engine.wait(i) for i in flood))
            pools = {p.pool for p in await store.list_shares()}
    assert small.status == "succeeded"
    assert big_done_when_small_ran == 0  # it did not wait for the flood to drain
    by_tenant: dict[str, list[tuple[float, float]]] = {}
    for tenant, start, end in server.calls:
        by_tenant.setdefault(tenant, []).append((start, end))
    big = sorted(by_tenant["big"])
    assert all(a[1] <= b[0] + 1e-3 for a, b in itertools.pairwise(big))  # one at a time
    assert pools <= {"agent:caller[big]", "agent:caller[small]"}


async def test_limits_configured_but_not_binding_make_almost_no_store_operations(
    clocked_store: Store, clock: FakeClock
) -> None:
    settings = settings_with(
        limits={"max_concurrent": 1000},
        agents={"caller": AgentControl(limits=Limits(max_concurrent=1000, rpm=6_000_000))},
    )
    with counting_server() as server:
        workflow = http_workflow(f"{server.url}/call/t")
        async with (
            open_bus("memory://") as bus,
            Engine(clocked_store, bus, settings) as engine,
        ):
            await _run_all(engine, workflow, 20)  # warm up: shares grow once
            pools, buckets = engine.control.pools, engine.control.buckets
            before = pools.ops + buckets.ops
            await _run_all(engine, workflow, 400)  # the clock stands still: no tick between
            per_steps = pools.ops + buckets.ops - before
            before = pools.ops + buckets.ops
            await step_through(clock, 1.0, 0.02)  # 50 ticks
            per_ticks = pools.ops + buckets.ops - before
    # Upkeep is per tick (contention read, renewals), not per step.
    assert per_steps < 20  # a few at most, not one per step (400)
    assert per_ticks <= 2 * 50


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"PODIUM_LIMITS__MAX_CONCURRENT": "0"}, "limits.max_concurrent"),
        ({"PODIUM_PROVIDERS": '{"openai": {"rpm": -5}}'}, "providers.openai.rpm"),
        ({"PODIUM_AGENTS": '{"w": {"limits": {"tpm": 0}}}'}, "agents.w.limits.tpm"),
        ({"PODIUM_RESOURCES__CPU": "-1"}, "resources.cpu"),
    ],
)
def test_bad_limits_are_an_error_naming_the_field(
    env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podium.control.config import load_control
    from podium.errors import PodiumError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PodiumError) as caught:
        load_control(None)
    assert field in str(caught.value)
