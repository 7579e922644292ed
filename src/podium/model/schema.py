"""JSON Schema for structured `llm` answers: checking a schema, validating an answer against
it, and telling which field paths an answer of that schema can have.

Validation is bounded: a schema and an answer are size-checked before jsonschema sees them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

_MAX_SCHEMA_CHARS = 100_000
_MAX_PROBLEM = 300
FieldVerdict = Literal["ok", "missing", "undeclared", "unknown"]


def schema_error(schema: Any) -> str | None:
    """Why `schema` is not a usable JSON Schema (draft 2020-12), in one line; None if it is."""
    if not isinstance(schema, dict):
        return f"must be a JSON Schema object (got {type(schema).__name__})"
    if len(json.dumps(schema, default=str)) > _MAX_SCHEMA_CHARS:
        return f"is larger than {_MAX_SCHEMA_CHARS} characters"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        return _one_line(f"is not a valid JSON Schema: {exc.message}" + (
            f" (at {where})" if where else ""))
    return None


def schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """Why `value` does not match `schema` (the most relevant error, one line), or None."""
    error = best_match(Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return _one_line("at $" + where + f": {error.message}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_MAX_PROBLEM]


def field_verdict(schema: Any, path: Sequence[str | int]) -> FieldVerdict:
    """Whether an answer of `schema` can have `path` (`["facts", 0]`): "ok" when the schema
    declares it, "missing" when it cannot be there (additionalProperties: false, a scalar),
    "undeclared" when the schema does not name it but would let it through, "unknown" where
    the schema cannot tell (explicit additional properties, composition, references)."""
    node = schema
    for part in path:
        if not isinstance(node, dict):
            return "unknown"
        if any(key in node for key in ("$ref", "anyOf", "oneOf", "allOf", "if")):
            return "unknown"
        node = _child(node, part)
        if node is None:
            return "missing"
        if node in ("unknown", "undeclared"):
            return node  # type: ignore[no-any-return]
    return "ok"


def _child(node: dict[str, Any], part: str | int) -> Any:
    kinds = node.get("type")
    if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
        if kinds == "array" or "items" in node:
            items = node.get("items")
            return items if isinstance(items, dict) else "unknown"
        return None if kinds not in (None, "array") and isinstance(kinds, str) else "unknown"
    properties = node.get("properties")
    if isinstance(properties, dict) and part in properties:
        return properties[part]
    if kinds is not None and kinds != "object" and not isinstance(kinds, list):
        return None  # a string or a number has no fields
    if node.get("patternProperties"):
        return "unknown"
    extra = node.get("additionalProperties")
    if extra is False:
        return None
    return "undeclared" if extra is None and properties is not None else "unknown"
