"""Property tests of the wait-for graph (control/waitfor.py): every cycle is found, none is
invented, the victim is on its cycle and is its youngest failable waiter.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from podium.control.waitfor import Node, build_graph, describe, find_deadlocks, stuck
from podium.store.waits import RunLink, WaitRecord, child_run_id, step_key


@st.composite
def graphs(
    draw: st.DrawFn, *, any_of: bool | None = None, acyclic: bool = False
) -> dict[str, Node]:
    """Up to 9 nodes; each waits for a few others (only later ones when `acyclic`); some are
    pool waiters (`any_of`, a `since`), the rest wait for all they wait for."""
    n = draw(st.integers(1, 9))
    ids = [f"n{i}" for i in range(n)]
    graph = {}
    for i, node in enumerate(ids):
        pool = draw(st.booleans()) if any_of is None else any_of
        targets = ids[i + 1 :] if acyclic else ids
        picked = draw(st.lists(st.sampled_from(targets), max_size=3)) if targets else []
        waits = tuple(sorted(set(picked)))
        since = draw(st.floats(0, 100)) if pool and waits else None
        graph[node] = Node(node, waits, any_of=pool, since=since)
    return graph


def _on_a_cycle(graph: dict[str, Node]) -> set[str]:
    """Brute force: the nodes that reach themselves."""
    found = set()
    for start in graph:
        seen, todo = set(), list(graph[start].waits)
        while todo:
            node = todo.pop()
            if node == start:
                found.add(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node].waits)
    return found


@settings(max_examples=400)
@given(graphs())
def test_a_reported_cycle_is_a_real_cycle_of_stuck_nodes(graph: dict[str, Node]) -> None:
    dead = stuck(graph)
    for cycle in find_deadlocks(graph):
        members = cycle.members
        assert len(set(members)) == len(members)
        for here, nxt in zip(members, (*members[1:], members[0]), strict=True):
            assert nxt in graph[here].waits
        assert set(members) <= dead


@settings(max_examples=300)
@given(graphs(acyclic=True))
def test_an_acyclic_graph_has_no_deadlock(graph: dict[str, Node]) -> None:
    assert find_deadlocks(graph) == []
    assert stuck(graph) == set()


@settings(max_examples=400)
@given(graphs(any_of=False))
def test_when_every_wait_needs_all_every_cycle_is_found(graph: dict[str, Node]) -> None:
    # Like a database's single-holder locks: a node on a cycle can never go on.
    found = set().union(*(c.component for c in find_deadlocks(graph)))
    assert _on_a_cycle(graph) <= found
    assert stuck(graph) == {n for n in graph if _reaches(graph, n, _on_a_cycle(graph))}


def _reaches(graph: dict[str, Node], start: str, targets: set[str]) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node in targets:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node].waits)
    return False


@settings(max_examples=400)
@given(graphs())
def test_the_victim_is_on_the_cycle_and_its_youngest_waiter(graph: dict[str, Node]) -> None:
    for cycle in find_deadlocks(graph):
        waiters = [m for m in cycle.component if graph[m].since is not None]
        if cycle.victim is None:
            assert waiters == []
            continue
        assert cycle.members[0] == cycle.victim
        youngest = max(graph[m].since or 0.0 for m in waiters)
        assert graph[cycle.victim].since == youngest


@settings(max_examples=300)
@given(graphs(any_of=True))
def test_a_pool_waiter_with_one_free_holder_is_not_stuck(graph: dict[str, Node]) -> None:
    graph = {k: Node(k, (*v.waits, "free"), any_of=True, since=v.since) for k, v in graph.items()}
    graph["free"] = Node("free")  # a holder running freely: its release lets any waiter go on
    assert find_deadlocks(graph) == []


def _rec(
    run: str, step: str, pool: str, holds: bool, since: float, kind: str = "sim"
) -> WaitRecord:
    return WaitRecord(run, step, -1, f"wf-{run}", kind, pool, holds, 1.0, 1.0, since)


def test_two_runs_holding_what_the_other_waits_for_through_children() -> None:
    # a holds k1 while its child a2 waits for k2; b holds k2 while its child b2 waits for k1.
    a2 = child_run_id(step_key("a", "hold", -1))
    b2 = child_run_id(step_key("b", "hold", -1))
    records = [
        _rec("a", "hold", "k1", True, 1.0, "workflow"),
        _rec("b", "hold", "k2", True, 2.0, "workflow"),
        _rec(a2, "take", "k2", False, 3.0),
        _rec(b2, "take", "k1", False, 4.0),
    ]
    links = [RunLink(a2, "a", "inner", 1.5), RunLink(b2, "b", "inner", 2.5)]
    graph = build_graph(records, links)
    (cycle,) = find_deadlocks(graph)
    assert cycle.victim == f"step:{b2}/take"
    text = describe(graph, cycle)
    assert text.startswith(f'deadlock: run {b2} (wf-{b2}, step take) waits for pool "k1" held by')
    assert f"run a (wf-a, step hold) waits for its child run {a2} (inner), whose step take" in text
    assert text.endswith(f"failed the youngest waiter (run {b2}, step take)")


def test_a_child_waiting_for_a_busy_pool_whose_holder_runs_freely_is_no_deadlock() -> None:
    a2 = child_run_id(step_key("a", "hold", -1))
    records = [
        _rec("a", "hold", "k1", True, 1.0, "workflow"),
        _rec("c", "busy", "k2", True, 1.0),  # a plain call holding k2: it will give it back
        _rec(a2, "take", "k2", False, 3.0),
    ]
    graph = build_graph(records, [RunLink(a2, "a", "inner", 1.5)])
    assert find_deadlocks(graph) == []


def test_a_pool_with_room_left_is_not_waited_on() -> None:
    a2 = child_run_id(step_key("a", "hold", -1))
    records = [
        _rec("a", "hold", "k1", True, 1.0, "workflow"),
        WaitRecord(a2, "take", -1, "inner", "sim", "k1", False, 1.0, 2.0, 3.0),  # capacity 2
    ]
    graph = build_graph(records, [RunLink(a2, "a", "inner", 1.5)])
    assert find_deadlocks(graph) == []
    # with capacity 1 the child waits for its own parent: a cycle of one run's family
    records[1] = WaitRecord(a2, "take", -1, "inner", "sim", "k1", False, 1.0, 1.0, 3.0)
    (cycle,) = find_deadlocks(build_graph(records, [RunLink(a2, "a", "inner", 1.5)]))
    assert cycle.victim == f"step:{a2}/take"
