"""A simulated model for agent loops: it asks for every tool once, then answers. Offline.

Deterministic, for examples, demos and tests; its replies say they are simulated. With an
output schema its answer is an object valid against that schema, built from the tool results.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.model.llm import as_text
from podium.steps.agent import Estimate, ToolCall, ToolDef, Turn

SIM_NOTE = "[simulated]"
_MAX_DEPTH = 8


def words(value: Any) -> int:
    """The simulator's tokenizer: one token per whitespace-separated word."""
    return len(as_text(value).split())


@dataclass(slots=True)
class SimModel:
    """Turn 1 asks for each tool (all at once, arguments from their schemas); the next turn
    answers. `tokens` (per turn) replace the word counts when given; nothing is booked."""

    name: str
    tools: Sequence[ToolDef]
    output_schema: dict[str, Any] | None = None
    tokens: tuple[int, int] | None = None
    usd_per_turn: float = 0.0
    answer: Any = None  # the final answer, when given (a `sim` step's `output`)
    json_answer: bool = False  # no schema, but a JSON answer wanted (`json_output`)
    hints: Mapping[str, Any] = field(default_factory=dict)  # argument values by name (`input`)
    pause: Callable[[], Awaitable[None]] | None = None  # each turn's simulated latency
    ledgered: bool = False

    def estimate(self, messages: Sequence[Mapping[str, Any]]) -> Estimate:
        tokens_in, tokens_out = self.tokens or (sum(words(m.get("content")) for m in messages), 64)
        return Estimate(tokens_in, tokens_out, self.usd_per_turn)

    async def reply(self, messages: list[dict[str, Any]], turn: int) -> Turn:
        if self.pause is not None:
            await self.pause()
        asked = any(m.get("role") == "tool" for m in messages)
        if self.tools and not asked:
            given = [v for v in self.hints.values() if isinstance(v, str)]
            topic = given[0] if given else _last_user_text(messages)
            calls = tuple(
                ToolCall(f"sim_{turn}_{i}", t.name, self._arguments(t, topic))
                for i, t in enumerate(self.tools)
            )
            return self._turn(messages, "", calls, "tool_calls")
        results = [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]
        facts = [fact[:200] for r in results for fact in _listed_strings(r)][:10]
        facts = facts or [_last_user_text(messages)[:200]]
        text = f"{SIM_NOTE} answer from {len(results)} tool result(s): " + " | ".join(facts)
        if self.answer is not None:
            return self._turn(messages, json.dumps(self.answer), (), "stop", self.answer)
        if self.output_schema is None and self.json_answer:
            answer = {"answer": text, "facts": facts}
            return self._turn(messages, json.dumps(answer), (), "stop", answer)
        if self.output_schema is None:
            return self._turn(messages, text, (), "stop")
        answer = instance(self.output_schema, " | ".join(facts), facts)
        return self._turn(messages, json.dumps(answer), (), "stop", answer)

    def _arguments(self, tool: ToolDef, topic: str) -> dict[str, Any]:
        """From the tool's schema; a property named like a key of the step's `input` gets
        that value (a simulated model that reads its prompt)."""
        arguments = instance(tool.input_schema, topic)
        if not isinstance(arguments, dict):
            return {}
        properties = tool.input_schema.get("properties") or {}
        return {**arguments, **{k: v for k, v in self.hints.items() if k in properties}}

    def _turn(
        self,
        messages: Sequence[Mapping[str, Any]],
        text: str,
        calls: tuple[ToolCall, ...],
        finish: str,
        structured: Any = None,
    ) -> Turn:
        tokens_in, tokens_out = self.tokens or (
            sum(words(m.get("content")) for m in messages),
            words(text) + sum(words(c.arguments) for c in calls),
        )
        return Turn(
            text=text,
            calls=calls,
            finish_reason=finish,
            model=self.name,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            usd=self.usd_per_turn,
            structured=structured,
            has_structured=structured is not None,
        )


def _listed_strings(result: str) -> list[str]:
    """The strings inside lists of a JSON tool result (facts, snippets); else the result."""
    try:
        value = json.loads(result)
    except ValueError:
        return [result]
    found: list[str] = []
    todo: list[tuple[Any, bool]] = [(value, False)]
    while todo and len(found) < 50:
        item, listed = todo.pop(0)
        if isinstance(item, str) and listed:
            found.append(item)
        elif isinstance(item, dict):
            todo.extend((v, False) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, True) for v in item)
    return found or [result]


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return as_text(message.get("content"))
    return ""


def instance(
    schema: Mapping[str, Any], text: str, pool: Sequence[str] = (), depth: int = 0
) -> Any:
    """A value valid against the usual JSON Schema subset (type, properties, required,
    items, enum, const, minItems, minimum, anyOf/oneOf); strings come from `text` or `pool`."""
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return instance(options[0], text, pool, depth)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    make: _Maker = _BY_TYPE.get(kind, _string)
    return make(schema, text, pool, depth)


def _object(schema: Mapping[str, Any], text: str, pool: Sequence[str], depth: int) -> Any:
    properties = schema.get("properties") or {}
    if depth >= _MAX_DEPTH:
        return {}
    return {
        name: instance(sub, text, pool, depth + 1)
        for name, sub in properties.items()
        if isinstance(sub, Mapping)
    }


def _array(schema: Mapping[str, Any], text: str, pool: Sequence[str], depth: int) -> Any:
    items = schema.get("items")
    items = items if isinstance(items, Mapping) else {}
    count = max(int(schema.get("minItems") or 0), min(len(pool), 3), 1)
    count = min(count, int(schema.get("maxItems") or count))
    if depth >= _MAX_DEPTH:
        return []
    return [
        instance(items, pool[i] if i < len(pool) else text, pool[i + 1 :], depth + 1)
        for i in range(count)
    ]


def _string(schema: Mapping[str, Any], text: str, pool: Sequence[str], depth: int) -> Any:
    value = text or SIM_NOTE
    low, high = int(schema.get("minLength") or 0), schema.get("maxLength")
    value = value.ljust(low, ".")
    return value[: int(high)] if high is not None else value


def _number(schema: Mapping[str, Any], text: str, pool: Sequence[str], depth: int) -> Any:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    value = 0 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
    return int(value) if schema.get("type") == "integer" else value


def _boolean(schema: Mapping[str, Any], text: str, pool: Sequence[str], depth: int) -> Any:
    return True


def _null(schema: Mapping[str, Any], text: str, pool: Sequence[str], depth: int) -> Any:
    return None


_Maker = Callable[[Mapping[str, Any], str, Sequence[str], int], Any]
_BY_TYPE: dict[str, _Maker] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": _boolean,
    "null": _null,
}
