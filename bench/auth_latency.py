"""What authentication adds to a request: median latency of GET /v1/runs/{id} with a warm key
against the same app with auth off, through httpx's ASGI transport (no network).

Run: `python bench/auth_latency.py [--requests 2000] [--store URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

import podium
from podium.api.app import ApiOptions, create_app
from podium.api.keys import new_key
from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.events import SYSTEM_ACTOR, audit_event
from podium.settings import Settings
from podium.store import open_store

QUICK = {"name": "bench-quick", "steps": {"one": {"kind": "sim", "output": 1}}}


async def timings(client: httpx.AsyncClient, path: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = await client.get(path)
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return samples


async def main(requests: int, store_url: str) -> None:
    settings = Settings()
    async with (
        open_store(store_url) as store, open_bus("memory://") as bus,
        Engine(store, bus, settings) as engine,
    ):
        run_id = await engine.submit(podium.parse_workflow(QUICK, "bench", settings=settings))
        await engine.wait(run_id)
        token, record = new_key("bench", "viewer", None, None, time.time(), "bench")
        await store.add_key(record, audit_event(SYSTEM_ACTOR, "key.create", record.key_id))
        results = {}
        for label, options, headers in (
            ("no auth", ApiOptions(auth=False), {}),
            ("auth", ApiOptions(), {"Authorization": f"Bearer {token}"}),
        ):
            transport = httpx.ASGITransport(app=create_app(engine, options=options))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", headers=headers
            ) as client:
                first = await timings(client, f"/v1/runs/{run_id}", 1)  # pays scrypt once
                results[label] = (first[0], statistics.median(
                    await timings(client, f"/v1/runs/{run_id}", requests)))
        for label, (first_s, median_s) in results.items():
            print(f"{label:8} first {first_s * 1000:7.2f} ms   p50 {median_s * 1000:6.3f} ms")
        added = results["auth"][1] - results["no auth"][1]
        print(f"authentication adds {added * 1000:.3f} ms p50 per request ({requests} requests,"
              f" {store_url.split(':')[0]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    url = args.store or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    asyncio.run(main(args.requests, url))
