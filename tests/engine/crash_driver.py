"""A podium process for crash tests: submits runs or recovers them, until told to stop.

Usage: crash_driver.py DB submit N | zombie 1 | recover. Tests SIGKILL or SIGSTOP it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.steps import StepContext
from podium.store import open_store

EFFECTS = os.environ.get("CRASH_EFFECTS", "")


async def effect(ms: int, ctx: StepContext) -> dict[str, Any]:
    """Appends 'key nonce' to the effects file, then returns the nonce as its output."""
    nonce = uuid.uuid4().hex
    with open(EFFECTS, "a") as out:
        out.write(f"{ctx.idempotency_key} {nonce}\n")
    await asyncio.sleep(ms / 1000)
    return {"nonce": nonce}


def _step(ms: int, needs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "python",
        "call": "crash_driver:effect",
        "input": {"ms": ms},
        "needs": needs or [],
        **extra,
    }


WORKFLOW = Workflow.model_validate(
    {
        "name": "crash-test",
        "steps": {
            "a": _step(50),
            "b": _step(200, ["a"]),
            "c": _step(100, ["a"]),
            "d": _step(150, ["a"]),
            "fan": _step(80, ["b"], for_each=[1, 2, 3, 4, 5], max_parallel=2),
            "e": _step(50, ["c", "d", "fan"]),
        },
    }
)


ZOMBIE = Workflow.model_validate({"name": "zombie", "steps": {"slow": _step(1500)}})


async def main(db: str, mode: str, count: int) -> None:
    settings = Settings(lease_s=0.3, poll_interval_s=0.05, max_active_runs=4)
    async with (
        open_store(f"sqlite:///{db}") as store,
        open_bus() as bus,
        Engine(store, bus, settings) as engine,
    ):
        if mode in ("submit", "zombie"):
            workflow = ZOMBIE if mode == "zombie" else WORKFLOW
            ids = await asyncio.gather(*(engine.submit(workflow) for _ in range(count)))
            print("submitted", flush=True)
            await asyncio.gather(*(engine.wait_done(i) for i in ids))
            return
        while await store.list_runs(statuses=["queued", "running"], limit=1):
            for run_id in await engine.recover():
                await engine.wait_done(run_id)
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
