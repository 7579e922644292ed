"""Guards each model call of an agent loop as its own call (`StepHost.guard_call`).

An agent loop's attempt makes many model calls; the executor registers it here while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from podium.clock import Clock
from podium.control.guard import Call, CallOutcome, Guard
from podium.engine.runtime import RunRuntime
from podium.errors import StepError
from podium.steps import CallEstimate, CallUsage, StepContext
from podium.store.records import StepState

# A guard's check that is a store round trip, not a wait, is not worth an event.
_REPORTED_WAIT_S = 0.005

AttemptKey = tuple[str, str, int | None, int]  # run, step, for_each index, attempt


class WaitReporter(Protocol):
    def waited(
        self, rt: RunRuntime, st: StepState, attempt: int, guard: str, waited_s: float
    ) -> None:
        """A call waited `waited_s` for a guard (`agent.task.waited`)."""


@dataclass(frozen=True, slots=True)
class _Loop:
    """A loop's attempt as it passed its guards (span `loop`): what its turns are made of."""

    call: Call
    guards: tuple[Guard, ...]
    rt: RunRuntime
    st: StepState


@dataclass(slots=True)
class _Turn:
    """The `GuardedCall` of one turn: what the call used, for the guards' exit."""

    call: Call | None

    def settle(self, usage: CallUsage | None) -> None:
        if self.call is not None and usage is not None:
            self.call.tokens_in, self.call.tokens_out = usage.tokens_in, usage.tokens_out
            self.call.cost_usd = usage.usd


def attempt_key(ctx: StepContext) -> AttemptKey:
    return (ctx.run_id, ctx.step_id, ctx.index, ctx.attempt)


class TurnGuards:
    """The guards of agent loops' model calls.

    Why each call, the first one included, and not the attempt: a loop's attempt passes
    only the guards that hold for its whole life (the agent's and the provider's
    `max_concurrent` slots, the global cap), and skips budgets, circuits and rate limits
    (`Call.span == "loop"`); each model call then passes those as a turn, with its own
    estimate (the conversation so far plus every `max_tokens` token out). So every call is
    budgeted, rate-limited and counted by its circuit exactly once, a budget refuses the call
    that would pass it between two turns (no request is sent), a throttled budget or an
    `rpm` limit holds the next turn back on the engine clock, and a tool's failure or a
    loop bound never counts against the model's circuit."""

    def __init__(self, reporter: WaitReporter, clock: Clock) -> None:
        self._reporter = reporter
        self._clock = clock
        self._loops: dict[AttemptKey, _Loop] = {}

    @contextmanager
    def looping(
        self, call: Call, guards: tuple[Guard, ...], ctx: StepContext, rt: RunRuntime,
        st: StepState,
    ) -> Iterator[None]:
        """While a loop's attempt runs, its turns find their guards here."""
        key = attempt_key(ctx)
        self._loops[key] = _Loop(call, guards, rt, st)
        try:
            yield
        finally:
            self._loops.pop(key, None)

    @asynccontextmanager
    async def guard(self, ctx: StepContext, estimate: CallEstimate) -> AsyncIterator[_Turn]:
        """The turn's guards, entered in order before the call and exited after it with
        its outcome; an attempt not registered (no guards, not a loop) passes untouched."""
        loop = self._loops.get(attempt_key(ctx))
        if loop is None:
            yield _Turn(None)
            return
        turn = replace(
            loop.call, notes={}, span="turn", tokens_in=0, tokens_out=0, cost_usd=0.0,
            estimate_usd=estimate.usd, estimate_tokens=float(estimate.tokens),
        )
        guards, entered = loop.guards, 0
        outcome: CallOutcome = "cancelled"
        try:
            for guard in guards:
                waiting = guard.enter(turn)
                if waiting is not None:
                    await self._wait_for(guard, waiting, loop)
                entered += 1
            outcome = "failed"
            yield _Turn(turn)
            outcome = "ok"
        except StepError:
            if entered < len(guards):
                outcome = "refused"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            for guard in reversed(guards[:entered]):
                guard.exit(turn, outcome)

    async def _wait_for(self, guard: Guard, waiting: Awaitable[None], loop: _Loop) -> None:
        """Awaits a guard that made a turn wait (a throttled budget, `rpm`), on the engine
        clock, and reports how long (a refusal after a wait too)."""
        await reported_wait(self._clock, self._reporter, guard, waiting, loop.rt, loop.st,
                            loop.call.attempt)


async def reported_wait(
    clock: Clock, reporter: WaitReporter, guard: Guard, waiting: Awaitable[None],
    rt: RunRuntime, st: StepState, attempt: int,
) -> None:
    """Awaits `waiting` (a guard's), then reports how long it took (`agent.task.waited`),
    refused too, unless it was only a store round trip."""
    since = clock.monotonic()
    try:
        await waiting
    finally:
        waited_s = clock.monotonic() - since
        if waited_s >= _REPORTED_WAIT_S:
            name = type(guard).__name__.removesuffix("Guard").lower()
            reporter.waited(rt, st, attempt, name, waited_s)
