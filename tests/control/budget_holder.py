"""A podium process that holds budget in a call that never ends, for crash tests to SIGKILL.

Usage: budget_holder.py STORE_URL; it prints `holding` once its call's hold is in the store.
"""

from __future__ import annotations

import asyncio
import sys

from podium.bus import open_bus
from podium.control.budgets import windows_of
from podium.control.config import Budgets, ControlConfig
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

BUDGETS = Budgets(daily_usd=1.0)
LEASE_S = 2.0
WORKFLOW = Workflow.model_validate(
    {"name": "holder", "steps": {"stuck": {"kind": "sim", "cost_usd": 0.6, "latency": "1h"}}}
)


async def main(url: str) -> None:
    settings = Settings(poll_interval_s=0.02, lease_s=LEASE_S,
                        control=ControlConfig(budgets=BUDGETS))
    async with open_store(url) as store, open_bus("memory://") as bus, \
            Engine(store, bus, settings) as engine:
        await engine.submit(WORKFLOW)
        while True:
            [usage] = await store.budget_usage(windows_of(BUDGETS))
            if usage.held_usd > 0:
                print("holding", flush=True)
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
