"""The observer seam: every committed change reaches each observer once, in commit order.

Run against the real stores; the store's event log is the reference for order and content.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise

import pytest
import steplib
from steplib import make_workflow

from podium.engine.engine import Engine
from podium.engine.observers import Commit
from podium.engine.transitions import STEP_EDGES, Transition
from podium.model.status import StepStatus


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    steplib.reset()
    yield


class Recorder:
    def __init__(self) -> None:
        self.commits: list[Commit] = []

    def committed(self, commit: Commit) -> None:
        self.commits.append(commit)


class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def committed(self, commit: Commit) -> None:
        self.calls += 1
        raise RuntimeError("an observer with a bug")


def _workflow() -> object:
    return make_workflow({
        "a": {"kind": "sim", "output": 1},
        "b": {"kind": "python", "call": "steplib:fail", "input": {"name": "b"},
              "needs": ["a"], "optional": True},
        "c": {"kind": "sim", "for_each": [1, 2, 3], "max_parallel": 2, "needs": ["a"]},
        "d": {"kind": "sim", "needs": ["b", "c"], "trigger": "all_done"},
    })


async def test_observers_see_every_event_once_in_the_order_the_store_keeps(
    engine: Engine,
) -> None:
    recorder, broken = Recorder(), Broken()
    engine.observers.add(broken)  # first: its failure must not keep the others from seeing
    engine.observers.add(recorder)
    summary = await engine.run(_workflow())  # type: ignore[arg-type]
    await engine.journal.drain()
    assert summary.status == "degraded"

    seen = [e.event_id for c in recorder.commits for e in c.events if e.correlation_id]
    stored = [e.event_id for _, e in await engine.store.list_events(summary.run_id)]
    mine = [i for i in seen if i in set(stored)]
    assert mine == stored  # every stored event of the run, once, in the store's order
    assert len(seen) == len(set(seen))
    assert broken.calls == len(recorder.commits)  # called every time, and logged, not fatal


async def test_transitions_chain_from_pending_to_the_final_status_of_every_row(
    engine: Engine,
) -> None:
    recorder = Recorder()
    engine.observers.add(recorder)
    summary = await engine.run(_workflow())  # type: ignore[arg-type]
    await engine.journal.drain()

    moves: dict[tuple[str | None, int], list[Transition]] = defaultdict(list)
    for commit in recorder.commits:
        for t in commit.transitions:
            if t.run_id == summary.run_id:
                moves[(t.step_id, t.index)].append(t)
    assert [(t.source, t.target) for t in moves[(None, -1)]] == [
        ("queued", "running"), ("running", "degraded"),
    ]
    stored = {(s.step_id, s.index): s.status for s in await engine.store.get_steps(summary.run_id)}
    assert set(stored) == {k for k in moves if k[0] is not None}
    for key, chain in moves.items():
        if key[0] is None:
            continue
        assert chain[0].source == "pending", key
        for before, after in pairwise(chain):
            assert before.target == after.source, key  # no change happened unseen
        assert all((StepStatus(t.source), StepStatus(t.target)) in STEP_EDGES for t in chain)
        assert chain[-1].target == stored[key], key  # the last one seen is what is stored


async def test_a_removed_observer_sees_nothing_more(engine: Engine) -> None:
    recorder = Recorder()
    engine.observers.add(recorder)
    await engine.run(make_workflow({"a": {"kind": "sim"}}))
    await engine.journal.drain()
    seen = len(recorder.commits)
    assert seen > 0
    engine.observers.remove(recorder)
    await engine.run(make_workflow({"a": {"kind": "sim"}}))
    await engine.journal.drain()
    assert len(recorder.commits) == seen
