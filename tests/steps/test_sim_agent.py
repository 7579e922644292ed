"""The simulated model's schema instances and the answer rule of agent loops (no engine)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from podium.steps.agent import AnswerRule, Turn
from podium.steps.sim_agent import instance

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
     "required": ["facts"], "additionalProperties": False},
    {"type": "object", "properties": {
        "score": {"type": "integer", "minimum": 3}, "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b"]}, "note": {"type": ["null", "string"], "minLength": 4},
        "ratio": {"type": "number", "exclusiveMinimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
        "nested": {"type": "object", "properties": {"v": {"const": 7}}, "required": ["v"]},
        "either": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
    }, "required": ["score", "ok", "kind", "note", "ratio", "tags", "nested", "either"]},
    {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    {"type": "string", "maxLength": 5},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_simulated_answer_is_valid_against_its_schema(schema: dict[str, Any]) -> None:
    value = instance(schema, "octopus facts", ["three hearts", "blue blood"])
    jsonschema.validate(value, schema)


def test_the_simulated_answer_draws_its_strings_from_the_tool_results() -> None:
    value = instance(SCHEMAS[0], "all", ["three hearts", "blue blood"])
    assert value == {"facts": ["three hearts", "blue blood"]}


def test_the_answer_rule_takes_a_valid_answer_and_says_what_is_wrong_with_another() -> None:
    rule = AnswerRule(schema=SCHEMAS[0])
    assert rule.judge(Turn(text='{"facts": ["x"]}')) == ({"facts": ["x"]}, None)
    value, problem = rule.judge(Turn(text='{"facts": "x"}'))
    assert value is None and problem is not None
    assert problem.startswith("That reply does not match the required JSON Schema: facts:")
    assert rule.judge(Turn(text="not json"))[1] == "That reply is not valid JSON."
    assert AnswerRule().judge(Turn(text="free text")) == (None, None)
