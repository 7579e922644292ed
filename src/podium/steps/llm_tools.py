"""A provider model for agent loops: tool definitions out, tool calls back, on both wires.

`ConverseModel` asks the provider through a `Converse` (one call per turn); `ToolWire` is one.
OpenAI chat completions take `tools` (`type: function`), answer `message.tool_calls` (arguments
as a JSON string) and read results as `role: tool` messages; Anthropic's Messages API takes
`tools` (`input_schema`), answers `tool_use` content blocks and reads `tool_result` blocks in
a user message. The loop keeps one provider-neutral conversation; this module translates it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from podium.errors import StepError
from podium.model.llm import LlmRequest, as_text, estimate_tokens, estimate_usage
from podium.model.pricing import Pricing
from podium.redact import safe_url
from podium.steps.agent import Estimate, ToolCall, ToolDef, Turn
from podium.steps.base import CallUsage, StepContext
from podium.steps.http import PooledClient, map_httpx_errors
from podium.steps.llm import WIRES, ApiKey, _check_status, _sending, usage_of
from podium.steps.llm import Reply as _Reply


class Reply(Protocol):
    """A provider's answer to one call, parsed (what the `llm` kind's reply holds)."""

    text: str
    finish_reason: str | None
    model: str | None
    booked: CallUsage | None  # what the spend ledger booked for the call
    structured: Any
    has_structured: bool

    @property
    def tool_calls(self) -> Sequence[Any]:
        """Each with `id`, `name`, `arguments` (a dict, or None) and `raw_arguments`."""


# One provider call for the conversation so far, booked in the spend ledger as it ends.
Converse = Callable[[list[dict[str, Any]]], Awaitable[Reply]]


class ConverseModel:
    """The step's provider, asked one turn at a time through `converse`."""

    ledgered = True

    def __init__(
        self, converse: Converse, request: LlmRequest, tools: Sequence[ToolDef], pricing: Pricing
    ) -> None:
        self._converse = converse
        self._request = request
        self._pricing = pricing
        self.name = request.model
        self._tool_tokens = estimate_tokens(
            [[t.name, t.description, t.input_schema] for t in tools]
        )

    def estimate(self, messages: Sequence[Mapping[str, Any]]) -> Estimate:
        conversation = [dict(m) for m in messages]
        tokens_in, tokens_out = estimate_usage(replace(self._request, messages=conversation))
        tokens_in += self._tool_tokens
        return Estimate(tokens_in, tokens_out, self._pricing.cost_usd(self.name, tokens_in,
                                                                       tokens_out))

    async def reply(self, messages: list[dict[str, Any]], turn: int) -> Turn:
        reply = await self._converse(messages)
        booked = reply.booked
        return Turn(
            text=reply.text,
            calls=tuple(
                ToolCall(c.id, c.name, c.arguments, c.raw_arguments) for c in reply.tool_calls
            ),
            finish_reason=reply.finish_reason,
            model=reply.model or self.name,
            tokens_in=booked.tokens_in if booked else 0,
            tokens_out=booked.tokens_out if booked else 0,
            usd=booked.usd if booked else 0.0,
            structured=reply.structured,
            has_structured=reply.has_structured,
        )


@dataclass(slots=True)
class WireReply:
    """A reply read by `ToolWire` (a `Reply`)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str | None = None
    booked: CallUsage | None = None
    structured: Any = None
    has_structured: bool = False


class ToolWire:
    """`Converse` over both wires, tools included, each reply read whole; each call is booked
    in `ctx.usage` as it ends (a cancelled turn's call is settled in the background)."""

    def __init__(
        self,
        client: PooledClient,
        request: LlmRequest,
        tools: Sequence[ToolDef],
        key: ApiKey,
        ctx: StepContext,
    ) -> None:
        self._client = client
        self._request = replace(request, stream=False)
        self._tools = tools
        self._key = key
        self._ctx = ctx

    async def __call__(self, messages: list[dict[str, Any]]) -> WireReply:
        request = replace(self._request, messages=messages)
        reply = _Reply()
        ctx = self._ctx
        call = asyncio.ensure_future(self._post(request, reply))

        def usage() -> CallUsage | None:
            return usage_of(reply, request, ctx.pricing)

        try:
            await asyncio.wait({call})  # a cancel of this task leaves `call` running
        except asyncio.CancelledError:
            ctx.usage.settle_later(call, usage, ctx.timeout_s)
            raise
        booked = usage()
        if booked is not None:
            ctx.usage.report(booked)
        text, calls = call.result()
        return WireReply(text, calls, reply.finish_reason, reply.model, booked)

    async def _post(self, request: LlmRequest, reply: _Reply) -> tuple[str, tuple[ToolCall, ...]]:
        provider = request.provider
        wire = WIRES[provider]
        url = request.base_url.rstrip("/") + wire.path
        target = safe_url(url)
        timeout_s = self._ctx.timeout_s
        body = _BODIES[provider](request, self._tools)
        with map_httpx_errors("POST", target, timeout_s), _sending(reply):
            response = await self._client.client().post(
                url, headers=wire.headers(self._key.value), json=body, timeout=timeout_s
            )
            await _check_status(response, wire, target, self._key, reply)
            try:
                data = response.json()
            except ValueError:
                raise StepError(f"POST {target} returned a reply that is not JSON") from None
        data = _mapping(data)
        wire.usage(data, reply)
        reply.model = data.get("model")
        return _READERS[provider](data, reply)


# -- OpenAI chat completions -------------------------------------------------------------------


def _openai_body(request: LlmRequest, tools: Sequence[ToolDef]) -> dict[str, Any]:
    body = WIRES["openai"].body(replace(request, messages=[]))
    body["messages"] = body["messages"] + [_openai_message(m) for m in request.messages]
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema,
                },
            }
            for t in tools
        ]
    return body


def _openai_message(message: Mapping[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.get("tool_call_id"),
            "content": as_text(message.get("content")),
        }
    if role == "assistant" and message.get("tool_calls"):
        return {
            "role": "assistant",
            "content": message.get("content") or None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                }
                for c in message["tool_calls"]
            ],
        }
    return dict(message)


def _openai_read(data: Mapping[str, Any], reply: _Reply) -> tuple[str, tuple[ToolCall, ...]]:
    choices = data.get("choices")
    choice = _mapping(choices[0] if isinstance(choices, list) and choices else None)
    message = _mapping(choice.get("message"))
    reply.finish_reason = choice.get("finish_reason")
    calls = []
    for raw in message.get("tool_calls") or []:
        raw = _mapping(raw)
        function = _mapping(raw.get("function"))
        text = str(function.get("arguments") or "")
        calls.append(
            ToolCall(str(raw.get("id") or ""), str(function.get("name") or ""), _object(text), text)
        )
    return as_text(message.get("content")), tuple(calls)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- Anthropic messages ------------------------------------------------------------------------


def _anthropic_body(request: LlmRequest, tools: Sequence[ToolDef]) -> dict[str, Any]:
    body = WIRES["anthropic"].body(replace(request, messages=[]))
    body["messages"] = _anthropic_messages(request.messages)
    if tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in tools
        ]
    return body


def _anthropic_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool results go back as `tool_result` blocks of one user message per turn."""
    out: list[dict[str, Any]] = []
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
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif role == "assistant" and message.get("tool_calls"):
            text = as_text(message.get("content"))
            blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            blocks += [
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
                for c in message["tool_calls"]
            ]
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append(dict(message))
    return out


def _anthropic_read(data: Mapping[str, Any], reply: _Reply) -> tuple[str, tuple[ToolCall, ...]]:
    reply.finish_reason = data.get("stop_reason")
    blocks = [b for b in data.get("content") or [] if isinstance(b, dict)]
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    calls = tuple(
        ToolCall(
            str(b.get("id") or ""),
            str(b.get("name") or ""),
            b.get("input") if isinstance(b.get("input"), dict) else None,
            json.dumps(b.get("input")),
        )
        for b in blocks
        if b.get("type") == "tool_use"
    )
    return text, calls


_BODIES = {"openai": _openai_body, "anthropic": _anthropic_body}
_READERS = {"openai": _openai_read, "anthropic": _anthropic_read}
