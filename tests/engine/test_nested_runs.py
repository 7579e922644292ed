"""Nested runs cannot starve: a run tree is admitted at its root, so a child never waits
behind active-run slots or resources its own ancestors hold. Both stores."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from podium.bus import open_bus
from podium.control.admission import pool_name
from podium.control.config import ControlConfig
from podium.engine.engine import Engine
from podium.errors import AdmissionRejected
from podium.model.workflow import Workflow
from podium.plan import build_plan
from podium.settings import Settings
from podium.store import Store

CHILD = {"name": "child", "steps": {"c": {"kind": "sim", "output": {"v": 1}}}}


def parent(name: str = "parent", child: dict[str, Any] = CHILD, **step: Any) -> Workflow:
    return Workflow.model_validate({
        "name": name,
        "steps": {"p": {"kind": "workflow", "workflow": "child", "definition": child, **step}},
    })


@asynccontextmanager
async def engine_on(store: Store, settings: Settings) -> AsyncIterator[Engine]:
    async with open_bus("memory://") as bus, Engine(store, bus, settings) as engine:
        yield engine


def _settings(max_active_runs: int = 1000, **control: Any) -> Settings:
    return Settings(
        poll_interval_s=0.02, lease_s=5, store_retry_s=0.5, max_active_runs=max_active_runs,
        control=ControlConfig(**control),
    )


async def _all_final(engine: Engine, ids: list[str]) -> list[str]:
    summaries = await asyncio.wait_for(asyncio.gather(*(engine.wait(i) for i in ids)), 60)
    return [s.status for s in summaries]


async def test_a_child_of_the_only_active_run_starts_at_once(store: Store) -> None:
    async with engine_on(store, _settings(max_active_runs=1)) as engine:
        run_id = await engine.submit(parent())
        assert await _all_final(engine, [run_id]) == ["succeeded"]
        summary = await engine.summary(run_id)
        assert summary.outputs == {"p": {"c": {"v": 1}}}


async def test_a_burst_of_parents_fills_every_slot_and_still_finishes(store: Store) -> None:
    grandchild = {"name": "leaf", "steps": {"l": {"kind": "sim"}}}
    middle = {"name": "middle", "steps": {
        "m": {"kind": "workflow", "workflow": "leaf", "definition": grandchild},
    }}
    async with engine_on(store, _settings(max_active_runs=2)) as engine:
        ids = [await engine.submit(parent(f"parent-{i}", middle)) for i in range(4)]
        assert await _all_final(engine, ids) == ["succeeded"] * 4
        # The slots bounded the roots only: no more than two parents ever ran at once.
        runs = [await engine.store.get_run(i) for i in ids]
        spans = sorted((r.started_at or 0, r.finished_at or 0) for r in runs if r)
        for i, (start, _) in enumerate(spans):
            running = sum(1 for s, f in spans[:i] if f > start)
            assert running < 2


async def test_a_childs_resources_are_reserved_with_its_root(store: Store) -> None:
    child = {"name": "child", "steps": {"c": {"kind": "sim", "resources": {"cpu": 1}}}}
    wf = Workflow.model_validate({"name": "tree", "steps": {
        "a": {"kind": "sim", "resources": {"cpu": 1}},
        "p": {"kind": "workflow", "workflow": "child", "definition": child},
    }})
    assert build_plan(wf).resources.cpu == 2  # the tree's peak: a and the child at once
    async with engine_on(store, _settings(resources={"cpu": 2})) as engine:
        # Before, each parent was admitted for 1 cpu; two parents took both and their
        # children waited forever. Now each tree needs 2: the second waits for the first.
        ids = [await engine.submit(wf) for _ in range(3)]
        assert await _all_final(engine, ids) == ["succeeded"] * 3
        pool = engine.control.pools._pools.get(pool_name("cpu"))
        assert pool is None or pool.in_use == 0


async def test_a_tree_that_can_never_fit_is_refused_at_submit(store: Store) -> None:
    child = {"name": "child", "steps": {"c": {"kind": "sim", "resources": {"cpu": 3}}}}
    async with engine_on(store, _settings(resources={"cpu": 2})) as engine:
        with pytest.raises(AdmissionRejected, match="cpu"):
            await engine.submit(parent(child=child))
        assert await engine.store.list_runs() == []  # nothing half-started


def test_the_cli_command_from_the_report_ends_with_the_parent_succeeded(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "name: child\nsteps:\n  c: {kind: sim, latency: 10ms, output: {v: 1}}\n"
    )
    (tmp_path / "parent.yaml").write_text(
        "name: parent\nsteps:\n  p: {kind: workflow, workflow: child.yaml}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "podium.cli.app", "run", "parent.yaml", "--json",
         "--store", f"sqlite:///{tmp_path / 'p.db'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PODIUM_MAX_ACTIVE_RUNS": "1", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert '"status": "succeeded"' in done.stdout


async def test_a_parent_waiting_on_its_child_holds_no_global_concurrency_slot(
    store: Store,
) -> None:
    child = {"name": "child", "steps": {"c": {"kind": "sim"}, "d": {"kind": "sim"}}}
    async with engine_on(store, _settings(limits={"max_concurrent": 1})) as engine:
        run_id = await engine.submit(parent(child=child))
        assert await _all_final(engine, [run_id]) == ["succeeded"]
