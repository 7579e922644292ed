"""Shared fixtures: a store per test (SQLite and PostgreSQL), a bus, a running engine.

Each test gets its own SQLite file or PostgreSQL schema: isolation by name, not by flushing.
`clock` is a FakeClock, `clocked_store` a store and `clocked_engine` an engine keeping time by
it: a test that is about time (TTLs, refills, cool-downs, windows, waits) advances the clock
instead of sleeping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from podium.bus import Bus, open_bus
from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.settings import Settings
from podium.store import Store, open_store

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_unreachable() -> str | None:
    """Why the test PostgreSQL cannot be used, or None; asked once per session."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return " ".join(str(exc).split())


@pytest.fixture
def postgres_url(postgres_unreachable: str | None) -> Iterator[str]:
    """A URL to a fresh PostgreSQL schema, dropped afterwards. Fails under CI, else skips."""
    if postgres_unreachable is not None:
        message = f"PostgreSQL not reachable at 127.0.0.1:5432: {postgres_unreachable}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"t_{uuid.uuid4().hex}"
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'podium.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clocked_store(store_url: str, clock: FakeClock) -> AsyncIterator[Store]:
    """The test's store, keeping time by `clock` (an Engine on it does too)."""
    async with open_store(store_url, clock=clock) as opened:
        yield opened


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with open_bus("memory://") as opened:
        yield opened


@pytest.fixture
def settings() -> Settings:
    return Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)


@pytest.fixture
async def engine(store: Store, bus: Bus, settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(store, bus, settings, secrets={"PODIUM_TEST_SECRET": "s3cr3t"}) as running:
        yield running


@pytest.fixture
async def clocked_engine(
    clocked_store: Store, bus: Bus, settings: Settings
) -> AsyncIterator[Engine]:
    async with Engine(
        clocked_store, bus, settings, secrets={"PODIUM_TEST_SECRET": "s3cr3t"}
    ) as running:
        yield running
