"""Run inputs: `-i k=v`, inputs files, defaults, required inputs and types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from podium.errors import WorkflowInvalid
from podium.model import Workflow, load_inputs_file, parse_cli_inputs, resolve_inputs

WORKFLOW = Workflow.model_validate({
    "name": "wf",
    "inputs": {
        "topic": {"type": "string", "required": True},
        "depth": {"type": "string", "default": "standard"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "dry_run": {"type": "boolean", "default": False},
        "options": {"type": "object", "default": {"lang": "en"}},
        "tags": {"type": "array"},
    },
    "steps": {"a": {"kind": "sim"}},
})


def problems_of(given: dict[str, Any], source: str = "inputs") -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        resolve_inputs(WORKFLOW, given, source)
    return caught.value.problems


# -- -i k=v -----------------------------------------------------------------------------------


def test_cli_values_are_parsed_by_their_declared_type() -> None:
    pairs = ["topic=llamas", "count=3", "ratio=0.5", "dry_run=yes",
             'options={"lang": "fr"}', 'tags=["a", 1]', "extra=7"]
    assert parse_cli_inputs(WORKFLOW, pairs) == {
        "topic": "llamas", "count": 3, "ratio": 0.5, "dry_run": True,
        "options": {"lang": "fr"}, "tags": ["a", 1], "extra": "7",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("FALSE", False), ("1", True), ("0", False), ("yes", True), ("No", False)],
)
def test_cli_booleans_accept_the_usual_spellings(text: str, value: bool) -> None:
    assert parse_cli_inputs(WORKFLOW, [f"dry_run={text}"]) == {"dry_run": value}


def test_a_cli_number_keeps_an_integer_whole() -> None:
    assert parse_cli_inputs(WORKFLOW, ["ratio=2"]) == {"ratio": 2}


def test_only_the_first_equals_sign_splits_a_pair() -> None:
    assert parse_cli_inputs(WORKFLOW, ["topic=a=b", "depth="]) == {"topic": "a=b", "depth": ""}


def test_bad_cli_values_are_all_reported_at_once() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_cli_inputs(WORKFLOW, ["topic", "count=three", "ratio=nan", "dry_run=maybe",
                                    "tags={}", "options=[1"])
    assert caught.value.problems == [
        "error: -i 'topic': expected NAME=VALUE, e.g. -i topic=llamas",
        "error: inputs.count: should be an integer (got 'three')",
        "error: inputs.ratio: should be a finite number (got 'nan')",
        "error: inputs.dry_run: should be a boolean: true/false, yes/no or 1/0 (got 'maybe')",
        "error: inputs.tags: should be an array in JSON (got '{}')",
        "error: inputs.options: should be an object in JSON"
        " (Expecting ',' delimiter) (got '[1')",
    ]


# -- resolve_inputs ---------------------------------------------------------------------------


def test_defaults_fill_what_was_not_given() -> None:
    assert resolve_inputs(WORKFLOW, {"topic": "llamas", "count": 2}) == {
        "topic": "llamas", "depth": "standard", "count": 2, "ratio": None, "dry_run": False,
        "options": {"lang": "en"}, "tags": None,
    }


def test_a_run_cannot_change_a_default_for_the_next_run() -> None:
    first = resolve_inputs(WORKFLOW, {"topic": "a"})
    first["options"]["lang"] = "changed"
    assert resolve_inputs(WORKFLOW, {"topic": "b"})["options"] == {"lang": "en"}


def test_a_missing_required_input_is_rejected() -> None:
    assert problems_of({}) == ["error: inputs.topic: missing required input (a string)"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("count", True, "an integer"), ("count", 2.5, "an integer"), ("count", "3", "an integer"),
     ("ratio", False, "a number"), ("ratio", "0.5", "a number"), ("dry_run", 1, "a boolean"),
     ("options", [], "an object"), ("tags", "a,b", "an array"), ("topic", 3, "a string")],
)
def test_a_value_of_the_wrong_type_is_rejected(name: str, value: Any, expected: str) -> None:
    given = {"topic": "llamas", name: value}
    assert problems_of(given) == [f"error: inputs.{name}: should be {expected} (got {value!r})"]


def test_an_integer_is_a_number() -> None:
    assert resolve_inputs(WORKFLOW, {"topic": "x", "ratio": 3})["ratio"] == 3


def test_null_leaves_an_optional_input_unset_but_not_a_required_one() -> None:
    assert resolve_inputs(WORKFLOW, {"topic": "x", "count": None})["count"] is None
    assert problems_of({"topic": None}) == ["error: inputs.topic: should be a string (got None)"]


def test_an_unknown_input_is_rejected_by_name() -> None:
    assert problems_of({"topic": "x", "colour": "blue"}) == [
        "error: inputs.colour: unknown input; the workflow declares: topic, depth, count, ratio,"
        " dry_run, options, tags (got 'blue')"
    ]


def test_every_input_problem_is_reported_at_once() -> None:
    assert problems_of({"count": "many", "colour": 1}) == [
        "error: inputs.topic: missing required input (a string)",
        "error: inputs.count: should be an integer (got 'many')",
        "error: inputs.colour: unknown input; the workflow declares: topic, depth, count, ratio,"
        " dry_run, options, tags (got 1)",
    ]


def test_problems_name_the_file_the_inputs_came_from() -> None:
    assert problems_of({}, source="in.yaml") == [
        "error: in.yaml: inputs.topic: missing required input (a string)"
    ]


def test_cli_values_then_resolve_give_the_run_inputs() -> None:
    given = parse_cli_inputs(WORKFLOW, ["topic=llamas", "tags=[1, 2]"])
    resolved = resolve_inputs(WORKFLOW, given)
    assert resolved["topic"] == "llamas"
    assert (resolved["tags"], resolved["depth"]) == ([1, 2], "standard")


# -- inputs files -----------------------------------------------------------------------------


def test_an_inputs_file_may_be_json_or_yaml(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text(json.dumps({"topic": "llamas", "count": 2}))
    (tmp_path / "in.yaml").write_text("topic: llamas\ncount: 2\n")
    assert load_inputs_file(tmp_path / "in.json") == {"topic": "llamas", "count": 2}
    assert load_inputs_file(str(tmp_path / "in.yaml")) == {"topic": "llamas", "count": 2}


@pytest.mark.parametrize(
    ("text", "what"),
    [("- a\n", "an inputs file must hold a mapping of input names to values, not a list"),
     ("", "the inputs file is empty; an inputs file must hold a mapping of input names to values")],
)
def test_an_inputs_file_must_hold_a_mapping(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(text)
    with pytest.raises(WorkflowInvalid) as caught:
        load_inputs_file(path)
    assert caught.value.problems == [f"error: {path}: {what}"]


def test_a_50_mb_inputs_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(50 * 1000 * 1000)  # sparse: no real disk use
    with pytest.raises(WorkflowInvalid) as caught:
        load_inputs_file(path)
    assert caught.value.problems == [
        f"error: {path}: the file is 47.7 MiB, over the 10 MiB limit for an inputs file"
    ]


def test_a_malformed_inputs_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.yaml"
    path.write_text("topic: [llamas\n")
    with pytest.raises(WorkflowInvalid) as caught:
        load_inputs_file(path)
    [line] = caught.value.problems
    assert line.startswith(f"error: {path}: line 2, column 1: invalid YAML: ")
