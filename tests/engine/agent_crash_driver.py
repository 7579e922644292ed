"""A podium process for the agent-loop crash test: runs one agent run, or recovers it.

Usage: agent_crash_driver.py DB MODEL_URL submit|recover. The test SIGKILLs it mid-loop.
Its tools append lines to CRASH_EFFECTS; `slow` waits for the CRASH_GATE file to exist.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import open_store

EFFECTS = os.environ.get("CRASH_EFFECTS", "")
GATE = Path(os.environ.get("CRASH_GATE", "/nonexistent"))
KEY = "sk-test-agents-0123456789"


def _note(line: str) -> None:
    with open(EFFECTS, "a") as out:
        out.write(line + "\n")


def fast(q: str) -> dict[str, Any]:
    _note(f"fast {q}")
    return {"q": q, "tool": "fast"}


async def slow(q: str) -> dict[str, Any]:
    _note(f"slow-start {q}")
    while not GATE.exists():  # the test opens the gate after the kill
        await asyncio.sleep(0.01)
    _note(f"slow-done {q}")
    return {"q": q, "tool": "slow"}


def workflow(model_url: str) -> Workflow:
    tools = {
        "fast": {"kind": "python", "call": "agent_crash_driver:fast"},
        "slow": {"kind": "python", "call": "agent_crash_driver:slow"},
    }
    return Workflow.model_validate({
        "name": "agent-crash",
        "steps": {
            "research": {
                "kind": "llm", "model": "gpt-4o-mini", "base_url": model_url + "/v1",
                "prompt": "research", "max_tokens": 100, "tools": tools,
            }
        },
    })


async def main(db: str, model_url: str, mode: str) -> None:
    settings = Settings(lease_s=0.3, poll_interval_s=0.05)
    async with (
        open_store(f"sqlite:///{db}") as store,
        open_bus() as bus,
        Engine(store, bus, settings, secrets={"OPENAI_API_KEY": KEY}) as engine,
    ):
        if mode == "submit":
            run_id = await engine.submit(workflow(model_url))
            print(run_id, flush=True)
            await engine.wait_done(run_id)
            return
        while await store.list_runs(statuses=["queued", "running"], limit=1):
            for run_id in await engine.recover():
                await engine.wait_done(run_id)
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
