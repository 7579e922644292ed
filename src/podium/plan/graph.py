"""The dependency graph of a workflow: cycles, topological order, parallel groups, critical path.

Pure functions over `needs` (step id -> the ids it needs); `build_plan` adapts a `Workflow`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypedDict

from podium.model.workflow import Step, Workflow, WorkflowAction

Needs = Mapping[str, Sequence[str]]

# A dense cycle holds exponentially many elementary cycles; a validator needs a few to print.
CYCLE_LIMIT = 100


class ResourcesJSON(TypedDict):
    cpu: float
    memory_mib: float
    api_calls: int


class PlanJSON(TypedDict):
    order: list[str]
    groups: list[list[str]]
    critical_path: list[str]
    estimated_duration_s: float
    resources: ResourcesJSON


@dataclass(frozen=True)
class PeakResources:
    """CPU, memory and API calls held at once: one step's demand, or a plan's peak."""

    cpu: float = 0.0
    memory_mib: float = 0.0
    api_calls: int = 0

    def __add__(self, other: PeakResources) -> PeakResources:
        return PeakResources(
            self.cpu + other.cpu, self.memory_mib + other.memory_mib,
            self.api_calls + other.api_calls,
        )

    def peak(self, other: PeakResources) -> PeakResources:
        """The larger of the two in each dimension."""
        return PeakResources(
            max(self.cpu, other.cpu), max(self.memory_mib, other.memory_mib),
            max(self.api_calls, other.api_calls),
        )

    def to_json(self) -> ResourcesJSON:
        return {"cpu": self.cpu, "memory_mib": self.memory_mib, "api_calls": self.api_calls}


@dataclass(frozen=True)
class Plan:
    """How a workflow will run (`podium plan`).

    Immutable, so the engine can build one plan per definition and share it between runs.
    `levels` and `dependents` are read-only views the engine uses to re-check only the
    successors of a finished step.
    """

    order: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    critical_path: tuple[str, ...]
    estimated_duration_s: float
    resources: PeakResources
    levels: Mapping[str, int] = field(hash=False)
    dependents: Mapping[str, tuple[str, ...]] = field(hash=False)
    # Agent steps (instances) running at once at the peak group: `agent_instances` admission.
    agent_instances: int = 0

    def to_json(self) -> PlanJSON:
        return {
            "order": list(self.order),
            "groups": [list(group) for group in self.groups],
            "critical_path": list(self.critical_path),
            "estimated_duration_s": self.estimated_duration_s,
            "resources": self.resources.to_json(),
        }


def build_plan(workflow: Workflow) -> Plan:
    """The plan of a valid workflow; `ValueError` naming the cycle or unknown need if not."""
    steps = workflow.steps
    plan = plan_graph(
        {step_id: step.needs for step_id, step in steps.items()},
        {step_id: step.planned_s for step_id, step in steps.items()},
        {step_id: step_demand(step) for step_id, step in steps.items()},
    )
    instances = {step_id: agent_demand(step) for step_id, step in steps.items()}
    peak = max((sum(instances[s] for s in group) for group in plan.groups), default=0)
    return replace(plan, agent_instances=peak)


def agent_demand(step: Step) -> int:
    """Agent instances a step runs at once: 0 unless it uses an agent; a `for_each` counts
    `max_parallel` (one when unbounded), as `step_demand` does. A `workflow` step adds its
    child run's peak: a run tree is admitted, and holds its resources, at its root."""
    child = child_plan(step)
    own = 0 if step.agent is None else 1
    return (own + (child.agent_instances if child else 0)) * _copies(step)


def step_demand(step: Step) -> PeakResources:
    """What a step holds while it runs.

    A `for_each` step counts its per-instance resources times `max_parallel`, or times one
    when unbounded: its item count is only known at run time, and one instance is the least
    it needs. A plan is static, so it cannot promise more than that. A `workflow` step whose
    child definition is known (a file, inlined at load) also holds its child run's peak.
    """
    own = step.resources
    per_instance = PeakResources(own.cpu, own.memory_mib, own.api_calls)
    child = child_plan(step)
    if child is not None:
        per_instance = per_instance + child.resources
    copies = _copies(step)
    return PeakResources(
        per_instance.cpu * copies, per_instance.memory_mib * copies,
        per_instance.api_calls * copies,
    )


def _copies(step: Step) -> int:
    return (step.max_parallel or 1) if step.for_each is not None else 1


# id(action) -> (action, plan): holding the action keeps its id from being reused.
_CHILD_PLANS: dict[int, tuple[WorkflowAction, Plan]] = {}


def child_plan(step: Step) -> Plan | None:
    """The plan of the child run a `workflow` step starts, when its definition is inline
    (None for a registered name: resolved only when the step runs)."""
    action = step.action
    if not isinstance(action, WorkflowAction) or action.definition is None:
        return None
    cached = _CHILD_PLANS.get(id(action))
    if cached is None:
        plan = build_plan(Workflow.model_validate(action.definition))
        cached = _CHILD_PLANS[id(action)] = (action, plan)
    return cached[1]


def plan_graph(
    needs: Needs,
    weights: Mapping[str, float],
    demands: Mapping[str, PeakResources] | None = None,
) -> Plan:
    """Plans a graph given as `needs` in definition order.

    `weights` are planned seconds (>= 0; a missing one counts as 0), `demands` each step's
    resources (missing: none). Peak resources are taken per dimension over the
    as-soon-as-possible groups, a group's demand being the sum over its steps.
    Raises `ValueError` on an unknown need, a negative weight or a cycle.
    """
    index = {step: i for i, step in enumerate(needs)}
    edges = _known_needs(needs, index)
    dependents = _reverse(edges)
    order = _topological_order(edges, dependents, index)
    levels = _levels(order, edges)
    groups = _groups(levels)
    planned_s = _checked_weights(weights, index)
    critical_path = _critical_path(order, edges, planned_s, index)
    return Plan(
        order=order,
        groups=groups,
        critical_path=critical_path,
        estimated_duration_s=sum((planned_s[step] for step in critical_path), 0.0),
        resources=_peak(groups, demands or {}),
        levels=MappingProxyType(levels),
        dependents=MappingProxyType(dependents),
    )


def _known_needs(needs: Needs, index: Mapping[str, int]) -> dict[str, tuple[str, ...]]:
    edges: dict[str, tuple[str, ...]] = {}
    for step, wanted in needs.items():
        unknown = [need for need in wanted if need not in index]
        if unknown:
            raise ValueError(f"step {step!r} needs an unknown step {unknown[0]!r}")
        edges[step] = tuple(dict.fromkeys(wanted))
    return edges


def _checked_weights(weights: Mapping[str, float], index: Mapping[str, int]) -> dict[str, float]:
    checked = {step: float(weights.get(step, 0.0)) for step in index}
    # A negative weight would let the longest path skip steps; reject rather than mislead.
    negative = [step for step, weight in checked.items() if weight < 0]
    if negative:
        raise ValueError(f"step {negative[0]!r} has a negative planned duration")
    return checked


def _reverse(edges: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    reverse: dict[str, list[str]] = {step: [] for step in edges}
    for step, wanted in edges.items():
        for need in wanted:
            reverse[need].append(step)
    return {step: tuple(after) for step, after in reverse.items()}


def _topological_order(
    edges: Mapping[str, tuple[str, ...]],
    dependents: Mapping[str, tuple[str, ...]],
    index: Mapping[str, int],
) -> tuple[str, ...]:
    """Kahn's algorithm; a heap of definition indices makes ties go to the earlier step."""
    names = list(edges)
    waiting = {step: len(wanted) for step, wanted in edges.items()}
    ready = [index[step] for step, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        step = names[heapq.heappop(ready)]
        order.append(step)
        for after in dependents[step]:
            waiting[after] -= 1
            if waiting[after] == 0:
                heapq.heappush(ready, index[after])
    if len(order) < len(names):
        stuck = {step: edges[step] for step in names if waiting[step] > 0}
        cycle = find_cycles(stuck, limit=1)[0]
        raise ValueError(f"the steps form a cycle: {' -> '.join(cycle)}")
    return tuple(order)


def _levels(order: Sequence[str], edges: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    levels: dict[str, int] = {}
    for step in order:
        levels[step] = 1 + max((levels[need] for need in edges[step]), default=-1)
    # Definition order, so that views of the plan list steps as the author wrote them.
    return {step: levels[step] for step in edges}


def _groups(levels: Mapping[str, int]) -> tuple[tuple[str, ...], ...]:
    buckets: list[list[str]] = [[] for _ in range(1 + max(levels.values(), default=-1))]
    for step, level in levels.items():
        buckets[level].append(step)
    return tuple(tuple(bucket) for bucket in buckets)


def _critical_path(
    order: Sequence[str],
    edges: Mapping[str, tuple[str, ...]],
    weights: Mapping[str, float],
    index: Mapping[str, int],
) -> tuple[str, ...]:
    """The heaviest path; ties go to the one with more steps, then to the earlier-defined step.

    Preferring more steps carries the path through zero-weight steps to a final step.
    """
    heaviest: dict[str, tuple[float, int, int]] = {}  # (weight, steps, -index) ending here
    via: dict[str, str | None] = {}
    for step in order:
        best = max(edges[step], key=heaviest.__getitem__, default=None)
        weight, length = (0.0, 0) if best is None else heaviest[best][:2]
        heaviest[step] = (weight + weights[step], length + 1, -index[step])
        via[step] = best
    path: list[str] = []
    last = max(order, key=heaviest.__getitem__, default=None)
    while last is not None:
        path.append(last)
        last = via[last]
    return tuple(reversed(path))


def _peak(groups: Iterable[Sequence[str]], demands: Mapping[str, PeakResources]) -> PeakResources:
    none = PeakResources()
    peak = none
    for group in groups:
        peak = peak.peak(sum((demands.get(step, none) for step in group), none))
    return peak


def find_cycles(needs: Needs, *, limit: int = CYCLE_LIMIT) -> list[list[str]]:
    """The elementary cycles of the graph, each as `[a, b, c, a]` where a needs b needs c needs a.

    Each cycle is reported once, starting from its earliest step in the mapping's order; cycles
    come ordered by that start. Needs that name no step are ignored (validation reports them).
    At most `limit` cycles are returned. Johnson's algorithm, run per strongly connected
    component, so an acyclic graph costs one linear pass.
    """
    index = {step: i for i, step in enumerate(needs)}
    adjacency = {step: [n for n in dict.fromkeys(needs[step]) if n in index] for step in needs}
    pending = [(index[comp[0]], comp) for comp in _cyclic_components(adjacency, needs)]
    heapq.heapify(pending)
    cycles: list[list[str]] = []
    while pending and len(cycles) < limit:
        _, component = heapq.heappop(pending)
        start, rest = component[0], component[1:]
        found = _cycles_through(start, frozenset(component), adjacency)
        cycles.extend(itertools.islice(found, limit - len(cycles)))
        for sub in _cyclic_components(adjacency, rest):
            heapq.heappush(pending, (index[sub[0]], sub))
    return cycles


def _cyclic_components(
    adjacency: Mapping[str, Sequence[str]], nodes: Iterable[str]
) -> Iterator[list[str]]:
    """Components of the subgraph on `nodes` that hold a cycle, each in `nodes` order."""
    rank = {step: i for i, step in enumerate(nodes)}
    for component in _strong_components(adjacency, list(rank), rank):
        first = component[0]
        if len(component) > 1 or first in adjacency[first]:
            yield sorted(component, key=rank.__getitem__)


def _strong_components(
    adjacency: Mapping[str, Sequence[str]], nodes: Sequence[str], allowed: Mapping[str, int]
) -> Iterator[list[str]]:
    """Tarjan's algorithm, iterative: a 10,000-step chain must not hit the recursion limit."""
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in nodes:
        if root in number:
            continue
        number[root] = low[root] = len(number)
        stack.append(root)
        on_stack.add(root)
        frames = [(root, iter([n for n in adjacency[root] if n in allowed]))]
        while frames:
            step, successors = frames[-1]
            for after in successors:
                if after not in number:
                    number[after] = low[after] = len(number)
                    stack.append(after)
                    on_stack.add(after)
                    frames.append((after, iter([n for n in adjacency[after] if n in allowed])))
                    break
                if after in on_stack:
                    low[step] = min(low[step], number[after])
            else:
                frames.pop()
                if frames:
                    parent = frames[-1][0]
                    low[parent] = min(low[parent], low[step])
                if low[step] == number[step]:
                    yield _pop_component(step, stack, on_stack)


def _pop_component(root: str, stack: list[str], on_stack: set[str]) -> list[str]:
    component: list[str] = []
    while True:
        step = stack.pop()
        on_stack.discard(step)
        component.append(step)
        if step == root:
            return component


def _cycles_through(
    start: str, component: frozenset[str], adjacency: Mapping[str, Sequence[str]]
) -> Iterator[list[str]]:
    """Johnson's circuit search from `start` inside its component, iterative.

    A step stays blocked while no cycle back to `start` passes through it, which keeps the
    search linear per cycle found.
    """

    def successors(step: str) -> Iterator[str]:
        return (after for after in adjacency[step] if after in component)

    path = [start]
    blocked = {start}
    blockers: defaultdict[str, set[str]] = defaultdict(set)
    frames = [successors(start)]
    closed = [False]
    while frames:
        for after in frames[-1]:
            if after == start:
                yield [*path, start]
                closed[-1] = True
            elif after not in blocked:
                path.append(after)
                blocked.add(after)
                frames.append(successors(after))
                closed.append(False)
                break
        else:
            frames.pop()
            step = path.pop()
            if closed.pop():
                if closed:
                    closed[-1] = True
                _unblock(step, blocked, blockers)
            else:
                for after in successors(step):
                    blockers[after].add(step)


def _unblock(step: str, blocked: set[str], blockers: defaultdict[str, set[str]]) -> None:
    todo = {step}
    while todo:
        current = todo.pop()
        if current in blocked:
            blocked.discard(current)
            todo.update(blockers.pop(current, ()))
