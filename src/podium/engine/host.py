"""What the engine offers step kinds (`StepHost`): signals, time waits, child runs, secrets.

Kept apart from the state machine: these services talk to the store and wait; the engine decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, Protocol

from podium.bus.transient import Notice, Notices, Transient
from podium.clock import Clock
from podium.engine.journal import Journal
from podium.engine.runtime import RunRuntime
from podium.engine.summary import RunSummary
from podium.engine.turns import TurnGuards
from podium.errors import NonRetryable
from podium.events import SYSTEM_ACTOR, Actor
from podium.model.workflow import Workflow
from podium.steps import CallEstimate, CallUsage, GuardedCall, StepContext
from podium.store.base import Store
from podium.store.records import StepState
from podium.store.waits import child_run_id

Waiter = tuple[StepState, "asyncio.Future[Any]"]


class _Unguarded:
    def settle(self, usage: CallUsage | None) -> None:
        return None


_UNGUARDED = _Unguarded()


class EngineServices(Protocol):
    """What the host needs of the engine (the engine is one; the host never imports it)."""

    store: Store
    clock: Clock
    journal: Journal
    owner: str

    def runtime(self, run_id: str) -> RunRuntime: ...

    def knows(self, run_id: str) -> bool: ...

    def emit_for(self, run_id: str, event_type: str, payload: dict[str, Any]) -> None: ...

    async def submit(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        priority: str | None = None,
        trusted: bool = True,
        actor: Actor = SYSTEM_ACTOR,
        trace_parent: str | None = None,
    ) -> str: ...

    async def recover(
        self, run_ids: Sequence[str] | None = None, *, limit: int | None = None
    ) -> list[str]: ...

    async def wait_done(self, run_id: str) -> None: ...

    async def cancel(self, run_id: str, actor: Actor = SYSTEM_ACTOR) -> bool: ...

    async def summary(self, run_id: str) -> RunSummary: ...

    async def definition(self, digest: str) -> Workflow: ...


class EngineHost:
    def __init__(
        self,
        engine: EngineServices,
        secrets: Mapping[str, str],
        transient: Notices | None = None,
        turns: TurnGuards | None = None,
    ) -> None:
        self._engine = engine
        self.clock = engine.clock
        self.worker_id = engine.owner
        self._secrets = secrets
        self.transient: Notices = transient or Transient()
        self._waiters: dict[tuple[str, str], list[Waiter]] = {}  # (run, signal) -> waiting steps
        self._claimed: set[int] = set()  # signals handed to a step, not yet committed as taken
        self.turns = turns  # agent loops' model calls (None: they pass unguarded)

    def secret(self, name: str) -> str | None:
        return self._secrets.get(name)

    async def cache_get(self, key: str) -> Any | None:
        return await self._engine.store.cache_get(key)

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None:
        await self._engine.store.cache_put(key, value, ttl_s)

    def emit_delta(self, ctx: StepContext, text: str) -> None:
        if self.transient.listening(ctx.run_id):  # nobody listens: nothing is built
            payload = {"step": ctx.step_id, "index": ctx.index, "attempt": ctx.attempt,
                       "text": text}
            self.transient.publish(Notice(ctx.run_id, "llm.delta", payload))

    def guard_call(
        self, ctx: StepContext, estimate: CallEstimate
    ) -> AbstractAsyncContextManager[GuardedCall]:
        if self.turns is None:
            return nullcontext(_UNGUARDED)
        return self.turns.guard(ctx, estimate)

    # -- signals ---------------------------------------------------------------------------------

    def waiting_runs(self) -> list[str]:
        return list({run_id for run_id, _ in self._waiters})

    async def wait_signal(self, ctx: StepContext, name: str) -> Any:
        """The payload of the first signal `name` of this run not yet taken, waiting for one."""
        st = self._state(ctx)
        for signal in await self._engine.store.pending_signals([ctx.run_id]):
            if signal.name == name and signal.signal_id not in self._claimed:
                self._take(st, signal.signal_id)
                return signal.payload
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (st, future)
        self._waiters.setdefault((ctx.run_id, name), []).append(entry)
        self._engine.emit_for(
            ctx.run_id, "agent.task.waiting", {"step": ctx.step_id, "signal": name}
        )
        try:
            return await future
        finally:
            self._forget(ctx.run_id, name, entry)

    async def deliver_signals(self, run_ids: Sequence[str]) -> None:
        """Hands stored signals of these runs to the steps waiting for them."""
        wanted = set(run_ids)
        if not any(run_id in wanted for run_id, _ in self._waiters):
            return
        for signal in await self._engine.store.pending_signals(list(wanted)):
            waiters = self._waiters.get((signal.run_id, signal.name))
            if not waiters or signal.signal_id in self._claimed:
                continue
            st, future = waiters[0]
            self._forget(signal.run_id, signal.name, waiters[0])
            self._take(st, signal.signal_id)
            if not future.done():
                future.set_result(signal.payload)

    def _take(self, st: StepState, signal_id: int) -> None:
        # Marked taken in the same commit as the step's result (see Engine._finish), so a
        # crash in between leaves the signal for the step's next attempt.
        self._claimed.add(signal_id)
        self._engine.runtime(st.run_id).signal_ids[(st.step_id, st.index)] = signal_id

    def _forget(self, run_id: str, name: str, entry: Waiter) -> None:
        waiters = self._waiters.get((run_id, name), [])
        if entry in waiters:
            waiters.remove(entry)
            if not waiters:
                del self._waiters[(run_id, name)]

    # -- time waits ----------------------------------------------------------------------------

    def wake_at(self, ctx: StepContext, delay_s: float | None, until: str | None) -> float:
        st = self._state(ctx)
        if st.wake_at is None:
            now = self._engine.clock.now()
            st.wake_at = now + delay_s if delay_s is not None else _parse_time(until, now)
            self._engine.journal.step(st)
        return st.wake_at

    async def sleep_until(self, ctx: StepContext, wake_at: float) -> None:
        await self._engine.journal.committed()  # the deadline survives a restart
        clock = self._engine.clock
        await clock.sleep(max(0.0, wake_at - clock.now()))

    # -- child runs ----------------------------------------------------------------------------

    async def run_child(
        self,
        ctx: StepContext,
        workflow: str,
        definition: dict[str, Any] | None,
        inputs: dict[str, Any],
    ) -> Any:
        """Runs (or, after a restart, finds again) the child run and returns its outputs."""
        engine = self._engine
        child_id = child_run_id(ctx.idempotency_key)
        try:
            await self._start_child(ctx, child_id, workflow, definition, inputs)
            await engine.wait_done(child_id)
        except asyncio.CancelledError:  # the parent's step was cancelled: so is its child,
            # even one cancelled while it was being submitted
            if engine.knows(child_id):
                await engine.cancel(child_id)
            raise
        summary = await engine.summary(child_id)
        if summary.status not in ("succeeded", "degraded"):
            raise NonRetryable(f"child run {child_id} ended {summary.status}: {summary.error}")
        return summary.outputs

    async def _start_child(
        self,
        ctx: StepContext,
        child_id: str,
        workflow: str,
        definition: dict[str, Any] | None,
        inputs: dict[str, Any],
    ) -> None:
        """Submits the child run, or, after a restart, resumes the one submitted before."""
        engine = self._engine
        if engine.knows(child_id):
            return
        row = await engine.store.get_run(child_id)
        if row is None:
            # A child runs under its parent's trust: an API definition cannot reach, through
            # a sub-workflow, what it may not reach itself.
            trusted = engine.runtime(ctx.run_id).row.trusted
            child = (
                Workflow.model_validate(definition)
                if definition
                else await self._registered(workflow, trusted)
            )
            await engine.submit(
                child, inputs, run_id=child_id, parent_run_id=ctx.run_id, trusted=trusted,
                trace_parent=ctx.traceparent,  # its trace hangs under this attempt's span
            )
        elif not row.done:
            await engine.recover([child_id])

    async def _registered(self, name: str, trusted: bool) -> Workflow:
        """The newest registered definition of `name`; a trusted run may also name a
        workflow that has only run before (the newest definition it ran with)."""
        registered = await self._engine.store.get_registered(name)
        if registered is not None:
            return Workflow.model_validate(registered[1])
        runs = await self._engine.store.list_runs(workflow=name, limit=1) if trusted else []
        if not runs:
            raise NonRetryable(
                f"no workflow named {name!r} is registered; register it (POST /v1/workflows)"
                " or, in a local file, give its file path"
            )
        return await self._engine.definition(runs[0].definition_digest)

    # -- events ------------------------------------------------------------------------------

    def note(self, ctx: StepContext, event_type: str, payload: dict[str, Any]) -> None:
        if self._engine.knows(ctx.run_id):  # a step whose run this engine lost says nothing
            self._engine.emit_for(ctx.run_id, event_type, payload)

    def _state(self, ctx: StepContext) -> StepState:
        rt = self._engine.runtime(ctx.run_id)
        return rt.steps[ctx.step_id] if ctx.index is None else rt.instances[ctx.step_id][ctx.index]


def _parse_time(text: str | None, now: float) -> float:
    if text is None:
        return now
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise NonRetryable(f"`until` is not an ISO 8601 time (got {text!r})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
