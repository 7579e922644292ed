"""The `llm` kind: a chat completion per attempt (or per turn of an agent loop, `converse`),
from an OpenAI-compatible API or Anthropic; the wire formats are in `llm_wire.py`.

Each call is booked in the spend ledger as it ends (`ctx.usage`), even when its attempt fails
or is cancelled; errors never quote the key, the prompt or the headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from podium.errors import NonRetryable, PodiumError, Retry, StepError
from podium.model.llm import (
    LlmRequest,
    build_request,
    estimate_usage,
    needs_wrapping,
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
from podium.steps.llm_wire import (
    WIRES,
    ZERO_USAGE,
    Reply,
    ToolCall,
    Wire,
    as_mapping,
    is_json,
)

KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

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
                    if is_json(response):  # a server that ignores `stream` answers whole
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


# -- reading the response ---------------------------------------------------------------------


def _read_json(response: httpx.Response, wire: Wire, target: str, reply: Reply) -> None:
    try:
        data = response.json()
    except ValueError:
        raise StepError(f"POST {target} returned a reply that is not JSON") from None
    wire.read(as_mapping(data), reply)
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
    data = as_mapping(data)
    error = data.get("error")
    if error:  # an error event mid-stream, e.g. Anthropic's overloaded_error
        raise StepError(f"POST {target}: the stream failed: {as_mapping(error).get('type')}")
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
        wire.usage(as_mapping(response.json()), reply)
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
        data = as_mapping(response.json())
    except ValueError:
        return ""  # a proxy's HTML page says nothing useful
    error = data.get("error")
    if isinstance(error, str):  # Ollama's shape: {"error": "model 'x' not found"}
        error = {"message": error}
    error = as_mapping(error) or data
    parts = [str(p) for p in (error.get("type"), error.get("message")) if p]
    text = Redactor([key]).text(": ".join(parts))
    return f": {' '.join(text.split())[:_MAX_DETAIL]}" if text else ""
