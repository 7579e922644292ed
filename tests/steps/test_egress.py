"""Under a trust policy, http/n8n/llm steps reach only allowed hosts and python steps call only
allowed modules; a refused request never leaves the process."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from podium.errors import NonRetryable
from podium.model.policy import EgressPolicy, TrustPolicy
from podium.model.workflow import HttpAction, LlmAction, N8nAction, PythonAction
from podium.steps.base import StepContext
from podium.steps.http import HttpRunner
from podium.steps.llm import LlmRunner
from podium.steps.n8n import N8nRunner
from podium.steps.python import PythonRunner


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.server.hits.append(self.path)
        body = json.dumps({
            "ok": True,
            "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
async def http() -> AsyncIterator[HttpRunner]:
    runner = HttpRunner()
    try:
        yield runner
    finally:
        await runner.aclose()


class _Host:
    def secret(self, name: str) -> str | None:
        return {"OPENAI_API_KEY": "sk-test-key", "OTHER": "other-key"}.get(name)

    async def cache_get(self, key: str) -> Any | None:
        return None

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None:
        pass


def ctx(*allow: str, modules: tuple[str, ...] = ()) -> StepContext:
    policy = TrustPolicy(python_modules=modules, egress=EgressPolicy(allow=allow))
    return StepContext(
        run_id="r", step_id="s", attempt=1, index=None, item=None, idempotency_key="r/s",
        inputs={}, workflow="w", timeout_s=5, policy=policy,
    )


def port(server: _Server) -> int:
    return int(server.server_address[1])


async def test_an_http_step_to_a_host_outside_egress_is_refused_and_never_sent(
    http: HttpRunner, server: _Server
) -> None:
    url = f"http://127.0.0.1:{port(server)}/x?token=SECRET"
    action = HttpAction(kind="http", url=url)
    with pytest.raises(NonRetryable) as info:
        await http.run(action, ctx("api.example.com"), _Host())  # type: ignore[arg-type]
    message = str(info.value)
    assert "refused by the egress policy" in message and "127.0.0.1" in message
    assert "SECRET" not in message
    assert server.hits == []


async def test_an_allowed_name_that_resolves_to_loopback_is_refused(
    http: HttpRunner, server: _Server
) -> None:
    action = HttpAction(kind="http", url=f"http://localhost:{port(server)}/x")
    with pytest.raises(NonRetryable, match="localhost resolves to"):
        await http.run(action, ctx("localhost"), _Host())  # type: ignore[arg-type]
    assert server.hits == []


async def test_a_listed_address_is_reached(http: HttpRunner, server: _Server) -> None:
    action = HttpAction(kind="http", url=f"http://127.0.0.1:{port(server)}/ok")
    result = await http.run(action, ctx("127.0.0.1"), _Host())  # type: ignore[arg-type]
    assert result.output["ok"] is True and server.hits == ["/ok"]


async def test_without_a_policy_nothing_is_checked(http: HttpRunner, server: _Server) -> None:
    action = HttpAction(kind="http", url=f"http://127.0.0.1:{port(server)}/free")
    plain = StepContext(
        run_id="r", step_id="s", attempt=1, index=None, item=None, idempotency_key="r/s",
        inputs={}, workflow="w", timeout_s=5,
    )
    await http.run(action, plain, _Host())  # type: ignore[arg-type]
    assert server.hits == ["/free"]


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "http://[::1]/"]
)
async def test_metadata_files_and_loopback_v6_are_refused(http: HttpRunner, url: str) -> None:
    action = HttpAction(kind="http", url=url)
    with pytest.raises(NonRetryable, match="refused by the egress policy"):
        await http.run(action, ctx("*.example.com"), _Host())  # type: ignore[arg-type]


async def test_an_n8n_webhook_outside_egress_is_refused(http: HttpRunner, server: _Server) -> None:
    action = N8nAction(kind="n8n", webhook=f"http://127.0.0.1:{port(server)}/webhook/x")
    with pytest.raises(NonRetryable, match="refused by the egress policy"):
        await N8nRunner(http).run(action, ctx("n8n.example.com"), _Host())  # type: ignore[arg-type]
    assert server.hits == []


async def test_an_llm_base_url_outside_egress_is_refused(server: _Server) -> None:
    runner = LlmRunner()
    base = f"http://127.0.0.1:{port(server)}/v1"
    action = LlmAction(kind="llm", model="gpt-4o-mini", prompt="hi", base_url=base)
    try:
        with pytest.raises(NonRetryable, match="refused by the egress policy"):
            await runner.run(action, ctx("api.openai.com"), _Host())  # type: ignore[arg-type]
        assert server.hits == []
        result = await runner.run(action, ctx("127.0.0.1"), _Host())  # type: ignore[arg-type]
        assert result.output["text"] == "hi" and len(server.hits) == 1
    finally:
        await runner.aclose()


async def test_an_llm_api_key_env_is_refused_under_a_policy(server: _Server) -> None:
    base = f"http://127.0.0.1:{port(server)}/v1"
    action = LlmAction(
        kind="llm", model="gpt-4o-mini", prompt="hi", base_url=base, api_key_env="OTHER"
    )
    with pytest.raises(NonRetryable, match="api_key_env is not allowed"):
        await LlmRunner().run(action, ctx("127.0.0.1"), _Host())  # type: ignore[arg-type]
    assert server.hits == []


async def test_a_python_call_outside_python_modules_is_refused_before_import() -> None:
    action = PythonAction(kind="python", call="podium_egress_probe_module:run")
    with pytest.raises(NonRetryable, match="not in \\[security\\] python_modules"):
        await PythonRunner().run(action, ctx(modules=("json",)), _Host())  # type: ignore[arg-type]
    ok = PythonAction(kind="python", call="json:dumps", input={"obj": [1]})
    result = await PythonRunner().run(ok, ctx(modules=("json",)), _Host())  # type: ignore[arg-type]
    assert result.output == "[1]"
