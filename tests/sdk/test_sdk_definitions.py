"""Workflows defined in Python give the model their YAML gives, and YAML round-trips.

Also the definition rules: needs from references, typed inputs, one-line errors for misuse.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sdk_flows

import podium
from podium import sdk
from podium.errors import PodiumError, WorkflowInvalid
from podium.model.workflow import Workflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
YAML_EXAMPLES = sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "python").glob("*.yaml"))
# Each hand-written Python form and the YAML file it stands for.
PYTHON_FORMS = [
    ("content_pipeline", "content_pipeline", EXAMPLES / "content_pipeline.yaml"),
    ("etl", "etl", EXAMPLES / "etl.yaml"),
    ("approval", "approval", EXAMPLES / "approval.yaml"),
    ("every_kind", "every_kind", EXAMPLES / "python" / "every_kind.yaml"),
    ("research_agent", "research_agent", EXAMPLES / "research_agent.yaml"),
]


@pytest.fixture(autouse=True)
def example_modules() -> Iterator[None]:
    """The examples import as the CLI imports them: their folders on sys.path."""
    added = [str(EXAMPLES), str(EXAMPLES / "python")]
    sys.path[:0] = added
    yield
    for folder in added:
        sys.path.remove(folder)


def test_every_example_is_an_example_of_both_forms() -> None:
    assert len(YAML_EXAMPLES) >= 5
    assert {p for _, _, p in PYTHON_FORMS} <= set(YAML_EXAMPLES)


@pytest.mark.parametrize(("module", "name", "yaml_path"), PYTHON_FORMS,
                         ids=[m for m, _, _ in PYTHON_FORMS])
def test_the_python_form_gives_the_model_of_the_yaml(
    module: str, name: str, yaml_path: Path
) -> None:
    definition = getattr(__import__(module), name)
    from_python = definition.build()
    from_yaml = podium.load_workflow(yaml_path)
    assert from_python == from_yaml
    assert list(from_python.steps) == list(from_yaml.steps)  # the order the author wrote
    assert podium.build_plan(from_python).to_json() == podium.build_plan(from_yaml).to_json()


@pytest.mark.parametrize("path", YAML_EXAMPLES, ids=[p.name for p in YAML_EXAMPLES])
def test_to_yaml_loads_back_to_the_same_model(path: Path) -> None:
    workflow = podium.load_workflow(path)
    text = workflow.to_yaml()
    assert podium.from_yaml(text, source="again", base_dir=path.parent) == workflow
    assert Workflow.from_yaml(text, "again", path.parent) == workflow
    again = tmp = path.parent / f".sdk-roundtrip-{path.stem}.yaml"
    try:
        tmp.write_text(text)
        again_model = podium.load_workflow(again)
    finally:
        tmp.unlink()
    assert again_model == workflow


def test_a_python_definition_round_trips_through_yaml() -> None:
    workflow = sdk_flows.chain.build()
    assert podium.from_yaml(sdk_flows.chain.to_yaml()) == workflow


def test_needs_come_from_references_without_redundant_edges() -> None:
    steps = sdk_flows.chain.definition()["steps"]
    assert "needs" not in steps["a"]
    assert steps["b"]["needs"] == ["a"]
    assert steps["c"]["needs"] == ["b"]  # it reads a too, but a is upstream of b already
    assert steps["c"]["output"]["sum"] == "{{ steps.a.output.x }}+{{ steps.b.output.y }}"
    assert steps["d"]["needs"] == ["a", "b"]  # a as given, b for its `when`
    assert steps["d"]["when"] == "{{ steps.b.output.y }}"
    assert steps["d"]["compensate"] == {
        "kind": "python", "call": "sdk_flows:undo", "input": {"what": "d of {{ run.id[:8] }}"},
    }


def test_inputs_follow_the_signature() -> None:
    assert sdk_flows.chain.definition()["inputs"] == {
        "label": {"type": "string", "required": True, "description": "what to call it"},
        "size": {"type": "number"},
        "flags": {"type": "object"},
    }
    assert sdk_flows.sums.definition()["inputs"] == {"n": {"type": "integer", "default": 3}}


def test_a_step_function_runs_as_a_python_step(tmp_path: Path) -> None:
    settings = podium.Settings(store=f"sqlite:///{tmp_path / 'sdk.db'}")
    summary = podium.run(sdk_flows.sums, {"n": 4}, settings=settings)
    assert summary.status == "succeeded"
    assert summary.outputs["total"] == 2 * (0 + 1 + 2 + 3)
    assert [d["attempt"] for d in summary.outputs["double"]] == [1, 1, 1, 1]


def test_a_step_id_used_twice_is_one_line_naming_it() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        sdk_flows.twice.definition()
    assert caught.value.problems == [
        "error: sdk_flows:twice: steps.same: the id is used twice; give the second step another"
        " (e.g. .options(id=...))"
    ]


def test_needs_take_handles_not_strings() -> None:
    with pytest.raises(WorkflowInvalid, match=r"steps.second.needs: takes the steps' handles"):
        sdk_flows.strings.definition()


def test_a_python_if_on_a_reference_says_to_use_when() -> None:
    with pytest.raises(TypeError, match="give the step when="):
        sdk_flows.branching.definition()


def test_model_problems_name_the_definition_one_line_each() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        sdk_flows.invalid.build()
    problems = caught.value.problems
    assert problems[0].startswith("error: sdk_flows:invalid: steps.bad.fail_rate:")
    assert any(p.startswith("error: sdk_flows:invalid: steps.unpriced.model:") for p in problems)
    assert all("\n" not in p for p in problems)


def test_steps_belong_in_a_workflow_body() -> None:
    with pytest.raises(WorkflowInvalid, match="outside a @workflow function"):
        sdk.sim().step("loose")
    with pytest.raises(TypeError, match=r"total.fn\(...\)"):
        sdk_flows.total(values=[])
    assert sdk_flows.total.fn(values=[{"value": 2}]) == 2


def test_references_render_as_the_expressions_yaml_would_hold() -> None:
    assert str(sdk.inputs.customer["first-name"]) == "{{ inputs.customer['first-name'] }}"
    assert str(sdk.item.rows[0]) == "{{ item.rows[0] }}"
    assert str(sdk.expr("{{ inputs.n * 2 }}")) == "{{ inputs.n * 2 }}"
    with pytest.raises(TypeError, match="for_each"):
        list(sdk.item)


def test_an_input_annotation_without_a_yaml_type_is_refused() -> None:
    def odd(when: complex) -> None:
        pass

    with pytest.raises(WorkflowInvalid, match=r"inputs.when: cannot declare an input of type"):
        sdk.workflow(odd).definition()


def test_from_yaml_reports_bad_text_in_one_line() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        podium.from_yaml("name: x\nsteps: [", source="pasted")
    assert caught.value.problems[0].startswith("error: pasted: line 2")


def test_podium_run_reads_the_config_file_podium_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_STORE", f"sqlite:///{tmp_path / 'cfg.db'}")
    monkeypatch.setenv("PODIUM_CONFIG", str(tmp_path / "missing-sdk.toml"))
    with pytest.raises(PodiumError, match=r"missing-sdk\.toml"):
        podium.run(sdk_flows.sums)


def test_an_agent_carries_its_policies_and_its_steps_start_from_it() -> None:
    helper = sdk.agent("helper", sdk.sim(latency="10ms", output={"ok": True}),
                       retry=sdk.RetryPolicy(attempts=2), fallback=sdk.sim(output={"ok": False}))
    other = sdk.agent("helper", sdk.sim(latency="20ms"))

    @sdk.workflow(name="agents")
    def agents(topic: str = "x") -> None:
        first = helper.step("first", input={"topic": topic})
        sdk.sim(output={"ok": first["ok"]}).step("second", agent=helper)

    @sdk.workflow(name="clash")
    def clash() -> None:
        helper.step("first")
        other.step("second")

    workflow = agents.build()
    assert workflow.agents == {"helper": {
        "kind": "sim", "latency": "10ms", "output": {"ok": True}, "retry": {"attempts": 2},
        "fallback": {"kind": "sim", "output": {"ok": False}},
    }}
    first, second = workflow.steps["first"], workflow.steps["second"]
    assert (first.agent, first.retry.attempts, first.action.input) == (
        "helper", 2, {"topic": "{{ inputs.topic }}"})
    assert second.needs == ("first",)
    assert second.action.model_dump()["output"] == {"ok": "{{ steps.first.output.ok }}"}
    assert second.fallback is not None and second.action.model_dump()["latency"] == 0.01
    with pytest.raises(WorkflowInvalid, match="two different agents are named 'helper'"):
        clash.definition()


def test_an_answer_schema_can_be_a_pydantic_model() -> None:
    from pydantic import BaseModel, Field

    class Findings(BaseModel):
        answer: str
        facts: list[str] = Field(min_length=1)

    @sdk.workflow(name="typed-answer")
    def typed_answer() -> None:
        sdk.sim(output_schema=Findings, seed=3).step("answer")

    schema = typed_answer.build().steps["answer"].action.output_schema
    assert schema == Findings.model_json_schema()
    summary = podium.run(typed_answer, {})
    assert summary.status == "succeeded"
    Findings.model_validate(summary.outputs["answer"])  # the simulated answer fits the model
