"""`GET /metrics` on the API: who may scrape it, by key or by `[metrics] auth`.

A `metrics` key reads `/metrics` and nothing else; `loopback` and `none` open it without a
key (a key sent is still checked).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from metricslib import Scrape

from podium.api.app import create_app
from podium.api.keys import new_key
from podium.bus.base import Bus
from podium.control.config import ControlConfig, MetricsConfig
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.model.workflow import Workflow
from podium.observe.metrics import Metrics
from podium.settings import Settings
from podium.store.base import Store

LOCAL, REMOTE = ("127.0.0.1", 40000), ("203.0.113.7", 40000)
FLOW = Workflow.model_validate({"name": "api-metrics", "steps": {"a": {"kind": "sim"}}})


async def _key(store: Store, role: str, scope: str | None = None) -> dict[str, str]:
    token, record = new_key(role, role, scope, None, time.time(), "test")
    await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
    return {"Authorization": f"Bearer {token}"}


def _client(engine: Engine, client: tuple[str, int] = LOCAL) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(engine), client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


async def test_a_metrics_key_scrapes_and_reads_nothing_else(engine: Engine, store: Store) -> None:
    scraper = await _key(store, "metrics")
    Metrics.attach(engine)  # as `podium serve` does when it starts
    async with _client(engine) as client:
        await engine.run(FLOW)
        response = await client.get("/metrics", headers=scraper)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        scrape = Scrape.parse(response.text)
        assert scrape.value("podium_runs_total", workflow="api-metrics", status="succeeded") == 1
        assert (await client.get("/v1/runs", headers=scraper)).status_code == 403
        assert (await client.get("/metrics")).status_code == 401
        viewer = await _key(store, "viewer")
        assert (await client.get("/metrics", headers=viewer)).status_code == 200
        scoped = await _key(store, "admin", scope="team-*")  # system-wide numbers: refused
        assert (await client.get("/metrics", headers=scoped)).status_code == 403


@pytest.fixture
def open_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    control = ControlConfig(metrics=MetricsConfig(auth=request.param))
    return settings.model_copy(update={"control": control})


@pytest.fixture
async def open_engine(store: Store, bus: Bus, open_settings: Settings) -> AsyncIterator[Engine]:
    async with Engine(store, bus, open_settings) as running:
        yield running


@pytest.mark.parametrize("open_settings", ["loopback"], indirect=True)
async def test_loopback_scrapes_need_no_key_remote_ones_do(open_engine: Engine) -> None:
    async with _client(open_engine, LOCAL) as local, _client(open_engine, REMOTE) as remote:
        assert (await local.get("/metrics")).status_code == 200
        assert (await remote.get("/metrics")).status_code == 401
        assert (await local.get("/v1/runs")).status_code == 401  # only /metrics is open
        bad = {"Authorization": "Bearer pdm_nope_nope"}
        assert (await local.get("/metrics", headers=bad)).status_code == 401


@pytest.mark.parametrize("open_settings", ["none"], indirect=True)
async def test_auth_none_opens_metrics_to_every_address(open_engine: Engine) -> None:
    async with _client(open_engine, REMOTE) as remote:
        assert (await remote.get("/metrics")).status_code == 200
        assert (await remote.get("/v1/queue")).status_code == 401
