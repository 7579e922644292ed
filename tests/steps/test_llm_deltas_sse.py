"""A streamed `llm` step's text deltas reach the run's SSE stream (`GET /v1/events`) as they
come, and are never stored: the run's stored events hold none of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clocklib import eventually
from fake_providers import FakeServer, pieces, running
from llmlib import KEYS, sse_messages

from podium.api.app import create_app
from podium.api.keys import new_key
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store

REPLY = "the quick brown fox jumps"


async def _admin_key(store: Store) -> str:
    token, record = new_key("sse-test", "admin", None, None, time.time(), "test")
    await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
    return token


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with running() as srv:
        yield srv


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_sse_client_sees_the_deltas_of_a_streamed_llm_step(
    server: FakeServer, tmp_path: Path, provider: str
) -> None:
    model = "gpt-4o-mini" if provider == "openai" else "claude-3-5-haiku-latest"
    base_url = f"{server.url}/v1" if provider == "openai" else server.url
    # The gate holds the llm step back until the SSE client is listening.
    wf = Workflow.model_validate({"name": "typing", "steps": {
        "gate": {"kind": "wait", "signal": "go"},
        "ask": {"kind": "llm", "provider": provider, "model": model, "base_url": base_url,
                "prompt": f"say: {REPLY}", "stream": True, "needs": ["gate"]},
    }})
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, Settings(poll_interval_s=0.02, lease_s=5), secrets=KEYS) as engine,
    ):
        token = await _admin_key(store)
        run_id = await engine.submit(wf)

        async def open_the_gate() -> None:
            await eventually(lambda: engine.transient.listening(run_id))
            await engine.signal(run_id, "go")

        gate = asyncio.ensure_future(open_the_gate())
        transport = httpx.ASGITransport(app=create_app(engine))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://localhost",
                              headers={"Authorization": f"Bearer {token}"}) as client,
            asyncio.timeout(30),
        ):
            response = await client.get("/v1/events", params={"run_id": run_id})
        await gate
        stored = [event for _, event in await store.list_events(run_id, 0, 1000)]

    messages = sse_messages(response.text)
    deltas = [data for kind, data, _ in messages if kind == "llm.delta"]
    assert [d["payload"]["text"] for d in deltas] == pieces(REPLY)
    assert {(d["payload"]["step"], d["correlation_id"]) for d in deltas} == {("ask", run_id)}
    assert not any(has_id for kind, _, has_id in messages if kind == "llm.delta")
    types = [kind for kind, _, _ in messages]
    assert types.index("llm.delta") < types.index("run.completed") == len(types) - 1
    assert "llm.delta" not in {event.event_type for event in stored}
