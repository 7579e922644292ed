"""The `http` kind: one HTTP request per attempt; a JSON response is the step's output.

Error messages name the method, the URL (no query, no userinfo) and the status, never secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from podium.errors import NonRetryable, Retry, StepError
from podium.model.workflow import Action, HttpAction
from podium.redact import safe_url
from podium.steps.base import StepContext, StepHost, StepResult

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_RETRYABLE_STATUSES = frozenset({408, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_MAX_BODY_IN_MESSAGE = 200


class PooledClient:
    """Keeps one pooled `httpx.AsyncClient`, opened on first use: the base of the HTTP kinds."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        # Pooled connections belong to the loop that opened them: a runner reused under a
        # new loop (a second `asyncio.run`) must not hand them out there.
        if self._client is None or self._loop is not loop:
            # Redirects are not followed: they would carry the caller's secret headers along.
            self._client = httpx.AsyncClient(follow_redirects=False)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the pooled connections; the next `run` opens a fresh client."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


class HttpRunner(PooledClient):
    """Sends requests through one pooled `httpx.AsyncClient`, opened on first use."""

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, HttpAction)
        return StepResult(output=response_output(await self.request(action, ctx)))

    async def request(self, action: HttpAction, ctx: StepContext) -> httpx.Response:
        """Sends the action's request; a transport error or an unexpected status raises."""
        target = safe_url(action.url)
        await check_egress(ctx, action.method, action.url)
        with map_httpx_errors(action.method, target, ctx.timeout_s):
            response = await self._send(action, ctx)
        if not _succeeded(action, response.status_code):
            raise status_error(action.method, target, response)
        return response

    async def _send(self, action: HttpAction, ctx: StepContext) -> httpx.Response:
        client = self.client()
        return await client.send(build_request(client, action, ctx))


def build_request(
    client: httpx.AsyncClient,
    action: HttpAction,
    ctx: StepContext,
    extensions: dict[str, Any] | None = None,
) -> httpx.Request:
    """The action's request: its JSON body or query, the Idempotency-Key and traceparent
    headers, the attempt's timeout (httpx `extensions`, e.g. a trace hook, pass through)."""
    json_body, params = _payload(action)
    url = httpx.URL(action.url)
    if params:
        # Merged by hand: httpx's `params=` would replace a query already in the URL.
        url = url.copy_merge_params(params)
    return client.build_request(
        action.method, url, headers=_headers(action, ctx), json=json_body,
        timeout=ctx.timeout_s, extensions=extensions,
    )


async def check_egress(ctx: StepContext, method: str, url: str) -> None:
    """Under a trust policy, refuses (NonRetryable, nothing sent) a URL whose host, or any
    address it resolves to, the egress policy does not allow."""
    if ctx.policy is None:
        return
    problem = await ctx.policy.egress.check_resolved(url)
    if problem is not None:
        raise NonRetryable(f"{method} {safe_url(url)} refused by the egress policy: {problem}")


def traceparent(run_id: str) -> str:
    """A W3C traceparent whose trace id is derived from the run: its steps share one trace.
    Sent while tracing is off (nothing is recorded: the sampled flag is clear)."""
    trace_id = hashlib.sha256(run_id.encode()).hexdigest()[:32]
    return f"00-{trace_id}-{secrets.token_hex(8)}-00"


def trace_headers(ctx: StepContext) -> dict[str, str]:
    """The attempt's trace context for a request it sends (none while tracing is off)."""
    return {} if ctx.traceparent is None else {"traceparent": ctx.traceparent}


def _headers(action: HttpAction, ctx: StepContext) -> httpx.Headers:
    parent = ctx.traceparent or traceparent(ctx.run_id)
    headers = httpx.Headers({"Idempotency-Key": ctx.idempotency_key, "traceparent": parent})
    headers.update(action.headers)  # the author's own headers win, compared case-insensitively
    return headers


def _payload(action: HttpAction) -> tuple[Any, dict[str, Any] | None]:
    """(JSON body, query params): `body` wins; else `input` goes where the method allows it."""
    if action.body is not None:
        return action.body, None
    if not action.input:
        return None, None
    if action.method in _BODY_METHODS:
        return action.input, None
    return None, {key: _param_value(value) for key, value in action.input.items()}


def _param_value(value: Any) -> Any:
    # httpx takes scalars and lists of scalars; nested structures travel as JSON text.
    if isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
    ):
        return json.dumps(value)
    return value


def _succeeded(action: HttpAction, status: int) -> bool:
    if action.expect:
        return status in action.expect
    return 200 <= status < 300


def response_output(response: httpx.Response) -> Any:
    """The parsed JSON of a JSON response; else its status and text."""
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass  # labelled JSON but is not: hand the text over rather than fail a 2xx
    return {"status": response.status_code, "text": response.text}


def status_error(method: str, target: str, response: httpx.Response) -> StepError:
    """The error an unexpected status means: 429/503 wait as told, 5xx/408/429 retry,
    other statuses will not change by asking again."""
    status = response.status_code
    message = f"{method} {target} returned {status}"
    body = response.text.strip()
    if body:
        message += f": {body[:_MAX_BODY_IN_MESSAGE]}"
    if status in _RETRY_AFTER_STATUSES:
        after_s = retry_after_s(response.headers.get("retry-after"))
        if after_s is not None:
            return Retry(message, after=after_s)
    if status >= 500 or status in _RETRYABLE_STATUSES:
        return StepError(message)
    # Other 4xx, and any status outside `expect`, will not change by asking again.
    return NonRetryable(message)


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


@contextmanager
def map_httpx_errors(method: str, target: str, timeout_s: float) -> Iterator[None]:
    """Turn httpx's exceptions into podium's, in one place; messages carry no secrets."""
    try:
        yield
    except httpx.TimeoutException as exc:
        message = f"{method} {target} timed out after {timeout_s:g}s ({_name(exc)})"
        raise StepError(message) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise NonRetryable(f"{method} {target}: invalid URL ({_name(exc)})") from None
    except UnicodeEncodeError:
        raise NonRetryable(f"{method} {target}: header names and values must be ASCII") from None
    except httpx.HTTPError as exc:
        # The exception's own text can quote the full URL, so only its class is named.
        raise StepError(f"{method} {target} failed: {_name(exc)}") from None


def _name(exc: BaseException) -> str:
    return type(exc).__name__
