"""The priority queue: strict priority then FIFO, TTL -> expired -> DLQ.

On both stores; `podium queue` reads depth and oldest wait per priority from the store.
"""

from __future__ import annotations

import asyncio
import json
import time

from typer.testing import CliRunner

from podium.bus import open_bus
from podium.bus.base import Bus
from podium.cli.app import app
from podium.clock import FakeClock
from podium.control.config import ControlConfig, Queue, QueueTtl
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store
from podium.store.base import Store


def make_workflow(steps: dict[str, object], **fields: object) -> Workflow:
    return Workflow.model_validate({"name": "test-wf", "steps": steps, **fields})


def _settings(max_active: int = 1, **ttl: float) -> Settings:
    control = ControlConfig(queue=Queue(ttl=QueueTtl(**ttl)))
    return Settings(
        poll_interval_s=0.02, lease_s=5, store_retry_s=0.5,
        max_active_runs=max_active, control=control,
    )


def _blocker(seconds: float) -> Workflow:
    return make_workflow(
        {"hold": {"kind": "sim", "latency": f"{seconds}s"}}, name="blocker", priority="critical"
    )


def _quick(priority: str, name: str = "quick") -> Workflow:
    return make_workflow({"a": {"kind": "sim", "latency": 0}}, name=name, priority=priority)


async def _start_order(store: Store, run_ids: list[str]) -> list[str]:
    started: list[tuple[int, str]] = []
    for run_id in run_ids:
        for seq, event in await store.list_events(run_id):
            if event.event_type == "run.started":
                started.append((seq, run_id))
    return [run_id for _, run_id in sorted(started)]


async def test_queued_runs_start_by_priority_then_fifo(store: Store, bus: Bus) -> None:
    async with Engine(store, bus, _settings()) as engine:
        blocker = await engine.submit(_blocker(0.3))
        order = ["low", "normal", "high", "low", "critical", "normal", "high", "critical"]
        submitted = [await engine.submit(_quick(p)) for p in order]
        for run_id in [blocker, *submitted]:
            assert (await engine.wait(run_id)).status == "succeeded"
    rank = {"critical": 0, "high": 1, "normal": 2, "low": 3}
    pairs = enumerate(zip(order, submitted, strict=True))
    expected = [r for _, _, r in sorted((rank[p], i, r) for i, (p, r) in pairs)]
    assert await _start_order(store, submitted) == expected


async def test_a_run_waiting_past_its_ttl_expires_into_the_dlq(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    store = clocked_store  # the engine, its queue TTLs and the sim latency run on `clock`
    async with Engine(store, bus, _settings(normal=0.2)) as engine:
        blocker = await engine.submit(_blocker(1.5))
        late = await engine.submit(_quick("normal"))
        kept = await engine.submit(_quick("high"))
        waiting = asyncio.ensure_future(engine.wait(late))
        await clock.run_for(0.15)
        assert not waiting.done()  # within its TTL
        await clock.run_for(0.25)
        summary = await asyncio.wait_for(waiting, 10)  # expired while blocked
        assert summary.status == "expired"
        assert "queue TTL of 0.2s" in (summary.error or "")
        assert (await store.get_run(blocker)).status == "running"  # type: ignore[union-attr]
        finished = asyncio.ensure_future(engine.wait(kept))
        await clock.run_for(1.5)  # the blocker is done: `kept` (high: 5 min TTL) runs
        assert (await asyncio.wait_for(finished, 10)).status == "succeeded"
    entry = await store.get_dlq(late)
    assert entry is not None and entry.status == "expired"
    types = [e.event_type for _, e in await store.list_events(late)]
    assert types == ["run.queued", "run.expired", "run.completed"]
    assert not await store.get_steps(late)  # it never started a step


async def test_overdue_runs_nobody_holds_expire_on_a_sweep(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    store = clocked_store
    # An engine queues two runs and stops (its leases are released, as after a drain):
    # the runs wait in the store, as they do behind a backlog in distributed mode.
    async with Engine(store, bus, _settings()) as first:
        await first.submit(_blocker(5))
        waiting = await first.submit(_quick("normal"))
        fresh = await first.submit(_quick("high"))
        await first.journal.committed()
    clock.advance(0.25)
    async with Engine(store, bus, _settings(normal=0.2)) as sweeper:
        assert await sweeper.expire_overdue() == [waiting]
        assert await sweeper.expire_overdue() == []
    row = await store.get_run(waiting)
    assert row is not None and row.status == "expired" and row.owner is None
    assert (await store.get_run(fresh)).status == "queued"  # type: ignore[union-attr]
    assert await store.get_dlq(waiting) is not None


async def test_a_replayed_run_waits_a_fresh_ttl(
    clocked_store: Store, clock: FakeClock, bus: Bus
) -> None:
    async with Engine(clocked_store, bus, _settings(max_active=4, normal=0.5)) as engine:
        wf = make_workflow({"a": {"kind": "sim", "latency": 0, "fail_rate": 1.0,
                                  "retry": {"attempts": 1}}})
        run_id = await engine.submit(wf)
        assert (await engine.wait(run_id)).status == "failed"
        clock.advance(0.75)  # older than the TTL by now
        await engine.replay(run_id)
        summary = await engine.wait(run_id)
        assert summary.status == "failed"  # it ran again (and failed), it did not expire


def test_podium_queue_shows_depth_and_oldest_wait(store_url: str) -> None:
    # The runs are queued half a minute ago by the clock they were submitted on: the CLI,
    # reading with the real one, sees them waiting that long.
    clock = FakeClock(start=time.time() - 30)

    async def fill() -> None:
        async with (
            open_store(store_url, clock=clock) as store,
            open_bus("memory://") as bus,
            Engine(store, bus, _settings()) as engine,
        ):
            await engine.submit(_blocker(5))
            for priority in ("low", "low", "high"):
                await engine.submit(_quick(priority))
            await engine.journal.committed()

    asyncio.run(fill())
    result = CliRunner().invoke(app, ["queue", "--json", "--store", store_url])
    assert result.exit_code == 0, result.output
    rows = {r["priority"]: r for r in json.loads(result.stdout)["priorities"]}
    assert [rows[p]["depth"] for p in ("critical", "high", "normal", "low")] == [0, 1, 0, 2]
    assert rows["low"]["oldest_wait_s"] >= 30
    assert rows["normal"]["oldest_wait_s"] is None
    assert rows["critical"]["ttl_s"] == 60.0
