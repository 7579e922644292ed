"""Step bodies of the benchmark workflows: an async no-op and a 50 ms sleeper.

Each records its start (at entry) and end (just before return) in `TIMES`, keyed by (run, step).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from podium.steps import StepContext

# (run_id, step_id) -> (perf_counter at entry, perf_counter just before return)
TIMES: dict[tuple[str, str], tuple[float, float]] = {}
SLEEP_S = 0.05


def _record(ctx: StepContext | None, start: float) -> None:
    if ctx is not None:
        TIMES[(ctx.run_id, ctx.step_id)] = (start, time.perf_counter())


async def noop(i: int, prev: Any = None, ctx: StepContext | None = None) -> dict[str, int]:
    """Returns `{"i": i}`; `prev` is the predecessor's output (a list of them for a join)."""
    start = time.perf_counter()
    output = {"i": i}
    _record(ctx, start)
    return output


async def sleepy(i: int, prev: Any = None, ctx: StepContext | None = None) -> dict[str, int]:
    """Like `noop`, after sleeping 50 ms on the loop (W4's parallel steps)."""
    start = time.perf_counter()
    await asyncio.sleep(SLEEP_S)
    output = {"i": i}
    _record(ctx, start)
    return output
