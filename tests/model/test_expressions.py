"""`{{ ... }}` expressions: native types, string rendering, the sandbox, keys before attributes."""

from __future__ import annotations

from typing import Any

import pytest

from podium.errors import ExpressionError
from podium.model.expressions import check, has_template, render, step_refs

CONTEXT: dict[str, Any] = {
    "inputs": {"topic": "llamas", "depth": 3, "flags": {"fast": True}},
    "steps": {"research": {"output": {"facts": ["a", "b"], "items": ["x"], "count": 2}}},
    "item": {"name": "a"},
    "index": 0,
}


def test_a_lone_expression_keeps_the_type_of_its_value() -> None:
    assert render("{{ steps.research.output.facts }}", CONTEXT) == ["a", "b"]
    assert render("{{ inputs.depth }}", CONTEXT) == 3
    assert render("  {{ inputs.flags }}  ", CONTEXT) == {"fast": True}
    assert render("{{ inputs.depth > 2 }}", CONTEXT) is True


def test_text_around_an_expression_renders_to_a_string() -> None:
    assert render("about {{ inputs.topic }}", CONTEXT) == "about llamas"
    assert render("{{ inputs.depth }}{{ index }}", CONTEXT) == "30"


def test_rendering_walks_nested_mappings_and_lists() -> None:
    value = {"notes": ["{{ item.name }}", 1], "deep": {"n": "{{ index }}"}}
    assert render(value, CONTEXT) == {"notes": ["a", 1], "deep": {"n": 0}}


def test_strings_without_templates_are_returned_unchanged() -> None:
    assert render("plain {text}", CONTEXT) == "plain {text}"
    assert not has_template({"a": ["plain"]})
    assert has_template({"a": ["{{ x }}"]})


def test_dotted_access_reads_keys_before_attributes() -> None:
    # `items` is a dict method too; the key must win
    assert render("{{ steps.research.output.items }}", CONTEXT) == ["x"]


@pytest.mark.parametrize(
    "text", ["{{ inputs.__class__ }}", "x {{ inputs.__class__.__mro__ }}", "{{ ().__class__ }}"]
)
def test_the_sandbox_refuses_python_internals(text: str) -> None:
    with pytest.raises(ExpressionError, match="not allowed"):
        render(text, CONTEXT)


def test_a_sandbox_violation_is_seen_statically() -> None:
    [problem] = check({"input": {"x": "{{ inputs.__class__ }}"}})
    assert "private attribute" in problem


@pytest.mark.parametrize("text", ["{{ missing }}", "{{ inputs.nope }}", "a {{ missing }}"])
def test_an_undefined_name_fails_instead_of_rendering_nothing(text: str) -> None:
    with pytest.raises(ExpressionError, match=r"undefined|no attribute"):
        render(text, CONTEXT)


def test_a_failing_expression_raises_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="failed"):
        render("{{ 1 / 0 }}", CONTEXT)


def test_a_syntax_error_is_seen_statically() -> None:
    [problem] = check("{{ foo( }}")
    assert problem.startswith("bad expression '{{ foo( }}'")
    assert check(["{{ inputs.topic }}", "plain", 3]) == []


def test_step_refs_finds_dotted_and_subscripted_steps() -> None:
    refs = step_refs({"a": "{{ steps.research.output }}", "b": ["{{ steps['my-step'].output }}"]})
    assert refs == {"research", "my-step"}
