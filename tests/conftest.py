"""Shared fixtures: a store per test (SQLite file in tmp_path), a bus, a running engine.

Each test gets its own database file, so tests isolate by name rather than by flushing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.bus import Bus, open_bus
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store


def make_workflow(steps: dict[str, Any], **fields: Any) -> Workflow:
    return Workflow.model_validate(
        {"name": fields.pop("name", "test-wf"), "steps": steps, **fields}
    )


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'podium.db'}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as opened:
        yield opened


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with open_bus("memory://") as opened:
        yield opened


@pytest.fixture
def settings() -> Settings:
    return Settings(poll_interval_s=0.02, lease_s=5)


@pytest.fixture
async def engine(store: Store, bus: Bus, settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(store, bus, settings, env={"PODIUM_TEST_SECRET": "s3cr3t"}) as running:
        yield running
