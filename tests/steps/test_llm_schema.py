"""Structured output: `output_schema` on an llm step, sent natively (OpenAI json_schema,
Anthropic forced tool), validated, fed back when invalid; checked at load and downstream;
answered by the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_providers import FEEDBACK_MARK, FakeServer, sample
from llmlib import KEYS, FakeHost, run_spec, spec
from typer.testing import CliRunner

from podium.bus import open_bus
from podium.check import load_workflow, parse_workflow
from podium.cli.app import app
from podium.engine.engine import Engine
from podium.errors import StepError, WorkflowInvalid
from podium.model.advice import workflow_warnings
from podium.model.policy import TrustPolicy
from podium.model.workflow import SimAction
from podium.settings import Settings
from podium.steps.base import StepContext
from podium.steps.llm import LlmRunner
from podium.steps.sim import SimRunner
from podium.store import open_store

FACTS = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "facts": {"type": "array", "items": {"type": "string"}},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["title", "facts"],
}
CLOSED = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


# -- sent natively, answered as the object ----------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_openai_gets_a_json_schema_response_format_and_the_object_is_the_output(
    runner: LlmRunner, host: FakeHost, server: FakeServer, stream: bool
) -> None:
    result = await run_spec(runner, host, spec(server, output_schema=FACTS, stream=stream))

    assert result.output == sample(FACTS)
    assert result.cost_usd > 0
    [request] = server.requests
    assert request["body"]["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "final_answer", "schema": FACTS, "strict": False,  # open: not strict-able
    }}
    await run_spec(runner, host, spec(server, output_schema=CLOSED))
    assert server.requests[-1]["body"]["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_gets_a_forced_answer_tool_and_its_input_is_the_output(
    runner: LlmRunner, host: FakeHost, server: FakeServer, stream: bool
) -> None:
    result = await run_spec(
        runner, host, spec(server, "anthropic", output_schema=FACTS, stream=stream)
    )

    assert result.output == sample(FACTS)
    [request] = server.requests
    assert request["body"]["tools"] == [{
        "name": "final_answer", "description": "Give the final answer: its input is the answer.",
        "input_schema": FACTS,
    }]
    assert request["body"]["tool_choice"] == {"type": "tool", "name": "final_answer"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_schema_that_is_not_an_object_travels_wrapped_and_comes_back_bare(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    result = await run_spec(runner, host, spec(server, provider, output_schema=schema))
    assert result.output == ["fake"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_invalid_answer_is_retryable_and_the_next_attempt_tells_the_model_why(
    runner: LlmRunner, host: FakeHost, server: FakeServer, provider: str
) -> None:
    keys = spec(server, provider, output_schema=FACTS, behaviour="invalid-once")

    with pytest.raises(StepError) as caught:
        await run_spec(runner, host, keys)
    assert "does not match output_schema: at $.title: 12345 is not of type 'string'" in str(
        caught.value
    )
    result = await run_spec(runner, host, keys, attempt=2)

    assert result.output == sample(FACTS)
    first, second = (r["body"]["messages"] for r in server.requests)
    assert not any(FEEDBACK_MARK in json.dumps(m) for m in first)
    assert second[:-2] == first  # the conversation, then the bad answer and why it was bad
    assert second[-2]["role"] == "assistant" and "12345" in json.dumps(second[-2])
    assert second[-1]["role"] == "user" and "at $.title" in second[-1]["content"]


async def test_a_cached_structured_answer_is_the_object_unchanged(
    runner: LlmRunner, host: FakeHost, server: FakeServer
) -> None:
    first = await run_spec(runner, host, spec(server, output_schema=FACTS, cache="1h"))
    second = await run_spec(runner, host, spec(server, output_schema=FACTS, cache="1h"))
    assert first.output == second.output == sample(FACTS)
    assert len(server.requests) == 1 and second.cost_usd == 0


async def test_in_the_engine_a_retry_fixes_the_answer_and_a_downstream_step_reads_its_fields(
    server: FakeServer, tmp_path: Path
) -> None:
    wf = parse_workflow({"name": "facts", "steps": {
        "research": {"kind": "llm", "model": "gpt-4o-mini", "base_url":
                     f"{server.url}/invalid-once/v1", "prompt": "facts please",
                     "output_schema": FACTS, "retry": {"attempts": 3, "backoff": "10ms",
                                                       "jitter": 0}},
        "use": {"kind": "sim", "needs": ["research"],
                "output": "{{ steps.research.output.title }}/{{ steps.research.output.facts[0] }}"},
    }})
    async with (
        open_store(f"sqlite:///{tmp_path / 'podium.db'}") as store,
        open_bus("memory://") as bus,
        Engine(store, bus, Settings(poll_interval_s=0.02, lease_s=5), secrets=KEYS) as engine,
    ):
        summary = await engine.run(wf)

    assert summary.status == "succeeded", summary.steps["research"].error
    assert summary.steps["research"].attempts == 2 and len(server.requests) == 2
    assert summary.outputs["use"] == "fake/fake"


# -- checked at load --------------------------------------------------------------------------


def _llm(**keys: Any) -> dict[str, Any]:
    return {"kind": "llm", "model": "gpt-4o-mini", "prompt": "p", **keys}


def test_a_bad_schema_is_one_line_naming_the_field() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow({"name": "w", "steps": {"a": _llm(output_schema={"type": "objekt"})}})
    [line] = caught.value.problems
    assert line.startswith("error: workflow: steps.a.output_schema: is not a valid JSON Schema")


def test_a_schema_file_is_read_relative_to_the_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "facts.json").write_text(json.dumps(FACTS))
    (tmp_path / "flow.yaml").write_text(
        "name: w\nsteps:\n  a: {kind: llm, model: gpt-4o-mini, prompt: p,"
        " output_schema: schemas/facts.json}\n"
    )
    workflow = load_workflow(tmp_path / "flow.yaml")
    assert workflow.steps["a"].action.output_schema == FACTS  # type: ignore[union-attr]

    (tmp_path / "broken.yaml").write_text(
        "name: w\nsteps:\n  a: {kind: llm, model: gpt-4o-mini, prompt: p,"
        " output_schema: schemas/missing.json}\n"
    )
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(tmp_path / "broken.yaml")
    [line] = caught.value.problems
    assert "steps.a.output_schema:" in line and "missing.json" in line


def test_a_module_class_string_or_a_file_from_the_api_is_refused() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow({"name": "w", "steps": {"a": _llm(output_schema="app.models:Facts")}})
    assert "a `module:Class` model is for the Python SDK" in caught.value.problems[0]
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(
            {"name": "w", "steps": {"a": _llm(output_schema="facts.json")}},
            policy=TrustPolicy(),
        )
    assert any("a schema file is not allowed for a definition from the API" in line
               for line in caught.value.problems)


def _reader(expression: str) -> dict[str, Any]:
    return {"name": "w", "steps": {
        "a": _llm(output_schema=FACTS),
        "b": {"kind": "sim", "needs": ["a"], "output": expression},
    }}


@pytest.mark.parametrize("expression", [
    "{{ steps.a.output.title }}", "{{ steps.a.output.facts[0] | upper }}",
    "{{ steps.a.output['score'] }}", "{{ steps.a.output }}",
])
def test_reading_declared_fields_is_valid_and_quiet(expression: str) -> None:
    workflow = parse_workflow(_reader(expression))
    assert workflow_warnings(workflow.to_json()) == []


@pytest.mark.parametrize("expression", [
    "{{ steps.a.output.titel }}", "{{ steps.a.output.title.length }}",
    "{{ steps.a.output.facts[0].name }}",
])
def test_reading_a_field_the_schema_does_not_declare_fails_validation(expression: str) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(_reader(expression))
    [line] = caught.value.problems
    assert line.startswith("error: workflow: steps.b.output: reads steps.a.output.")
    assert "a field the output_schema of a does not declare" in line


def test_a_read_the_schema_cannot_judge_is_a_warning() -> None:
    open_schema = {"type": "object", "additionalProperties": {"type": "string"}}
    data = _reader("{{ steps.a.output[inputs.key] }} {{ steps.a.output.anything }}")
    data["steps"]["a"]["output_schema"] = {**FACTS, **open_schema}
    warnings = workflow_warnings(parse_workflow(data).to_json())
    assert [w.message for w in warnings] == [
        "reads steps.a.output[...]: the output_schema of a cannot tell whether that field is"
        " there",
        "reads steps.a.output.anything: the output_schema of a cannot tell whether that field"
        " is there",
    ]


def test_podium_validate_prints_warnings_and_still_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: w\nsteps:\n  hook: {kind: n8n, webhook: 'https://n8n.example/webhook-test/abc'}\n"
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid (1 step)" in result.stdout
    assert f"warning: {path}: steps.hook.webhook: a /webhook-test/ URL answers only while" in (
        result.stderr
    )

    path.write_text("name: w\nsteps:\n  a: {kind: llm, model: gpt-4o-mini, prompt: p,"
                    " output_schema: {type: 3}}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "steps.a.output_schema: is not a valid JSON Schema" in result.stderr


# -- the simulator answers schemas ------------------------------------------------------------


def _sim_ctx(key: str) -> StepContext:
    return StepContext(
        run_id="r", step_id="s", attempt=1, index=None, item=None, idempotency_key=key,
        inputs={}, workflow="w", timeout_s=5,
    )


async def test_the_simulator_answers_a_schema_validly_and_deterministically_by_seed() -> None:
    action = SimAction.model_validate({"kind": "sim", "seed": 7, "output_schema": FACTS})
    host: Any = FakeHost({})
    first = await SimRunner().run(action, _sim_ctx("r/s"), host)
    again = await SimRunner().run(action, _sim_ctx("r/s"), host)
    other = await SimRunner().run(action, _sim_ctx("r/other"), host)

    assert first.output == again.output != other.output
    assert set(first.output) == {"title", "facts", "score"}
    assert isinstance(first.output["facts"][0], str) and 1 <= first.output["score"] <= 5


def test_a_downstream_read_of_a_sim_answer_is_checked_too() -> None:
    with pytest.raises(WorkflowInvalid):
        parse_workflow({"name": "w", "steps": {
            "a": {"kind": "sim", "output_schema": FACTS},
            "b": {"kind": "sim", "needs": ["a"], "output": "{{ steps.a.output.nope }}"},
        }})


def test_a_for_each_answer_is_read_item_by_item() -> None:
    data = _reader("{{ steps.a.output[0].title }}")
    data["steps"]["a"]["for_each"] = [1, 2]
    assert workflow_warnings(parse_workflow(data).to_json()) == []
    data["steps"]["b"]["output"] = "{{ steps.a.output[0].nope }}"
    with pytest.raises(WorkflowInvalid, match="does not declare"):
        parse_workflow(data)
