"""Circuit breakers: stop calling an agent or target that keeps failing.

State is shared through the store; each engine caches it so a call to a healthy circuit costs
no store round trip. Failures, and calls meeting an open or half-open circuit, go to the store.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from podium.clock import Clock
from podium.control.config import ControlConfig
from podium.control.guard import Call, CallOutcome, Emit
from podium.errors import CircuitOpen, PodiumError
from podium.events import SYSTEM, Event, utc_iso
from podium.model.workflow import Action, CircuitPolicy, Step, Workflow
from podium.store.base import Store
from podium.store.circuits import CLOSED, HALF_OPEN, OPEN, half_open_at
from podium.store.records import Batch, CircuitRecord, CircuitResult
from podium.store.roles import CircuitStore

log = structlog.get_logger("podium.control")

# A trial slot is presumed lost (its engine died) this long after its attempt's timeout.
TRIAL_LEASE_MARGIN_S = 30.0


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class _Ticket:
    """What `enter` let through, kept in `call.notes` for `exit`."""

    key: str
    policy: CircuitPolicy
    trial: bool  # holds one of the half-open circuit's trial slots


def resolve_policy(config: ControlConfig, step: Step) -> CircuitPolicy | None:
    """The operator's word on the agent, else the step's (or its agent's), else the default."""
    agent = config.agents.get(step.agent) if step.agent else None
    if agent is not None and agent.circuit is not None:
        return agent.circuit
    return step.circuit or config.circuits.default


def circuit_key(call: Call) -> str:
    """Per agent when the step names one, else per `kind:target` (`http:host:port`, ...)."""
    return call.agent or call.target


class CircuitGuard:
    """The Guard of circuit breakers; only primary calls pass through it (fallbacks do not)."""

    def __init__(
        self, config: ControlConfig, store: CircuitStore, emit: Emit, *, clock: Clock | None = None
    ) -> None:
        self._config = config
        self._store = store
        self.clock = store.clock if clock is None else clock
        self._emit = emit
        self._states: dict[str, CircuitRecord] = {}  # the store's rows, as last seen
        self._changes = 0  # counts local changes to _states...
        self._changed: dict[str, int] = {}  # ...and when each circuit last changed here
        self._policies: dict[int, tuple[Step, CircuitPolicy | None]] = {}
        self._jobs: dict[str, deque[Callable[[], Awaitable[None]]]] = {}  # per circuit, in order
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._in_use = False  # a call under a policy came by: keep the cache fresh from now on

    # -- the Guard protocol ---------------------------------------------------------------

    def applies(self, step: Step, action: Action, primary: bool) -> bool:
        return primary and self._policy(step) is not None

    def enter(self, call: Call) -> Awaitable[None] | None:
        if not call.primary or call.span == "loop":
            return None  # a loop's model calls pass one by one, as turns
        policy = self._policy(call.step)
        if policy is None:
            return None
        if not self._in_use:
            return self._first_enter(call, policy)
        key = call.step.agent or call.target  # circuit_key, inlined: this runs per attempt
        state = self._states.get(key)
        if state is not None and state.state != CLOSED:
            return self._enter_not_closed(call, key, policy, state)
        call.notes["circuit"] = _Ticket(key, policy, False)
        return None

    async def _first_enter(self, call: Call, policy: CircuitPolicy) -> None:
        """The first call under a policy: the cache may be as old as the engine."""
        self._in_use = True
        try:
            await self.refresh()
        except PodiumError as exc:
            log.warning("reading circuits failed", error=str(exc))
        waiting = self.enter(call)
        if waiting is not None:
            await waiting

    async def _enter_not_closed(
        self, call: Call, key: str, policy: CircuitPolicy, state: CircuitRecord
    ) -> None:
        trial = await self._admit(call, key, policy, state)
        call.notes["circuit"] = _Ticket(key, policy, trial)

    def exit(self, call: Call, outcome: CallOutcome) -> None:
        ticket: _Ticket | None = call.notes.get("circuit")
        if ticket is None:
            return
        run_id, key = call.run_id, ticket.key
        if outcome == "failed":
            state = self._states.get(key) or CircuitRecord(key, CLOSED)
            # Counted here at once, so a success right after knows there is a count to reset.
            self._set(key, replace(state, failures=state.failures + 1))
            self._queue(key, lambda: self._failed(run_id, ticket, state.state))
        elif outcome == "ok":
            if ticket.trial or self._dirty(key):
                self._queue(key, lambda: self._succeeded(run_id, ticket))
        elif ticket.trial:  # refused further on, or cancelled: the slot was not used
            self._queue(key, lambda: self._released(key))

    def wanted_by(self, workflow: Workflow) -> bool:
        """Does any step of the workflow run under a circuit policy?"""
        return any(self._policy(step) is not None for step in workflow.steps.values())

    # -- lifecycle (from the ControlPlane) --------------------------------------------------

    async def refresh(self) -> None:
        """The store's view, except for circuits changed here while it was being read (their
        own results are newer) or with store work still queued."""
        since = self._changes
        fresh = {r.key: r for r in await self._store.list_circuits()}
        for key, change in self._changed.items():
            if change > since or key in self._jobs:
                local = self._states.get(key)
                if local is None:
                    fresh.pop(key, None)
                else:
                    fresh[key] = local
        self._states = fresh

    async def tick(self) -> None:
        """Every poll interval, once circuits are in use here: other engines' changes."""
        if self._in_use:
            await self.refresh()

    async def close(self) -> None:
        await self.flush()

    async def flush(self) -> None:
        """Waits until every queued store operation is done."""
        while self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)

    def states(self) -> dict[str, CircuitRecord]:
        return dict(self._states)

    # -- policy and admission ------------------------------------------------------------

    def _policy(self, step: Step) -> CircuitPolicy | None:
        cached = self._policies.get(id(step))
        if cached is not None and cached[0] is step:
            return cached[1]
        policy = resolve_policy(self._config, step)
        self._policies[id(step)] = (step, policy)  # holding the step keeps its id unique
        return policy

    def _dirty(self, key: str) -> bool:
        """Does a success have something to reset? (False on the hot path: no store trip.)"""
        state = self._states.get(key)
        return state is not None and (state.failures > 0 or state.state != CLOSED)

    async def _admit(
        self, call: Call, key: str, policy: CircuitPolicy, state: CircuitRecord
    ) -> bool:
        """An open or half-open circuit: refuse at once while it cools down, else ask the store
        for a trial slot (in the circuit's order). Returns whether the call holds one."""
        now = self.clock.now()
        until = half_open_at(state, policy.cooldown_s)
        if state.state == OPEN and (until is None or now < until):
            raise _refusal(key, state, policy, now)
        answer: asyncio.Future[CircuitResult] = asyncio.get_running_loop().create_future()
        lease_s = call.step.timeout_s + TRIAL_LEASE_MARGIN_S
        self._queue(key, lambda: self._take_trial(call.run_id, key, policy, lease_s, answer))
        try:
            result = await answer
        except PodiumError as exc:  # the store is down: the breaker must not stop the work
            log.warning("circuit check failed; the call goes ahead", circuit=key, error=str(exc))
            return False
        if not result.allowed:
            raise _refusal(key, result.circuit or state, policy, now)
        return result.trial

    # -- store work, queued per circuit ---------------------------------------------------

    async def _failed(self, run_id: str, ticket: _Ticket, was: str) -> None:
        policy = ticket.policy
        result = await self._store.circuit_failure(
            ticket.key, failures=policy.failures, cooldown_s=policy.cooldown_s
        )
        failures = result.circuit.failures if result.circuit else 0
        reason = (
            "a trial call failed"
            if ticket.trial or was == HALF_OPEN
            else f"{failures} consecutive failed attempts"
        )
        self._seen(run_id, ticket.key, policy, result, reason)

    async def _succeeded(self, run_id: str, ticket: _Ticket) -> None:
        policy = ticket.policy
        result = await self._store.circuit_success(
            ticket.key, successes=policy.successes, trial=ticket.trial
        )
        reason = f"{policy.successes} trial call(s) succeeded"
        self._seen(run_id, ticket.key, policy, result, reason)

    async def _take_trial(
        self,
        run_id: str,
        key: str,
        policy: CircuitPolicy,
        lease_s: float,
        answer: asyncio.Future[CircuitResult],
    ) -> None:
        try:
            result = await self._store.take_circuit_trial(
                key, cooldown_s=policy.cooldown_s, half_open_max=policy.half_open_max,
                lease_s=lease_s,
            )
        except PodiumError as exc:
            if not answer.done():
                answer.set_exception(exc)
            return
        self._seen(run_id, key, policy, result, f"its cool-down of {policy.cooldown_s:g}s passed")
        if not answer.cancelled():
            answer.set_result(result)
        elif result.trial:  # the caller went away: hand the slot back
            await self._released(key)

    async def _released(self, key: str) -> None:
        result = await self._store.release_circuit_trial(key)
        if result.circuit is not None:
            self._set(key, result.circuit)

    def _seen(
        self, run_id: str, key: str, policy: CircuitPolicy, result: CircuitResult, reason: str
    ) -> None:
        """Caches the row a store operation left, and emits the transition it made."""
        record = result.circuit
        if record is None:
            self._set(key, None)
            return
        self._set(key, record)
        if result.transition is not None:
            payload = transition_payload(record, policy.cooldown_s, reason)
            self._emit(run_id, f"system.circuit.{result.transition}", payload)

    def _set(self, key: str, record: CircuitRecord | None) -> None:
        self._changes += 1
        self._changed[key] = self._changes
        if record is None:
            self._states.pop(key, None)
        else:
            self._states[key] = record

    def _queue(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        """Runs `job` after the circuit's earlier jobs, on a task this guard owns."""
        self._jobs.setdefault(key, deque()).append(job)
        if key not in self._workers:
            self._workers[key] = asyncio.get_running_loop().create_task(self._drain(key))

    async def _drain(self, key: str) -> None:
        jobs = self._jobs[key]
        try:
            while jobs:
                try:
                    await jobs.popleft()()
                except Exception as exc:  # bookkeeping must never take the engine down
                    log.warning("circuit bookkeeping failed", circuit=key, error=str(exc))
        finally:
            del self._jobs[key]
            del self._workers[key]


def transition_payload(record: CircuitRecord, cooldown_s: float, reason: str) -> dict[str, Any]:
    """The payload of `system.circuit.opened|half_opened|closed`."""
    return {
        "circuit": record.key,
        "state": record.state,
        "failures": record.failures,
        "cooldown_s": cooldown_s,
        "reason": reason,
    }


async def force_circuit(
    store: Store, key: str, *, open_: bool, source: str, audit: Event | None = None
) -> CircuitResult:
    """The operator forces a circuit (`podium circuits open|close`, the API): the change,
    with its audit entry, then the transition as a system event (no run), as engines log it."""
    result = await store.force_circuit(key, open_=open_, audit=audit)
    if result.circuit is not None and result.transition is not None:
        verb = "open" if open_ else "close"
        reason = f"forced by an operator (podium circuits {verb})"
        payload = transition_payload(result.circuit, result.circuit.cooldown_s, reason)
        event = Event(
            event_type=f"system.circuit.{result.transition}", correlation_id="",
            payload=payload, source=source, actor=audit.actor if audit is not None else SYSTEM,
        )
        await store.write(Batch(events=[event]))
    return result


def _refusal(key: str, state: CircuitRecord, policy: CircuitPolicy, now: float) -> CircuitOpen:
    if state.forced:
        return CircuitOpen(
            key, f"held open by an operator until `podium circuits close {key}`"
        )
    if state.state == HALF_OPEN:
        return CircuitOpen(
            key,
            f"half-open with its {policy.half_open_max} trial call(s) in flight;"
            " another may go once one finishes",
        )
    at = (state.opened_at or now) + policy.cooldown_s
    return CircuitOpen(
        key,
        f"{state.failures} consecutive failed attempts; it may half-open at {utc_iso(at)}"
        f" (in {max(0.0, at - now):.1f}s)",
    )
