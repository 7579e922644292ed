"""Moving a FakeClock while real work goes on under it (store queries, HTTP calls, threads).

`FakeClock.run_for` only lets the loop spin between deadlines, so a loop that went off to the
store in between misses its turn. `advance_until` moves time a step at a time and gives the
loop a real moment after each step, until a condition holds: time is what the test decides,
and the real-time deadline only bounds a wait that would otherwise hang.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from podium.clock import FakeClock

Check = Callable[[], bool | Awaitable[bool]]


async def holds(check: Check) -> bool:
    outcome = check()
    return await outcome if inspect.isawaitable(outcome) else outcome


async def advance_until(
    clock: FakeClock, check: Check, step: float, *, timeout_s: float = 30.0, pause_s: float = 0.002
) -> None:
    """Advances `clock` by `step` until `check()` holds (looked at before each step).
    `step` is the resolution of time here: keep it well below any lease the test relies on."""
    async with asyncio.timeout(timeout_s):
        while not await holds(check):
            clock.advance(step)
            await asyncio.sleep(pause_s)


async def eventually(check: Check, *, timeout_s: float = 30.0) -> None:
    """Waits until `check()` holds, the clock standing still: for work that takes no time."""
    async with asyncio.timeout(timeout_s):
        while not await holds(check):
            await asyncio.sleep(0.005)


async def step_through(
    clock: FakeClock, seconds: float, step: float, *, timeout_s: float = 30.0
) -> None:
    """Advances `clock` by `seconds`, `step` at a time, waiting after each step until every
    loop it woke is asleep on the clock again: renewals and polls keep up with time however
    slow the store is. Only while the sleepers are loops (nothing woken ends for good)."""
    end = clock.monotonic() + seconds
    async with asyncio.timeout(timeout_s):
        while clock.monotonic() < end:
            asleep = clock.sleepers
            clock.advance(min(step, end - clock.monotonic()))
            while clock.sleepers < asleep:
                await asyncio.sleep(0.001)
