"""A tool's arguments schema: as written, or derived from a python tool's signature; checks.

`arguments_problem` judges a model's arguments against it before any tool runs.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jsonschema
from pydantic import ConfigDict, create_model

from podium.errors import NonRetryable
from podium.model.workflow import PythonAction, Tool
from podium.steps.base import StepContext
from podium.steps.python import CallNotFound, resolve_call

OPEN_OBJECT: dict[str, Any] = {"type": "object"}


def input_schema(tool: Tool, ctx: StepContext) -> dict[str, Any]:
    """The schema given, else (python) the function's signature as JSON Schema, else any
    object."""
    if tool.input_schema is not None:
        return tool.input_schema
    action = tool.step.action
    if not isinstance(action, PythonAction):
        return OPEN_OBJECT
    problem = None if ctx.policy is None else ctx.policy.check_call(action.call)
    if problem is not None:  # refused before the import: importing runs the module's code
        raise NonRetryable(f"tool call {action.call!r} refused: {problem}")
    try:
        return signature_schema(resolve_call(action.call))
    except CallNotFound as exc:
        raise NonRetryable(f"tool {action.call!r}: {exc}") from None


@lru_cache(maxsize=256)
def signature_schema(func: Callable[..., Any]) -> dict[str, Any]:
    """The JSON Schema of a function's keyword arguments (`ctx` is podium's, not the model's)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation that does not resolve: take every argument as any value
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name == "ctx" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    model = create_model(
        func.__name__, __config__=ConfigDict(extra="forbid"), **fields
    )
    schema: dict[str, Any] = model.model_json_schema()
    schema.pop("title", None)
    return schema


def arguments_problem(arguments: Any, schema: dict[str, Any]) -> str | None:
    """None when `arguments` fit `schema`; else the first problem, in one line."""
    try:
        validator = jsonschema.Draft202012Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except jsonschema.exceptions.SchemaError as exc:
        return f"the tool's input_schema is not a valid JSON Schema: {exc.message}"
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where or 'arguments'}: {' '.join(error.message.split())[:300]}"
