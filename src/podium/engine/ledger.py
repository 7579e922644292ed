"""Books an attempt's paid calls in the spend ledger as they end (`StepContext.usage`).

A call its attempt abandons (a cancel, a timeout) is awaited by a supervised task, for a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from podium.clock import Clock
from podium.events import new_id
from podium.steps import CallUsage
from podium.store.spend import SpendRow


class UsageSink(Protocol):
    """Where booked calls go (the engine: into its next group commit)."""

    def spent(self, row: SpendRow) -> None: ...

    def linger(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Runs `work` as a supervised task: it outlives the attempt, not the engine."""


@dataclass(slots=True)  # one per attempt: not frozen, which is slower to build
class AttemptLedger:
    """One attempt's `UsageLedger`: each call becomes its own row (a fresh `call_id`)."""

    sink: UsageSink
    clock: Clock
    run_id: str
    step_id: str
    index: int
    workflow: str
    attempt: int

    def report(self, usage: CallUsage) -> None:
        self.sink.spent(SpendRow(
            self.run_id, self.step_id, self.index, self.clock.now(), self.workflow,
            usage.model, usage.tokens_in, usage.tokens_out, usage.usd,
            attempt=self.attempt, call_id=new_id(), estimated=usage.estimated,
        ))

    def settle_later(
        self, call: asyncio.Future[Any], usage: Callable[[], CallUsage | None], wait_s: float
    ) -> None:
        at = f"[{self.index}]" if self.index >= 0 else ""
        name = f"settle:{self.run_id}/{self.step_id}{at}#{self.attempt}"
        self.sink.linger(self._settle(call, usage, wait_s), name)

    async def _settle(
        self, call: asyncio.Future[Any], usage: Callable[[], CallUsage | None], wait_s: float
    ) -> None:
        """Waits until the call ends or `wait_s` passes on the clock, then books what it used:
        its reply's usage, else its estimate. An engine that stops books the estimate at once
        (the journal commits it before the engine lets go of its runs)."""
        timer = asyncio.ensure_future(self.clock.sleep(wait_s))
        try:
            await asyncio.wait({call, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not call.done():
                call.cancel()
            elif not call.cancelled():
                call.exception()  # retrieved: the attempt it belonged to is over
            booked = usage()
            if booked is not None:
                self.report(booked)
