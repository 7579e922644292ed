"""Hostile documents are refused while they are read, cheaply and with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podium.check import load_workflow, parse_workflow
from podium.errors import WorkflowInvalid
from podium.model.loader import MAX_DEPTH, check_depth

BILLION_LAUGHS = """\
name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
steps:
  s: {kind: sim, output: *i}
"""

WORKFLOW = "name: ok\nsteps:\n  s: {{kind: sim, output: {}}}\n"
JSON_WORKFLOW = '{{"name": "ok", "steps": {{"s": {{"kind": "sim", "output": {}}}}}}}'


def error_of(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow(path)
    assert len(info.value.problems) == 1
    line = info.value.problems[0]
    assert line.startswith(f"error: {path}: ")
    return line


def test_a_billion_laughs_yaml_is_refused_by_its_expanded_size(tmp_path: Path) -> None:
    line = error_of(tmp_path, "bomb.yaml", BILLION_LAUGHS)
    assert "expands to 926177123 values through its aliases, over the limit" in line


def test_more_aliases_than_the_budget_are_refused(tmp_path: Path) -> None:
    aliases = ", ".join(["*a"] * 101)
    text = f"name: ok\nx: &a 1\ny: [{aliases}]\nsteps:\n  s: {{kind: sim}}\n"
    assert "more than 100 aliases in one document" in error_of(tmp_path, "many.yaml", text)


def test_a_few_aliases_for_shared_values_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    shared = (
        "name: ok\nagents:\n  a: &agent {kind: sim}\nsteps:\n"
        "  s: {agent: a, output: {a: 1}}\n  t: {agent: a}\n"
    )
    path.write_text(shared)
    assert set(load_workflow(path).steps) == {"s", "t"}


def test_deeply_nested_yaml_is_refused_without_a_recursion_error(tmp_path: Path) -> None:
    line = error_of(tmp_path, "deep.yaml", WORKFLOW.format("[" * 5000 + "]" * 5000))
    assert f"deeper than {MAX_DEPTH} levels" in line


def test_aliases_cannot_stack_nesting_past_the_depth_limit(tmp_path: Path) -> None:
    inner = "[" * 40 + "1" + "]" * 40
    outer = "[" * 28 + "*x" + "]" * 28
    text = f"name: ok\nx: &x {inner}\ny: &y {outer}\n"
    line = error_of(tmp_path, "stacked.yaml", text + "steps:\n  s: {kind: sim, output: *y}\n")
    assert "deeper than" in line


def test_deeply_nested_json_is_refused_without_a_recursion_error(tmp_path: Path) -> None:
    deep = "[" * 100000 + "]" * 100000
    text = JSON_WORKFLOW.format(deep)
    assert "deeper than" in error_of(tmp_path, "deep.json", text)
    text = JSON_WORKFLOW.format("[" * 70 + "]" * 70)
    assert f"deeper than {MAX_DEPTH} levels" in error_of(tmp_path, "deep2.json", text)


def test_check_depth_measures_nesting_iteratively() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    assert check_depth(value, 32) == "nests mappings and lists deeper than 32 levels"
    assert check_depth({"a": [{"b": 1}]}, 3) is None
    assert check_depth({"a": [{"b": []}]}, 3) is not None


def test_parsed_data_from_an_api_is_depth_checked_too() -> None:
    value: object = 1
    for _ in range(200):
        value = {"x": value}
    data = {"name": "ok", "steps": {"s": {"kind": "sim", "output": value}}}
    with pytest.raises(WorkflowInvalid, match="deeper than"):
        parse_workflow(data)


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"kind": "sim", "resources": {"cpu": "1e400"}}, "resources.cpu"),
        ({"kind": "sim", "resources": {"cpu": float("nan")}}, "resources.cpu"),
        ({"kind": "sim", "fail_rate": float("nan")}, "fail_rate"),
        ({"kind": "sim", "cost_usd": float("inf")}, "cost_usd"),
        ({"kind": "sim", "timeout": float("inf")}, "timeout"),
        ({"kind": "sim", "latency": float("nan")}, "latency"),
        ({"kind": "sim", "resources": {"memory": float("inf")}}, "resources.memory"),
        ({"kind": "sim", "retry": {"factor": float("inf")}}, "retry.factor"),
        ({"kind": "sim", "limits": {"rpm": float("inf")}}, "limits.rpm"),
    ],
)
def test_infinite_and_nan_numbers_are_refused_naming_the_field(
    step: dict[str, object], field: str
) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow({"name": "n", "steps": {"s": step}}, "wf.yaml")
    assert any(f"steps.s.{field}" in line for line in info.value.problems), info.value.problems


def test_yaml_infinity_in_a_budget_is_refused(tmp_path: Path) -> None:
    text = "name: ok\nbudget: {usd: 5, warn_at: .nan}\nsteps:\n  s: {kind: sim}\n"
    assert "budget.warn_at" in error_of(tmp_path, "inf.yaml", text)


def test_json_1e400_is_refused(tmp_path: Path) -> None:
    data = '{"name": "ok", "steps": {"s": {"kind": "sim", "resources": {"cpu": 1e400}}}}'
    assert "steps.s.resources.cpu" in error_of(tmp_path, "inf.json", data)
    assert json.loads("1e400") == float("inf")
