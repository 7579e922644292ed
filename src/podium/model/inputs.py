"""Run inputs: `-i k=v` pairs, inputs files, and their check against the declared inputs.

All problems are raised at once as one WorkflowInvalid, a line `error: inputs.<name>: ...` each.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from podium.errors import WorkflowInvalid
from podium.model.loader import read_document
from podium.model.validate import input_type_problem, show
from podium.model.workflow import Workflow

_INPUTS_FILE_HOLDS = "an inputs file must hold a mapping of input names to values"
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_cli_inputs(workflow: Workflow, pairs: list[str]) -> dict[str, Any]:
    """`["topic=llamas", "depth=3"]` to values parsed by each input's declared type.

    An undeclared name is kept as a string, for `resolve_inputs` to reject by name.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"error: -i {pair!r}: expected NAME=VALUE, e.g. -i topic=llamas")
            continue
        spec = workflow.inputs.get(name)
        try:
            values[name] = _PARSERS[spec.type if spec else "string"](text)
        except ValueError as exc:
            problems.append(f"error: inputs.{name}: {exc} (got {show(text)})")
    if problems:
        raise WorkflowInvalid(problems)
    return values


def resolve_inputs(
    workflow: Workflow, given: Mapping[str, Any], source: str = "inputs"
) -> dict[str, Any]:
    """The run's inputs: `given` plus defaults, checked against the declarations.

    Every declared input is in the result; an optional one without a default is None, so an
    expression can read it. `source` names where the values came from in messages: the default
    gives `error: inputs.<name>: ...`, a file `error: FILE: inputs.<name>: ...`.
    """
    resolved: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, spec in workflow.inputs.items():
        if name in given:
            value = given[name]
        elif "default" in spec.model_fields_set:
            value = copy.deepcopy(spec.default)  # a run must not change the definition's default
        elif spec.required:
            problems.append((name, f"missing required input (a {spec.type})"))
            continue
        else:
            value = None
        # null is "not given" for an optional input, a wrong value for a required one
        optional_null = value is None and not spec.required
        problem = None if optional_null else input_type_problem(spec.type, value)
        if problem is not None:
            problems.append((name, problem))
        else:
            resolved[name] = _normalized(value)
    unknown = [name for name in given if name not in workflow.inputs]
    problems += [(name, _unknown(workflow, given[name])) for name in unknown]
    if problems:
        raise WorkflowInvalid([_line(source, name, message) for name, message in problems])
    return resolved


def load_inputs_file(path: str | Path) -> dict[str, Any]:
    """The mapping of input values in a JSON or YAML file (at most 10 MiB)."""
    data = read_document(Path(path), "an inputs file")
    if data is None:
        raise WorkflowInvalid([f"error: {path}: the inputs file is empty; {_INPUTS_FILE_HOLDS}"])
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise WorkflowInvalid([f"error: {path}: {_INPUTS_FILE_HOLDS}, not a {kind}"])
    return {str(name): value for name, value in data.items()}


def _normalized(value: Any) -> Any:
    """Tuples and read-only mappings (from the SDK) as the JSON types a run stores."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return dict(value)
    return value


def _unknown(workflow: Workflow, value: Any) -> str:
    declared = ", ".join(workflow.inputs) or "none"
    return f"unknown input; the workflow declares: {declared} (got {show(value)})"


def _line(source: str, name: str, message: str) -> str:
    where = f"inputs.{name}" if source == "inputs" else f"{source}: inputs.{name}"
    return f"error: {where}: {message}"


def _parse_integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("should be an integer") from None


def _parse_number(text: str) -> int | float:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError("should be a number") from None
    if not math.isfinite(number):
        raise ValueError("should be a finite number")
    return number


def _parse_boolean(text: str) -> bool:
    try:
        return _BOOLEANS[text.strip().lower()]
    except KeyError:
        raise ValueError("should be a boolean: true/false, yes/no or 1/0") from None


def _json_parser(expected: type, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"should be {what} in JSON ({exc.msg})") from None
        if not isinstance(value, expected):
            raise ValueError(f"should be {what} in JSON")
        return value

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": _parse_integer,
    "number": _parse_number,
    "boolean": _parse_boolean,
    "object": _json_parser(dict, "an object"),
    "array": _json_parser(list, "an array"),
}
