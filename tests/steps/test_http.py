"""The `http` step kind against a real local HTTP server (no mocking of httpx)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from podium.errors import NonRetryable, Retry, StepError
from podium.model.workflow import HttpAction
from podium.steps.base import StepContext, StepResult
from podium.steps.http import HttpRunner, retry_after_s

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


class _Handler(BaseHTTPRequestHandler):
    """Routes: /echo (JSON echo of the request), /text, /status/<code>, /ratelimited, /slow."""

    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.requests.append({"headers": dict(self.headers.items()), "path": parts.path})
        if parts.path == "/echo":
            self._send(200, "application/json", json.dumps({
                "method": self.command,
                "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                "body": json.loads(raw) if raw else None,
            }))
        elif parts.path == "/text":
            self._send(200, "text/plain", "hello")
        elif parts.path.startswith("/status/"):
            self._send(int(parts.path.rsplit("/", 1)[1]), "text/plain", "upstream says no")
        elif parts.path == "/ratelimited":
            self._send(429, "text/plain", "slow down", {"Retry-After": "2"})
        elif parts.path == "/slow":
            time.sleep(0.5)
            self._send(200, "text/plain", "late")

    def _send(self, status: int, content_type: str, text: str,
              extra: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout test) is expected, not a failure


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@pytest.fixture
def base_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


@pytest.fixture
async def runner() -> AsyncIterator[HttpRunner]:
    http = HttpRunner()
    try:
        yield http
    finally:
        await http.aclose()


def _ctx(run_id: str = "run-1", step_id: str = "call", timeout_s: float = 5) -> StepContext:
    return StepContext(
        run_id=run_id, step_id=step_id, attempt=1, index=None, item=None,
        idempotency_key=f"{run_id}/{step_id}", inputs={}, workflow="w", timeout_s=timeout_s,
    )


async def _run(
    runner: HttpRunner, spec: dict[str, Any], ctx: StepContext | None = None
) -> StepResult:
    action = HttpAction.model_validate({"kind": "http", **spec})
    return await runner.run(action, ctx or _ctx(), None)  # type: ignore[arg-type]


async def test_a_json_post_body_arrives_and_the_json_response_is_the_output(
    runner: HttpRunner, base_url: str
) -> None:
    spec = {"method": "POST", "url": f"{base_url}/echo", "body": {"a": [1, 2]}}
    result = await _run(runner, spec)
    assert result.output == {"method": "POST", "query": {}, "body": {"a": [1, 2]}}


async def test_input_is_the_json_body_of_a_post_without_body(
    runner: HttpRunner, base_url: str
) -> None:
    result = await _run(runner, {"method": "POST", "url": f"{base_url}/echo", "input": {"n": 3}})
    assert result.output["body"] == {"n": 3}


async def test_get_input_becomes_query_params(runner: HttpRunner, base_url: str) -> None:
    result = await _run(runner, {"url": f"{base_url}/echo?x=1", "input": {"q": "cats", "n": 2}})
    assert result.output["method"] == "GET"
    assert result.output["query"] == {"x": "1", "q": "cats", "n": "2"}  # merged with the URL's
    assert result.output["body"] is None


async def test_idempotency_key_and_traceparent_are_sent_and_steps_of_a_run_share_a_trace(
    runner: HttpRunner, base_url: str, server: _Server
) -> None:
    await _run(runner, {"url": f"{base_url}/echo"}, _ctx("run-7", "a"))
    await _run(runner, {"url": f"{base_url}/echo"}, _ctx("run-7", "b"))
    await _run(runner, {"url": f"{base_url}/echo"}, _ctx("run-8", "a"))
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in server.requests]
    assert [h["idempotency-key"] for h in headers] == ["run-7/a", "run-7/b", "run-8/a"]
    matches = [TRACEPARENT.match(h["traceparent"]) for h in headers]
    assert all(matches)
    traces = [m.group(1) for m in matches if m]
    spans = {m.group(2) for m in matches if m}
    assert traces[0] == traces[1] != traces[2]
    assert len(spans) == 3


async def test_user_headers_are_sent(runner: HttpRunner, base_url: str, server: _Server) -> None:
    await _run(runner, {"url": f"{base_url}/echo", "headers": {"X-Team": "core"}})
    assert server.requests[0]["headers"]["X-Team"] == "core"


async def test_a_status_outside_expect_fails(runner: HttpRunner, base_url: str) -> None:
    with pytest.raises(NonRetryable, match="returned 200"):
        await _run(runner, {"url": f"{base_url}/echo", "expect": [201]})


async def test_a_status_listed_in_expect_succeeds_even_if_not_2xx(
    runner: HttpRunner, base_url: str
) -> None:
    result = await _run(runner, {"url": f"{base_url}/status/404", "expect": [404]})
    assert result.output == {"status": 404, "text": "upstream says no"}


async def test_a_404_is_not_retryable(runner: HttpRunner, base_url: str) -> None:
    with pytest.raises(NonRetryable, match=r"GET .*/status/404 returned 404: upstream says no"):
        await _run(runner, {"url": f"{base_url}/status/404"})


async def test_a_500_is_a_retryable_step_error(runner: HttpRunner, base_url: str) -> None:
    with pytest.raises(StepError, match="returned 500") as info:
        await _run(runner, {"url": f"{base_url}/status/500"})
    assert info.value.retryable
    assert not isinstance(info.value, (NonRetryable, Retry))


async def test_a_429_with_retry_after_asks_for_a_retry_after_that_delay(
    runner: HttpRunner, base_url: str
) -> None:
    with pytest.raises(Retry) as info:
        await _run(runner, {"url": f"{base_url}/ratelimited"})
    assert info.value.after == 2


def test_retry_after_accepts_an_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    after_s = retry_after_s(when)
    assert after_s is not None and 25 <= after_s <= 30
    assert retry_after_s("soon") is None


async def test_secrets_in_headers_query_userinfo_and_body_never_reach_the_error_message(
    runner: HttpRunner, base_url: str
) -> None:
    host = base_url.removeprefix("http://")
    spec = {
        "method": "POST",
        "url": f"http://user:userinfo-secret@{host}/status/500?token=query-secret",
        "headers": {"Authorization": "Bearer header-secret"},
        "body": {"password": "body-secret"},
    }
    with pytest.raises(StepError) as info:
        await _run(runner, spec)
    message = str(info.value)
    assert message.startswith(f"POST {base_url}/status/500 returned 500")
    for secret in ("userinfo-secret", "query-secret", "header-secret", "body-secret", "token="):
        assert secret not in message


async def test_a_refused_connection_is_a_retryable_step_error_without_secrets(
    runner: HttpRunner,
) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StepError, match="failed: ConnectError") as info:
        await _run(runner, {"url": f"http://127.0.0.1:{port}/x?token=query-secret"})
    assert info.value.retryable
    assert "query-secret" not in str(info.value)


async def test_a_slow_server_times_out_as_a_retryable_step_error(
    runner: HttpRunner, base_url: str
) -> None:
    with pytest.raises(StepError, match=r"timed out after 0\.05s") as info:
        await _run(runner, {"url": f"{base_url}/slow"}, _ctx(timeout_s=0.05))
    assert info.value.retryable


async def test_a_non_json_response_gives_status_and_text(runner: HttpRunner, base_url: str) -> None:
    result = await _run(runner, {"url": f"{base_url}/text"})
    assert result.output == {"status": 200, "text": "hello"}


async def test_one_client_is_reused_and_aclose_can_be_called_twice(
    runner: HttpRunner, base_url: str
) -> None:
    await _run(runner, {"url": f"{base_url}/text"})
    client = runner._client
    await _run(runner, {"url": f"{base_url}/text"})
    assert runner._client is client is not None
    await runner.aclose()
    await runner.aclose()
    assert runner._client is None
