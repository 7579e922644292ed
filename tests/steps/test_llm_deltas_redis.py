"""Distributed streaming: a worker's streamed `llm` step reaches an SSE client of another
process through the Redis bus. Two engines on one store and two buses on one Redis stand for
`podium worker` and `podium serve`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from clocklib import eventually
from fake_providers import FakeServer, pieces
from llmlib import KEYS, sse_messages
from redislib import redis_prefix, redis_url, subscribers

from podium.api.app import create_app
from podium.api.keys import new_key
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store

__all__ = ["redis_prefix"]  # the fixture, used by name

REPLY = "deltas travel from the worker to the api"


async def _admin_key(store: Store) -> str:
    token, record = new_key("sse-redis-test", "admin", None, None, time.time(), "test")
    await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
    return token


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_worker_streams_its_deltas_to_an_sse_client_of_the_api_process(
    server: FakeServer, tmp_path: Path, redis_prefix: str, provider: str
) -> None:
    model = "gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku-latest"
    base_url = f"{server.url}/v1" if provider == "openai" else server.url
    wf = Workflow.model_validate({"name": "typing", "steps": {
        "ask": {"kind": "llm", "provider": provider, "model": model, "base_url": base_url,
                "prompt": f"say: {REPLY}", "stream": True},
    }})
    settings = Settings(poll_interval_s=0.02, lease_s=5)
    db = f"sqlite:///{tmp_path / 'podium-deltas.db'}"
    async with (
        open_store(db) as api_store, open_bus(redis_url(redis_prefix)) as api_bus,
        Engine(api_store, api_bus, settings, secrets=KEYS) as api,
        open_store(db) as worker_store, open_bus(redis_url(redis_prefix)) as worker_bus,
        Engine(worker_store, worker_bus, settings, secrets=KEYS) as worker,
    ):
        token = await _admin_key(api_store)
        run_id = await api.submit(wf)  # queued for a worker: the api process runs nothing

        async def work_once_listened() -> None:
            channel = f"{redis_prefix}:transient:{run_id}"
            await eventually(lambda: subscribers(channel) == 1, timeout_s=20)
            assert await worker.recover([run_id]) == [run_id]

        working = asyncio.ensure_future(work_once_listened())
        transport = httpx.ASGITransport(app=create_app(api))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://localhost",
                              headers={"Authorization": f"Bearer {token}"}) as client,
            asyncio.timeout(30),
        ):
            response = await client.get("/v1/events", params={"run_id": run_id})
        await working
        stored = [event for _, event in await api_store.list_events(run_id, 0, 1000)]

    messages = sse_messages(response.text)
    deltas = [data for kind, data, _ in messages if kind == "llm.delta"]
    assert [d["payload"]["text"] for d in deltas] == pieces(REPLY)
    assert {(d["payload"]["step"], d["correlation_id"]) for d in deltas} == {("ask", run_id)}
    types = [kind for kind, _, _ in messages]
    assert types.index("llm.delta") < types.index("run.completed") == len(types) - 1
    assert "llm.delta" not in {event.event_type for event in stored}
