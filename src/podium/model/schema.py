"""JSON Schema for structured `llm` answers: checking a schema, validating an answer against
it, and telling which field paths an answer of that schema can have.

Validation is bounded: a schema and an answer are size-checked before jsonschema sees them.
"""

from __future__ import annotations

import json
import random
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
    if kinds == "array":
        return "unknown"  # a list's attribute (`length` and such) is not a field
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


_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


def example_of(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value for `schema` drawn from `rng` (the `sim` kind's structured answer): every
    declared property, arrays at their minimum length (one item at least), numbers in range.
    The caller validates it: a schema with constraints this ignores may not be met."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return example_of(options[0], rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    maker = _MAKERS.get(str(kind))
    return None if maker is None else maker(schema, rng, depth)


def _object(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {name: example_of(sub, rng, depth + 1) for name, sub in properties.items()}


def _array(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    count = max(int(schema.get("minItems") or 0), 1)
    maximum = schema.get("maxItems")
    if isinstance(maximum, int):
        count = min(count, maximum)
    return [example_of(schema.get("items") or {}, rng, depth + 1) for _ in range(count)]


def _string(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    text = " ".join(rng.choice(_WORDS) for _ in range(2))
    minimum = int(schema.get("minLength") or 0)
    if len(text) < minimum:
        text = (text + " ") * (minimum // (len(text) + 1) + 1)
    maximum = schema.get("maxLength")
    return text[:maximum] if isinstance(maximum, int) else text


def _integer(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    low = schema.get("minimum", 0)
    high = schema.get("maximum", max(int(low), 0) + 100)
    return rng.randint(int(low), max(int(high), int(low)))


def _number(schema: dict[str, Any], rng: random.Random, depth: int) -> Any:
    low = float(schema.get("minimum", 0.0))
    high = float(schema.get("maximum", low + 1.0))
    return round(rng.uniform(low, max(high, low)), 4)


_MAKERS: dict[str, Any] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda schema, rng, depth: rng.random() < 0.5,
    "null": lambda schema, rng, depth: None,
}
