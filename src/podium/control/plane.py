"""The control plane of one engine: its guards, in the order a call must pass them.

Built from the operator's ControlConfig; with nothing configured it has no guards at all.
"""

from __future__ import annotations

from collections.abc import Callable

from podium.control.admission import Admission, pool_name
from podium.control.budgets import BudgetGuard, windows_of
from podium.control.circuits import CircuitGuard
from podium.control.config import ControlConfig
from podium.control.guard import Emit, Guard
from podium.control.limits import GLOBAL_POOL, GlobalLimitGuard, LimitsGuard
from podium.control.pools import SharePools
from podium.control.ratelimit import TokenBuckets
from podium.model.workflow import Workflow
from podium.store.base import Store


class ControlPlane:
    def __init__(self, config: ControlConfig, store: Store, owner: str, emit: Emit) -> None:
        self.config = config
        self.store = store
        self.owner = owner  # the engine's id: holder of its reservations in the store
        self.emit = emit
        # Order matters: refuse cheaply (budget, open circuit) before waiting in line.
        self.guards: list[Guard] = []
        # Budgets first: a call past a limit is refused before it waits for anything. In the
        # list once a scope can apply: `[budgets]` limits, else the first workflow (`prepare`)
        # with a run budget. A call with no estimated cost passes after a kind check.
        self.budgets = BudgetGuard(config.budgets, store, owner, emit)
        if windows_of(config.budgets):
            self.guards.append(self.budgets)
        # Circuit breakers: after a budget guard, before limit guards (an open circuit refuses
        # at once; no slot is taken for a call that will not be made). In the list once a
        # policy can apply: a `[circuits] default`, else the first workflow (`prepare`) with a
        # step under a policy; until then calls pay nothing for it.
        self.circuits = CircuitGuard(config, store, emit)
        self._circuits_at = len(self.guards)
        if config.circuits.default is not None:
            self.guards.insert(self._circuits_at, self.circuits)
        # Concurrency caps and rate limits, last: a call waits for a slot and tokens only once
        # nothing will refuse it. Local semaphores and token grants over shares of the store's
        # pools and buckets (control/pools.py, ratelimit.py). The global cap is in the list if
        # `[limits] max_concurrent` is set; the per agent/provider guard if operator limits
        # are, else from the first workflow (`prepare`) whose steps have `limits`.
        self.pools = SharePools(store, owner)
        self.buckets = TokenBuckets(store)
        if config.limits.max_concurrent is not None:
            self.guards.append(GlobalLimitGuard(self.pools, config.limits.max_concurrent))
        self.limits = LimitsGuard(config, self.pools, self.buckets)
        if self.limits.configured():
            self.guards.append(self.limits)
        # Resource admission of whole runs (`[resources]`), from the same pools.
        self.admission = Admission(config.resources, self.pools)

    def bind_pools(self, ttl_s: float, on_capacity: Callable[[], None]) -> None:
        """The engine's lease (how long a crashed engine's shares stay held) and what to call
        when this engine's shares grew (queued runs may fit now)."""
        self.pools.ttl_s = ttl_s
        self.pools.on_change = on_capacity

    def prepare(self, workflow: Workflow) -> None:
        """A workflow this engine will run (once per definition): turns on what it needs."""
        budget = workflow.budget
        if budget is not None and budget.usd is not None and self.budgets not in self.guards:
            self.guards.insert(0, self.budgets)
            self._circuits_at += 1
        if self.circuits not in self.guards and self.circuits.wanted_by(workflow):
            self.guards.insert(self._circuits_at, self.circuits)
        if self.limits not in self.guards and self.limits.wanted_by(workflow):
            self.guards.append(self.limits)

    async def start(self) -> None:
        """Loads shared state before the first call."""
        await self.circuits.refresh()
        await self.pools.prime(self._fixed_pools())

    def _fixed_pools(self) -> dict[str, float]:
        """The global and resource pools, which every run or call uses once configured."""
        caps = {pool_name(r): c for r, c in self.admission.capacities.items()}
        if self.config.limits.max_concurrent is not None:
            caps[GLOBAL_POOL] = float(self.config.limits.max_concurrent)
        return caps

    async def tick(self) -> None:
        """Every poll interval: refresh shared state, renew and hand back reservations."""
        await self.circuits.tick()
        await self.budgets.tick()
        await self.pools.tick()
        await self.buckets.tick()

    async def close(self) -> None:
        """On shutdown: hands back everything this engine holds."""
        await self.circuits.close()
        await self.budgets.close()
        await self.buckets.close()
        await self.pools.close()
