"""Helpers for the limits and admission tests: a local HTTP server that counts the requests
in flight (server-side), a minimal OpenAI-compatible endpoint, and settings builders.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from serverlib import serving

from podium.control.config import ControlConfig
from podium.model.workflow import Workflow
from podium.settings import Settings

OPENAI_KEY = "sk-limits-test"


class CountingServer(ThreadingHTTPServer):
    """`GET /call/<tenant>?delay=S` sleeps S seconds and records (tenant, start, end) by
    `clock` (a test on a FakeClock passes its `monotonic`); `held=<tenant>` makes that
    tenant's requests first wait until the test opens `gate`. The peak number of requests in
    flight at once is kept, per tenant and in all. `POST /v1/chat/completions` answers a
    prompt `usage P C` with that usage."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.clock = clock
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.calls: list[tuple[str, float, float]] = []
        self.starts: list[tuple[str, float]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def entered(self, tenant: str) -> float:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            started = self.clock()
            self.starts.append((tenant, started))
            return started

    def left(self, tenant: str, started: float) -> None:
        with self.lock:
            self.now -= 1
            self.calls.append((tenant, started, self.clock()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a cancelled client is expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        tenant = parts.path.rsplit("/", 1)[-1]
        started = self.server.entered(tenant)
        try:
            if query.get("held") == tenant:
                self.server.gate.wait()
            time.sleep(float(query.get("delay", "0")))
        finally:
            self.server.left(tenant, started)
        self._json({"tenant": tenant})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        started = self.server.entered("llm")
        self.server.left("llm", started)
        # The last message says `usage P C`: the reply reports P prompt, C completion tokens.
        _, prompt, completion = str(body["messages"][-1]["content"]).split()
        usage = {"prompt_tokens": int(prompt), "completion_tokens": int(completion)}
        self._json({
            "id": "chatcmpl-limits", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {**usage, "total_tokens": sum(usage.values())},
        })

    def _json(self, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def counting_server(clock: Callable[[], float] = time.monotonic) -> Iterator[CountingServer]:
    server = CountingServer(clock)
    with serving(server, server.gate.set):  # no request is left waiting on a failed test
        yield server


def settings_with(**control: Any) -> Settings:
    """The test settings (fast polls, 5 s lease) with this control config."""
    return Settings(
        poll_interval_s=0.02, lease_s=5, store_retry_s=0.5, control=ControlConfig(**control)
    )


def llm_workflow(url: str, usage: tuple[int, int], max_tokens: int) -> Workflow:
    """One llm step (agent `writer`) whose reply reports `usage` (prompt, completion)."""
    return Workflow.model_validate({
        "name": "tokens",
        "agents": {"writer": {
            "kind": "llm", "provider": "openai", "model": "gpt-4o-mini", "base_url": f"{url}/v1",
            "prompt": f"usage {usage[0]} {usage[1]}", "max_tokens": max_tokens,
        }},
        "steps": {"write": {"agent": "writer", "retry": {"attempts": 1}}},
    })


def http_workflow(url: str, *, name: str = "limited", **agent: Any) -> Workflow:
    """One http step through the agent `caller` (its extra keys, e.g. `limits`)."""
    return Workflow.model_validate({
        "name": name,
        "inputs": {"tenant": {"type": "string", "default": "t"}},
        "agents": {"caller": {"kind": "http", "method": "GET", "url": url, **agent}},
        "steps": {"call": {"agent": "caller", "retry": {"attempts": 1}}},
    })


def max_in_window(times: list[float], window_s: float) -> int:
    """The most events inside any window of `window_s` seconds."""
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.02)
