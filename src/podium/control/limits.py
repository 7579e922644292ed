"""The concurrency and rate-limit guards: a global cap on attempts in flight, and per agent
(or step target) and per provider `max_concurrent`, `rpm` and `tpm`, optionally per `key`.

Slots come from `SharePools`, tokens from `TokenBuckets`: both local on the hot path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from podium.control.config import ControlConfig
from podium.control.deadlocks import WaitRegistry
from podium.control.guard import Call, CallOutcome
from podium.control.pools import SharePools
from podium.control.ratelimit import TokenBuckets, per_minute
from podium.model.expressions import render
from podium.model.workflow import (
    Action,
    Limits,
    LlmAction,
    SimAction,
    Step,
    WaitAction,
    Workflow,
    WorkflowAction,
)

# Steps that only wait (for a child run, a signal, a time) hold no global slot: a parent
# waiting on its child must not sit on the slot the child's steps need.
_WAITING = (WorkflowAction, WaitAction)

GLOBAL_POOL = "global"


@dataclass(frozen=True, slots=True)
class Rule:
    """One set of limits over a scope: `agent:NAME`, `provider:NAME`, or (a step's own limits
    without an agent) `target:KIND:TARGET`, resolved per call."""

    scope: str  # "" for a per-target rule
    limits: Limits
    slots: float | None = None  # max_concurrent
    fixed: str | None = None  # the pool's name when it does not depend on the call
    rpm: tuple[float, float] | None = None  # (rate per second, burst)
    tpm: tuple[float, float] | None = None

    @classmethod
    def of(cls, scope: str, limits: Limits, burst_s: float) -> Rule:
        slots = float(limits.max_concurrent) if limits.max_concurrent is not None else None
        fixed = scope if scope and limits.key is None else None
        rpm = per_minute(limits.rpm, burst_s) if limits.rpm is not None else None
        tpm = per_minute(limits.tpm, burst_s) if limits.tpm is not None else None
        return cls(scope, limits, slots, fixed, rpm, tpm)

    def name(self, call: Call) -> str:
        if self.fixed is not None:
            return self.fixed
        scope = self.scope or f"target:{call.target}"
        if self.limits.key is None:
            return scope
        return f"{scope}[{render(self.limits.key, call.context)}]"


@dataclass(frozen=True, slots=True)
class _Fixed:
    """What a call under fixed-name rules takes (and gives back): no per-call state."""

    slots: tuple[tuple[str, float], ...]  # (pool, capacity), in the order rules take them
    rpm: tuple[tuple[str, float, float], ...]  # (bucket, rate per second, burst)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A step's rules, resolved once; `fixed` when none depends on the call (no `key`, no
    `tpm` estimate), which is the hot path."""

    rules: tuple[Rule, ...]
    fixed: _Fixed | None

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> _Plan:
        if any(r.fixed is None or r.tpm is not None for r in rules) or not rules:
            return cls(rules, None)
        slots = tuple((r.fixed, r.slots) for r in rules if r.fixed and r.slots is not None)
        rpm = tuple((f"{r.fixed}:rpm", *r.rpm) for r in rules if r.rpm is not None)
        return cls(rules, _Fixed(slots, rpm))


@dataclass(slots=True)
class _Held:
    """What one call took, to give back in `exit`."""

    slots: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # rpm buckets, one token each
    tokens: list[tuple[str, float]] = field(default_factory=list)  # tpm bucket, estimate


class LimitsGuard:
    """Per agent (operator `[agents.NAME.limits]` over the step's `limits`) and per provider
    (`[providers.NAME]`, llm calls) concurrency slots, then the global cap (`[limits]
    max_concurrent`, every attempt), then request and token buckets."""

    def __init__(
        self, config: ControlConfig, pools: SharePools, buckets: TokenBuckets, waits: WaitRegistry
    ) -> None:
        self._agents = {
            name: agent.limits for name, agent in config.agents.items() if agent.limits is not None
        }
        self._providers = {n: lim for n, lim in config.providers.items() if _binding(lim)}
        cap = config.limits.max_concurrent
        self._global = Limits(max_concurrent=cap) if cap is not None else None
        self._pools = pools
        self._buckets = buckets
        self._waits = waits  # who holds and waits for which slot, for the deadlock check
        # (step object id, primary, provider) -> (the step, kept so its id stays its own; plan)
        self._plans: dict[tuple[int, bool, str | None, bool], tuple[Step, _Plan]] = {}

    def configured(self) -> bool:
        return (
            self._global is not None
            or bool(self._providers)
            or any(_binding(lim) for lim in self._agents.values())
        )

    def wanted_by(self, workflow: Workflow) -> bool:
        return any(s.limits is not None and _binding(s.limits) for s in workflow.steps.values())

    def fixed_needs(
        self, workflow: Workflow
    ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
        """The pools {name: capacity} and rpm buckets {key: (rate, burst)} the workflow's
        primary calls will use whatever their inputs (no `key`), to take before they run."""
        pools: dict[str, float] = {}
        buckets: dict[str, tuple[float, float]] = {}
        for step in workflow.steps.values():
            provider = step.action.provider if isinstance(step.action, LlmAction) else None
            waiting = isinstance(step.action, _WAITING)
            for rule in self._resolve(step, True, provider, waiting):
                if rule.fixed is None:
                    continue
                if rule.slots is not None:
                    pools[rule.fixed] = rule.slots
                if rule.rpm is not None:
                    buckets[f"{rule.fixed}:rpm"] = rule.rpm
        return pools, buckets

    def applies(self, step: Step, action: Action, primary: bool) -> bool:
        provider = action.provider if isinstance(action, LlmAction) else None
        return bool(self._resolve(step, primary, provider, isinstance(action, _WAITING)))

    def rules(self, call: Call) -> tuple[Rule, ...]:
        return self._plan(call).rules

    def _plan(self, call: Call) -> _Plan:
        action = call.action
        provider = action.provider if isinstance(action, LlmAction) else None
        waiting = isinstance(action, _WAITING)
        key = (id(call.step), call.primary, provider, waiting)
        hit = self._plans.get(key)
        if hit is None or hit[0] is not call.step:
            rules = self._resolve(call.step, call.primary, provider, waiting)
            hit = self._plans[key] = (call.step, _Plan.of(rules))
        return hit[1]

    def _resolve(
        self, step: Step, primary: bool, provider: str | None, waiting: bool
    ) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        if primary:  # a fallback or compensation has its own target and no agent
            own = step.limits
            operator = self._agents.get(step.agent) if step.agent is not None else None
            merged = _merge(operator, own)
            if merged is not None and _binding(merged):
                scope = f"agent:{step.agent}" if step.agent is not None else ""
                rules.append(Rule.of(scope, merged, self._buckets.burst_s))
        if provider is not None and provider in self._providers:
            limits = self._providers[provider]
            rules.append(Rule.of(f"provider:{provider}", limits, self._buckets.burst_s))
        # Last of the slots: a call waiting for its agent's slot must not sit on a global one
        # that other agents' calls need.
        if self._global is not None and not waiting:
            rules.append(Rule.of(GLOBAL_POOL, self._global, self._buckets.burst_s))
        return tuple(rules)

    def enter(self, call: Call) -> Awaitable[None] | None:
        plan = self._plan(call)
        if call.span != "attempt":  # an agent loop: slots for the attempt, rates per call
            return self._enter_rules(call, plan.rules) if plan.rules else None
        fixed = plan.fixed
        if fixed is None:
            return self._enter_rules(call, plan.rules) if plan.rules else None
        if self._take_now(fixed):
            call.notes["limits"] = fixed
            for name, capacity in fixed.slots:
                self._waits.held(call, name, capacity)
            return None
        return self._enter_fixed(call, fixed)

    def _take_now(self, fixed: _Fixed) -> bool:
        """The hot path: every slot and request of fixed-name rules from local shares and
        grants, all or nothing, without waiting."""
        pools, buckets = self._pools, self._buckets
        slots = 0
        for name, capacity in fixed.slots:
            if not pools.try_acquire(name, capacity):
                break
            slots += 1
        requests = 0
        if slots == len(fixed.slots):
            for key, _, _ in fixed.rpm:
                if not buckets.try_take(key, 1.0):
                    break
                requests += 1
            if requests == len(fixed.rpm):
                return True
        for name, _ in fixed.slots[:slots]:
            pools.release(name)
        for key, _, _ in fixed.rpm[:requests]:
            buckets.give_back(key, 1.0)
        return False

    async def _enter_fixed(self, call: Call, fixed: _Fixed) -> None:
        """Fixed-name rules when something must be waited for."""
        pools, buckets = self._pools, self._buckets
        taken = 0
        try:
            for name, capacity in fixed.slots:
                await self._slot(call, name, capacity)
                taken += 1
            for key, rate, burst in fixed.rpm:
                if not buckets.try_take(key, 1.0):
                    await buckets.take(key, rate, burst, 1.0)
        except BaseException:
            for name, _ in fixed.slots[:taken]:
                pools.release(name)
            self._waits.released(call)
            raise
        call.notes["limits"] = fixed

    async def _slot(self, call: Call, name: str, capacity: float) -> None:
        """One slot of `name`, waited for in line if the share has no room; the wait and
        then the hold are visible to the deadlock check."""
        if not self._pools.try_acquire(name, capacity):
            with self._waits.waiting(call, name, capacity):
                await self._pools.acquire(name, capacity)
        self._waits.held(call, name, capacity)

    async def _enter_rules(self, call: Call, rules: tuple[Rule, ...]) -> None:
        """Every rule's slot then its rates; a loop's attempt takes only the slots (held
        through its turns) and each of its turns only the rates."""
        held = _Held()
        slots, rates = call.span != "turn", call.span != "loop"
        try:
            named = [(rule, rule.fixed or rule.name(call)) for rule in rules]
            # Slots first: tokens taken while waiting for a slot would be spent on nothing.
            for rule, name in named:
                if slots and rule.slots is not None:
                    await self._slot(call, name, rule.slots)
                    held.slots.append(name)
            for rule, name in named if rates else ():
                if rule.rpm is not None:
                    key = f"{name}:rpm"
                    if not self._buckets.try_take(key, 1.0):
                        await self._buckets.take(key, rule.rpm[0], rule.rpm[1], 1.0)
                    held.requests.append(key)
                if rule.tpm is not None:
                    estimate = call.estimate_tokens
                    if estimate is None:
                        estimate = estimate_tokens(call.action)
                    if estimate > 0:
                        await self._take(f"{name}:tpm", rule.tpm, estimate)
                        held.tokens.append((f"{name}:tpm", estimate))
        except BaseException:
            self._give_back(held, refund=True)
            if slots:
                self._waits.released(call)
            raise
        call.notes["limits"] = held

    async def _take(self, key: str, rate: tuple[float, float], amount: float) -> None:
        if not self._buckets.try_take(key, amount):
            await self._buckets.take(key, rate[0], rate[1], amount)

    def exit(self, call: Call, outcome: CallOutcome) -> None:
        held = call.notes.pop("limits", None)
        if call.span != "turn":  # a turn holds no slot (its step's key is its attempt's)
            self._waits.released(call)
        if isinstance(held, _Fixed):
            for name, _ in held.slots:
                self._pools.release(name)
            if outcome == "refused":  # no call was made: its requests go back
                for key, _, _ in held.rpm:
                    self._buckets.give_back(key, 1.0)
            return
        if not isinstance(held, _Held):
            return
        if outcome == "ok":  # reconcile the estimate with what the call really used
            used = float(call.tokens_in + call.tokens_out)
            for key, estimate in held.tokens:
                if used < estimate:
                    self._buckets.give_back(key, estimate - used)
                elif used > estimate:
                    self._buckets.owe(key, used - estimate)
            held.tokens.clear()
        # refused: no call was made, so its request and tokens go back too; failed and
        # cancelled calls may have reached the provider: they keep what they took.
        self._give_back(held, refund=outcome == "refused")

    def _give_back(self, held: _Held, *, refund: bool) -> None:
        for name in held.slots:
            self._pools.release(name)
        if refund:
            for key in held.requests:
                self._buckets.give_back(key, 1.0)
            for key, estimate in held.tokens:
                self._buckets.give_back(key, estimate)
        held.slots.clear()


def estimate_tokens(action: Any) -> float:
    """Tokens a call will use, reserved before it: an llm call's characters / 4 plus its
    `max_tokens`; a sim's `tokens`; other kinds none."""
    if isinstance(action, LlmAction):
        chars = len(action.system or "") + len(action.prompt or "")
        if action.messages:
            chars += len(orjson.dumps(action.messages))
        if action.input:
            chars += len(orjson.dumps(action.input, default=str))
        return float(chars // 4 + action.max_tokens)
    if isinstance(action, SimAction) and action.tokens is not None:
        return float(action.tokens.input + action.tokens.output)
    return 0.0


def _binding(limits: Limits) -> bool:
    return limits.max_concurrent is not None or limits.rpm is not None or limits.tpm is not None


def _merge(operator: Limits | None, own: Limits | None) -> Limits | None:
    """The operator's fields win over the step's; unset ones fall back to the step's."""
    if operator is None or own is None:
        return operator or own
    update: Mapping[str, Any] = operator.model_dump(exclude_none=True)
    return own.model_copy(update=dict(update))
