"""Agent loops against local models on the real OpenAI and Anthropic wires: tool-call rounds
with parallel calls, tool calls as child runs, bounds, and a budget that stops a loop before
a request would pass it. Both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import agent_tools
import pytest
from clocklib import advance_until
from fake_agents import ANTHROPIC_KEY, ANTHROPIC_MODEL, MODEL, OPENAI_KEY, running

from podium.bus import open_bus
from podium.clock import FakeClock
from podium.engine.engine import Engine
from podium.engine.summary import RunSummary
from podium.model.pricing import DEFAULT_PRICING
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store

SECRETS = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
TOOLS: dict[str, Any] = {
    "meet": {"kind": "python", "call": "agent_tools:meet", "description": "meets the others"},
    "count": {"kind": "python", "call": "agent_tools:count"},
    "search": {
        "kind": "sim",
        "description": "web search",
        "input_schema": {
            "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
        },
        "output": {"hits": ["{{ inputs.q }} found"]},
    },
}


@asynccontextmanager
async def engine_on(store: Store, clock: FakeClock | None = None) -> AsyncIterator[Engine]:
    settings = Settings(poll_interval_s=0.02, lease_s=5, store_retry_s=0.5)
    async with (
        open_bus("memory://") as bus,
        Engine(store, bus, settings, secrets=SECRETS, clock=clock) as engine,
    ):
        yield engine


def agent(url: str, provider: str = "openai", **step: Any) -> Workflow:
    base_url = url + "/v1" if provider == "openai" else url
    model = MODEL if provider == "openai" else ANTHROPIC_MODEL
    return Workflow.model_validate({
        "name": "agent-test",
        "steps": {
            "research": {
                "kind": "llm", "provider": provider, "model": model, "base_url": base_url,
                "prompt": "find facts", "max_tokens": 100, "tools": TOOLS, "retry": {"attempts": 1},
                **step,
            }
        },
    })


async def run(engine: Engine, workflow: Workflow) -> RunSummary:
    return await engine.wait(await engine.submit(workflow))


async def turn_events(store: Store, run_id: str) -> list[dict[str, Any]]:
    events = await store.list_events(run_id, limit=10_000)
    return [e.payload for _, e in events if e.event_type == "agent.task.turn"]


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    agent_tools.CALLS.clear()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_tool_rounds_run_parallel_calls_as_child_runs_until_the_model_answers(
    store: Store, provider: str
) -> None:
    agent_tools.expect_together(2)  # turn 1's two `meet` calls only return if run at once
    with running([["meet", "meet", "search"], ["count"]]) as model:
        async with engine_on(store) as engine:
            summary = await run(engine, agent(model.url, provider))
    step = summary.steps["research"]
    assert summary.status == "succeeded", step.error
    assert [r["problem"] for r in model.requests] == [None, None, None]  # valid conversations
    assert model.turns() == [1, 2, 3]
    output = step.output
    assert output["turns"] == 3
    assert output["text"].startswith("answer from results: ")
    assert output["text"].count(" | ") == 3  # the four results, fed back in order
    assert '"together": 2' in output["text"] and "q1.2 found" in output["text"]
    assert [(c["turn"], c["name"], c["ok"]) for c in output["tool_calls"]] == [
        (1, "meet", True), (1, "meet", True), (1, "search", True), (2, "count", True),
    ]
    assert sorted(agent_tools.CALLS) == [("count", "q2.0"), ("meet", "q1.0"), ("meet", "q1.1")]
    # Each call is a child run of the step's run.
    children = [r for r in await store.list_runs(limit=100) if r.parent_run_id == summary.run_id]
    assert len(children) == 4 and all(r.status == "succeeded" for r in children)
    # Every turn is an event; the tools went out with schemas derived from the signatures.
    events = await turn_events(store, summary.run_id)
    assert [(e["turn"], [c["name"] for c in e["tool_calls"]]) for e in events] == [
        (1, ["meet", "meet", "search"]), (2, ["count"]), (3, []),
    ]
    assert all(e["tokens_in"] == 1000 and e["cost_usd"] > 0 for e in events)
    tools = {_tool_name(t): _tool_schema(t) for t in model.requests[0]["body"]["tools"]}
    assert tools["count"]["required"] == ["q"]
    assert tools["count"]["properties"]["times"]["default"] == 1
    assert summary.cost_usd == pytest.approx(
        3 * DEFAULT_PRICING.cost_usd(output["model"] if provider == "openai" else
                                     ANTHROPIC_MODEL, 1000, 50)
    )


def _tool_name(tool: dict[str, Any]) -> str:
    return str(tool["function"]["name"] if "function" in tool else tool["name"])


def _tool_schema(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool["function"]["parameters"] if "function" in tool else tool["input_schema"]
    assert isinstance(schema, dict)
    return schema


async def test_arguments_that_miss_the_schema_are_an_error_result_and_no_tool_runs(
    store: Store,
) -> None:
    with running([["count"]], arguments={"count": {"wrong": 1}}) as model:
        async with engine_on(store) as engine:
            summary = await run(engine, agent(model.url, "anthropic"))
    assert summary.status == "succeeded", summary.steps["research"].error
    assert agent_tools.CALLS == []
    second = model.requests[1]["body"]["messages"][-1]["content"][0]
    assert second["type"] == "tool_result" and second["is_error"] is True
    assert "do not match the tool's input_schema" in second["content"]
    assert "'wrong' was unexpected" in second["content"]


@pytest.mark.parametrize(
    ("loop", "reason", "requests", "calls"),
    [
        ({"max_turns": 3}, "agent loop hit max_turns=3", 3, 2),
        ({"max_tool_calls": 4}, "agent loop hit max_tool_calls=4", 2, 3),
    ],
)
async def test_a_bound_fails_the_step_with_its_reason_and_is_not_retried(
    store: Store, loop: dict[str, Any], reason: str, requests: int, calls: int
) -> None:
    plan = [["count"]] if "max_turns" in loop else [["count", "count", "count"]]
    with running(plan, forever=True) as model:
        async with engine_on(store) as engine:
            summary = await run(engine, agent(model.url, loop=loop, retry={"attempts": 3}))
    step = summary.steps["research"]
    assert summary.status == "failed"
    assert step.error is not None and reason in step.error
    assert step.attempts == 1
    assert len(model.requests) == requests
    assert len(agent_tools.CALLS) == calls


async def test_a_bound_hit_falls_back(store: Store) -> None:
    with running([["count"]], forever=True) as model:
        async with engine_on(store) as engine:
            workflow = agent(
                model.url, loop={"max_turns": 2}, fallback={"kind": "sim", "output": "plan B"}
            )
            summary = await run(engine, workflow)
    step = summary.steps["research"]
    assert summary.status in ("succeeded", "degraded")
    assert step.fallback_used and step.output == "plan B"


@pytest.mark.parametrize("bound", ["max_usd", "max_tokens"])
async def test_a_budget_stops_the_loop_between_turns_before_any_request_passes_it(
    store: Store, bound: str
) -> None:
    usage = (10_000, 50)
    per_call = DEFAULT_PRICING.cost_usd(MODEL, *usage)
    # Room for two calls and less than any third: its estimate holds all 100 output tokens.
    if bound == "max_usd":
        limit: float = 2 * per_call + DEFAULT_PRICING.cost_usd(MODEL, 0, 50)
    else:
        limit = 2 * sum(usage) + 50
    with running([["count"]], forever=True, usage=usage) as model:
        async with engine_on(store) as engine:
            summary = await run(engine, agent(model.url, loop={bound: limit, "max_turns": 50}))
    step = summary.steps["research"]
    assert summary.status == "failed"
    assert step.error is not None and f"agent loop hit {bound}=" in step.error
    assert "before turn 3" in step.error
    assert len(model.requests) == 2  # no request past the limit
    # The spend ledger holds both calls (the failed attempt's included), within the limit.
    (booked,) = [g for g in await store.spend_report("run", 0.0) if g.key == summary.run_id]
    assert booked.calls == 2 and booked.usd == pytest.approx(2 * per_call)
    if bound == "max_usd":
        assert booked.usd <= limit
    else:
        assert booked.tokens_in + booked.tokens_out <= limit


async def test_the_wall_clock_limit_stops_a_tool_call_on_the_engine_clock(
    clocked_store: Store, clock: FakeClock
) -> None:
    slow = {**TOOLS, "search": {**TOOLS["search"], "latency": 600}}
    with running([["search"]]) as model:
        async with engine_on(clocked_store, clock) as engine:
            workflow = agent(model.url, tools=slow, loop={"timeout": "1m"}, timeout="1h")
            run_id = await engine.submit(workflow)

            async def done() -> bool:
                row = await clocked_store.get_run(run_id)
                return row is not None and row.done

            await advance_until(clock, done, 5.0)
            summary = await engine.summary(run_id)
    step = summary.steps["research"]
    assert summary.status == "failed"
    assert step.error is not None and "agent loop hit timeout=60s in turn 1" in step.error
    assert len(model.requests) == 1
    children = [r for r in await clocked_store.list_runs(limit=10) if r.parent_run_id == run_id]
    assert [r.status for r in children] == ["cancelled"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_final_answer_that_is_not_json_is_told_why_and_asked_again(
    store: Store, provider: str
) -> None:
    with running([["count"]]) as model:
        async with engine_on(store) as engine:
            summary = await run(engine, agent(model.url, provider, json_output=True))
    output = summary.steps["research"].output
    assert summary.status == "succeeded", summary.steps["research"].error
    assert model.turns() == [1, 2, 3] and output["turns"] == 3
    assert output["json"]["retried"] is True
    feedback = model.requests[2]["body"]["messages"][-1]
    assert feedback == {"role": "user", "content": "That reply is not valid JSON. Answer again."}


async def test_an_answer_that_stays_invalid_ends_at_max_turns_with_the_reason(
    store: Store,
) -> None:
    # The fake's retried answer is JSON, but not what this schema-less JSON rule plus
    # max_turns=2 leaves room for: turn 1 calls a tool, turn 2's answer is refused.
    with running([["count"]]) as model:
        async with engine_on(store) as engine:
            workflow = agent(model.url, json_output=True, loop={"max_turns": 2})
            summary = await run(engine, workflow)
    error = summary.steps["research"].error
    assert summary.status == "failed"
    assert error is not None
    assert "agent loop hit max_turns=2: That reply is not valid JSON." in error
    assert len(model.requests) == 2


async def test_the_simulated_model_answers_offline_with_a_tool_round(store: Store) -> None:
    workflow = Workflow.model_validate({
        "name": "sim-agent",
        "steps": {
            "research": {
                "kind": "llm", "model": MODEL, "base_url": "sim:", "prompt": "facts",
                "input": {"q": "octopus"}, "json_output": True,
                "tools": {"count": TOOLS["count"], "search": TOOLS["search"]},
            },
            "alone": {"kind": "sim", "tools": {"search": TOOLS["search"]}, "output": {"ok": 1}},
        },
    })
    async with engine_on(store) as engine:
        summary = await run(engine, workflow)
    assert summary.status == "succeeded"
    output = summary.steps["research"].output
    assert output["turns"] == 2 and output["model"] == f"sim:{MODEL}"
    # The strings listed in each result (a result without a list is taken whole).
    assert output["json"]["facts"] == ['{"q": "octopus", "times": 1}', "octopus found"]
    assert agent_tools.CALLS == [("count", "octopus")]
    assert summary.steps["alone"].output["json"] == {"ok": 1}
    assert summary.cost_usd == 0
