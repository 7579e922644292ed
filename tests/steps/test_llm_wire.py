"""Provider conformance of the `llm` kind: usage wherever a provider puts it, prompt-cache
tokens priced, JSON answers to streamed requests, o-series parameters, streamed deltas, and
the tool-call seam (`LlmRunner.converse`) on both wire formats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fake_providers import CACHE_WRITTEN, CACHED_TOKENS, FakeServer, pieces
from llmlib import KEYS, FakeHost, ctx, run_spec, spec

from podium.bus import open_bus
from podium.control.budgets import money
from podium.engine.engine import Engine
from podium.errors import Retry, StepError
from podium.model.llm import ToolSpec, build_request, is_reasoning_model
from podium.model.pricing import DEFAULT_PRICING, load_pricing
from podium.model.workflow import LlmAction, Workflow
from podium.settings import Settings
from podium.steps.llm import LlmRunner
from podium.steps.llm_wire import assistant_turn, tool_result_turn
from podium.store import open_store

HAIKU_IN, HAIKU_OUT = 0.80, 4.00  # claude-3-5-haiku, USD per 1M tokens
MINI_IN, MINI_OUT = 0.15, 0.60  # gpt-4o-mini


# -- usage wherever the provider puts it ------------------------------------------------------


async def test_anthropic_input_tokens_given_only_in_message_delta_are_counted(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    # message_start says input_tokens 0; the cumulative message_delta carries 3 in, 2 out.
    result = await run_spec(
        runner, host, spec(server, "anthropic", stream=True, behaviour="late-usage")
    )

    assert result.output["usage"] == {"input": 3, "output": 2, "cache_read": 0, "cache_write": 0}
    assert (result.tokens_in, result.tokens_out) == (3, 2)
    assert result.cost_usd == pytest.approx((3 * HAIKU_IN + 2 * HAIKU_OUT) / 1e6)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_openai_cached_prompt_tokens_are_priced_at_the_cached_rate(
    runner: LlmRunner, host: FakeHost, server: FakeServer, stream: bool
) -> None:
    result = await run_spec(runner, host, spec(server, stream=stream, behaviour="cached"))

    # 3 prompt tokens, 2 of them read from the cache at half gpt-4o-mini's input price.
    assert result.output["usage"] == {
        "input": 3, "output": 2, "cache_read": CACHED_TOKENS, "cache_write": 0,
    }
    plain = 3 - CACHED_TOKENS
    expected = (plain * MINI_IN + CACHED_TOKENS * MINI_IN * 0.5 + 2 * MINI_OUT) / 1e6
    assert result.cost_usd == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_cache_reads_and_writes_are_priced_and_counted_as_input(
    runner: LlmRunner, host: FakeHost, server: FakeServer, stream: bool
) -> None:
    prompt = "say: one two three four"  # 5 tokens in: 2 read from cache, 1 written, 2 plain
    result = await run_spec(
        runner, host, spec(server, "anthropic", stream=stream, behaviour="cached", prompt=prompt)
    )

    assert result.output["usage"] == {
        "input": 5, "output": 4, "cache_read": CACHED_TOKENS, "cache_write": CACHE_WRITTEN,
    }
    assert result.tokens_in == 5
    plain = 5 - CACHED_TOKENS - CACHE_WRITTEN
    expected = (
        plain * HAIKU_IN + CACHED_TOKENS * HAIKU_IN * 0.10 + CACHE_WRITTEN * HAIKU_IN * 1.25
        + 4 * HAIKU_OUT
    ) / 1e6
    assert result.cost_usd == pytest.approx(expected, rel=1e-12)


def test_cache_prices_come_from_the_table_or_the_provider_rate(tmp_path: Path) -> None:
    # gpt-4.1 lists its own cached price (0.50 of 2.00); gpt-4o-mini takes OpenAI's half.
    assert DEFAULT_PRICING.cost_usd("gpt-4.1", 10, 0, cache_read=10) == pytest.approx(5e-6)
    assert DEFAULT_PRICING.cost_usd("gpt-4o-mini", 10, 0, cache_read=10) == pytest.approx(
        10 * 0.075 / 1e6
    )
    path = tmp_path / "prices.yaml"
    path.write_text("models: {house: {input: 1, output: 2, cache_read: 0.2, cache_write: 3}}")
    pricing = load_pricing(path)
    assert pricing.cost_usd("house", 10, 1, cache_read=4, cache_write=2) == pytest.approx(
        (4 * 1 + 4 * 0.2 + 2 * 3 + 1 * 2) / 1e6
    )


# -- a JSON answer to a streamed request ------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_json_answer_to_a_streamed_request_is_read_as_the_reply(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    result = await run_spec(
        runner, host, spec(server, provider, stream=True, behaviour="nostream")
    )

    assert result.output["text"] == "hello world"
    assert result.tokens_out == 2 and result.cost_usd > 0
    assert len(server.requests) == 1
    assert host.deltas == ["hello world"]  # listeners still hear the answer, in one piece


# -- parameters and errors --------------------------------------------------------------------


@pytest.mark.parametrize("model", ["o3-mini", "o4-mini-2025-04-16", "o1"])
async def test_o_series_models_get_max_completion_tokens(
    runner: LlmRunner, host: FakeHost, server: FakeServer, model: str
) -> None:
    result = await run_spec(runner, host, spec(server, model=model, max_tokens=50))

    assert result.output["text"] == "hello world"
    [request] = server.requests
    assert request["body"]["max_completion_tokens"] == 50
    assert "max_tokens" not in request["body"]


def test_the_reasoning_family_rule() -> None:
    assert all(map(is_reasoning_model, ["o1", "o3", "o3-mini", "o4-mini", "gpt-5-mini"]))
    assert not any(map(is_reasoning_model, ["gpt-4o", "gpt-4.1-mini", "omni", "claude-opus-4"]))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_429_without_retry_after_is_retried_by_the_policy(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    with pytest.raises(StepError) as caught:
        await run_spec(runner, host, spec(server, provider, behaviour="fail-429-bare"))
    assert not isinstance(caught.value, Retry)  # no wait was told: the step's backoff applies
    assert "returned 429" in str(caught.value)


# -- streamed deltas --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_streamed_answer_is_handed_to_listeners_delta_by_delta(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    prompt = "say: the quick brown fox"
    await run_spec(runner, host, spec(server, provider, stream=True, prompt=prompt))
    assert host.deltas == pieces("the quick brown fox")

    host.deltas.clear()
    await run_spec(runner, host, spec(server, provider, prompt=prompt))
    assert host.deltas == []  # a plain request has nothing to stream


# -- the tool-call seam -----------------------------------------------------------------------

SEARCH = ToolSpec("search", "web search", {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
})
CLOCK = ToolSpec("clock", "the time", {
    "type": "object", "properties": {"zone": {"type": "string"}, "precise": {"type": "boolean"}},
})


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_converse_runs_a_round_of_parallel_tool_calls_then_an_answer(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str, stream: bool
) -> None:
    action = LlmAction.model_validate({"kind": "llm", **spec(server, provider, stream=stream)})
    request = replace(build_request(action, DEFAULT_PRICING), tools=(SEARCH, CLOCK))

    first = await runner.converse(request, ctx(), host)  # type: ignore[arg-type]

    assert [(c.name, c.arguments) for c in first.tool_calls] == [
        ("search", {"q": "say: hello world"}),
        ("clock", {"zone": "say: hello world", "precise": True}),
    ]
    assert first.finish_reason in ("tool_calls", "tool_use")
    assert first.booked is not None and first.booked.usd > 0

    results = [tool_result_turn(c, {"answer": c.name}) for c in first.tool_calls]
    turns = [*request.messages, assistant_turn(first), *results]
    second = await runner.converse(replace(request, messages=turns), ctx(), host)  # type: ignore[arg-type]

    assert (second.text, second.tool_calls) == ("hello world", [])
    sent = server.requests[-1]["body"]
    if provider == "openai":
        assert [t["function"]["name"] for t in sent["tools"]] == ["search", "clock"]
        assert sent["messages"][1]["tool_calls"][0]["function"]["arguments"] == json.dumps(
            {"q": "say: hello world"}
        )
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
        assert sent["messages"][2] == {
            "role": "tool", "tool_call_id": first.tool_calls[0].id,
            "content": '{"answer": "search"}',
        }
    else:
        assert [t["name"] for t in sent["tools"]] == ["search", "clock"]
        # Both results in one user turn, right after the assistant's tool_use blocks.
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use", "tool_use"]
        assert [b["tool_use_id"] for b in sent["messages"][2]["content"]] == [
            c.id for c in first.tool_calls
        ]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_tool_choice_is_sent_in_each_providers_shape(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    action = LlmAction.model_validate({"kind": "llm", **spec(server, provider)})
    request = build_request(action, DEFAULT_PRICING)
    for choice in ("required", "search"):
        await runner.converse(  # type: ignore[arg-type]
            replace(request, tools=(SEARCH,), tool_choice=choice), ctx(), host
        )
    sent = [r["body"]["tool_choice"] for r in server.requests]
    if provider == "openai":
        assert sent == ["required", {"type": "function", "function": {"name": "search"}}]
    else:
        assert sent == [{"type": "any"}, {"type": "tool", "name": "search"}]


# -- costs are never rounded ------------------------------------------------------------------


async def test_the_run_summary_shows_the_ledgers_cost_unrounded(
    server: FakeServer, tmp_path: Path
) -> None:
    wf = Workflow.model_validate({"name": "cheap", "steps": {"ask": {
        "kind": "llm", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1",
        "prompt": "say: hello world",
    }}})
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, Settings(poll_interval_s=0.02, lease_s=5), secrets=KEYS) as engine,
    ):
        summary = await engine.run(wf)
        [group] = await store.spend_report("run", 0)

    exact = (3 * MINI_IN + 2 * MINI_OUT) / 1e6  # 1.65e-06: six decimals would say 2e-06
    assert summary.cost_usd == pytest.approx(exact, rel=1e-12)
    assert group.usd == pytest.approx(summary.cost_usd, rel=1e-12)


def test_money_shows_a_cost_down_to_the_ledgers_precision() -> None:
    assert money(1.35e-05) == "$0.0000135"
    assert money(3e-9) == "$0.000000003"
    assert money(0.5) == "$0.50"
