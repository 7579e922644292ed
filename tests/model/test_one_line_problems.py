"""One line per problem: an unknown agent is not also a missing kind, and a sandbox violation
that can be seen in the template (`__import__`, `__class__`) is a validation error."""

from __future__ import annotations

from typing import Any

import pytest

from podium.check import parse_workflow
from podium.errors import WorkflowInvalid


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(data, "wf.yaml")
    return caught.value.problems


@pytest.mark.parametrize("where", ["step", "fallback"])
def test_an_agent_that_is_not_defined_is_one_line_without_a_missing_kind(where: str) -> None:
    nobody = {"agent": "nobody"}
    step = nobody if where == "step" else {"kind": "sim", "fallback": nobody}
    location = "steps.x.agent" if where == "step" else "steps.x.fallback.agent"
    assert problems_of({"name": "wf", "steps": {"x": step}}) == [
        f"error: wf.yaml: {location}: unknown agent (got 'nobody'); agents: none are defined"
    ]


def test_a_step_without_kind_or_agent_still_says_the_kind_is_missing() -> None:
    assert problems_of({"name": "wf", "steps": {"x": {}}}) == [
        "error: wf.yaml: steps.x.kind: missing kind (or an agent that sets it)"
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ __import__('os').getcwd() }}", "uses the name '__import__'"),
        ("{{ inputs.__class__ }}", "private attribute '__class__'"),
        ("a {{ (inputs | list).__len__() }}", "private attribute '__len__'"),
        ("{{ inputs['_secret'] }}", "private key '_secret'"),
    ],
)
def test_a_sandbox_violation_in_the_template_is_a_validation_error(text: str, says: str) -> None:
    data = {"name": "wf", "steps": {"x": {"kind": "sim", "output": text}}}
    [problem] = problems_of(data)
    assert problem.startswith("error: wf.yaml: steps.x.output: expression ")
    assert says in problem


def test_plain_names_and_attributes_pass() -> None:
    data = {"name": "wf", "inputs": {"a_b": {"type": "string", "default": "x"}},
            "steps": {"x": {"kind": "sim", "output": "{{ inputs.a_b | upper }}"}}}
    assert parse_workflow(data, "wf.yaml").steps["x"].id == "x"
