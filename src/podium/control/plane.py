"""The control plane of one engine: its guards, in the order a call must pass them.

Built from the operator's ControlConfig; with nothing configured it has no guards at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from podium.clock import Clock
from podium.control.admission import Admission, pool_name
from podium.control.budgets import BudgetGuard, windows_of
from podium.control.circuits import CircuitGuard
from podium.control.config import ControlConfig
from podium.control.deadlocks import DeadlockDetector, WaitRegistry
from podium.control.guard import Emit, Guard
from podium.control.limits import GLOBAL_POOL, LimitsGuard
from podium.control.pools import SharePools
from podium.control.ratelimit import TokenBuckets
from podium.control.retention import RetentionDuty
from podium.model.workflow import Action, Step, Workflow
from podium.store.base import Store
from podium.supervisor import Supervisor

log = structlog.get_logger("podium.control")


class ControlPlane:
    def __init__(
        self, config: ControlConfig, store: Store, owner: str, emit: Emit, *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = store.clock if clock is None else clock  # passed to every guard
        self.owner = owner  # the engine's id: holder of its reservations in the store
        self.emit = emit
        # concurrency slots and resources (pools.py)
        self.pools = SharePools(store, owner, clock=self.clock)
        self.buckets = TokenBuckets(store, clock=self.clock)  # rpm / tpm (ratelimit.py)
        self.budgets = BudgetGuard(
            config.budgets, config.pricing, store, owner, emit, clock=self.clock
        )
        self.circuits = CircuitGuard(config, store, emit, clock=self.clock)
        self.waits = WaitRegistry(self.clock)  # who holds and waits for which slot
        self.limits = LimitsGuard(config, self.pools, self.buckets, self.waits)
        self.deadlocks = DeadlockDetector(
            config.deadlock, store, owner, self.waits, emit, clock=self.clock
        )
        self.admission = Admission(config.resources, self.pools)  # whole runs, at start
        # `podium gc` every `[retention] every`, once `[retention]` asks for it
        self.retention = RetentionDuty(store, config.retention, self.clock)
        # The order a call passes them: refuse cheaply (a budget, an open circuit) before
        # waiting in line for slots and tokens (limits, the global cap among them).
        self._order: tuple[Guard, ...] = (self.budgets, self.circuits, self.limits)
        # Read by the executor on every attempt; replaced, never changed in place, so a call
        # passing the old tuple is not disturbed. A guard is in it only once something it
        # enforces is configured, here or by a workflow (`prepare`): until then, calls pay
        # nothing for it.
        self.guards: tuple[Guard, ...] = ()
        # id(action) -> (the action, kept so its id stays its own; the guards that apply)
        self._for_action: dict[int, tuple[Action, tuple[Guard, ...]]] = {}
        self._tasks = Supervisor("control")  # priming capacity ahead of calls
        if windows_of(config.budgets):
            self._turn_on(self.budgets)
        if config.circuits.default is not None:
            self._turn_on(self.circuits)
        if self.limits.configured():
            self._turn_on(self.limits)

    def _turn_on(self, guard: Guard) -> None:
        if guard not in self.guards:
            self.guards = tuple(g for g in self._order if g is guard or g in self.guards)
            self._for_action = {}

    def guards_for(self, step: Step, action: Action) -> tuple[Guard, ...]:
        """The guards, in order, that can act on calls of `action` (the step's own or its
        fallback's); worked out once per action object."""
        hit = self._for_action.get(id(action))
        if hit is not None and hit[0] is action:
            return hit[1]
        primary = action is step.action
        guards = tuple(g for g in self.guards if g.applies(step, action, primary))
        self._for_action[id(action)] = (action, guards)
        return guards

    def bind_pools(self, ttl_s: float, on_capacity: Callable[[], None]) -> None:
        """The engine's lease (how long a crashed engine's shares stay held) and what to call
        when this engine's shares grew (queued runs may fit now)."""
        self.pools.ttl_s = ttl_s
        self.pools.on_change = on_capacity

    def prepare(self, workflow: Workflow) -> None:
        """A workflow this engine will run (once per definition): turns on what it needs."""
        if workflow.budget is not None and workflow.budget.usd is not None:
            self._turn_on(self.budgets)
        if self.circuits.wanted_by(workflow):
            self._turn_on(self.circuits)
        if self.limits.wanted_by(workflow) or self.limits in self.guards:
            self._turn_on(self.limits)
            self._prime_soon(workflow)

    def _prime_soon(self, workflow: Workflow) -> None:
        """Takes shares and tokens for the workflow's limits in the background, so its first
        calls do not each wait for a store round trip (the store's writer may be busy with a
        burst of submissions just then)."""
        pools, buckets = self.limits.fixed_needs(workflow)
        if not pools and not buckets:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # prepared outside the engine's loop (tests): calls take them
            return

        async def prime() -> None:
            try:
                await self.pools.prime(pools)
                await self.buckets.prime(buckets)
            except Exception as exc:  # the calls will ask again themselves
                log.warning("taking capacity ahead failed", error=str(exc))

        self._tasks.start(prime(), name=f"prime:{workflow.name}")

    async def start(self) -> None:
        """Loads shared state before the first call."""
        await self.circuits.refresh()
        await self.pools.prime(self._fixed_pools())
        self.retention.start()

    def _fixed_pools(self) -> dict[str, float]:
        """The global and resource pools, which every run or call uses once configured."""
        caps = {pool_name(r): c for r, c in self.admission.capacities.items()}
        if self.config.limits.max_concurrent is not None:
            caps[GLOBAL_POOL] = float(self.config.limits.max_concurrent)
        return caps

    async def tick(self) -> None:
        """Every poll interval: refresh shared state, renew and hand back reservations.
        Each duty runs even if another failed (a failed renewal must not stop the rest)."""
        for duty in (self.circuits.tick, self.budgets.tick, self.pools.tick, self.buckets.tick):
            try:
                await duty()
            except Exception as exc:  # upkeep must never stop the engine's background duty
                log.warning("control-layer upkeep failed", duty=duty.__qualname__, error=str(exc))

    async def close(self) -> None:
        """On shutdown: hands back everything this engine holds."""
        await self.retention.close()
        await self._tasks.join()
        await self.circuits.close()
        await self.budgets.close()
        await self.buckets.close()
        await self.pools.close()
