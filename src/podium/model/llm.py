"""What an `llm` action asks of its provider, provider-neutral: the model, the conversation.

Pure: the step kind sends it, and budgets estimate a call's cost from it before it is made.

The conversation (`LlmRequest.messages`) is provider-neutral; the wire code translates it:
- `{"role": "user" | "assistant", "content": str}` (a provider-native content list passes);
- `{"role": "assistant", "content": str, "tool_calls": [{"id", "name", "arguments": {...}}]}`;
- `{"role": "tool", "tool_call_id": str, "name": str, "content": str, "is_error": bool}`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from podium.errors import NonRetryable
from podium.model.pricing import Pricing, missing_price
from podium.model.workflow import LlmAction

BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
SIM_BASE_URL = "sim:"  # the built-in simulated model: no provider, nothing booked
# OpenAI's reasoning families (o1, o3, o4-mini, gpt-5...) take `max_completion_tokens` and
# refuse `max_tokens` and a non-default `temperature`.
_REASONING_MODEL = re.compile(r"^(o\d+|gpt-5)(\b|[-.])")


def is_reasoning_model(model: str) -> bool:
    """An OpenAI o-series (or gpt-5) model, by family name, snapshots included."""
    return _REASONING_MODEL.match(model) is not None


def simulated(action: LlmAction) -> bool:
    """Does the step ask the built-in simulated model (`base_url: sim:`), not a provider?"""
    return (action.base_url or "").strip() == SIM_BASE_URL


def guarded_per_turn(action: object) -> bool:
    """Is this (rendered) action an agent loop that asks a provider, so that each of its
    model calls, not its attempt as a whole, passes the budget, circuit and rate guards?"""
    return isinstance(action, LlmAction) and bool(action.tools) and not simulated(action)


def needs_wrapping(schema: dict[str, Any]) -> bool:
    """Providers take an object at the top of a structured answer; another type travels
    wrapped as `{"value": ...}` and is unwrapped on return."""
    return schema.get("type") != "object"


def wire_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as sent: an object at the top (see `needs_wrapping`)."""
    if not needs_wrapping(schema):
        return schema
    return {
        "type": "object", "properties": {"value": schema}, "required": ["value"],
        "additionalProperties": False,
    }


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode takes the schema: every object closed
    (additionalProperties: false) and every property required. A looser schema is sent
    unstrict; podium validates the answer either way."""
    if isinstance(schema, list):
        return all(strict_compatible(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(properties):
            return False
    return all(strict_compatible(value) for value in schema.values())


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and its arguments' JSON Schema."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """What is sent, provider-neutral: `system` apart, `messages` without system turns."""

    provider: str
    base_url: str
    model: str
    system: str | None
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None
    json_output: bool
    stream: bool
    # The reply must be a JSON object valid against this schema (native structured output).
    output_schema: dict[str, Any] | None = None
    schema_name: str = "final_answer"
    tools: tuple[ToolSpec, ...] = ()
    # "auto" (the provider's default), "required" (some tool), "none", or one tool's name.
    tool_choice: str | None = None

    def cache_key(self) -> str:
        """sha256 of the canonical request; `stream` and the key do not change the answer."""
        canonical: dict[str, Any] = {
            "provider": self.provider,
            "base_url": self.base_url,
            "model": self.model,
            "system": self.system,
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "json_output": self.json_output,
        }
        # Added only when set, so that a plain request keeps the key it always had.
        if self.output_schema is not None:
            canonical["output_schema"] = self.output_schema
        if self.tools:
            canonical["tools"] = [[t.name, t.description, t.input_schema] for t in self.tools]
            canonical["tool_choice"] = self.tool_choice
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def build_request(action: LlmAction, pricing: Pricing) -> LlmRequest:
    """The request an action means: its model (or its tier's), the conversation, compressed."""
    provider = action.provider
    model = _model(action, pricing)
    system, turns = conversation(action)
    if action.context_tokens is not None:
        turns = compress(system, turns, action.context_tokens)
    return LlmRequest(
        provider=provider,
        base_url=action.base_url or BASE_URLS[provider],
        model=model,
        system=system,
        messages=turns,
        max_tokens=action.max_tokens,
        temperature=action.temperature,
        json_output=action.json_output,
        stream=action.stream,
        output_schema=_output_schema(action),
    )


def _output_schema(action: LlmAction) -> dict[str, Any] | None:
    schema = action.output_schema
    if isinstance(schema, str):
        # The loader reads a schema file in; a path left here was never loaded from a file.
        raise NonRetryable(f"output_schema {schema!r} was not read: load the workflow file")
    return schema


def _model(action: LlmAction, pricing: Pricing) -> str:
    if action.model is not None:
        model = as_text(action.model)  # a rendered expression may be any value
    elif action.tier is not None:
        model = pricing.model_for_tier(action.provider, action.tier)
    else:
        raise NonRetryable("an llm step needs model or tier")
    # Checked before calling: an unpriced call would slip past every budget.
    if pricing.price(model) is None:
        raise NonRetryable(missing_price(model))
    return model


def conversation(action: LlmAction) -> tuple[str | None, list[dict[str, Any]]]:
    """(system, turns): system-role messages join `system`, as Anthropic takes it apart."""
    if action.messages is None:
        parts = [as_text(action.prompt) if action.prompt is not None else ""]
        if action.input:
            parts.append(json.dumps(action.input, ensure_ascii=False))
        user = "\n\n".join(part for part in parts if part)
        if not user:
            raise NonRetryable("an llm step needs prompt, messages or input; all are empty")
        return _system([action.system]), [{"role": "user", "content": user}]
    turns = _checked_messages(action.messages)
    system_turns = [as_text(t.get("content")) for t in turns if t["role"] == "system"]
    return _system([action.system, *system_turns]), [t for t in turns if t["role"] != "system"]


def _system(parts: list[Any]) -> str | None:
    text = "\n\n".join(as_text(part) for part in parts if part)
    return text or None


def _checked_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise NonRetryable("messages must be a non-empty list of {role, content}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise NonRetryable(f"messages[{index}] must be a mapping with a role and content")
    return messages


def as_text(value: Any) -> str:
    """A rendered field as text: a string stays, anything else becomes JSON."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def estimate_tokens(value: Any) -> int:
    """A rough count (4 characters a token): enough to keep a context under a budget."""
    return math.ceil(len(as_text(value)) / 4)


def estimate_usage(request: LlmRequest) -> tuple[int, int]:
    """At most what a call may use: the prompt at four characters a token, and every token
    `max_tokens` allows out (budgets hold it; the ledger books it for a call without usage)."""
    tokens_in = estimate_tokens(request.system or "") + sum(
        estimate_tokens(turn.get("content")) + estimate_tokens(turn.get("tool_calls"))
        for turn in request.messages
    )
    # Tool definitions and the answer's schema are sent as part of the prompt too.
    tokens_in += estimate_tokens([[t.name, t.description, t.input_schema] for t in request.tools])
    tokens_in += estimate_tokens(request.output_schema)
    return tokens_in, request.max_tokens


def compress(system: str | None, turns: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The latest turns that fit `budget` tokens beside the system prompt.

    The tail from the last user turn on always stays (it is the question), and the kept part
    starts with a user turn: providers reject a conversation that opens with a reply.
    """
    users = [i for i, turn in enumerate(turns) if turn.get("role") == "user"]
    start = users[-1] if users else max(len(turns) - 1, 0)
    kept = sum(estimate_tokens(turn.get("content")) for turn in turns[start:])
    left = budget - estimate_tokens(system) - kept
    while start > 0 and estimate_tokens(turns[start - 1].get("content")) <= left:
        start -= 1
        left -= estimate_tokens(turns[start].get("content"))
    while start < len(turns) - 1 and turns[start].get("role") != "user":
        start += 1
    return turns[start:]
