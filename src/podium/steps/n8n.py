"""The `n8n` kind: triggers an n8n workflow through its webhook, over the `http` kind's client.

With `wait`, the "Respond to Webhook" reply is the output (an empty one fails the step);
without, the step ends once n8n has accepted the request: its status line came, or the body
was sent and `accept_timeout` passed without an answer (n8n runs the workflow regardless).
n8n ignores Idempotency-Key, so a call whose request was fully sent is not retried (an
n8n execution may have started) unless the step sets `retry_after_send`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import httpx

from podium.clock import Clock
from podium.errors import NonRetryable, StepError
from podium.model.workflow import Action, HttpAction, N8nAction
from podium.redact import safe_url
from podium.steps.base import StepContext, StepHost, StepResult
from podium.steps.http import (
    HttpRunner,
    build_request,
    check_egress,
    map_httpx_errors,
    response_output,
    status_error,
)

# Refusals that mean n8n did not take the request in (rate limited, not ready): safe to retry.
_NOT_TAKEN = frozenset({429, 503})
Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


class N8nRunner:
    """Shares the http runner's pooled client, error mapping and Idempotency-Key header."""

    def __init__(self, http: HttpRunner) -> None:
        self._http = http

    async def run(self, action: Action, ctx: StepContext, host: StepHost) -> StepResult:
        assert isinstance(action, N8nAction)
        await check_egress(ctx, action.method, action.webhook)
        sent = asyncio.Event()
        if not action.retry_after_send:
            # From the moment the body is sent, even the engine's timeout must not retry.
            sent = _Sent(ctx)
        try:
            output = await self._call(action, ctx, host, sent)
        except StepError as exc:
            if exc.retryable and sent.is_set() and not action.retry_after_send:
                raise NonRetryable(f"{exc}; {_RECEIVED}") from None
            raise
        return StepResult(output=output)

    async def _call(
        self, action: N8nAction, ctx: StepContext, host: StepHost, sent: asyncio.Event
    ) -> Any:
        target = safe_url(action.webhook)
        client = self._http.client()
        request = build_request(client, as_http(action), ctx, {"trace": _on_sent(sent)})
        with map_httpx_errors(action.method, target, ctx.timeout_s):
            if not action.wait:
                answer = await _accepted(client, request, sent, host.clock, action.accept_s)
                if answer is not None:
                    _check(action, target, answer)
                return {"accepted": True, "status": None if answer is None else answer.status_code}
            response = await client.send(request)
        _check(action, target, response)
        output = response_output(response)
        if output == {"status": response.status_code, "text": ""}:
            raise StepError(
                f"n8n webhook {target} answered {response.status_code} with an empty body: the"
                " n8n workflow ended, or failed, before its Respond to Webhook node"
            )
        return output


def _check(action: N8nAction, target: str, response: httpx.Response) -> None:
    if 200 <= response.status_code < 300:
        return
    error = status_error(action.method, target, response)
    if response.status_code in _NOT_TAKEN and not isinstance(error, NonRetryable):
        raise _Untaken(str(error)) from None
    raise error


_RECEIVED = (
    "n8n received the request and may have run the workflow, so it is not retried"
    " (set retry_after_send: true to allow it)"
)


class _Sent(asyncio.Event):
    """Set when the request body is sent; tells the engine no other attempt may follow."""

    def __init__(self, ctx: StepContext) -> None:
        super().__init__()
        self._ctx = ctx

    def set(self) -> None:
        self._ctx.notes.unretryable = _RECEIVED
        super().set()


class _Untaken(StepError):
    """n8n refused the request before running anything: retried even after the send."""


def _on_sent(sent: asyncio.Event) -> Trace:
    """An httpcore trace hook that marks the moment the request body was fully sent."""

    async def trace(name: str, info: dict[str, Any]) -> None:
        if name.endswith("send_request_body.complete"):
            sent.set()

    return trace


async def _accepted(
    client: httpx.AsyncClient,
    request: httpx.Request,
    sent: asyncio.Event,
    clock: Clock,
    accept_s: float,
) -> httpx.Response | None:
    """n8n's answer (its body read only when it is an error), or None when the body was
    sent and `accept_s` passed with no answer yet: the connection is closed then, and n8n
    goes on with the execution."""
    send = asyncio.ensure_future(client.send(request, stream=True))
    try:
        sending = asyncio.ensure_future(sent.wait())
        try:
            await asyncio.wait({send, sending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sending.cancel()
        if not send.done():
            timer = asyncio.ensure_future(clock.sleep(accept_s))
            try:
                await asyncio.wait({send, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                timer.cancel()
        if not send.done():
            return None
        response: httpx.Response = send.result()
        try:
            if not 200 <= response.status_code < 300:
                await response.aread()  # the error's text goes into the message
        finally:
            await response.aclose()
        return response
    finally:
        if not send.done():
            send.cancel()
            with suppress(asyncio.CancelledError, httpx.HTTPError):
                await send


def as_http(action: N8nAction) -> HttpAction:
    """The webhook call as an `http` action: POST sends `input` as JSON, GET as the query."""
    return HttpAction(
        kind="http",
        method=action.method,
        url=action.webhook,
        headers=action.headers,
        # Always a JSON object, maybe empty, so the n8n side can rely on `$json.body`.
        body=action.input if action.method == "POST" else None,
        input=action.input,
    )
