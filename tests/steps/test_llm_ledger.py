"""Every paid llm call is in the spend ledger: failed and retried attempts, cancelled calls.

A scripted provider counts the tokens it billed; `podium spend` totals must equal them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from clocklib import eventually
from fake_providers import OPENAI_KEY
from serverlib import serving

from podium.bus import Bus
from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.model.llm import build_request, estimate_usage
from podium.model.pricing import DEFAULT_PRICING
from podium.model.workflow import LlmAction, Workflow
from podium.settings import Settings
from podium.store import Store
from podium.store.spend import EPSILON_USD, SpendGroup

MODEL = "gpt-4o-mini"
WAIT_S = 30.0  # a bound on waiting for a condition; no assertion is about time
# One scripted reply per request: (status, content or None, tokens in, tokens out). Status 0:
# hold the reply until released; -1: never answer (the connection closes when released).
Script = tuple[int, str | None, int, int]


class ScriptedProvider(ThreadingHTTPServer):
    """An OpenAI chat-completions stand-in that replies as scripted and counts what it billed."""

    daemon_threads = True

    def __init__(self, script: list[Script]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.billed_in = self.billed_out = self.requests = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def next(self) -> Script:
        with self.lock:
            self.requests += 1
            return self.script.pop(0)

    def bill(self, tokens_in: int, tokens_out: int) -> None:
        with self.lock:
            self.billed_in += tokens_in
            self.billed_out += tokens_out

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up is expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedProvider

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, content, tokens_in, tokens_out = self.server.next()
        if status <= 0:
            self.server.release.wait(WAIT_S)
            if status < 0:
                self.close_connection = True
                return
            status = 200
        usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}
        body: dict[str, Any] = {"model": MODEL, "usage": usage}
        if status == 200:
            message = {"role": "assistant", "content": content}
            body["choices"] = [{"message": message, "finish_reason": "stop"}]
        else:
            body["error"] = {"type": "server_error", "message": "overloaded"}
        self.server.bill(tokens_in, tokens_out)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def provider(script: list[Script]) -> Iterator[ScriptedProvider]:
    server = ScriptedProvider(script)
    with serving(server, server.release.set):
        yield server


def _workflow(server: ScriptedProvider, **step: Any) -> Workflow:
    action = {"kind": "llm", "model": MODEL, "base_url": server.url, "prompt": "say: hi"}
    return Workflow.model_validate({"name": "paid", "steps": {"ask": {**action, **step}}})


def _engine(store: Store, bus: Bus, clock: FakeClock | None = None) -> Engine:
    settings = Settings(poll_interval_s=0.02, lease_s=30, store_retry_s=0.5)
    return Engine(store, bus, settings, secrets={"OPENAI_API_KEY": OPENAI_KEY}, clock=clock)


async def _total(store: Store, calls: int) -> SpendGroup:
    """The ledger's total once it holds `calls` rows (rows booked after the run are awaited)."""

    async def booked() -> bool:
        groups = await store.spend_report("workflow", 0.0)
        return bool(groups) and groups[0].calls >= calls

    await eventually(booked, timeout_s=WAIT_S)
    (group,) = await store.spend_report("workflow", 0.0)
    return group


async def _requested(server: ScriptedProvider) -> None:
    await eventually(lambda: bool(server.requests), timeout_s=WAIT_S)


def usd(amount: float) -> Any:
    """An amount as the ledger sums it: floats added in another order differ in the last bit."""
    return pytest.approx(amount, abs=EPSILON_USD)


def _billed_usd(server: ScriptedProvider) -> float:
    return DEFAULT_PRICING.cost_usd(MODEL, server.billed_in, server.billed_out)


async def test_failed_and_retried_attempts_are_booked_as_billed(store: Store, bus: Bus) -> None:
    script = [(500, None, 10, 5), (200, "not json at all", 12, 7), (200, '{"ok": true}', 11, 3)]
    retry = {"attempts": 3, "backoff": "1ms", "jitter": 0}
    with provider(script) as server:
        async with _engine(store, bus) as engine:
            summary = await engine.run(_workflow(server, json_output=True, retry=retry))
    assert summary.status == "succeeded"
    total = await _total(store, 3)
    assert (total.tokens_in, total.tokens_out) == (server.billed_in, server.billed_out) == (33, 15)
    assert total.usd == usd(_billed_usd(server)) and total.estimated_usd == 0
    # The step's own cost is its successful call's; the failed calls are in the ledger only.
    (step,) = await store.get_steps(summary.run_id)
    assert step.cost_usd == usd(DEFAULT_PRICING.cost_usd(MODEL, 11, 3))


async def test_a_reply_that_comes_after_a_cancel_is_booked(store: Store, bus: Bus) -> None:
    with provider([(0, "late", 20, 9)]) as server:
        async with _engine(store, bus) as engine:
            run_id = await engine.submit(_workflow(server))
            await _requested(server)
            await engine.cancel(run_id)
            await engine.wait_done(run_id)
            server.release.set()  # the reply comes after the run ended
            total = await _total(store, 1)
    assert (await store.get_run(run_id)).status == "cancelled"  # type: ignore[union-attr]
    assert (total.tokens_in, total.tokens_out) == (server.billed_in, server.billed_out) == (20, 9)
    assert total.usd == usd(_billed_usd(server)) and total.estimated_usd == 0


async def test_a_call_that_never_answers_is_booked_at_its_estimate(
    clocked_store: Store, bus: Bus, clock: FakeClock
) -> None:
    with provider([(-1, None, 0, 0)]) as server:
        workflow = _workflow(server, timeout="10s")
        async with _engine(clocked_store, bus, clock) as engine:
            run_id = await engine.submit(workflow)
            await _requested(server)
            await engine.cancel(run_id)
            await engine.wait_done(run_id)
            clock.advance(10)  # the reply is waited for as long as the step's timeout, no more
            total = await _total(clocked_store, 1)
    assert server.billed_in == server.billed_out == 0
    action = workflow.steps["ask"].action
    assert isinstance(action, LlmAction)
    tokens = estimate_usage(build_request(action, DEFAULT_PRICING))
    assert (total.tokens_in, total.tokens_out) == tokens
    assert total.usd == total.estimated_usd == usd(DEFAULT_PRICING.cost_usd(MODEL, *tokens))


async def test_a_timed_out_call_is_booked_at_its_estimate(store: Store, bus: Bus) -> None:
    with provider([(-1, None, 0, 0)]) as server:
        workflow = _workflow(server, timeout="100ms", retry={"attempts": 1})
        async with _engine(store, bus) as engine:
            summary = await engine.run(workflow)
            total = await _total(store, 1)
    assert summary.status == "failed"
    action = workflow.steps["ask"].action
    assert isinstance(action, LlmAction)
    tokens = estimate_usage(build_request(action, DEFAULT_PRICING))
    assert (total.tokens_in, total.tokens_out, total.calls) == (*tokens, 1)
    assert total.usd == total.estimated_usd == usd(DEFAULT_PRICING.cost_usd(MODEL, *tokens))
