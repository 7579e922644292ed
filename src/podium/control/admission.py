"""Resource admission: a run holds its plan's peak cpu, memory, api calls and
agent instances from the shared pools `resource:NAME` while it runs.

`on_constrained` says what happens when they are not free: queue (wait, strict priority),
degrade (drop `optional` steps if that makes the run fit), reject (fail at submit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from podium.control.config import Capacities
from podium.control.pools import SharePools
from podium.errors import AdmissionRejected
from podium.model.workflow import Step, Workflow
from podium.plan.graph import Plan, agent_demand, step_demand
from podium.store.pools import EPSILON

RESOURCES = ("cpu", "memory_mib", "api_calls", "agent_instances")

Demand = dict[str, float]  # resource -> amount, for bounded resources a run needs


def pool_name(resource: str) -> str:
    return f"resource:{resource}"


@dataclass(frozen=True, slots=True)
class Admitted:
    """A run may start; `dropped` are optional steps to skip (`degrade`), for `reason`."""

    dropped: tuple[str, ...] = ()
    reason: str = ""


class Admission:
    def __init__(self, capacities: Capacities, pools: SharePools) -> None:
        self.capacities = {
            r: float(v) for r in RESOURCES if (v := getattr(capacities, r)) is not None
        }
        self._pools = pools
        self._held: dict[str, Demand] = {}  # run id -> what it holds
        # id(workflow) -> (the workflow, kept so its id stays its own; full, degraded demand)
        self._demands: dict[int, tuple[Workflow, Demand, Demand]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.capacities)

    def held(self, run_id: str) -> Demand | None:
        return self._held.get(run_id)

    # -- at submit -------------------------------------------------------------------------

    def check_possible(self, workflow: Workflow, plan: Plan) -> None:
        """A run whose peak exceeds a whole capacity can never run: rejected at submit."""
        full, degraded = self._demand(workflow, plan)
        least = degraded if workflow.on_constrained == "degrade" else full
        for resource, amount in least.items():
            capacity = self.capacities[resource]
            if amount > capacity + EPSILON:
                raise AdmissionRejected(
                    workflow.name, resource, amount, capacity, "exist in all ([resources])"
                )

    async def check_free(self, workflow: Workflow, plan: Plan) -> None:
        """`on_constrained: reject`: fails now unless the peak is free across every engine."""
        demand, _ = self._demand(workflow, plan)
        if not demand:
            return
        room = await self._pools.room_for(
            {pool_name(r): (self.capacities[r], amount) for r, amount in demand.items()}
        )
        for resource, amount in demand.items():
            free = room[pool_name(resource)]
            if amount > free + EPSILON:
                raise AdmissionRejected(
                    workflow.name, resource, amount, max(0.0, free),
                    "is free now (on_constrained: reject)",
                )

    # -- starting and ending runs --------------------------------------------------------------

    def admit(self, run_id: str, workflow: Workflow, plan: Plan) -> Admitted | None:
        """Takes the run's resources if this engine's shares have room now; else asks for
        more (the run waits at the head of the queue) and returns None."""
        full, degraded = self._demand(workflow, plan)
        self._clear_asks()
        short = self._short(full)
        if not short:
            self._take(run_id, full)
            return Admitted()
        if workflow.on_constrained == "degrade" and degraded != full and not self._short(degraded):
            self._take(run_id, degraded)
            dropped = tuple(s.id for s in workflow.steps.values() if s.optional)
            return Admitted(dropped, f"dropped to fit the free resources: {_describe(short)}")
        for resource, amount in full.items():
            self._pools.ask(pool_name(resource), self.capacities[resource], amount)
        return None

    def hold(self, run_id: str, workflow: Workflow, plan: Plan) -> None:
        """A resumed running run takes its resources back, even past the share: it was
        admitted before (its old holder's reservation expires on its own)."""
        if run_id in self._held:
            return
        full, _ = self._demand(workflow, plan)
        for resource, amount in full.items():
            self._pools.force_take(pool_name(resource), self.capacities[resource], amount)
        self._held[run_id] = full

    def release(self, run_id: str) -> None:
        """The run finished, failed, was cancelled or lost: its resources go back."""
        for resource, amount in self._held.pop(run_id, {}).items():
            self._pools.release(pool_name(resource), amount)

    def _take(self, run_id: str, demand: Demand) -> None:
        for resource, amount in demand.items():
            self._pools.pool(pool_name(resource), self.capacities[resource]).take(amount)
        self._held[run_id] = demand

    def _short(self, demand: Demand) -> list[tuple[str, float, float]]:
        """(resource, needed, free here) for each resource that does not fit now."""
        short = []
        for resource, amount in demand.items():
            pool = self._pools.pool(pool_name(resource), self.capacities[resource])
            if pool.waiters or not pool.fits(amount):
                short.append((resource, amount, max(0.0, pool.limit - pool.in_use)))
        return short

    def _clear_asks(self) -> None:
        for resource, capacity in self.capacities.items():
            self._pools.pool(pool_name(resource), capacity).asked = 0.0

    def _demand(self, workflow: Workflow, plan: Plan) -> tuple[Demand, Demand]:
        cached = self._demands.get(id(workflow))
        if cached is None or cached[0] is not workflow:
            full = self._bounded(_peak(workflow, plan, keep_optional=True))
            degraded = self._bounded(_peak(workflow, plan, keep_optional=False))
            cached = self._demands[id(workflow)] = (workflow, full, degraded)
        return cached[1], cached[2]

    def _bounded(self, peak: Mapping[str, float]) -> Demand:
        return {r: a for r, a in peak.items() if r in self.capacities and a > EPSILON}


def _peak(workflow: Workflow, plan: Plan, *, keep_optional: bool) -> dict[str, float]:
    """Each resource's peak over the plan's groups (a group's demand is its steps' sum)."""
    if keep_optional:
        res = plan.resources
        return {
            "cpu": res.cpu, "memory_mib": res.memory_mib, "api_calls": float(res.api_calls),
            "agent_instances": float(plan.agent_instances),
        }
    peak = dict.fromkeys(RESOURCES, 0.0)
    for group in plan.groups:
        steps = [workflow.steps[s] for s in group if not workflow.steps[s].optional]
        sums = _sums(steps)
        peak = {r: max(peak[r], sums[r]) for r in RESOURCES}
    return peak


def _sums(steps: Iterable[Step]) -> dict[str, float]:
    sums = dict.fromkeys(RESOURCES, 0.0)
    for step in steps:
        demand = step_demand(step)
        sums["cpu"] += demand.cpu
        sums["memory_mib"] += demand.memory_mib
        sums["api_calls"] += demand.api_calls
        sums["agent_instances"] += agent_demand(step)
    return sums


def _describe(short: list[tuple[str, float, float]]) -> str:
    return ", ".join(f"{r} (needs {need:g}, {free:g} free)" for r, need, free in short)
