"""Python tools for the agent-loop tests: they count their calls and meet each other."""

from __future__ import annotations

import asyncio
from typing import Any

CALLS: list[tuple[str, str]] = []  # (tool, q) per call, in call order
MEET_BOUND_S = 20.0  # bound on waiting for the other calls (never reached when they run at once)
_met: dict[str, Any] = {"expected": 1, "arrived": 0, "event": None}


def expect_together(count: int) -> None:
    """The next `count` calls of `meet` succeed only if all of them are running at once."""
    _met.update(expected=count, arrived=0, event=asyncio.Event())


async def meet(q: str) -> dict[str, Any]:
    CALLS.append(("meet", q))
    event: asyncio.Event = _met["event"]
    _met["arrived"] += 1
    if _met["arrived"] >= _met["expected"]:
        event.set()
    await asyncio.wait_for(event.wait(), MEET_BOUND_S)
    return {"q": q, "together": _met["expected"]}


def count(q: str, times: int = 1) -> dict[str, Any]:
    CALLS.append(("count", q))
    return {"q": q, "times": times}
