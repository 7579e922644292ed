"""Helpers for the API tests: real keys in the store, bearer headers, registration.

Imported by the tests and their conftest (`tests/api` is on the path, as `steplib` is).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from podium.api.keys import new_key
from podium.events import SYSTEM_ACTOR, audit_event
from podium.store.base import Store

BASE_URL = "http://localhost"

MakeKey = Callable[..., Awaitable[str]]


async def add_key(
    store: Store, role: str, *, name: str | None = None, scope: str | None = None,
    expires_s: float | None = None, now: float | None = None,
) -> str:
    """A real key of `role`, stored as `podium keys create` would; returns the key itself."""
    token, record = new_key(
        name or role, role, scope, expires_s, time.time() if now is None else now, "test"
    )
    await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: httpx.AsyncClient, definition: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/workflows", json={"definition": definition})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    """Waits until `check()` holds: the engine commits asynchronously. Polls a condition; no
    assertion depends on how long it took."""
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.01)
