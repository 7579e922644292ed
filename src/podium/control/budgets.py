"""Budgets: per-run, per-workflow and global spend limits, checked before a call.

A call with an estimated cost sets that much aside (a hold) in every scope it falls under; its
real cost reaches the spend ledger with the step's result, and the hold goes after that commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from podium.clock import Clock
from podium.control.config import Budgets
from podium.control.guard import Call, CallOutcome, Emit
from podium.errors import BudgetExceeded, PodiumError, StepError
from podium.model.llm import build_request, estimate_usage
from podium.model.pricing import Pricing
from podium.model.workflow import Action, Budget, LlmAction, SimAction, Step
from podium.store.roles import BudgetStore, CacheStore
from podium.store.spend import (
    DAY_S,
    EPSILON_USD,
    HOUR_S,
    BudgetHold,
    ScopeUsage,
    WindowScope,
    scope_title,
)
from podium.supervisor import Supervisor

log = structlog.get_logger("podium.control")

_WINDOWS = (("hourly", HOUR_S), ("daily", DAY_S))
_RUN_NOTE, _HOLD_NOTE = "budget.run_usd", "budget.hold_id"


@dataclass(frozen=True, slots=True)
class RunBudget:
    """What the engine running a run knows of its budget: the policy and the run's spend so
    far (committed step results; only that engine runs the run, so nobody else adds to it)."""

    budget: Budget
    spent_usd: float


RunLookup = Callable[[str], "RunBudget | None"]
AfterCommit = Callable[[Callable[[], None]], None]  # runs an action once the journal commits


@dataclass(frozen=True, slots=True)
class _Usage:
    """One scope's state as a call sees it, for the decision, the warning and the error."""

    scope: str
    title: str  # "global daily budget", "run budget"
    limit_usd: float
    spent_usd: float
    held_usd: float
    warn_at: float
    throttle: bool  # waiting may help (the scope's action is throttle and the call can fit)

    def fits(self, usd: float) -> bool:
        return self.spent_usd + self.held_usd + usd <= self.limit_usd + EPSILON_USD


# -- estimates -------------------------------------------------------------------------------


def estimate_usd(action: Action, pricing: Pricing) -> float:
    """What a call may cost, before it is made: 0 for kinds that cost nothing."""
    if isinstance(action, SimAction):
        return _sim_estimate(action, pricing)
    if isinstance(action, LlmAction):
        return _llm_estimate(action, pricing)
    return 0.0


def _sim_estimate(action: SimAction, pricing: Pricing) -> float:
    usd = action.cost_usd
    if action.tokens is not None and action.model is not None:
        price = pricing.price(action.model)
        if price is not None:
            usd += pricing.cost_usd(action.model, action.tokens.input, action.tokens.output)
    return usd


def _llm_estimate(action: LlmAction, pricing: Pricing) -> float:
    try:
        request = build_request(action, pricing)
    except PodiumError:
        return 0.0  # the call fails before it is made, at no cost
    return pricing.cost_usd(request.model, *estimate_usage(request))


# -- scopes ----------------------------------------------------------------------------------


def window_scopes(config: Budgets, workflow: str) -> tuple[WindowScope, ...]:
    """The operator's scopes a call of `workflow` falls under (global, then the workflow's)."""
    scopes = [
        WindowScope(f"global/{name}", limit, window_s)
        for name, window_s in _WINDOWS
        if (limit := getattr(config, f"{name}_usd")) is not None
    ]
    own = config.workflows.get(workflow)
    if own is not None:
        scopes.extend(
            WindowScope(f"workflow/{workflow}/{name}", limit, window_s, workflow)
            for name, window_s in _WINDOWS
            if (limit := getattr(own, f"{name}_usd")) is not None
        )
    return tuple(scopes)


def money(usd: float) -> str:
    """`$0.50`, `$0.0000135`: cents at least, and the digits a small price needs, down to
    the ledger's precision (a billionth of a dollar)."""
    digits = f"{usd:.9f}".rstrip("0")
    whole, _, cents = digits.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def refusal(usage: _Usage, estimate: float) -> str:
    return (
        f"budget_exceeded: the {usage.title} of {money(usage.limit_usd)} would be exceeded:"
        f" spent {money(usage.spent_usd)}, held by calls in flight {money(usage.held_usd)},"
        f" this call up to {money(estimate)}; the call was not made"
    )


# -- the guard -------------------------------------------------------------------------------


class BudgetCacheStore(BudgetStore, CacheStore, Protocol):
    """Budget holds, and the llm response cache: a call it answers costs nothing."""


class BudgetGuard:
    """The first Guard: refuses (`block`) or holds back (`throttle`) a call that would take a
    scope past its limit. Calls with no estimated cost pass after a kind check."""

    def __init__(
        self, config: Budgets, pricing: Pricing, store: BudgetCacheStore, owner: str, emit: Emit,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._config = config
        self._pricing = pricing
        self._store = store
        self.clock = store.clock if clock is None else clock
        self._owner = owner
        self._emit = emit
        self._runs: RunLookup = lambda run_id: None
        self._after_commit: AfterCommit = lambda action: action()
        self.hold_ttl_s = 30.0  # the engine's lease: a dead engine's holds run out with it
        self.poll_s = 0.2  # how often a throttled call looks again
        self._scopes: dict[str, tuple[WindowScope, ...]] = {}
        self._run_held: dict[str, float] = {}  # run id -> estimates of its calls in flight
        self._holds: set[str] = set()  # hold ids placed here and not yet handed back
        self._releasing: list[str] = []
        self._releaser: asyncio.Task[None] | None = None
        self._tasks = Supervisor("budgets")
        self._warned: set[str] = set()  # scopes past their warning threshold
        self._renewed_at = 0.0

    def bind(self, runs: RunLookup, after_commit: AfterCommit, *, hold_ttl_s: float,
             poll_s: float) -> None:
        """The engine's side: its runs' budgets, its commit hook, its lease and poll interval."""
        self._runs, self._after_commit = runs, after_commit
        self.hold_ttl_s, self.poll_s = hold_ttl_s, poll_s

    # -- the Guard protocol -------------------------------------------------------------------

    def applies(self, step: Step, action: Action, primary: bool) -> bool:
        return action.kind == "llm" or action.kind == "sim"  # the kinds that cost money

    def enter(self, call: Call) -> Awaitable[None] | None:
        kind = call.action.kind
        if (kind != "llm" and kind != "sim") or call.span == "loop":
            return None  # a loop's calls are budgeted one by one, as turns
        estimate = call.estimate_usd
        if estimate is None:
            estimate = estimate_usd(call.action, self._pricing)
        if estimate <= 0:
            return None
        scopes = self._scopes.get(call.workflow)
        if scopes is None:
            scopes = window_scopes(self._config, call.workflow)
            self._scopes[call.workflow] = scopes
        if not scopes and self._runs(call.run_id) is None:
            return None
        action = call.action
        # A cached llm call may cost nothing; a loop's turn is never answered from the cache.
        if isinstance(action, LlmAction) and action.cache_s is not None and call.span != "turn":
            return self._admit_unless_cached(action, call, estimate, scopes)
        return self._admit(call, estimate, scopes)

    def exit(self, call: Call, outcome: CallOutcome) -> None:
        run_usd = call.notes.pop(_RUN_NOTE, None)
        if run_usd is not None:
            left = self._run_held.get(call.run_id, 0.0) - run_usd
            if left > EPSILON_USD:
                self._run_held[call.run_id] = left
            else:
                self._run_held.pop(call.run_id, None)
        hold_id = call.notes.pop(_HOLD_NOTE, None)
        if hold_id is None:
            return
        if outcome == "ok":
            # The cost reaches the ledger with the step's commit: until then the hold counts.
            self._after_commit(lambda: self._release(hold_id))
        else:
            self._release(hold_id)

    # -- admission ----------------------------------------------------------------------------

    async def _admit_unless_cached(
        self, action: LlmAction, call: Call, estimate: float, scopes: Sequence[WindowScope]
    ) -> None:
        """A call the response cache answers costs nothing: it holds nothing and never waits
        for room. (An entry that expires between this look and the step's own is a call
        made without a hold; the ledger books it all the same.)"""
        try:
            hit = await self._store.cache_get(build_request(action, self._pricing).cache_key())
        except PodiumError:
            hit = None  # the step's own look will fail or miss: admit as a paid call
        if isinstance(hit, dict):
            return
        await self._admit(call, estimate, scopes)

    async def _admit(self, call: Call, estimate: float, scopes: Sequence[WindowScope]) -> None:
        throttled = False
        while True:
            blocking = await self._try(call, estimate, scopes)
            if blocking is None:
                return
            if not blocking.throttle:
                raise BudgetExceeded(refusal(blocking, estimate))
            if not throttled:
                throttled = True
                self._emit(call.run_id, "agent.task.throttled", {
                    "step": call.step.id, "index": call.index, "scope": blocking.scope,
                    "limit_usd": blocking.limit_usd, "spent_usd": blocking.spent_usd,
                    "held_usd": blocking.held_usd, "estimate_usd": estimate,
                })
            await self.clock.sleep(self.poll_s)

    async def _try(
        self, call: Call, estimate: float, scopes: Sequence[WindowScope]
    ) -> _Usage | None:
        """Holds the estimate in every scope, or in none; returns the scope that had no room.
        Warnings are for calls that go ahead: a refused or held-back call warns of nothing."""
        admitted: list[_Usage] = []
        run = self._runs(call.run_id)
        if run is not None:
            usage = self._run_usage(call.run_id, run, estimate)
            if not usage.fits(estimate):
                return usage
            admitted.append(usage)
            self._hold_run(call, estimate)  # at once: parallel steps of the run see it
        if scopes:
            try:
                blocking, usages = await self._hold_windows(call, estimate, scopes)
            except BaseException:
                self.exit(call, "refused")
                raise
            if blocking is not None:
                self.exit(call, "refused")
                return blocking
            admitted.extend(usages)
        for usage in admitted:
            self._watch(call, usage, estimate)
        return None

    def _run_usage(self, run_id: str, run: RunBudget, estimate: float) -> _Usage:
        budget, limit = run.budget, run.budget.usd or 0.0
        return _Usage(
            scope=f"run/{run_id}",
            title="run budget",
            limit_usd=limit,
            spent_usd=run.spent_usd,
            held_usd=self._run_held.get(run_id, 0.0),
            warn_at=budget.warn_at,
            # A run's spend never falls: waiting helps only while its own calls are in flight.
            throttle=budget.action == "throttle"
            and run.spent_usd + estimate <= limit + EPSILON_USD,
        )

    def _hold_run(self, call: Call, estimate: float) -> None:
        self._run_held[call.run_id] = self._run_held.get(call.run_id, 0.0) + estimate
        call.notes[_RUN_NOTE] = estimate

    async def _hold_windows(
        self, call: Call, estimate: float, scopes: Sequence[WindowScope]
    ) -> tuple[_Usage | None, list[_Usage]]:
        """(the scope short of room or None, every scope's usage) after trying the hold."""
        hold = BudgetHold(
            hold_id=uuid.uuid4().hex,
            run_id=call.run_id,
            workflow=call.workflow,
            usd=estimate,
            holder=self._owner,
            expires_at=self.clock.now() + self.hold_ttl_s,
        )
        # Holds handed back but maybe not yet deleted would count twice: the ones not sent yet
        # go in this transaction, and a delete under way is waited for.
        release, self._releasing = self._releasing, []
        try:
            if self._releaser is not None and not self._releaser.done():
                await asyncio.shield(self._releaser)
            placed, found = await self._store.hold_budget(hold, scopes, release)
        except asyncio.CancelledError:
            self._release(*release, hold.hold_id)  # it may be placed before the cancel came
            raise
        except PodiumError as exc:
            self._release(*release)
            raise StepError(f"the budget check failed: {exc}") from None
        usages = [self._window_usage(u, estimate) for u in found]
        if placed:
            self._holds.add(hold.hold_id)
            call.notes[_HOLD_NOTE] = hold.hold_id
            return None, usages
        # Not placed: the scopes short of room (all of them, should rounding have hidden it).
        refused = [u for u in usages if not u.fits(estimate)] or usages
        return next((u for u in refused if not u.throttle), refused[0]), usages

    def _window_usage(self, found: ScopeUsage, estimate: float) -> _Usage:
        scope = found.scope
        return _Usage(
            scope=scope.scope,
            title=scope_title(scope),
            limit_usd=scope.limit_usd,
            spent_usd=found.spent_usd,
            held_usd=found.held_usd,
            warn_at=self._config.warn_at,
            # A call bigger than the whole limit would wait forever: refused instead.
            throttle=self._config.action == "throttle" and estimate <= scope.limit_usd,
        )

    def _watch(self, call: Call, usage: _Usage, estimate: float) -> None:
        """The warning, once each time a scope crosses `warn_at` of its limit."""
        level = usage.spent_usd + usage.held_usd + estimate
        if level + EPSILON_USD < usage.warn_at * usage.limit_usd:
            self._warned.discard(usage.scope)
            return
        if usage.scope in self._warned:
            return
        self._warned.add(usage.scope)
        run_scope = usage.scope.startswith("run/")
        payload: dict[str, Any] = {
            "scope": usage.scope,
            "limit_usd": usage.limit_usd,
            "spent_usd": usage.spent_usd,
            "held_usd": usage.held_usd,
            "estimate_usd": estimate,
            "warn_at": usage.warn_at,
            "run_id": call.run_id,
            "step": call.step.id,
        }
        self._emit(call.run_id if run_scope else "", "system.cost.budget.warning", payload)

    # -- holds in the store -------------------------------------------------------------------

    def _release(self, *hold_ids: str) -> None:
        """Hands holds back, on the guard's own task (exit is synchronous)."""
        self._holds.difference_update(hold_ids)
        self._releasing.extend(hold_ids)
        if self._releaser is None or self._releaser.done():
            self._releaser = self._tasks.start(self._release_queued(), name="release-holds")

    async def _release_queued(self) -> None:
        while self._releasing:
            hold_ids, self._releasing = self._releasing, []
            try:
                await self._store.release_budget_holds(hold_ids)
            except PodiumError as exc:  # they run out on their own
                log.warning("handing back budget holds failed", error=str(exc))

    async def tick(self) -> None:
        """Keeps this engine's holds alive (a third of their life before they would run out)."""
        now = self.clock.now()
        for scope in [s for s in self._warned if s.startswith("run/")]:
            if self._runs(scope[4:]) is None:
                self._warned.discard(scope)
        if not self._holds or now - self._renewed_at < self.hold_ttl_s / 3:
            return
        self._renewed_at = now
        await self._store.renew_budget_holds(self._owner, now + self.hold_ttl_s)

    async def close(self) -> None:
        """Hands back every hold (the engine is stopping; its calls were cancelled)."""
        self._releasing.extend(self._holds)
        self._holds.clear()
        await self._tasks.join()  # the releaser finishes its round
        await self._release_queued()


def windows_of(config: Budgets) -> list[WindowScope]:
    """Every scope the operator configured, global first (`podium budgets`)."""
    scopes = [s for s in window_scopes(config, "") if s.workflow is None]
    for name in sorted(config.workflows):
        scopes.extend(s for s in window_scopes(config, name) if s.workflow is not None)
    return scopes
