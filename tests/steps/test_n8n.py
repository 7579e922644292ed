"""The `n8n` step kind against a local n8n-style webhook server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fake_providers import FakeServer, running

from podium.check import parse_workflow
from podium.errors import NonRetryable, StepError
from podium.model.workflow import N8nAction
from podium.steps import RUNNERS
from podium.steps.base import StepContext, StepResult
from podium.steps.http import HttpRunner
from podium.steps.n8n import N8nRunner


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with running() as srv:
        yield srv


@pytest.fixture
async def runner() -> AsyncIterator[N8nRunner]:
    http = HttpRunner()
    try:
        yield N8nRunner(http)
    finally:
        await http.aclose()


def _ctx() -> StepContext:
    return StepContext(
        run_id="run-1", step_id="publish", attempt=1, index=None, item=None,
        idempotency_key="run-1/publish", inputs={}, workflow="w", timeout_s=5,
    )


async def _run(runner: N8nRunner, spec: dict[str, Any]) -> StepResult:
    action = N8nAction.model_validate({"kind": "n8n", **spec})
    return await runner.run(action, _ctx(), None)  # type: ignore[arg-type]


async def test_waiting_uses_the_respond_to_webhook_reply_as_output(
    runner: N8nRunner, server: FakeServer
) -> None:
    spec = {"webhook": f"{server.url}/webhook/respond", "input": {"title": "Bees"},
            "headers": {"X-N8N-Auth": "token"}}
    result = await _run(runner, spec)

    assert result.output == {"received": {"title": "Bees"}, "method": "POST"}
    [request] = server.requests
    assert request["headers"]["x-n8n-auth"] == "token"
    assert request["headers"]["idempotency-key"] == "run-1/publish"
    assert request["headers"]["content-type"] == "application/json"


async def test_a_get_webhook_receives_input_as_the_query(
    runner: N8nRunner, server: FakeServer
) -> None:
    spec = {"webhook": f"{server.url}/webhook/respond", "method": "GET", "input": {"q": "bees"}}
    result = await _run(runner, spec)
    assert result.output == {"received": {"q": "bees"}, "method": "GET"}


async def test_fire_and_forget_reports_acceptance_only(
    runner: N8nRunner, server: FakeServer
) -> None:
    result = await _run(runner, {"webhook": f"{server.url}/webhook/fire", "wait": False})
    assert result.output == {"accepted": True, "status": 200}
    assert server.requests[0]["body"] == {}


async def test_a_failing_n8n_workflow_is_retryable_and_names_the_webhook(
    runner: N8nRunner, server: FakeServer
) -> None:
    with pytest.raises(StepError) as info:
        await _run(runner, {"webhook": f"{server.url}/webhook/fail?token=abc"})
    assert info.value.retryable
    assert str(info.value).startswith(f"POST {server.url}/webhook/fail returned 500")
    assert "token=abc" not in str(info.value)


async def test_an_unknown_webhook_is_not_retried(runner: N8nRunner, server: FakeServer) -> None:
    with pytest.raises(NonRetryable, match="returned 404"):
        await _run(runner, {"webhook": f"{server.url}/webhook/missing"})


def test_the_registered_n8n_runner_shares_the_http_client() -> None:
    n8n = RUNNERS["n8n"]
    assert isinstance(n8n, N8nRunner)
    assert n8n._http is RUNNERS["http"]


def test_the_design_example_n8n_step_is_valid() -> None:
    data = {"name": "wf", "steps": {"publish": {
        "kind": "n8n", "webhook": "http://n8n.local/webhook/publish", "optional": True,
    }}}
    action = parse_workflow(data, "wf.yaml").steps["publish"].action
    assert isinstance(action, N8nAction)
    assert (action.method, action.wait) == ("POST", True)
