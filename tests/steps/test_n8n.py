"""The `n8n` step kind against a local n8n-style webhook server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from clocklib import advance_until
from fake_providers import FakeServer, running

from podium.check import parse_workflow
from podium.clock import FakeClock
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


def _ctx(timeout_s: float = 5) -> StepContext:
    return StepContext(
        run_id="run-1", step_id="publish", attempt=1, index=None, item=None,
        idempotency_key="run-1/publish", inputs={}, workflow="w", timeout_s=timeout_s,
    )


class _Host:
    """The one StepHost service the n8n kind uses: the clock of its accept timeout."""

    def __init__(self) -> None:
        self.clock = FakeClock()


async def _run(
    runner: N8nRunner, spec: dict[str, Any], host: _Host | None = None, timeout_s: float = 5
) -> StepResult:
    action = N8nAction.model_validate({"kind": "n8n", **spec})
    return await runner.run(action, _ctx(timeout_s), host or _Host())  # type: ignore[arg-type]


def _executions(server: FakeServer, name: str) -> int:
    return sum(1 for r in server.requests if r["path"] == f"/webhook/{name}")


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


async def test_a_failing_n8n_workflow_names_the_webhook_and_is_retried_only_if_asked(
    runner: N8nRunner, server: FakeServer
) -> None:
    with pytest.raises(NonRetryable) as info:
        await _run(runner, {"webhook": f"{server.url}/webhook/fail?token=abc"})
    assert str(info.value).startswith(f"POST {server.url}/webhook/fail returned 500")
    assert "not retried (set retry_after_send: true" in str(info.value)
    assert "token=abc" not in str(info.value)

    with pytest.raises(StepError) as info:
        await _run(runner, {"webhook": f"{server.url}/webhook/fail", "retry_after_send": True})
    assert info.value.retryable


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


# -- n8n as it really behaves -----------------------------------------------------------------


async def test_waiting_on_an_empty_200_fails_naming_the_webhook(
    runner: N8nRunner, server: FakeServer
) -> None:
    # n8n's answer when its workflow fails before the Respond to Webhook node.
    with pytest.raises(NonRetryable) as info:
        await _run(runner, {"webhook": f"{server.url}/webhook/empty?token=abc"})
    message = str(info.value)
    assert message.startswith(f"n8n webhook {server.url}/webhook/empty answered 200 with an"
                              " empty body")
    assert "token=abc" not in message
    assert _executions(server, "empty") == 1


async def test_not_waiting_returns_once_the_request_is_sent_and_the_accept_timeout_passed(
    runner: N8nRunner, server: FakeServer
) -> None:
    # The webhook answers only when its (slow) workflow ends: the step must not wait for it.
    host = _Host()
    spec = {"webhook": f"{server.url}/webhook/late", "wait": False, "accept_timeout": "2s"}
    step = asyncio.ensure_future(_run(runner, spec, host))
    await advance_until(host.clock, step.done, 0.5)

    assert step.result().output == {"accepted": True, "status": None}
    assert _executions(server, "late") == 1
    assert host.clock.now() >= 2.0  # it waited the accept timeout on the clock, no more


async def test_not_waiting_takes_an_early_status_line_as_acceptance_or_refusal(
    runner: N8nRunner, server: FakeServer
) -> None:
    accepted = await _run(runner, {"webhook": f"{server.url}/webhook/respond", "wait": False})
    assert accepted.output == {"accepted": True, "status": 200}
    with pytest.raises(NonRetryable, match="returned 404"):
        await _run(runner, {"webhook": f"{server.url}/webhook/missing", "wait": False})


@pytest.mark.parametrize("wait", [True, False])
async def test_a_call_that_reached_n8n_is_not_retried_unless_asked(
    runner: N8nRunner, server: FakeServer, wait: bool
) -> None:
    spec = {"webhook": f"{server.url}/webhook/drop", "wait": wait}
    with pytest.raises(NonRetryable, match="n8n received the request"):
        await _run(runner, spec)
    with pytest.raises(StepError) as info:
        await _run(runner, {**spec, "retry_after_send": True})
    assert info.value.retryable


async def test_a_call_that_never_reached_n8n_is_retried(runner: N8nRunner) -> None:
    with pytest.raises(StepError) as info:
        await _run(runner, {"webhook": "http://127.0.0.1:9/webhook/down"})
    assert info.value.retryable and not isinstance(info.value, NonRetryable)


async def test_in_the_engine_a_slow_webhook_runs_once_however_many_attempts_are_allowed(
    server: FakeServer, tmp_path: Path
) -> None:
    from podium.bus import open_bus
    from podium.engine.engine import Engine
    from podium.settings import Settings
    from podium.store import open_store

    wf = parse_workflow({"name": "hook", "steps": {"publish": {
        "kind": "n8n", "webhook": f"{server.url}/webhook/late", "timeout": "300ms",
        "retry": {"attempts": 3, "backoff": "10ms", "jitter": 0},
    }}})
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, Settings(poll_interval_s=0.02, lease_s=5)) as engine,
    ):
        summary = await engine.run(wf)

    step = summary.steps["publish"]
    assert (step.status, step.attempts) == ("failed", 1)
    assert "n8n received the request" in (step.error or "")
    assert _executions(server, "late") == 1
