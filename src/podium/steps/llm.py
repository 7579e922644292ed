"""The `llm` kind: one chat completion per attempt, from an OpenAI-compatible API or Anthropic.

Each call is booked in the spend ledger as it ends (`ctx.usage`), even when its attempt fails
or is cancelled; errors never quote the key, the prompt or the headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

from podium.errors import NonRetryable, PodiumError, Retry, StepError
from podium.model.llm import (
    LlmRequest,
    ToolSpec,
    as_text,
    build_request,
    estimate_usage,
    is_reasoning_model,
    needs_wrapping,
    strict_compatible,
    wire_schema,
)
from podium.model.pricing import Pricing
from podium.model.schema import schema_problem
from podium.model.workflow import Action, LlmAction
from podium.redact import Redactor, safe_url
from podium.steps.base import CallUsage, StepContext, StepHost, StepResult
from podium.steps.http import (
    PooledClient,
    check_egress,
    map_httpx_errors,
    retry_after_s,
    trace_headers,
)

KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
ANTHROPIC_VERSION = "2023-06-01"

# Response cache counters for this process (metrics and tests read them).
CACHE_STATS: dict[str, int] = {"hits": 0, "misses": 0}

# As the OpenAI and Anthropic SDKs do: a timeout, a lock conflict and a rate limit pass.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503, 529})
_AUTH_STATUSES = frozenset({401, 403})
_MAX_DETAIL = 200
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```$", re.DOTALL)
# httpx errors meaning the request never reached the provider: nothing to bill.
_NOT_SENT = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError,
    httpx.WriteTimeout, httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeEncodeError,
)
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


@dataclass(frozen=True, slots=True)
class ApiKey:
    """The key and the variable it came from (errors name the variable, never the value)."""

    env: str
    value: str = field(repr=False)


def _api_key(host: StepHost, env: str) -> ApiKey:
    value = host.secret(env)
    if not value:
        raise NonRetryable(f"environment variable {env} is not set")
    return ApiKey(env, value)


def endpoint(request: LlmRequest) -> str:
    return request.base_url.rstrip("/") + WIRES[request.provider].path


def refuse_key_env(action: LlmAction) -> None:
    """Under a trust policy the provider's default key is used, never one the author names."""
    if action.api_key_env is not None:
        raise NonRetryable(
            "api_key_env is not allowed for a definition from the API;"
            " the provider's default key is used"
        )


class LlmRunner(PooledClient):
    """Calls the provider through one pooled `httpx.AsyncClient`; podium's retries apply."""

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, LlmAction)
        request = build_request(action, ctx.pricing)
        if ctx.policy is not None:
            refuse_key_env(action)
        if action.cache_s is None:
            return await self._complete(request, action.api_key_env, ctx, host)
        return await self._cached(request, action.api_key_env, ctx, host, action.cache_s)

    async def converse(
        self,
        request: LlmRequest,
        ctx: StepContext,
        host: StepHost,
        *,
        key_env: str | None = None,
    ) -> Reply:
        """One provider call for `request` (its conversation, tools, schema), streamed or
        not: booked in `ctx.usage` however it ends, its text deltas handed to
        `host.emit_delta` as they come. Returns the parsed reply: text, tool calls, usage
        (`reply.usage`, cost in `reply.booked`), finish reason, the structured answer."""
        if ctx.policy is not None:
            await check_egress(ctx, "POST", endpoint(request))
        key = _api_key(host, key_env or KEY_ENVS[request.provider])
        reply = Reply()
        if request.stream:
            reply.on_text = lambda piece: host.emit_delta(ctx, piece)
        await self._booked_call(request, key, ctx, reply)
        return reply

    async def _cached(
        self,
        request: LlmRequest,
        key_env: str | None,
        ctx: StepContext,
        host: StepHost,
        ttl_s: float,
    ) -> StepResult:
        cache_key = request.cache_key()
        hit = await host.cache_get(cache_key)
        if hit is not None and (request.output_schema is not None or isinstance(hit, dict)):
            CACHE_STATS["hits"] += 1
            return StepResult(output=cache_hit_output(hit, request), model=request.model)
        CACHE_STATS["misses"] += 1
        result = await self._complete(request, key_env, ctx, host)
        try:
            await host.cache_put(cache_key, result.output, ttl_s)
        except PodiumError as exc:
            # The answer is paid for: losing the cache entry must not fail (and re-run) it.
            ctx.log.warning("llm cache write failed", error=str(exc))
        if request.output_schema is not None:
            return result  # the output is the answer itself, no field is added to it
        return replace(result, output={**result.output, "cached": False})

    async def _complete(
        self, request: LlmRequest, key_env: str | None, ctx: StepContext, host: StepHost
    ) -> StepResult:
        if request.output_schema is not None:
            request = await with_feedback(request, ctx, host)
        reply = await self.converse(request, ctx, host, key_env=key_env)
        booked = reply.booked
        if request.output_schema is not None:
            output: Any = await checked_structured(reply, request, ctx, host)
        else:
            output = {
                "text": reply.text,
                "model": reply.model or request.model,
                "usage": reply.usage,
                "finish_reason": reply.finish_reason,
            }
            if request.json_output:
                output["json"] = parse_json_reply(reply.text)
        return StepResult(
            output=output,
            tokens_in=booked.tokens_in if booked else 0,
            tokens_out=booked.tokens_out if booked else 0,
            cost_usd=booked.usd if booked else 0.0,
            model=request.model,
            ledgered=True,
            response_model=reply.model,
            finish_reason=reply.finish_reason,
        )

    async def _booked_call(
        self, request: LlmRequest, key: ApiKey, ctx: StepContext, reply: Reply
    ) -> None:
        """The call, booked in the ledger however it ends, before its reply is judged (a
        reply that fails as JSON was paid for). A cancelled attempt leaves the call running:
        the ledger waits for its usage in the background."""
        trace = trace_headers(ctx)
        call = asyncio.ensure_future(self._call(request, key, ctx.timeout_s, reply, trace))

        def usage() -> CallUsage | None:
            return usage_of(reply, request, ctx.pricing)

        try:
            await asyncio.wait({call})  # a cancel of this task leaves `call` running
        except asyncio.CancelledError:
            reply.on_text = None  # nobody listens to an abandoned call
            ctx.usage.settle_later(call, usage, ctx.timeout_s)
            raise
        reply.booked = usage()
        if reply.booked is not None:
            ctx.usage.report(reply.booked)
        call.result()  # raises the call's error, once it is booked

    async def _call(
        self, request: LlmRequest, key: ApiKey, timeout_s: float, reply: Reply,
        trace: dict[str, str] | None = None,
    ) -> Reply:
        wire = WIRES[request.provider]
        url = endpoint(request)
        target = safe_url(url)
        post: dict[str, Any] = {
            "headers": {**wire.headers(key.value), **(trace or {})},
            "json": wire.body(request),
            "timeout": timeout_s,
        }
        with map_httpx_errors("POST", target, timeout_s), _sending(reply):
            if not request.stream:
                response = await self.client().post(url, **post)
                await _check_status(response, wire, target, key, reply)
                _read_json(response, wire, target, reply)
            else:
                async with self.client().stream("POST", url, **post) as response:
                    await _check_status(response, wire, target, key, reply)
                    if _is_json(response):  # a server that ignores `stream` answers whole
                        await response.aread()
                        _read_json(response, wire, target, reply)
                    else:
                        await _read_stream(response, wire, target, reply)
        _finish_calls(reply, request)
        return reply


def cache_hit_output(hit: Any, request: LlmRequest) -> Any:
    """A cached answer as a step output: a structured one as it was; a text one marked
    cached and with no usage, as the ledger books nothing for it."""
    if request.output_schema is not None:
        return hit
    return {**hit, "usage": dict(ZERO_USAGE), "cached": True}


@contextmanager
def _sending(reply: Reply) -> Iterator[None]:
    """From here the provider may bill the call, unless httpx says it never left."""
    reply.billing = "unknown"
    try:
        yield
    except _NOT_SENT:
        reply.billing = "none"
        raise


def usage_of(reply: Reply, request: LlmRequest, pricing: Pricing) -> CallUsage | None:
    """What a call is booked at: its reported usage, its estimate (marked) when it was sent
    and no usage came back, or nothing."""
    if reply.billing == "none":
        return None
    cache_read = cache_write = 0
    if reply.billing == "reported":
        tokens_in, tokens_out, estimated = reply.tokens_in, reply.tokens_out, False
        cache_read, cache_write = reply.cache_read, reply.cache_write
        if not (tokens_in or tokens_out):
            return None
    else:
        (tokens_in, tokens_out), estimated = estimate_usage(request), True
    usd = pricing.cost_usd(
        request.model, tokens_in, tokens_out, cache_read=cache_read, cache_write=cache_write
    )
    return CallUsage(request.model, tokens_in, tokens_out, usd, estimated)


# -- structured output ------------------------------------------------------------------------

_FEEDBACK_TTL_S = 3600.0
_MAX_FEEDBACK_REPLY = 4000


def _feedback_key(ctx: StepContext) -> str:
    return "llm-feedback/" + hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()


async def with_feedback(request: LlmRequest, ctx: StepContext, host: StepHost) -> LlmRequest:
    """The request with the previous attempt's invalid reply and why it was refused appended
    (only the latest one: the conversation grows by two turns at most)."""
    if ctx.attempt <= 1:
        return request
    try:
        turns = await host.cache_get(_feedback_key(ctx))
    except PodiumError:
        return request  # feedback is a help, not a requirement
    if not isinstance(turns, list):
        return request
    return replace(request, messages=[*request.messages, *turns])


async def checked_structured(
    reply: Reply, request: LlmRequest, ctx: StepContext, host: StepHost
) -> Any:
    """The structured answer, valid against the schema; else a retryable error, whose reason
    the next attempt tells the model."""
    assert request.output_schema is not None
    if reply.has_structured:
        problem = schema_problem(reply.structured, request.output_schema)
        answer = json.dumps(reply.structured, ensure_ascii=False)
    else:
        problem, answer = "the reply is not a JSON value", reply.text
    if problem is None:
        return reply.structured
    turns = [
        {"role": "assistant", "content": answer[:_MAX_FEEDBACK_REPLY] or "(empty)"},
        {"role": "user", "content": (
            f"That reply does not match the required JSON Schema: {problem}."
            " Answer again with a JSON value that matches it."
        )},
    ]
    try:
        await host.cache_put(_feedback_key(ctx), turns, _FEEDBACK_TTL_S)
    except PodiumError as exc:
        ctx.log.warning("llm schema feedback not kept", error=str(exc))
    # Retryable: another sample of the model, told what was wrong, may well be valid.
    raise StepError(f"the reply does not match output_schema: {problem}")


def _set_structured(reply: Reply, value: Any, request: LlmRequest) -> None:
    wrapped = request.output_schema is not None and needs_wrapping(request.output_schema)
    if wrapped:
        if not isinstance(value, dict) or "value" not in value:
            reply.structured, reply.has_structured = value, True
            return
        value = value["value"]
    reply.structured, reply.has_structured = value, True


def _finish_calls(reply: Reply, request: LlmRequest) -> None:
    """Tool calls from their streamed pieces; the answer tool's call (Anthropic) or the JSON
    text (OpenAI) becomes the structured answer."""
    for index in sorted(reply.partial_calls):
        partial = reply.partial_calls[index]
        arguments, raw = partial.done, partial.arguments
        if arguments is None:
            arguments = _json_object(raw or "{}")
        if request.output_schema is not None and partial.name == request.schema_name:
            _set_structured(reply, arguments if arguments is not None else raw, request)
            continue
        reply.tool_calls.append(ToolCall(partial.id, partial.name, arguments, raw))
    reply.partial_calls.clear()
    if request.output_schema is not None and not reply.has_structured and not reply.tool_calls:
        with suppress(StepError):
            _set_structured(reply, parse_json_reply(reply.text), request)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- the request ------------------------------------------------------------------------------


def parse_json_reply(text: str) -> Any:
    """The reply as JSON; a ```json fence around it, as models like to add, is removed."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        return json.loads(fenced.group(1) if fenced else stripped)
    except json.JSONDecodeError as exc:
        # Retryable: another sample of the model may well be valid JSON.
        raise StepError(f"the reply is not valid JSON ({exc.msg} at char {exc.pos})") from None


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
    message = _mapping(choice.get("message"))
    reply.text = as_text(message.get("content"))
    for index, call in enumerate(message.get("tool_calls") or []):
        _openai_call_piece(reply, {**_mapping(call), "index": index})
    reply.finish_reason = choice.get("finish_reason")
    reply.model = data.get("model")
    _openai_usage(data, reply)


def _openai_call_piece(reply: Reply, piece: Mapping[str, Any]) -> None:
    index = piece.get("index")
    partial = reply.partial_calls.setdefault(index if isinstance(index, int) else 0, _PartialCall())
    function = _mapping(piece.get("function"))
    partial.id = piece.get("id") or partial.id
    partial.name = function.get("name") or partial.name
    partial.arguments += function.get("arguments") or ""


def _openai_chunk(data: Mapping[str, Any], reply: Reply) -> None:
    reply.model = data.get("model") or reply.model
    for choice in data.get("choices") or []:
        delta = _mapping(_mapping(choice).get("delta"))
        reply.add_text(delta.get("content") or "")
        for piece in delta.get("tool_calls") or []:
            _openai_call_piece(reply, _mapping(piece))
        reply.finish_reason = _mapping(choice).get("finish_reason") or reply.finish_reason
    _openai_usage(data, reply)


def _openai_usage(data: Mapping[str, Any], reply: Reply) -> None:
    usage = data.get("usage")
    if isinstance(usage, dict):  # null on every streamed chunk but the last
        reply.tokens_in = _count(usage, "prompt_tokens")
        reply.tokens_out = _count(usage, "completion_tokens")
        # Cached prompt tokens are part of prompt_tokens, billed at the cached price.
        reply.cache_read = _count(_mapping(usage.get("prompt_tokens_details")), "cached_tokens")
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
                _mapping(b).get("type") == "tool_result" for b in last["content"]
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
    blocks = [_mapping(block) for block in data.get("content") or []]
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
    message = _mapping(data.get("message"))
    reply.model = message.get("model")
    usage = message.get("usage")
    if isinstance(usage, dict):
        _add_anthropic_usage(usage, reply)


def _content_block_start(data: Mapping[str, Any], reply: Reply) -> None:
    block = _mapping(data.get("content_block"))
    if block.get("type") == "tool_use":
        index = data.get("index")
        reply.partial_calls[index if isinstance(index, int) else len(reply.partial_calls)] = (
            _PartialCall(str(block.get("id") or ""), str(block.get("name") or ""))
        )


def _content_block_delta(data: Mapping[str, Any], reply: Reply) -> None:
    delta = _mapping(data.get("delta"))
    if delta.get("type") == "input_json_delta":
        index = data.get("index")
        partial = reply.partial_calls.get(index) if isinstance(index, int) else None
        if partial is not None:
            partial.arguments += delta.get("partial_json") or ""
        return
    reply.add_text(delta.get("text") or "")


def _message_delta(data: Mapping[str, Any], reply: Reply) -> None:
    reply.finish_reason = _mapping(data.get("delta")).get("stop_reason") or reply.finish_reason
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(values: Any) -> Mapping[str, Any]:
    return _mapping(values[0]) if isinstance(values, list) and values else {}


def _is_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "").split(";")[0]


# -- reading the response ---------------------------------------------------------------------


def _read_json(response: httpx.Response, wire: Wire, target: str, reply: Reply) -> None:
    try:
        data = response.json()
    except ValueError:
        raise StepError(f"POST {target} returned a reply that is not JSON") from None
    wire.read(_mapping(data), reply)
    if reply.on_text is not None and reply.text:
        reply.on_text(reply.text)  # a whole answer to a streamed request: one delta


async def _read_stream(
    response: httpx.Response, wire: Wire, target: str, reply: Reply
) -> None:
    """Server-sent events: only `data:` lines matter (both providers repeat the event name in
    the JSON `type`); OpenAI ends with `data: [DONE]`, Anthropic with `message_stop`."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # `event:` names, `:` keep-alive comments, blank separators
        payload = line[5:].strip()
        if payload == "[DONE]":
            reply.complete = True
            break
        wire.on_chunk(_chunk(payload, target), reply)
    if not reply.complete:
        raise StepError(f"POST {target}: the stream ended before the reply was complete")


def _chunk(payload: str, target: str) -> Mapping[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        raise StepError(f"POST {target}: a stream event is not JSON") from None
    data = _mapping(data)
    error = data.get("error")
    if error:  # an error event mid-stream, e.g. Anthropic's overloaded_error
        raise StepError(f"POST {target}: the stream failed: {_mapping(error).get('type')}")
    return data


async def _check_status(
    response: httpx.Response, wire: Wire, target: str, key: ApiKey, reply: Reply
) -> None:
    if response.status_code < 400:
        return
    await response.aread()  # a streamed response has not read its error body yet
    # A refusal is billed only if its body says what it used.
    reply.billing = "none"
    with suppress(ValueError):
        wire.usage(_mapping(response.json()), reply)
    raise status_error(response, target, key)


def status_error(response: httpx.Response, target: str, key: ApiKey) -> StepError:
    """429 waits as told; 5xx, 408, 409 retry; other 4xx will not change by asking again."""
    status = response.status_code
    message = f"POST {target} returned {status}"
    if status in _AUTH_STATUSES:
        # The provider's text may echo part of the key: name where it came from instead.
        return NonRetryable(f"{message}: the API key in {key.env} was refused")
    message += _detail(response, key.value)
    after_s = _retry_after(response.headers) if status in _RETRY_AFTER_STATUSES else None
    if after_s is not None:
        return Retry(message, after=after_s)
    if status >= 500 or status in _RETRYABLE_STATUSES:
        return StepError(message)
    return NonRetryable(message)


def _retry_after(headers: httpx.Headers) -> float | None:
    millis = headers.get("retry-after-ms")  # OpenAI's finer-grained variant
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    return retry_after_s(headers.get("retry-after"))


def _detail(response: httpx.Response, key: str) -> str:
    """`: type: message` from the provider's error body (OpenAI, Anthropic and vLLM shapes)."""
    try:
        data = _mapping(response.json())
    except ValueError:
        return ""  # a proxy's HTML page says nothing useful
    error = data.get("error")
    if isinstance(error, str):  # Ollama's shape: {"error": "model 'x' not found"}
        error = {"message": error}
    error = _mapping(error) or data
    parts = [str(p) for p in (error.get("type"), error.get("message")) if p]
    text = Redactor([key]).text(": ".join(parts))
    return f": {' '.join(text.split())[:_MAX_DETAIL]}" if text else ""
