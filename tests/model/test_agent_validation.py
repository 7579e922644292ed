"""`podium validate` on agent steps: tools are checked like steps, apart from the DAG."""

from __future__ import annotations

from typing import Any

import pytest

from podium.check import parse_workflow
from podium.errors import WorkflowInvalid
from podium.model.policy import TrustPolicy


def agent(tools: dict[str, Any], **step: Any) -> dict[str, Any]:
    return {
        "name": "wf",
        "steps": {
            "a": {"kind": "sim"},
            "b": {"kind": "llm", "model": "gpt-4o-mini", "prompt": "hi", "needs": ["a"],
                  "tools": tools, **step},
        },
    }


def problems(data: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(data, "wf.yaml", **kwargs)
    return caught.value.problems


def test_a_tool_is_a_step_body_outside_the_dag() -> None:
    tools = {"search": {"kind": "http", "url": "https://s.example/q?q={{ inputs.q }}",
                        "retry": {"attempts": 2}, "description": "web search"}}
    workflow = parse_workflow(agent(tools, loop={"max_turns": 4}), "wf.yaml")
    assert list(workflow.steps) == ["a", "b"]  # the tool is no step of the DAG
    action: Any = workflow.steps["b"].action
    assert action.tools["search"].step.retry.attempts == 2
    assert action.loop.max_turns == 4 and action.loop.max_tool_calls == 50


@pytest.mark.parametrize(
    ("tools", "step", "expected"),
    [
        ({"t": {"kind": "sim", "needs": ["a"]}}, {},
         "a tool is not part of the DAG: remove needs"),
        ({"t": {"kind": "http", "url": "http://x/{{ steps.a.output }}"}}, {},
         "steps.b.tools.t.url: reads steps.a, but a tool sees only its call's arguments"),
        ({"t": {"kind": "python", "call": "no_such_module_here:f"}}, {},
         "steps.b.tools.t.call: cannot import module 'no_such_module_here'"),
        ({"bad name": {"kind": "sim"}}, {}, "steps.b.tools.bad name: should match pattern"),
        ({}, {"loop": {"max_turns": 0}}, "max_turns"),
        (None, {"loop": {"max_turns": 2}}, "steps.b.loop: loop applies to a step with tools"),
    ],
)
def test_a_wrong_tool_or_loop_is_named_precisely(
    tools: dict[str, Any] | None, step: dict[str, Any], expected: str
) -> None:
    found = problems(agent(tools or {}, **step) if tools is not None else _no_tools(step))
    assert any(expected in p for p in found), found


def _no_tools(step: dict[str, Any]) -> dict[str, Any]:
    data = agent({}, **step)
    del data["steps"]["b"]["tools"]
    return data


def test_an_untrusted_definition_may_not_reach_through_a_tool_what_it_may_not_reach() -> None:
    tools = {"t": {"kind": "python", "call": "os:system"}}
    found = problems(agent(tools), policy=TrustPolicy(), resolve_calls=False)
    assert any(p.startswith("error: wf.yaml: steps.b.tools.t.call:") for p in found), found
