"""What reads a structured llm answer, judged against its schema, and warnings about a valid
workflow: things that run, but probably not as meant.

A read of a field the schema cannot have, or does not declare, is an error (validation calls
`schema_read_problems`); a read the schema cannot judge, and an n8n test webhook, are warnings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from podium.model.schema import field_verdict
from podium.model.validate import Problem, action_parts, raw_steps_of

# `steps.x.output` and the static path after it: `.field`, `[0]`, `['key']`.
_READ = re.compile(
    r"\bsteps\.(?P<step>[A-Za-z0-9_][A-Za-z0-9_-]*)\.output"
    r"(?P<path>(?:\.[A-Za-z_]\w*|\[\d+\]|\['[^']*'\]|\[\"[^\"]*\"\])*)"
    r"(?P<after>\s*[\[(]?)"
)
_PART = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_SKIPPED_KEYS = frozenset({"definition", "output_schema"})
# Jinja filters and methods a path may end with: not fields.
_METHODS = frozenset({"items", "keys", "values", "get"})


@dataclass(frozen=True)
class _Read:
    location: str
    step: str
    path: tuple[str | int, ...]
    dynamic: bool  # followed by `[expr]` or a call: the schema cannot tell what is read


def schema_read_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Errors: reads of `steps.x.output.FIELD` that x's output_schema cannot give."""
    return [problem for problem, error in _judged(data) if error]


def workflow_warnings(data: Mapping[str, Any]) -> list[Problem]:
    """Warnings of a valid workflow (its canonical JSON or its raw data)."""
    warnings = [problem for problem, error in _judged(data) if not error]
    return warnings + list(_test_webhooks(data))


def _judged(data: Mapping[str, Any]) -> Iterator[tuple[Problem, bool]]:
    schemas = _schemas(data)
    if not schemas:
        return
    for_each = {
        step_id for step_id, raw in raw_steps_of(data).items()
        if raw.get("for_each") is not None
    }
    for read in _reads(data):
        schema = schemas.get(read.step)
        if schema is None:
            continue
        shown = "steps." + read.step + ".output" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in read.path
        )
        path = read.path
        if read.step in for_each:  # the output is the list of the instances' answers
            schema = {"type": "array", "items": schema}
        verdict = field_verdict(schema, path)
        if verdict in ("missing", "undeclared"):
            message = f"reads {shown}, a field the output_schema of {read.step} does not declare"
            yield Problem(read.location, message), True
        elif verdict == "unknown" or read.dynamic:
            message = (
                f"reads {shown}{'[...]' if read.dynamic else ''}: the output_schema of"
                f" {read.step} cannot tell whether that field is there"
            )
            yield Problem(read.location, message), False


def _schemas(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Step id -> the JSON Schema of its answer, for llm (and sim) steps that have one."""
    found = {}
    for part in action_parts(data):
        schema = part.action.get("output_schema")
        if part.prefix.count(".") == 1 and part.action.get("kind") in ("llm", "sim") and (
            isinstance(schema, dict)
        ):
            found[part.prefix.removeprefix("steps.")] = schema
    return found


def _reads(data: Mapping[str, Any]) -> Iterator[_Read]:
    for step_id, raw in raw_steps_of(data).items():
        for location, text in _strings(f"steps.{step_id}", raw):
            for match in _READ.finditer(text):
                path = tuple(_parts(match.group("path")))
                dynamic = bool(match.group("after").strip())
                if path and isinstance(path[-1], str) and path[-1] in _METHODS and dynamic:
                    path = path[:-1]
                yield _Read(location, match.group("step"), path, dynamic)


def _parts(path: str) -> Iterator[str | int]:
    for name, index, single, double in _PART.findall(path):
        if index:
            yield int(index)
        else:
            yield name or single or double


def _strings(location: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if "steps." in value:
            yield location, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _SKIPPED_KEYS:
                inner = location if key == "action" else f"{location}.{key}"
                yield from _strings(inner, item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(location, item)


def _test_webhooks(data: Mapping[str, Any]) -> Iterator[Problem]:
    """n8n answers a `/webhook-test/` URL only while its editor listens for a test event."""
    for part in action_parts(data):
        url = part.action.get("webhook")
        if part.action.get("kind") == "n8n" and isinstance(url, str) and "/webhook-test/" in url:
            yield Problem(
                f"{part.prefix}.webhook",
                "a /webhook-test/ URL answers only while the n8n editor listens for a test"
                " event; use the production /webhook/ URL of the active workflow",
            )
