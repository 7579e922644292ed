"""The wait-for graph over what steps and runs wait on, and the deadlocks in it (pure, no I/O).

Built from every engine's published holds and waits plus the unfinished child runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from podium.store.pools import EPSILON
from podium.store.waits import RunLink, WaitRecord, child_run_id, step_key

NodeKind = Literal["pool", "child", "free", "run"]


@dataclass(frozen=True, slots=True)
class Node:
    """One step instance or run and what it waits for (`waits`, node ids).

    `any_of`: it goes on once any of `waits` does (a pool waiter: any holder's release will
    do); else it is stuck while any of them is (a run needs all its steps and children).
    `room`: the pool it waits for has room (its share is still growing): not stuck.
    `since`: when its wait began; set for the waiters that can be failed (pool waiters).
    """

    id: str
    waits: tuple[str, ...] = ()
    any_of: bool = False
    room: bool = False
    since: float | None = None
    kind: NodeKind = "free"
    run_id: str = ""
    workflow: str = ""
    step: str | None = None  # "step" or "step[index]"; None for a run
    pool: str | None = None  # what a pool waiter waits for


@dataclass(frozen=True, slots=True)
class Cycle:
    """A deadlock: `members` in wait order, starting at `victim` (each waits for the next,
    the last for the first); `victim` is the youngest waiter that can be failed, if any."""

    members: tuple[str, ...]
    victim: str | None
    component: frozenset[str] = field(default_factory=frozenset)


Graph = Mapping[str, Node]


def step_node(run_id: str, step_id: str, index: int) -> str:
    return f"step:{step_key(run_id, step_id, index)}"


def run_node(run_id: str) -> str:
    return f"run:{run_id}"


# -- building the graph from the store's view ------------------------------------------------


def build_graph(records: Iterable[WaitRecord], links: Iterable[RunLink]) -> dict[str, Node]:
    """Steps waiting for a pool wait for its holders; a holding `workflow` step waits for
    its unfinished child; a run waits for its waiting steps and its unfinished children."""
    records = list(records)
    children: dict[str, list[RunLink]] = {}
    workflows: dict[str, str] = {}
    for link in links:
        children.setdefault(link.parent_run_id, []).append(link)
        workflows[link.run_id] = link.workflow
    live_children = {link.run_id for links_ in children.values() for link in links_}
    holders: dict[str, list[tuple[str, float]]] = {}
    waiting: dict[str, WaitRecord] = {}
    first: dict[str, WaitRecord] = {}
    for r in records:
        node = step_node(r.run_id, r.step_id, r.index)
        first.setdefault(node, r)
        workflows.setdefault(r.run_id, r.workflow)
        if r.holds:
            holders.setdefault(r.pool, []).append((node, r.amount))
        else:
            waiting[node] = r
    graph: dict[str, Node] = {}
    for node, r in first.items():
        label = r.step_id if r.index < 0 else f"{r.step_id}[{r.index}]"
        base = Node(node, run_id=r.run_id, workflow=r.workflow, step=label)
        wait = waiting.get(node)
        child = child_run_id(step_key(r.run_id, r.step_id, r.index))
        if wait is not None:
            held = holders.get(wait.pool, [])
            room = sum(a for _, a in held) + wait.amount <= wait.capacity + EPSILON
            waits = tuple(h for h, _ in held if h != node)
            graph[node] = replace(
                base, waits=waits, any_of=True, room=room, since=wait.since, kind="pool",
                pool=wait.pool,
            )
        elif r.kind == "workflow" and child in live_children:
            graph[node] = replace(base, waits=(run_node(child),), kind="child")
        else:
            graph[node] = base
    steps_of: dict[str, list[str]] = {}
    for node, n in graph.items():
        if n.waits:
            steps_of.setdefault(n.run_id, []).append(node)
    for run_id, workflow in workflows.items():
        kids = (run_node(c.run_id) for c in children.get(run_id, []))
        graph[run_node(run_id)] = Node(
            run_node(run_id), (*steps_of.get(run_id, []), *kids), kind="run", run_id=run_id,
            workflow=workflow,
        )
    return graph


# -- finding deadlocks -----------------------------------------------------------------------


def stuck(graph: Graph) -> set[str]:
    """The nodes that can never go on (graph reduction): a node goes on if it waits for
    nothing, has room, or (`any_of`) any / (else) all of what it waits for goes on. A node
    not in the graph waits for nothing."""
    waiting_on: dict[str, list[str]] = {}
    left: dict[str, int] = {}
    moving: deque[str] = deque()
    for node in graph.values():
        known = [w for w in node.waits if w in graph]
        if node.room or not known or (node.any_of and len(known) < len(node.waits)):
            moving.append(node.id)
            continue
        left[node.id] = 1 if node.any_of else len(known)
        for w in known:
            waiting_on.setdefault(w, []).append(node.id)
    free: set[str] = set(moving)
    while moving:
        done = moving.popleft()
        for waiter in waiting_on.get(done, []):
            if waiter in free:
                continue
            left[waiter] -= 1
            if left[waiter] == 0:
                free.add(waiter)
                moving.append(waiter)
    return set(graph) - free


def components(graph: Graph, nodes: set[str]) -> list[list[str]]:
    """Tarjan's strongly connected components of the subgraph over `nodes` (iterative: a
    long chain of child runs must not hit the recursion limit), in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            succ = [w for w in graph[node].waits if w in nodes]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def find_deadlocks(graph: Graph) -> list[Cycle]:
    """One cycle per strongly connected component of stuck nodes that holds a cycle: through
    its youngest failable waiter (latest `since`, then highest id), as databases pick."""
    dead = stuck(graph)
    cycles = []
    for comp in components(graph, dead):
        members = set(comp)
        if len(comp) == 1 and comp[0] not in graph[comp[0]].waits:
            continue  # stuck behind a cycle elsewhere, not on one
        candidates = [n for n in comp if graph[n].since is not None]
        victim = max(candidates, key=lambda n: (graph[n].since, n)) if candidates else None
        start = victim if victim is not None else comp[0]
        cycles.append(Cycle(_cycle_through(graph, start, members), victim, frozenset(comp)))
    return cycles


def _cycle_through(graph: Graph, start: str, members: set[str]) -> tuple[str, ...]:
    """The shortest cycle from `start` back to it within `members` (strongly connected)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph[node].waits:
            if nxt not in members:
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return tuple(reversed(path))
            if nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is on no cycle within its component")  # Tarjan's guarantee


# -- saying what it is -------------------------------------------------------------------------


def describe(graph: Graph, cycle: Cycle) -> str:
    """`deadlock: run A (wf-a, step x) waits for pool "k2" held by run B (wf-b, step y),
    which waits for its child run C (wf-c), whose step z waits for ...; failed ...`."""
    members = cycle.members
    text = [_label(graph, members[0], None)]
    for i, node_id in enumerate(members):
        node = graph[node_id]
        nxt = members[(i + 1) % len(members)]
        text.append(_edge(node, graph[nxt]))
        text.append(_label(graph, nxt, node))
    victim = graph[cycle.victim] if cycle.victim is not None else None
    tail = (
        f"; failed the youngest waiter (run {victim.run_id}, step {victim.step})"
        if victim is not None
        else "; no waiter in it can be failed"
    )
    return "deadlock: " + "".join(text) + tail


def _label(graph: Graph, node_id: str, before: Node | None) -> str:
    node = graph[node_id]
    if node.kind == "run":
        return f"run {node.run_id} ({node.workflow})"
    if before is not None and before.kind == "run" and before.run_id == node.run_id:
        return f"step {node.step}"
    return f"run {node.run_id} ({node.workflow}, step {node.step})"


def _edge(node: Node, nxt: Node) -> str:
    if node.kind == "pool":
        return f' waits for pool "{node.pool}" held by '
    if node.kind == "child":
        return " waits for its child "
    if nxt.kind == "run":
        return ", which waits for its child "
    return ", whose "


def members_payload(graph: Graph, members: Sequence[str]) -> list[dict[str, object]]:
    """The cycle's members for the `system.deadlock.detected` event."""
    return [
        {
            "run_id": graph[m].run_id,
            "workflow": graph[m].workflow,
            "step": graph[m].step,
            "waits_for": graph[m].pool if graph[m].kind == "pool" else graph[m].kind,
            "since": graph[m].since,
        }
        for m in members
    ]
