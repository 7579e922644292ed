"""Helpers of the budget tests: engines with a budget config, priced sim steps, the fake LLM.

The fake OpenAI server is tests/steps/fake_providers.py, loaded by path (no conftest import).
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from podium.bus import open_bus
from podium.control.config import Budgets, ControlConfig
from podium.engine.engine import Engine
from podium.events import Event
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store
from podium.store.records import Batch
from podium.store.spend import SpendRow


def fake_providers() -> ModuleType:
    """tests/steps/fake_providers.py (one module object, whoever imports it first)."""
    loaded = sys.modules.get("fake_providers")
    if loaded is not None:
        return loaded
    path = Path(__file__).parents[1] / "steps" / "fake_providers.py"
    spec = importlib.util.spec_from_file_location("fake_providers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_providers"] = module
    spec.loader.exec_module(module)
    return module


def settings_with(**budgets: Any) -> Settings:
    control = ControlConfig(budgets=Budgets(**budgets))
    return Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5, control=control)


@asynccontextmanager
async def engine_on(store: Store, settings: Settings, **env: str) -> AsyncIterator[Engine]:
    async with open_bus("memory://") as bus, Engine(store, bus, settings, secrets=env) as engine:
        yield engine


def sim(cost_usd: float, **keys: Any) -> dict[str, Any]:
    return {"kind": "sim", "cost_usd": cost_usd, **keys}


def chain(name: str, length: int, step: dict[str, Any], **fields: Any) -> Workflow:
    steps = {f"s{i}": {**step, **({"needs": [f"s{i - 1}"]} if i else {})} for i in range(length)}
    return Workflow.model_validate({"name": name, "steps": steps, **fields})


def parallel(name: str, width: int, step: dict[str, Any], **fields: Any) -> Workflow:
    steps = {f"p{i}": dict(step) for i in range(width)}
    return Workflow.model_validate({"name": name, "steps": steps, **fields})


async def events_of(store: Store, event_type: str) -> list[Event]:
    return [e for _, e in await store.list_events(limit=100_000) if e.event_type == event_type]


async def add_old_spend(store: Store, workflow: str, usd: float, age_s: float) -> None:
    """A ledger row written `age_s` seconds ago by the store's clock (to fill a window that
    will roll on)."""
    row = SpendRow(f"old-{uuid.uuid4().hex}", "old", -1, store.clock.now() - age_s, workflow,
                   None, 0, 0, usd)
    await store.write(Batch(spend=[row]))
