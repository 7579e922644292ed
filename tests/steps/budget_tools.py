"""Python tools for the per-turn guard tests: a gate the test opens, and a failing call."""

from __future__ import annotations

import asyncio
from typing import Any

GATE_BOUND_S = 20.0  # bound on waiting for the test (never reached when the test goes well)
_gate: dict[str, asyncio.Event] = {}


def close_gate() -> tuple[asyncio.Event, asyncio.Event]:
    """(entered, opened): `gate` calls set `entered`, then wait until the test sets `opened`."""
    _gate.update(entered=asyncio.Event(), opened=asyncio.Event())
    return _gate["entered"], _gate["opened"]


async def gate(q: str) -> dict[str, Any]:
    _gate["entered"].set()
    await asyncio.wait_for(_gate["opened"].wait(), GATE_BOUND_S)
    return {"q": q, "passed": True}


def boom() -> None:
    raise RuntimeError("the writer's other call failed")
