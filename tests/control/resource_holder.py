"""A podium process that holds a run's reserved resources (cpu) in a run that never ends, for
crash tests to SIGKILL.

Usage: resource_holder.py STORE_URL; prints `holding` once its share is in the store.
"""

from __future__ import annotations

import asyncio
import sys

from podium.bus import open_bus
from podium.control.config import Capacities, ControlConfig
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

CAPACITIES = Capacities(cpu=2)
LEASE_S = 2.0
WORKFLOW = Workflow.model_validate({
    "name": "holder",
    "steps": {"stuck": {"kind": "sim", "latency": "1h", "resources": {"cpu": 2}}},
})


async def main(url: str) -> None:
    settings = Settings(poll_interval_s=0.02, lease_s=LEASE_S,
                        control=ControlConfig(resources=CAPACITIES))
    async with open_store(url) as store, open_bus("memory://") as bus, \
            Engine(store, bus, settings) as engine:
        await engine.submit(WORKFLOW)
        while not any(s.amount >= 2 for s in await store.list_shares()):
            await asyncio.sleep(0.02)
        print("holding", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
