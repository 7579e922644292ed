"""Step bodies for examples/etl.yaml: a tiny extract-transform-load over generated orders.

Plain Python functions; podium passes each step's `input` as keyword arguments.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any


async def extract(batch: int) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    rng = random.Random(batch)
    records = [{"id": i, "amount_cents": rng.randint(100, 99_999)} for i in range(batch)]
    return {"records": records}


def transform(record: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
    # Sync bodies run in threads; ctx.idempotency_key would be the dedup key for a real sink.
    return {"id": record["id"], "amount": record["amount_cents"] / 100, "key": ctx.idempotency_key}


async def load(rows: list[dict[str, Any]]) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    return {"rows": len(rows), "total": round(sum(r["amount"] for r in rows), 2)}


def report(loaded: dict[str, Any] | None) -> str:
    if loaded is None:
        return "load did not finish"
    return f"loaded {loaded['rows']} rows worth {loaded['total']:.2f}"
