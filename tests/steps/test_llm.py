"""The `llm` step kind against local OpenAI and Anthropic stand-ins (no mocking of httpx)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fake_providers import ANTHROPIC_KEY, OPENAI_KEY, FakeServer
from llmlib import KEYS, FakeHost
from llmlib import run_spec as _run
from llmlib import spec as _spec

import podium
from podium.bus import open_bus
from podium.check import parse_workflow
from podium.engine.engine import Engine
from podium.errors import NonRetryable, Retry, StepError, WorkflowInvalid
from podium.model.llm import compress
from podium.model.pricing import load_pricing
from podium.model.workflow import LlmAction, Workflow
from podium.settings import Settings
from podium.steps.llm import CACHE_STATS, LlmRunner
from podium.store import open_store

# -- replies, usage, cost ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_openai_gives_text_usage_and_cost(
    runner: LlmRunner, host: FakeHost, server: FakeServer, stream: bool
) -> None:
    result = await _run(runner, host, _spec(server, system="Be brief.", stream=stream))

    # 2 system words + 3 prompt words in, 2 words out, at gpt-4o-mini's $0.15 / $0.60 per 1M.
    assert result.output == {
        "text": "hello world",
        "model": "gpt-4o-mini-2024-07-18",
        "usage": {"input": 5, "output": 2, "cache_read": 0, "cache_write": 0},
        "finish_reason": "stop",
    }
    assert (result.tokens_in, result.tokens_out, result.model) == (5, 2, "gpt-4o-mini")
    assert result.cost_usd == pytest.approx((5 * 0.15 + 2 * 0.60) / 1e6)
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    expected = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "say: hello world"},
        ],
        "max_tokens": 1024,
    }
    if stream:
        expected |= {"stream": True, "stream_options": {"include_usage": True}}
    assert request["body"] == expected


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_gives_text_usage_and_cost(
    runner: LlmRunner, host: FakeHost, server: FakeServer, stream: bool
) -> None:
    spec = _spec(server, "anthropic", system="Be brief.", stream=stream, temperature=0.2)
    result = await _run(runner, host, spec)

    assert result.output == {
        "text": "hello world",
        "model": "claude-3-5-haiku-latest",
        "usage": {"input": 5, "output": 2, "cache_read": 0, "cache_write": 0},
        "finish_reason": "end_turn",
    }
    assert (result.tokens_in, result.tokens_out) == (5, 2)
    assert result.cost_usd == pytest.approx((5 * 0.80 + 2 * 4.00) / 1e6)
    [request] = server.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    expected = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "say: hello world"}],
        "temperature": 0.2,
    }
    if stream:
        expected["stream"] = True
    assert request["body"] == expected


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_that_stops_before_its_end_fails_the_attempt(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    with pytest.raises(StepError, match="stream ended before the reply was complete") as info:
        await _run(runner, host, _spec(server, provider, stream=True, behaviour="cut"))
    assert info.value.retryable


async def test_input_is_sent_as_json_after_the_prompt_or_alone(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    await _run(runner, host, _spec(server, prompt="Summarise:", input={"topic": "bees"}))
    spec = _spec(server, input={"topic": "bees"})
    del spec["prompt"]
    await _run(runner, host, spec)

    contents = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert contents == ['Summarise:\n\n{"topic": "bees"}', '{"topic": "bees"}']


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_429_with_retry_after_asks_to_retry_after_that_wait(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    with pytest.raises(Retry) as info:
        await _run(runner, host, _spec(server, provider, behaviour="fail-429"))
    assert info.value.after == 1.0
    assert "returned 429" in str(info.value)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_500_is_retryable(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    with pytest.raises(StepError) as info:
        await _run(runner, host, _spec(server, provider, behaviour="fail-500"))
    assert info.value.retryable and not isinstance(info.value, Retry)
    assert "returned 500" in str(info.value)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_400_is_not_retried_and_says_what_the_provider_said(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    with pytest.raises(NonRetryable, match="returned 400: invalid_request_error: max_tokens"):
        await _run(runner, host, _spec(server, provider, behaviour="fail-400"))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_refused_key_is_not_retried_and_the_error_names_only_its_variable(
    runner: LlmRunner, server: FakeServer, provider: str
) -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    host = FakeHost({"OPENAI_API_KEY": wrong, "ANTHROPIC_API_KEY": wrong})
    with pytest.raises(NonRetryable) as info:
        await _run(runner, host, _spec(server, provider))
    env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    assert str(info.value).endswith(f"returned 401: the API key in {env} was refused")
    assert "sk-wrong" not in str(info.value)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("behaviour", ["fail-429", "fail-500", "fail-400", "slow", "cut", None])
async def test_the_key_and_the_prompt_never_appear_in_errors_or_outputs(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str, behaviour: str | None
) -> None:
    spec = _spec(server, provider, behaviour=behaviour, stream=behaviour == "cut",
                 prompt="say: private words", system="secret system prompt")
    try:
        result = await _run(runner, host, spec, timeout_s=0.3)
        shown = json.dumps(result.output)
    except StepError as exc:
        shown = str(exc)
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, "secret system prompt", "say: private"):
        assert secret not in shown


async def test_a_timeout_is_retryable(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    with pytest.raises(StepError, match=r"timed out after 0\.2s") as info:
        await _run(runner, host, _spec(server, behaviour="slow"), timeout_s=0.2)
    assert info.value.retryable


async def test_a_refused_connection_is_retryable(runner: LlmRunner, host: FakeHost) -> None:
    spec = {"model": "gpt-4o-mini", "prompt": "hi", "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(StepError, match="failed: ConnectError") as info:
        await _run(runner, host, spec)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("provider", "env"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
async def test_a_missing_key_is_not_retried_and_names_the_variable(
    runner: LlmRunner, server: FakeServer, provider: str, env: str
) -> None:
    with pytest.raises(NonRetryable, match=f"^environment variable {env} is not set$"):
        await _run(runner, FakeHost({}), _spec(server, provider))
    assert server.requests == []


async def test_api_key_env_names_another_variable(
    runner: LlmRunner, server: FakeServer
) -> None:
    host = FakeHost({"MY_GATEWAY_KEY": OPENAI_KEY})
    result = await _run(runner, host, _spec(server, api_key_env="MY_GATEWAY_KEY"))
    assert result.output["text"] == "hello world"


async def test_a_rendered_model_without_a_price_fails_before_any_call(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    with pytest.raises(NonRetryable, match=r"no price for model 'mystery-1'; add it"):
        await _run(runner, host, _spec(server, model="mystery-1"))
    assert server.requests == []


# -- tiers, compression, JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "tier", "model"),
    [("openai", "simple", "gpt-4o-mini"), ("anthropic", "critical", "claude-opus-4-0")],
)
async def test_a_tier_picks_the_model(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str, tier: str, model: str
) -> None:
    spec = _spec(server, provider, tier=tier)
    del spec["model"]
    result = await _run(runner, host, spec)
    assert server.requests[0]["body"]["model"] == model
    assert result.model == model
    assert result.cost_usd > 0


async def test_a_pricing_file_overrides_a_tier(
    server: FakeServer, host: FakeHost, tmp_path: Path
) -> None:
    path = tmp_path / "pricing.toml"
    path.write_text(
        '[models.local-llama]\ninput = 0\noutput = 0\n[tiers.openai]\nsimple = "local-llama"\n'
    )
    llm = LlmRunner()
    try:
        spec = _spec(server, tier="simple")
        del spec["model"]
        result = await _run(llm, host, spec, pricing=load_pricing(path))
    finally:
        await llm.aclose()
    assert server.requests[0]["body"]["model"] == "local-llama"
    assert result.cost_usd == 0


def _turn(role: str, chars: int, letter: str) -> dict[str, str]:
    return {"role": role, "content": letter * chars}


TURNS = [
    _turn("user", 400, "a"),  # 100 estimated tokens
    _turn("assistant", 40, "b"),  # 10
    _turn("user", 40, "c"),  # 10
    _turn("assistant", 40, "d"),  # 10
    {"role": "user", "content": "say: ok"},  # 2: the question, always kept
]


def test_compression_keeps_the_latest_turns_that_fit_beside_the_system_prompt() -> None:
    system = "s" * 40  # 10 tokens
    assert compress(system, TURNS, 35) == TURNS[2:]
    assert compress(system, TURNS, 1000) == TURNS


def test_compression_keeps_the_last_user_turn_and_starts_with_a_user_turn() -> None:
    # 25 tokens fit the last assistant turn but not the user turn before it: both go.
    assert compress("s" * 40, TURNS, 25) == TURNS[4:]
    assert compress("s" * 400, TURNS, 5) == TURNS[4:]


async def test_context_tokens_compresses_what_is_sent(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    messages = [{"role": "system", "content": "s" * 40}, *TURNS]
    spec = _spec(server, messages=messages, context_tokens=35)
    del spec["prompt"]
    result = await _run(runner, host, spec)

    sent = server.requests[0]["body"]["messages"]
    assert sent == [messages[0], *TURNS[2:]]
    assert result.output["text"] == "ok"


async def test_json_output_parses_the_reply(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    result = await _run(runner, host, _spec(server, prompt='say: {"answer": 42}', json_output=True))
    assert result.output["json"] == {"answer": 42}
    fenced = 'say: ```json\n{"answer": [1, 2]}\n```'
    result = await _run(runner, host, _spec(server, prompt=fenced, json_output=True))
    assert result.output["json"] == {"answer": [1, 2]}


async def test_a_reply_that_is_not_json_fails_the_attempt_when_json_is_asked(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    with pytest.raises(StepError, match="the reply is not valid JSON") as info:
        await _run(runner, host, _spec(server, prompt="say: no json here", json_output=True))
    assert info.value.retryable


# -- response cache ---------------------------------------------------------------------------


async def test_an_identical_request_is_answered_from_the_cache_at_no_cost(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    before = dict(CACHE_STATS)
    first = await _run(runner, host, _spec(server, cache="1h"))
    second = await _run(runner, host, _spec(server, cache="1h", stream=True))

    assert len(server.requests) == 1
    assert first.output["cached"] is False and first.cost_usd > 0
    # A hit's output shows the usage the ledger books for it: none.
    zero = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    assert second.output == {**first.output, "usage": zero, "cached": True}
    assert (second.cost_usd, second.tokens_in, second.tokens_out) == (0, 0, 0)
    assert CACHE_STATS["hits"] == before["hits"] + 1
    assert CACHE_STATS["misses"] == before["misses"] + 1


async def test_a_different_request_or_an_expired_entry_misses_the_cache(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    await _run(runner, host, _spec(server, cache="1h"))
    await _run(runner, host, _spec(server, cache="1h", max_tokens=10))
    await _run(runner, host, _spec(server, cache="1ms", prompt="say: other"))
    host.clock.advance(0.001)
    await _run(runner, host, _spec(server, cache="1ms", prompt="say: other"))
    assert len(server.requests) == 4


async def test_the_cache_key_holds_no_api_key(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    await _run(runner, host, _spec(server, cache="1h"))
    host.env["OPENAI_API_KEY"] = "sk-another"  # another key, same request: still a hit
    result = await _run(runner, host, _spec(server, cache="1h"))
    assert result.output["cached"] is True
    assert OPENAI_KEY not in json.dumps(list(host.cache.items()))


# -- validation -------------------------------------------------------------------------------


def _problems(step: dict[str, Any]) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow({"name": "wf", "steps": {"ask": {"kind": "llm", **step}}}, "wf.yaml")
    return caught.value.problems


def test_validation_rejects_a_model_with_no_price() -> None:
    assert _problems({"model": "foo", "prompt": "hi"}) == [
        "error: wf.yaml: steps.ask.model: no price for model 'foo'; add it to the pricing"
        " table (PODIUM_PRICING_FILE) (got 'foo')"
    ]


def test_validation_rejects_both_prompt_and_messages() -> None:
    step = {"model": "gpt-4o", "prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}
    assert _problems(step) == [
        "error: wf.yaml: steps.ask.prompt: give prompt or messages, not both"
    ]


def test_validation_asks_for_a_message_and_for_a_model_or_tier() -> None:
    assert _problems({}) == [
        "error: wf.yaml: steps.ask.prompt: an llm step needs prompt, messages or input"
        " (got none of them)",
        "error: wf.yaml: steps.ask.model: an llm step needs model or tier (got neither)",
    ]


def test_a_snapshot_of_a_priced_model_a_tier_or_an_agent_step_is_valid() -> None:
    data = {
        "name": "wf",
        "agents": {"writer": {"kind": "llm", "model": "gpt-4o-mini", "system": "You write."}},
        "steps": {
            "a": {"kind": "llm", "model": "claude-sonnet-4-20250514", "prompt": "hi"},
            "b": {"kind": "llm", "tier": "simple", "provider": "anthropic", "prompt": "hi"},
            "c": {"agent": "writer", "input": {"topic": "bees"}},
            "d": {"kind": "llm", "model": "{{ inputs.model }}", "prompt": "hi", "cache": "1h"},
        },
    }
    wf = parse_workflow(data, "wf.yaml")
    d = wf.steps["d"].action
    assert isinstance(d, LlmAction) and d.cache_s == 3600


# -- end to end -------------------------------------------------------------------------------


async def test_an_llm_step_runs_in_the_engine_and_the_summary_counts_cost_and_tokens(
    server: FakeServer, tmp_path: Path
) -> None:
    wf = Workflow.model_validate({
        "name": "ask-twice",
        "inputs": {"word": {"type": "string"}},
        "steps": {
            "first": {
                "kind": "llm", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1",
                "prompt": "say: {{ inputs.word }} world",
            },
            "second": {
                "needs": ["first"], "kind": "llm", "provider": "anthropic",
                "model": "claude-3-5-haiku-latest", "base_url": server.url, "stream": True,
                "prompt": "say: {{ steps.first.output.text }} again",
            },
        },
    })
    settings = Settings(poll_interval_s=0.02, lease_s=5)
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, settings, secrets=KEYS) as engine,
    ):
        summary = await engine.run(wf, {"word": "hello"})

    assert summary.status == "succeeded", summary.error
    assert summary.outputs["second"]["text"] == "hello world again"
    # first: 3 in, 2 out on gpt-4o-mini; second: 4 in, 3 out on claude-3-5-haiku.
    assert (summary.tokens.input, summary.tokens.output) == (7, 5)
    expected = (3 * 0.15 + 2 * 0.60 + 4 * 0.80 + 3 * 4.00) / 1e6
    assert summary.cost_usd == pytest.approx(expected, abs=1e-6)
    assert OPENAI_KEY not in json.dumps(summary.model_dump(mode="json"))


async def test_the_engine_answers_a_repeated_cached_llm_step_without_a_call_or_cost(
    server: FakeServer, tmp_path: Path
) -> None:
    prompt = f"say: {uuid.uuid4().hex}"  # a request no other test makes: isolated by name
    wf = Workflow.model_validate({"name": "cached", "steps": {"ask": {
        "kind": "llm", "model": "gpt-4o", "base_url": f"{server.url}/v1", "prompt": prompt,
        "cache": "1h",
    }}})
    settings = Settings(poll_interval_s=0.02, lease_s=5)
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, settings, secrets=KEYS) as engine,
    ):
        first = await engine.run(wf)
        second = await engine.run(wf)

    assert len(server.requests) == 1
    assert first.cost_usd > 0 and first.outputs["ask"]["cached"] is False
    zero = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    assert first.outputs["ask"]["usage"]["input"] > 0
    assert second.outputs["ask"] == {**first.outputs["ask"], "usage": zero, "cached": True}
    assert (second.cost_usd, second.tokens.input, second.tokens.output) == (0, 0, 0)


async def test_two_engines_in_one_process_price_calls_each_by_its_own_table(
    server: FakeServer, tmp_path: Path
) -> None:
    wf = Workflow.model_validate({"name": "ask", "steps": {"ask": {
        "kind": "llm", "model": "gpt-4o-mini", "base_url": f"{server.url}/v1", "prompt": "say: hi",
    }}})
    path = tmp_path / "prices.toml"
    path.write_text("[models.gpt-4o-mini]\ninput = 1000\noutput = 2000\n")
    cheap = Settings(poll_interval_s=0.02, lease_s=5)
    dear = Settings(poll_interval_s=0.02, lease_s=5, pricing_file=path)
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, cheap, secrets=KEYS) as first,
        Engine(store, bus, dear, secrets=KEYS) as second,
    ):
        listed, filed = await first.run(wf), await second.run(wf)
    tokens = (filed.tokens.input, filed.tokens.output)
    assert (listed.tokens.input, listed.tokens.output) == tokens
    assert filed.cost_usd == pytest.approx((tokens[0] * 1000 + tokens[1] * 2000) / 1e6)
    assert listed.cost_usd < 1e-5  # gpt-4o-mini's list price: under a millionth of the file's


def test_the_sdk_prices_a_run_from_the_pricing_file(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  house-model: {input: 1000, output: 2000}\n")
    monkeypatch.setenv("PODIUM_PRICING_FILE", str(path))
    monkeypatch.setenv("PODIUM_STORE", f"sqlite:///{tmp_path / 'podium.db'}")
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    wf = podium.parse_workflow({"name": "ask", "steps": {"ask": {
        "kind": "llm", "model": "house-model", "base_url": f"{server.url}/v1", "prompt": "say: hi",
    }}})
    summary = podium.run(wf)
    assert summary.status == "succeeded", summary.error
    tokens_in, tokens_out = summary.tokens.input, summary.tokens.output
    assert summary.cost_usd == pytest.approx((tokens_in * 1000 + tokens_out * 2000) / 1e6)
    assert summary.cost_usd > 0
