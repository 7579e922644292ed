"""Tests of the plan layer: order, groups, critical path, peak resources, cycles, rendering.

Property tests drive `plan_graph` with random DAGs and check it against brute-force answers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from podium.model.workflow import Workflow
from podium.plan import PeakResources, Plan, build_plan, find_cycles, plan_graph
from podium.plan.render import render_plan

Needs = dict[str, list[str]]

_NAMES = st.text(alphabet="abcdefghij_-.0123", min_size=1, max_size=5)
_WEIGHTS = st.one_of(st.integers(0, 4).map(float), st.floats(0, 100, allow_nan=False))


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 24) -> Needs:
    """Node i needs a random subset of nodes < i; names are random, definition order shuffled."""
    count = draw(st.integers(1, max_steps))
    names = draw(st.lists(_NAMES, min_size=count, max_size=count, unique=True))
    # One bitmask per node keeps generation cheap: bit j set means node i needs node j < i.
    masks = [draw(st.integers(0, (1 << i) - 1)) for i in range(count)]
    order = draw(st.permutations(range(count)))
    return {names[i]: [names[j] for j in range(i) if masks[i] >> j & 1] for i in order}


@st.composite
def weighted_dags(draw: st.DrawFn) -> tuple[Needs, dict[str, float]]:
    needs = draw(dags())
    return needs, {step: draw(_WEIGHTS) for step in needs}


@st.composite
def cyclic_graphs(draw: st.DrawFn) -> Needs:
    """A random DAG plus one cycle along a random sequence of distinct steps (a self-loop if 1)."""
    needs = draw(dags())
    loop = draw(st.lists(st.sampled_from(list(needs)), min_size=1, max_size=6, unique=True))
    for step, after in zip(loop, [*loop[1:], loop[0]], strict=True):
        needs[step].append(after)
    return needs


def ancestors_of(needs: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
    @cache
    def above(step: str) -> frozenset[str]:
        found: set[str] = set()
        for need in needs[step]:
            found |= {need, *above(need)}
        return frozenset(found)

    return {step: set(above(step)) for step in needs}


def longest_chain(needs: Mapping[str, Sequence[str]]) -> dict[str, int]:
    @cache
    def level(step: str) -> int:
        return max((1 + level(need) for need in needs[step]), default=0)

    return {step: level(step) for step in needs}


def heaviest_path_weight(needs: Mapping[str, Sequence[str]], weights: Mapping[str, float]) -> float:
    @cache
    def heaviest(step: str) -> float:
        return weights[step] + max((heaviest(need) for need in needs[step]), default=0.0)

    return max(heaviest(step) for step in needs)


@given(weighted_dags())
def test_order_respects_every_dependency(graph: tuple[Needs, dict[str, float]]) -> None:
    needs, weights = graph
    order = plan_graph(needs, weights).order
    position = {step: i for i, step in enumerate(order)}
    assert sorted(order) == sorted(needs)
    assert all(position[need] < position[step] for step in needs for need in needs[step])


@given(dags())
def test_groups_are_antichains_that_cover_every_step_once(needs: Needs) -> None:
    plan = plan_graph(needs, {})
    above = ancestors_of(needs)
    assert sorted(step for group in plan.groups for step in group) == sorted(needs)
    for group in plan.groups:
        assert all(other not in above[step] for step in group for other in group)


@given(dags())
def test_levels_equal_the_longest_needs_chain(needs: Needs) -> None:
    plan = plan_graph(needs, {})
    expected = longest_chain(needs)
    assert dict(plan.levels) == expected
    assert all(plan.levels[step] == level for level, g in enumerate(plan.groups) for step in g)


@given(weighted_dags())
def test_critical_path_is_a_real_path_of_maximum_weight(
    graph: tuple[Needs, dict[str, float]],
) -> None:
    needs, weights = graph
    plan = plan_graph(needs, weights)
    path = plan.critical_path
    assert path
    assert all(before in needs[after] for before, after in pairwise(path))
    assert not needs[path[0]], "the path starts at a step that needs nothing"
    assert not plan.dependents[path[-1]], "the path ends at a step nothing needs"
    expected = heaviest_path_weight(needs, weights)
    assert math.isclose(sum(weights[step] for step in path), expected, abs_tol=1e-9)
    assert math.isclose(plan.estimated_duration_s, expected, abs_tol=1e-9)


@given(dags(), st.data())
def test_peak_resources_are_the_max_over_groups_of_their_sums(
    needs: Needs, data: st.DataObject
) -> None:
    demands = {
        step: PeakResources(
            data.draw(st.integers(0, 8)) / 2, data.draw(st.integers(0, 4096)) * 1.0,
            data.draw(st.integers(0, 5)),
        )
        for step in needs
    }
    plan = plan_graph(needs, {}, demands)
    by_level: dict[int, list[PeakResources]] = {}
    for step, level in longest_chain(needs).items():
        by_level.setdefault(level, []).append(demands[step])
    sums = [
        (sum(d.cpu for d in g), sum(d.memory_mib for d in g), sum(d.api_calls for d in g))
        for g in by_level.values()
    ]
    assert math.isclose(plan.resources.cpu, max(s[0] for s in sums))
    assert math.isclose(plan.resources.memory_mib, max(s[1] for s in sums))
    assert plan.resources.api_calls == max(s[2] for s in sums)


@given(dags())
def test_dependents_are_the_reverse_of_needs(needs: Needs) -> None:
    dependents = plan_graph(needs, {}).dependents
    assert {(a, b) for b in needs for a in needs[b]} == {
        (a, b) for a in dependents for b in dependents[a]
    }


@given(dags())
def test_an_acyclic_graph_has_no_cycles(needs: Needs) -> None:
    assert find_cycles(needs) == []


@given(cyclic_graphs())
def test_every_reported_cycle_is_a_real_cycle(needs: Needs) -> None:
    cycles = find_cycles(needs)
    index = {step: i for i, step in enumerate(needs)}
    assert cycles
    assert len({tuple(cycle) for cycle in cycles}) == len(cycles), "each cycle is reported once"
    for cycle in cycles:
        assert len(cycle) >= 2 and cycle[0] == cycle[-1]
        assert len(set(cycle[:-1])) == len(cycle) - 1, "a cycle passes each step once"
        assert all(after in needs[step] for step, after in pairwise(cycle))
        assert min(cycle, key=index.__getitem__) == cycle[0]


@given(cyclic_graphs())
def test_planning_a_cyclic_graph_raises_naming_a_cycle(needs: Needs) -> None:
    with pytest.raises(ValueError, match=r"form a cycle: ") as raised:
        plan_graph(needs, {})
    cycle = str(raised.value).split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert all(after in needs[step] for step, after in pairwise(cycle))


def test_cycles_are_printed_from_their_earliest_step_in_definition_order() -> None:
    needs = {"c": ["a"], "a": ["b", "a"], "b": ["c"], "d": ["nowhere"]}
    assert find_cycles(needs) == [["c", "a", "b", "c"], ["a", "a"]]
    with pytest.raises(ValueError, match=r"c -> a -> b -> c"):
        plan_graph({"c": ["a"], "a": ["b"], "b": ["c"]}, {})


def test_find_cycles_stops_at_its_limit() -> None:
    complete = {str(i): [str(j) for j in range(10) if j != i] for i in range(10)}
    assert len(find_cycles(complete, limit=7)) == 7


def test_an_unknown_need_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'ghost'"):
        plan_graph({"a": ["ghost"]}, {})


def test_ties_in_order_follow_definition_order() -> None:
    plan = plan_graph({"b": [], "a": [], "c": ["b"], "d": []}, {})
    assert plan.order == ("b", "a", "c", "d")
    assert plan.groups == (("b", "a", "d"), ("c",))


def _workflow(steps: dict[str, dict[str, Any]]) -> Workflow:
    return Workflow.model_validate({"name": "example", "steps": steps})


def _content_pipeline() -> Workflow:
    """The shape of the format's reference example, with simulated steps."""
    return _workflow({
        "research": {"kind": "sim", "latency": "20ms", "estimate": "2s",
                     "resources": {"cpu": 1, "memory": "256Mi", "api_calls": 1}},
        "draft": {"needs": ["research"], "kind": "sim", "estimate": "3s",
                  "resources": {"cpu": 1, "memory": "512Mi", "api_calls": 1}},
        "fanout": {"needs": ["research"], "for_each": "{{ steps.research.output.facts }}",
                   "max_parallel": 4, "kind": "python", "call": "mypkg.tasks:enrich",
                   "resources": {"cpu": 0.5, "memory": "128Mi", "api_calls": 1}},
        "publish": {"needs": ["draft", "fanout"], "optional": True, "kind": "sim",
                    "latency": "500ms"},
    })


def test_the_design_example_plans_as_three_groups() -> None:
    plan = build_plan(_content_pipeline())
    assert plan.groups == (("research",), ("draft", "fanout"), ("publish",))
    assert plan.order == ("research", "draft", "fanout", "publish")
    assert plan.critical_path == ("research", "draft", "publish")
    assert plan.estimated_duration_s == pytest.approx(5.5)
    # draft (1 cpu) + fanout (0.5 cpu x max_parallel 4) run side by side.
    assert plan.resources == PeakResources(cpu=3.0, memory_mib=1024.0, api_calls=5)


def test_plan_json_has_the_documented_shape() -> None:
    document = build_plan(_content_pipeline()).to_json()
    assert json.loads(json.dumps(document)) == {
        "order": ["research", "draft", "fanout", "publish"],
        "groups": [["research"], ["draft", "fanout"], ["publish"]],
        "critical_path": ["research", "draft", "publish"],
        "estimated_duration_s": 5.5,
        "resources": {"cpu": 3.0, "memory_mib": 1024.0, "api_calls": 5},
    }


def test_a_diamond_takes_its_heavier_side() -> None:
    plan = plan_graph(
        {"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]},
        {"top": 1, "left": 2, "right": 5, "bottom": 1},
    )
    assert plan.groups == (("top",), ("left", "right"), ("bottom",))
    assert plan.critical_path == ("top", "right", "bottom")
    assert plan.estimated_duration_s == 7
    assert plan.dependents["top"] == ("left", "right")


def test_an_unbounded_for_each_counts_one_instance() -> None:
    plan = build_plan(_workflow({
        "each": {"for_each": [1, 2, 3], "kind": "sim",
                 "resources": {"cpu": 2, "memory": "1Gi", "api_calls": 3}},
        "bounded": {"for_each": [1, 2, 3], "max_parallel": 2, "kind": "sim",
                    "resources": {"cpu": 1, "api_calls": 1}},
        "single": {"kind": "sim", "max_parallel": 9, "resources": {"cpu": 1}},
    }))
    assert plan.resources == PeakResources(cpu=2 + 2 + 1, memory_mib=1024.0, api_calls=3 + 2)


def test_plans_are_hashable_and_read_only() -> None:
    plan = build_plan(_content_pipeline())
    assert isinstance(hash(plan), int)
    assert plan == build_plan(_content_pipeline())
    with pytest.raises(TypeError):
        plan.levels["research"] = 3  # type: ignore[index]


def test_ten_thousand_steps_plan_with_every_step_after_its_needs() -> None:
    # How fast is for the benchmarks to say; a plan this size must come out whole and ordered.
    needs = {f"s{i}": [f"s{j}" for j in range(max(0, i - 5), i, 2)] for i in range(10_000)}
    weights = {step: float(i % 7) for i, step in enumerate(needs)}
    plan: Plan = plan_graph(needs, weights)
    position = {step: i for i, step in enumerate(plan.order)}
    assert len(position) == 10_000
    assert all(position[need] < position[step] for step, deps in needs.items() for need in deps)


def test_render_plan_names_every_step_and_marks_the_critical_path() -> None:
    workflow = _content_pipeline()
    plan = build_plan(workflow)
    console = Console(record=True, width=120)
    console.print(render_plan(plan, workflow))
    lines = console.export_text().splitlines()
    step_cells = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert sorted(cell.removeprefix("★ ") for cell in step_cells) == sorted(workflow.steps)
    marked = [cell.removeprefix("★ ") for cell in step_cells if cell.startswith("★ ")]
    assert marked == list(plan.critical_path)
    footer = lines[-1]
    assert "5.5s" in footer and "cpu 3" in footer and "1024 MiB" in footer
