"""The `llm` kind: one chat completion per attempt, from an OpenAI-compatible API or Anthropic.

Each call is booked in the spend ledger as it ends (`ctx.usage`), even when its attempt fails
or is cancelled; errors never quote the key, the prompt or the headers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

from podium.errors import NonRetryable, PodiumError, Retry, StepError
from podium.model.llm import LlmRequest, as_text, build_request, estimate_usage
from podium.model.pricing import Pricing
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


@dataclass(slots=True)
class Reply:
    """The answer as it accumulates (a stream fills it chunk by chunk)."""

    text: str = ""
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    finish_reason: str | None = None
    complete: bool = False  # a stream saw its end marker
    billing: Billing = "none"


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




async def _check_policy(action: LlmAction, request: LlmRequest, ctx: StepContext) -> None:
    if action.api_key_env is not None:
        raise NonRetryable(
            "api_key_env is not allowed for a definition from the API;"
            " the provider's default key is used"
        )
    await check_egress(ctx, "POST", request.base_url.rstrip("/") + WIRES[request.provider].path)


class LlmRunner(PooledClient):
    """Calls the provider through one pooled `httpx.AsyncClient`; podium's retries apply."""

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, LlmAction)
        request = build_request(action, ctx.pricing)
        if ctx.policy is not None:
            await _check_policy(action, request, ctx)
        key = _api_key(host, action.api_key_env or KEY_ENVS[request.provider])
        if action.cache_s is None:
            return await self._complete(request, key, ctx)
        return await self._cached(request, key, ctx, host, action.cache_s)

    async def _cached(
        self,
        request: LlmRequest,
        key: ApiKey,
        ctx: StepContext,
        host: StepHost,
        ttl_s: float,
    ) -> StepResult:
        cache_key = request.cache_key()
        hit = await host.cache_get(cache_key)
        if isinstance(hit, dict):
            CACHE_STATS["hits"] += 1
            return StepResult(output={**hit, "cached": True}, model=request.model)
        CACHE_STATS["misses"] += 1
        result = await self._complete(request, key, ctx)
        try:
            await host.cache_put(cache_key, result.output, ttl_s)
        except PodiumError as exc:
            # The answer is paid for: losing the cache entry must not fail (and re-run) it.
            ctx.log.warning("llm cache write failed", error=str(exc))
        return replace(result, output={**result.output, "cached": False})

    async def _complete(self, request: LlmRequest, key: ApiKey, ctx: StepContext) -> StepResult:
        reply, booked = await self._booked_call(request, key, ctx)
        output: dict[str, Any] = {
            "text": reply.text,
            "model": reply.model or request.model,
            "usage": {"input": reply.tokens_in, "output": reply.tokens_out},
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
        self, request: LlmRequest, key: ApiKey, ctx: StepContext
    ) -> tuple[Reply, CallUsage | None]:
        """The call, booked in the ledger however it ends, before its reply is judged (a
        reply that fails as JSON was paid for). A cancelled attempt leaves the call running:
        the ledger waits for its usage in the background."""
        reply = Reply()
        trace = trace_headers(ctx)
        call = asyncio.ensure_future(self._call(request, key, ctx.timeout_s, reply, trace))

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
        return call.result(), booked

    async def _call(
        self, request: LlmRequest, key: ApiKey, timeout_s: float, reply: Reply,
        trace: dict[str, str] | None = None,
    ) -> Reply:
        wire = WIRES[request.provider]
        url = request.base_url.rstrip("/") + wire.path
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
                return _read_json(response, wire, target, reply)
            async with self.client().stream("POST", url, **post) as response:
                await _check_status(response, wire, target, key, reply)
                return await _read_stream(response, wire, target, reply)


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
    if reply.billing == "reported":
        tokens_in, tokens_out, estimated = reply.tokens_in, reply.tokens_out, False
        if not (tokens_in or tokens_out):
            return None
    else:
        (tokens_in, tokens_out), estimated = estimate_usage(request), True
    usd = pricing.cost_usd(request.model, tokens_in, tokens_out)
    return CallUsage(request.model, tokens_in, tokens_out, usd, estimated)


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


def _openai_body(request: LlmRequest) -> dict[str, Any]:
    system = [{"role": "system", "content": request.system}] if request.system else []
    body: dict[str, Any] = {
        "model": request.model,
        "messages": system + request.messages,
        "max_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stream:
        # Without include_usage a streamed completion reports no tokens, so no cost.
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def _openai_read(data: Mapping[str, Any], reply: Reply) -> None:
    choice = _first(data.get("choices"))
    reply.text = as_text(_mapping(choice.get("message")).get("content"))
    reply.finish_reason = choice.get("finish_reason")
    reply.model = data.get("model")
    _openai_usage(data, reply)


def _openai_chunk(data: Mapping[str, Any], reply: Reply) -> None:
    reply.model = data.get("model") or reply.model
    for choice in data.get("choices") or []:
        reply.text += _mapping(_mapping(choice).get("delta")).get("content") or ""
        reply.finish_reason = _mapping(choice).get("finish_reason") or reply.finish_reason
    _openai_usage(data, reply)


def _openai_usage(data: Mapping[str, Any], reply: Reply) -> None:
    usage = data.get("usage")
    if isinstance(usage, dict):  # null on every streamed chunk but the last
        reply.tokens_in = int(usage.get("prompt_tokens") or 0)
        reply.tokens_out = int(usage.get("completion_tokens") or 0)
        reply.billing = "reported"


def _anthropic_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}


def _anthropic_body(request: LlmRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": request.messages,
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stream:
        body["stream"] = True
    return body


def _anthropic_read(data: Mapping[str, Any], reply: Reply) -> None:
    blocks = [_mapping(block) for block in data.get("content") or []]
    reply.text = "".join(b.get("text") or "" for b in blocks if b.get("type") == "text")
    reply.finish_reason = data.get("stop_reason")
    reply.model = data.get("model")
    _anthropic_usage(data, reply)


def _anthropic_usage(data: Mapping[str, Any], reply: Reply) -> None:
    usage = data.get("usage")
    if isinstance(usage, dict):
        reply.tokens_in = int(usage.get("input_tokens") or 0)
        reply.tokens_out = int(usage.get("output_tokens") or 0)
        reply.billing = "reported"


def _message_start(data: Mapping[str, Any], reply: Reply) -> None:
    message = _mapping(data.get("message"))
    reply.model = message.get("model")
    reply.tokens_in = int(_mapping(message.get("usage")).get("input_tokens") or 0)


def _content_block_delta(data: Mapping[str, Any], reply: Reply) -> None:
    reply.text += _mapping(data.get("delta")).get("text") or ""


def _message_delta(data: Mapping[str, Any], reply: Reply) -> None:
    reply.finish_reason = _mapping(data.get("delta")).get("stop_reason") or reply.finish_reason
    # Anthropic's output count is cumulative: the last message_delta holds the total.
    usage = data.get("usage")
    if isinstance(usage, dict):
        reply.tokens_out = int(usage.get("output_tokens") or reply.tokens_out)
        reply.billing = "reported"


def _message_stop(data: Mapping[str, Any], reply: Reply) -> None:
    reply.complete = True


_ANTHROPIC_EVENTS: dict[str, Callable[[Mapping[str, Any], Reply], None]] = {
    "message_start": _message_start,
    "content_block_delta": _content_block_delta,
    "message_delta": _message_delta,
    "message_stop": _message_stop,
}


def _anthropic_chunk(data: Mapping[str, Any], reply: Reply) -> None:
    handler = _ANTHROPIC_EVENTS.get(str(data.get("type")))
    if handler is not None:  # ping, content_block_start/stop carry nothing we keep
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(values: Any) -> Mapping[str, Any]:
    return _mapping(values[0]) if isinstance(values, list) and values else {}


# -- reading the response ---------------------------------------------------------------------


def _read_json(response: httpx.Response, wire: Wire, target: str, reply: Reply) -> Reply:
    try:
        data = response.json()
    except ValueError:
        raise StepError(f"POST {target} returned a reply that is not JSON") from None
    wire.read(_mapping(data), reply)
    return reply


async def _read_stream(
    response: httpx.Response, wire: Wire, target: str, reply: Reply
) -> Reply:
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
    return reply


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
