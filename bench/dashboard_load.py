"""How long the dashboard's pages take over a big store: 100,000 runs bulk-inserted, then the
median time of each page through httpx's ASGI transport (no network, no browser).

Run: `python bench/dashboard_load.py [--runs 100000] [--store URL] [--requests 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from podium.api.app import create_app
from podium.api.keys import new_key
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store
from podium.store.records import Batch, RunState

STATUSES = ("succeeded",) * 8 + ("failed", "cancelled", "degraded")
WORKFLOWS = [f"wf-{k}" for k in range(20)]
CHUNK = 5000
DEMO = {"name": "bench-dash", "steps": {"a": {"kind": "sim"}, "b": {"kind": "sim", "needs": ["a"]}}}


async def fill(store: Store, runs: int, now: float) -> None:
    rng = random.Random(7)
    for first in range(0, runs, CHUNK):
        rows = {}
        for i in range(first, min(first + CHUNK, runs)):
            created = now - (runs - i) * 2.0
            run_id = f"{int(created * 1000):012x}-{i:08d}"
            status = rng.choice(STATUSES)
            rows[run_id] = RunState(
                run_id, rng.choice(WORKFLOWS), "1", "digest", {}, status=status,
                created_at=created, started_at=created, finished_at=created + 1.5,
                error="boom" if status == "failed" else None,
            )
        await store.write(Batch(runs=rows))


async def median_ms(client: httpx.AsyncClient, path: str, n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = await client.get(path)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    return statistics.median(samples) * 1000


async def main(runs: int, store_url: str, requests: int) -> None:
    async with open_store(store_url) as store, open_bus("memory://") as bus, Engine(
        store, bus, Settings()
    ) as engine:
        now = time.time()
        started = time.perf_counter()
        await fill(store, runs, now)
        print(f"inserted {runs} runs in {time.perf_counter() - started:.1f}s")
        demo = await engine.run(Workflow.model_validate(DEMO))
        token, record = new_key("bench", "admin", None, None, now, "bench")
        await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
        app = create_app(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            form = await client.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            await client.post("/ui/login", data={"key": token, "csrf": csrf})
            first = await client.get("/ui/runs")
            cursor = re.search(r'rel="next" href="([^"]+)"', first.text).group(1)  # type: ignore[union-attr]
            pages = {
                "runs, newest": "/ui/runs",
                "runs, live refresh": "/ui/runs/rows",
                "runs, failed": "/ui/runs?status=failed",
                "runs, one workflow": "/ui/runs?workflow=wf-3",
                "runs, last 24h": "/ui/runs?window=24h",
                "runs, next page": cursor.replace("&amp;", "&"),
                "runs, id search": "/ui/runs?q=00099",
                "run page": f"/ui/runs/{demo.run_id}",
                "system": "/ui/system",
            }
            for name, path in pages.items():
                print(f"{name:22} {await median_ms(client, path, requests):8.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--store", default="")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench") as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(main(args.runs, url, args.requests))
