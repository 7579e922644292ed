"""The `llm` kind's wire formats: OpenAI chat completions and Anthropic messages, each
a body to send and the reply it fills (whole, or chunk by chunk from a stream).

A conversation is provider-neutral (`{role, content}`, assistant turns with `tool_calls`,
`{role: tool}` results); each wire translates it, and reads text, tool calls, usage (cached
tokens included) and the finish reason back into one `Reply`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from podium.model.llm import (
    LlmRequest,
    ToolSpec,
    as_text,
    is_reasoning_model,
    strict_compatible,
    wire_schema,
)
from podium.steps.base import CallUsage

ANTHROPIC_VERSION = "2023-06-01"

# What the provider will bill for a call: nothing (never sent, or refused without usage),
# what its reply reported, or unknown (sent, no usage read back: the estimate is booked).
Billing = Literal["none", "reported", "unknown"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asks for: `arguments` is None when they are not a JSON object
    (`raw_arguments` keeps what came), so a loop can tell the model rather than crash."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""


@dataclass(slots=True)
class _PartialCall:
    """A tool call as a stream delivers it: id and name first, the arguments in pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""
    done: dict[str, Any] | None = None  # Anthropic's non-streamed `input`, already parsed


@dataclass(slots=True)
class Reply:
    """The answer as it accumulates (a stream fills it chunk by chunk).

    `tokens_in` counts every input token, cached ones included; `cache_read` and
    `cache_write` are the parts read from and written to the provider's prompt cache."""

    text: str = ""
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0
    finish_reason: str | None = None
    complete: bool = False  # a stream saw its end marker
    billing: Billing = "none"
    tool_calls: list[ToolCall] = field(default_factory=list)
    # The structured answer (output_schema), parsed but not yet validated (`has_structured`
    # tells an answer of JSON null from none).
    structured: Any = None
    has_structured: bool = False
    booked: CallUsage | None = None  # what the ledger booked for this call
    on_text: Callable[[str], None] | None = None  # hears each streamed text delta
    partial_calls: dict[int, _PartialCall] = field(default_factory=dict)

    @property
    def usage(self) -> dict[str, int]:
        return {
            "input": self.tokens_in,
            "output": self.tokens_out,
            "cache_read": self.cache_read,
            "cache_write": self.cache_write,
        }

    def add_text(self, piece: str) -> None:
        if not piece:
            return
        self.text += piece
        if self.on_text is not None:
            self.on_text(piece)


ZERO_USAGE = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}


# -- the wire formats -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wire:
    """One provider's HTTP framing: path, auth headers, body, JSON reply, stream chunks."""

    path: str
    headers: Callable[[str], dict[str, str]]
    body: Callable[[LlmRequest], dict[str, Any]]
    read: Callable[[Mapping[str, Any], Reply], None]
    on_chunk: Callable[[Mapping[str, Any], Reply], None]
    usage: Callable[[Mapping[str, Any], Reply], None]  # from any body, an error's included


def openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool definitions as chat completions takes them (`tools`)."""
    return [
        {"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.input_schema,
        }}
        for t in tools
    ]


def openai_messages(system: str | None, messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The neutral conversation as chat completions messages (tool calls and results too)."""
    wire: list[Any] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            wire.append({
                "role": "tool",
                "tool_call_id": message.get("tool_call_id"),
                "content": as_text(message.get("content")),
            })
        elif role == "assistant" and message.get("tool_calls"):
            wire.append({
                "role": "assistant",
                "content": message.get("content") or None,
                "tool_calls": [
                    {"id": c["id"], "type": "function", "function": {
                        "name": c["name"], "arguments": json.dumps(c.get("arguments") or {}),
                    }}
                    for c in message["tool_calls"]
                ],
            })
        else:
            wire.append(dict(message))
    return wire


def _openai_tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def _openai_body(request: LlmRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": openai_messages(request.system, request.messages),
    }
    if is_reasoning_model(request.model):
        # Reasoning models count their hidden reasoning here and refuse `max_tokens`.
        body["max_completion_tokens"] = request.max_tokens
    else:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        body["tools"] = openai_tools(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = _openai_tool_choice(request.tool_choice)
    if request.output_schema is not None:
        schema = wire_schema(request.output_schema)
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": request.schema_name, "schema": schema, "strict": strict_compatible(schema),
        }}
    if request.stream:
        # Without include_usage a streamed completion reports no tokens, so no cost.
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def _openai_read(data: Mapping[str, Any], reply: Reply) -> None:
    choice = _first(data.get("choices"))
    message = as_mapping(choice.get("message"))
    reply.text = as_text(message.get("content"))
    for index, call in enumerate(message.get("tool_calls") or []):
        _openai_call_piece(reply, {**as_mapping(call), "index": index})
    reply.finish_reason = choice.get("finish_reason")
    reply.model = data.get("model")
    _openai_usage(data, reply)


def _openai_call_piece(reply: Reply, piece: Mapping[str, Any]) -> None:
    index = piece.get("index")
    partial = reply.partial_calls.setdefault(index if isinstance(index, int) else 0, _PartialCall())
    function = as_mapping(piece.get("function"))
    partial.id = piece.get("id") or partial.id
    partial.name = function.get("name") or partial.name
    partial.arguments += function.get("arguments") or ""


def _openai_chunk(data: Mapping[str, Any], reply: Reply) -> None:
    reply.model = data.get("model") or reply.model
    for choice in data.get("choices") or []:
        delta = as_mapping(as_mapping(choice).get("delta"))
        reply.add_text(delta.get("content") or "")
        for piece in delta.get("tool_calls") or []:
            _openai_call_piece(reply, as_mapping(piece))
        reply.finish_reason = as_mapping(choice).get("finish_reason") or reply.finish_reason
    _openai_usage(data, reply)


def _openai_usage(data: Mapping[str, Any], reply: Reply) -> None:
    usage = data.get("usage")
    if isinstance(usage, dict):  # null on every streamed chunk but the last
        reply.tokens_in = _count(usage, "prompt_tokens")
        reply.tokens_out = _count(usage, "completion_tokens")
        # Cached prompt tokens are part of prompt_tokens, billed at the cached price.
        reply.cache_read = _count(as_mapping(usage.get("prompt_tokens_details")), "cached_tokens")
        reply.billing = "reported"


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    return value if isinstance(value, int) and value > 0 else 0


def _anthropic_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}


def anthropic_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """Tool definitions as the messages API takes them (`tools`)."""
    return [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema}
        for t in tools
    ]


def anthropic_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The neutral conversation as messages API turns: tool calls are `tool_use` blocks of
    the assistant, and the results that follow them one user turn of `tool_result` blocks."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": as_text(message.get("content")),
            }
            if message.get("is_error"):
                block["is_error"] = True
            last = wire[-1] if wire else None
            if last and last["role"] == "user" and isinstance(last["content"], list) and all(
                as_mapping(b).get("type") == "tool_result" for b in last["content"]
            ):
                last["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif role == "assistant" and message.get("tool_calls"):
            text = as_text(message.get("content"))
            blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            blocks += [
                {"type": "tool_use", "id": c["id"], "name": c["name"],
                 "input": c.get("arguments") or {}}
                for c in message["tool_calls"]
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append(dict(message))
    return wire


def _anthropic_tool_choice(choice: str) -> dict[str, Any]:
    kinds = {"auto": "auto", "none": "none", "required": "any"}
    if choice in kinds:
        return {"type": kinds[choice]}
    return {"type": "tool", "name": choice}


def _anthropic_body(request: LlmRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": anthropic_messages(request.messages),
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    tools = anthropic_tools(request.tools)
    choice = _anthropic_tool_choice(request.tool_choice) if request.tool_choice else None
    if request.output_schema is not None:
        # The answer is a forced call of one more tool whose input schema is the schema;
        # beside other tools, any tool call is forced and this one ends the conversation.
        tools.append({
            "name": request.schema_name,
            "description": "Give the final answer: its input is the answer.",
            "input_schema": wire_schema(request.output_schema),
        })
        if choice is None or choice["type"] in ("auto", "any"):
            choice = (
                {"type": "any"} if request.tools
                else {"type": "tool", "name": request.schema_name}
            )
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    if request.stream:
        body["stream"] = True
    return body


def _anthropic_read(data: Mapping[str, Any], reply: Reply) -> None:
    blocks = [as_mapping(block) for block in data.get("content") or []]
    reply.text = "".join(b.get("text") or "" for b in blocks if b.get("type") == "text")
    for index, block in enumerate(blocks):
        if block.get("type") == "tool_use":
            given = block.get("input")
            reply.partial_calls[index] = _PartialCall(
                str(block.get("id") or ""), str(block.get("name") or ""),
                json.dumps(given), given if isinstance(given, dict) else None,
            )
    reply.finish_reason = data.get("stop_reason")
    reply.model = data.get("model")
    _anthropic_usage(data, reply)


def _anthropic_usage(data: Mapping[str, Any], reply: Reply) -> None:
    usage = data.get("usage")
    if isinstance(usage, dict):
        _add_anthropic_usage(usage, reply)


def _add_anthropic_usage(usage: Mapping[str, Any], reply: Reply) -> None:
    """Anthropic's counts are cumulative wherever they appear (message_start, each
    message_delta, a whole reply): each is the larger of what was seen and what comes.
    Its `input_tokens` leave out the cached parts, which are counted in `tokens_in` here."""
    read = _count(usage, "cache_read_input_tokens")
    write = _count(usage, "cache_creation_input_tokens")
    reply.cache_read = max(reply.cache_read, read)
    reply.cache_write = max(reply.cache_write, write)
    reply.tokens_in = max(reply.tokens_in, _count(usage, "input_tokens") + read + write)
    reply.tokens_out = max(reply.tokens_out, _count(usage, "output_tokens"))
    reply.billing = "reported"


def _message_start(data: Mapping[str, Any], reply: Reply) -> None:
    message = as_mapping(data.get("message"))
    reply.model = message.get("model")
    usage = message.get("usage")
    if isinstance(usage, dict):
        _add_anthropic_usage(usage, reply)


def _content_block_start(data: Mapping[str, Any], reply: Reply) -> None:
    block = as_mapping(data.get("content_block"))
    if block.get("type") == "tool_use":
        index = data.get("index")
        reply.partial_calls[index if isinstance(index, int) else len(reply.partial_calls)] = (
            _PartialCall(str(block.get("id") or ""), str(block.get("name") or ""))
        )


def _content_block_delta(data: Mapping[str, Any], reply: Reply) -> None:
    delta = as_mapping(data.get("delta"))
    if delta.get("type") == "input_json_delta":
        index = data.get("index")
        partial = reply.partial_calls.get(index) if isinstance(index, int) else None
        if partial is not None:
            partial.arguments += delta.get("partial_json") or ""
        return
    reply.add_text(delta.get("text") or "")


def _message_delta(data: Mapping[str, Any], reply: Reply) -> None:
    reply.finish_reason = as_mapping(data.get("delta")).get("stop_reason") or reply.finish_reason
    usage = data.get("usage")
    if isinstance(usage, dict):
        _add_anthropic_usage(usage, reply)


def _message_stop(data: Mapping[str, Any], reply: Reply) -> None:
    reply.complete = True


_ANTHROPIC_EVENTS: dict[str, Callable[[Mapping[str, Any], Reply], None]] = {
    "message_start": _message_start,
    "content_block_start": _content_block_start,
    "content_block_delta": _content_block_delta,
    "message_delta": _message_delta,
    "message_stop": _message_stop,
}


def _anthropic_chunk(data: Mapping[str, Any], reply: Reply) -> None:
    handler = _ANTHROPIC_EVENTS.get(str(data.get("type")))
    if handler is not None:  # ping and content_block_stop carry nothing we keep
        handler(data, reply)


WIRES: dict[str, Wire] = {
    "openai": Wire(
        "/chat/completions",
        lambda key: {"Authorization": f"Bearer {key}"},
        _openai_body,
        _openai_read,
        _openai_chunk,
        _openai_usage,
    ),
    "anthropic": Wire(
        "/v1/messages", _anthropic_headers, _anthropic_body, _anthropic_read, _anthropic_chunk,
        _anthropic_usage,
    ),
}


def assistant_turn(reply: Reply) -> dict[str, Any]:
    """The reply as a neutral assistant turn, to append to the conversation before the
    tool results that answer its calls."""
    turn: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        turn["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments or {}}
            for c in reply.tool_calls
        ]
    return turn


def tool_result_turn(call: ToolCall, result: Any, *, is_error: bool = False) -> dict[str, Any]:
    """A neutral tool turn answering `call` (a non-string result travels as JSON)."""
    return {
        "role": "tool", "tool_call_id": call.id, "name": call.name,
        "content": as_text(result), "is_error": is_error,
    }


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(values: Any) -> Mapping[str, Any]:
    return as_mapping(values[0]) if isinstance(values, list) and values else {}


def is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "").split(";")[0]
