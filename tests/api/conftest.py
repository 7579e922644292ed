"""API test fixtures: real keys in the store, and a client holding an admin key.

Requests go through httpx's ASGI transport on the test's own loop, beside the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from apilib import BASE_URL, MakeKey, add_key, bearer

from podium.api.app import create_app
from podium.engine.engine import Engine
from podium.store.base import Store


@pytest.fixture
def make_key(store: Store) -> MakeKey:
    async def make(role: str, **kwargs: Any) -> str:
        return await add_key(store, role, **kwargs)

    return make


@pytest.fixture
async def admin_key(store: Store) -> str:
    return await add_key(store, "admin", name="test-admin")


@pytest.fixture
async def client(engine: Engine, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding an admin key."""
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers=bearer(admin_key)
    ) as opened:
        yield opened
