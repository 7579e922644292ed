"""Liveness: random trees of nested runs under tight limits all end, on both stores.

Hypothesis draws trees (depth up to 3, `for_each` over child workflows) with resources, costs
and failures; the engine runs several at once with few active-run slots, a cpu capacity, a
global concurrency cap and run budgets. Every run must reach a final status within a bound,
and nothing may be left queued or running.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clocklib import eventually
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium.bus import open_bus
from podium.control.config import ControlConfig
from podium.engine.engine import Engine
from podium.errors import AdmissionRejected
from podium.model.status import RUN_FINAL
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

BOUND_S = 90.0  # a liveness bound: far above what any drawn tree needs, never a timing claim
CPU = 2.0


@st.composite
def trees(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 3))):
        earlier = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=2)) if i else []
        needs = [f"s{j}" for j in earlier]
        shape = draw(st.sampled_from(["sim", "sim", "child", "for_each"])) if depth < 3 else "sim"
        if shape == "sim":
            step: dict[str, Any] = {
                "kind": "sim",
                "latency": draw(st.sampled_from(["0ms", "2ms"])),
                "resources": {"cpu": draw(st.sampled_from([0.0, 0.5, 1.0]))},
                "cost_usd": draw(st.sampled_from([0.0, 0.01])),
                "fail_times": draw(st.sampled_from([0, 0, 0, 9])),
                "retry": {"attempts": 1},
            }
        else:
            step = {"kind": "workflow", "workflow": f"child{depth}",
                    "definition": draw(trees(depth + 1))}
            if shape == "for_each":
                step.update(for_each=[1, 2], max_parallel=draw(st.integers(1, 2)))
        steps[f"s{i}"] = {**step, "needs": needs, "trigger": "all_done"}
    tree: dict[str, Any] = {"name": f"tree{depth}", "steps": steps}
    budget = draw(st.sampled_from([None, 0.015, 1.0]))
    if budget is not None:
        tree["budget"] = {"usd": budget}
    return tree


async def _run_all(url: str, definitions: list[dict[str, Any]], slots: int) -> None:
    settings = Settings(
        poll_interval_s=0.02, lease_s=5, store_retry_s=0.5, max_active_runs=slots,
        control=ControlConfig(resources={"cpu": CPU}, limits={"max_concurrent": 2}),
    )
    async with (
        open_store(url) as store,
        open_bus("memory://") as bus,
        Engine(store, bus, settings) as engine,
    ):
        ids = []
        for definition in definitions:
            try:
                ids.append(await engine.submit(Workflow.model_validate(definition)))
            except AdmissionRejected:
                continue  # a tree whose peak exceeds the capacity is refused whole: fine
        await asyncio.wait_for(asyncio.gather(*(engine.wait_done(i) for i in ids)), BOUND_S)
        await engine.journal.drain()
        mine = {r.run_id: r for r in await store.list_runs(limit=10_000)}
        for run_id in ids:
            assert mine[run_id].status in RUN_FINAL

        async def open_runs() -> list[tuple[str, str]]:
            everything = await store.list_runs(limit=10_000)
            return [(r.workflow, r.status) for r in everything
                    if r.status not in RUN_FINAL and r.owner == engine.owner]

        async def settled() -> bool:
            return not await open_runs()

        # Children included, every run of this engine ends too. A child cancelled because its
        # parent stopped ends on its own (the parent does not wait for it): within the bound.
        try:
            await eventually(settled, timeout_s=BOUND_S)
        except TimeoutError:
            raise AssertionError(f"runs left open: {await open_runs()}") from None


@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(definitions=st.lists(trees(), min_size=1, max_size=4), slots=st.integers(1, 2))
def test_every_tree_of_runs_ends_under_tight_limits(
    store_url: str, definitions: list[dict[str, Any]], slots: int
) -> None:
    asyncio.run(_run_all(store_url, definitions, slots))
