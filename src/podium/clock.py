"""Time, passed in: the wall clock, a monotonic clock and sleeping, behind one small interface.

Everything in podium that keeps time (leases, TTLs, token buckets, circuit cool-downs, budget
windows, schedules, retries, polls) takes a `Clock` argument that defaults to `SYSTEM_CLOCK`.
Tests pass a `FakeClock` instead and move time with `advance`, so they neither wait nor depend
on how busy the machine is. This module imports nothing of podium.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time: seconds since the epoch (what is stored and shown)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for measuring intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Waits `seconds` on this clock; zero or less only yields to the loop once."""
        ...


class SystemClock:
    """The real clock: `time.time`, `time.monotonic` and `asyncio.sleep`."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()


async def sleep_unless(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Sleeps `seconds` on `clock`, or less if `event` is set first; returns whether it was
    (a stoppable wait for background loops)."""
    if event.is_set():
        return True
    if isinstance(clock, SystemClock):  # the real clock: exactly `wait_for`, as before
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        return event.is_set()
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()
    return event.is_set()


async def wait_done(clock: Clock, tasks: Collection[asyncio.Future[Any]], seconds: float) -> bool:
    """Waits until every one of `tasks` is done, or `seconds` on `clock` at most (a drain or a
    flush bounded on the injected clock); returns whether they all are."""
    if not tasks:
        return True
    if isinstance(clock, SystemClock):  # the real clock: exactly `asyncio.wait`, as before
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        return not pending
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        while not timer.done() and not all(t.done() for t in tasks):
            await asyncio.wait(
                [timer, *(t for t in tasks if not t.done())], return_when=asyncio.FIRST_COMPLETED
            )
    finally:
        timer.cancel()
    return all(t.done() for t in tasks)


class FakeClock:
    """A clock that moves only when told to (`advance`), for tests.

    Both its wall and monotonic times move together. `sleep(s)` waits on a future until the
    clock has been advanced by at least `s`; `advance` wakes every sleeper whose deadline has
    passed, in deadline order (ties: in the order they went to sleep). The woken coroutines
    run once the caller yields to the loop (`await clock.settle()` or any await).
    """

    def __init__(self, start: float = 1_700_000_000.0, *, monotonic_start: float = 0.0) -> None:
        self._wall0 = float(start)
        self._mono0 = float(monotonic_start)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._wall0 + self._elapsed

    def monotonic(self) -> float:
        return self._mono0 + self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.monotonic() + seconds, next(self._order), future))
        await future  # a cancelled sleeper's future is cancelled too: skipped when due

    @property
    def sleepers(self) -> int:
        """How many coroutines are asleep on this clock now."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """The monotonic time the next sleeper wakes at, or None if nobody sleeps."""
        self._drop_done()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Moves both times forward by `seconds` and wakes the sleepers now due."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back (advance by {seconds})")
        self._move_to(self._elapsed + seconds)

    def _move_to(self, elapsed: float) -> None:
        self._elapsed = max(self._elapsed, elapsed)
        now = self.monotonic()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def settle(self, rounds: int = 20) -> None:
        """Yields to the loop a few times, so the woken sleepers (and what they start) run."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def run_for(self, seconds: float, step: float | None = None) -> None:
        """Advances by `seconds`, stopping at each sleeper's deadline on the way (and every
        `step`, if given) to let the loop run there, as it would if the time passed for real."""
        end = self._elapsed + seconds
        while True:
            await self.settle()
            upto = end
            deadline = self.next_deadline()
            if deadline is not None:
                upto = min(upto, deadline - self._mono0)
            if step is not None:
                upto = min(upto, self._elapsed + step)
            self._move_to(upto)
            if self._elapsed >= end:
                await self.settle()
                return

    def _drop_done(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now()}, monotonic={self.monotonic()})"


__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock", "sleep_unless", "wait_done"]
