"""What a step kind implements (`StepRunner`) and what it is given (`StepContext`, `StepHost`).

Runners get their action with every expression already rendered; they return a `StepResult`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from podium.clock import Clock
from podium.model.policy import TrustPolicy
from podium.model.pricing import DEFAULT_PRICING, Pricing
from podium.model.workflow import Action


@dataclass(frozen=True, slots=True)
class CallUsage:
    """What one paid call used: as its provider reported it, or (`estimated`) the call's
    estimate when no usage came back (a timeout, a dropped connection, an abandoned call)."""

    model: str | None
    tokens_in: int
    tokens_out: int
    usd: float
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """At most what one model call may use, worked out before it is made: what its guards
    set aside (a budget hold, rate-limit tokens) until the call settles."""

    tokens: int  # input and output
    usd: float


class GuardedCall(Protocol):
    """One model call let through by the control layer's guards (`StepHost.guard_call`)."""

    def settle(self, usage: CallUsage | None) -> None:
        """What the call used, as the spend ledger booked it (None: nothing was booked):
        rate-limit tokens are reconciled with it when the call ends."""


class UsageLedger(Protocol):
    """Where a kind that pays per call (`llm`) books each call as it ends, whatever the
    attempt's fate; a result of such a kind says so (`StepResult.ledgered`)."""

    def report(self, usage: CallUsage) -> None:
        """Books one call's usage now (it commits with the engine's next group commit)."""

    def settle_later(
        self, call: asyncio.Future[Any], usage: Callable[[], CallUsage | None], wait_s: float
    ) -> None:
        """The attempt ends (cancelled, timed out) with `call` (an asyncio future) in flight:
        waits for it in the background for at most `wait_s`, then books `usage()`."""


class _Unbooked:
    """The ledger of a context built outside an engine (tests, tools): nothing is booked."""

    def report(self, usage: CallUsage) -> None:
        return None

    def settle_later(
        self, call: asyncio.Future[Any], usage: Callable[[], CallUsage | None], wait_s: float
    ) -> None:
        call.cancel()  # nobody would wait for it


UNBOOKED: UsageLedger = _Unbooked()


@dataclass(slots=True)
class AttemptNotes:
    """What a runner tells the engine about its attempt while it runs. `unretryable`: why no
    other attempt may follow (the far side got a request it does not deduplicate), which
    holds even when the engine ends the attempt at its timeout."""

    unretryable: str | None = None


@dataclass(frozen=True, slots=True)
class StepContext:
    """Facts about one attempt; python steps that ask for `ctx` get this."""

    run_id: str
    step_id: str
    attempt: int
    index: int | None
    item: Any
    idempotency_key: str  # "{run_id}/{step_id}[/{index}]": stable across attempts and restarts
    inputs: Mapping[str, Any]
    workflow: str
    timeout_s: float
    # The run's trust policy (a definition from the API); None: trusted, as local files are.
    policy: TrustPolicy | None = None
    # The engine's pricing table (settings.control.pricing), for what an `llm` call costs.
    pricing: Pricing = DEFAULT_PRICING
    # The spend ledger, for kinds that pay per call.
    usage: UsageLedger = UNBOOKED
    # The W3C traceparent of this attempt's span, sent on the requests it makes; None while
    # tracing is off.
    traceparent: str | None = None
    notes: AttemptNotes = field(default_factory=AttemptNotes)

    @property
    def log(self) -> Any:
        """A structlog logger bound to this attempt (built on use: most steps never log)."""
        ids: dict[str, str] = {}
        if self.traceparent is not None:  # 00-{trace id}-{span id}-{flags}
            ids = {"trace_id": self.traceparent[3:35], "span_id": self.traceparent[36:52]}
        return structlog.get_logger("podium.step").bind(
            run_id=self.run_id, step_id=self.step_id, attempt=self.attempt, **ids
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    output: Any = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    model: str | None = None
    # Its calls are in the spend ledger already (ctx.usage): the result adds no row of its own.
    ledgered: bool = False
    # What the provider answered with (an `llm` call): the model and why it stopped.
    response_model: str | None = None
    finish_reason: str | None = None


class StepHost(Protocol):
    """Engine services that some kinds need (signals, timers, child runs, secrets)."""

    clock: Clock  # the engine's time: what a kind that waits (`sim` latency) sleeps on
    worker_id: str  # the engine running the step (`host:pid:token`), named in its errors

    def secret(self, name: str) -> str | None:
        """An environment value (API key...) for a runner; never log or store it."""

    async def cache_get(self, key: str) -> Any | None:
        """A cached response (the `llm` kind's), or None when absent or expired."""

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None:
        """Keeps a JSON value under `key` for `ttl_s` seconds."""

    def emit_delta(self, ctx: StepContext, text: str) -> None:
        """Hands a streamed piece of a step's answer to live listeners (the run's SSE
        stream); never journaled, and dropped when nobody listens."""

    def guard_call(
        self, ctx: StepContext, estimate: CallEstimate
    ) -> AbstractAsyncContextManager[GuardedCall]:
        """Passes one model call of an agent loop through the guards an attempt passes
        (budgets, the circuit, rate limits) before it is made, and tells them how it ended
        when the block exits: normally (ok, once `settle` said what it used), by a
        StepError (failed) or by a cancel. A guard's refusal (`BudgetExceeded`,
        `CircuitOpen`) is raised on entry, before any request; a guard that makes the call
        wait (a throttled budget, `rpm`) waits on the engine clock. Where the attempt is
        not guarded call by call (no engine, no guard configured, a simulated model) the
        block only runs its body."""

    async def wait_signal(self, ctx: StepContext, name: str) -> Any: ...

    async def sleep_until(self, ctx: StepContext, wake_at: float) -> None: ...

    def wake_at(self, ctx: StepContext, delay_s: float | None, until: str | None) -> float: ...

    async def run_child(
        self,
        ctx: StepContext,
        workflow: str,
        definition: dict[str, Any] | None,
        inputs: dict[str, Any],
    ) -> Any: ...

    def note(self, ctx: StepContext, event_type: str, payload: dict[str, Any]) -> None:
        """Journals an event of the step's run (an agent loop's turn) that changes no status;
        it commits with the engine's next group commit, in the run's event chain."""


class StepRunner(Protocol):
    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult: ...
