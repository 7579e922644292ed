"""Loading and validating workflows: every rejection of the format, one line per problem."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from podium.check import load_workflow, parse_workflow
from podium.errors import WorkflowInvalid
from podium.model import Workflow
from podium.model.workflow import HttpAction, PythonAction, SimAction, WorkflowAction

# The format's reference example, with `llm` -> `sim` and `n8n` -> `http` (no provider here).
REFERENCE_EXAMPLE = """\
name: content-pipeline
version: 1
priority: normal
timeout: 5m
budget: {usd: 0.50}
inputs:
  topic: {type: string, required: true}
  depth: {type: string, default: standard}
agents:
  writer: {kind: sim, model: gpt-4o-mini, output: {text: "a draft"}, latency: 50ms}
steps:
  research:
    kind: sim
    latency: 20ms
    output: {facts: ["a", "b"]}
    retry: {attempts: 3, backoff: 500ms, max_backoff: 30s, jitter: 0.2}
    timeout: 30s
    estimate: 2s
    resources: {cpu: 1, memory: 256Mi, api_calls: 1}
  draft:
    needs: [research]
    agent: writer
    input: {notes: "{{ steps.research.output.facts }}", topic: "{{ inputs.topic }}"}
    fallback: {kind: sim, output: {text: "fallback draft"}}
    compensate: {kind: http, method: POST, url: "https://cms.example/delete-draft"}
  fanout:
    needs: [research]
    for_each: "{{ steps.research.output.facts }}"
    max_parallel: 4
    kind: python
    call: mypkg.tasks:enrich
    input: {fact: "{{ item }}"}
  publish:
    needs: [draft, fanout]
    trigger: all_success
    when: "{{ inputs.depth != 'skip' }}"
    optional: true
    kind: http
    method: POST
    url: "http://n8n.local/webhook/publish"
"""


@pytest.fixture(autouse=True)
def mypkg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable `mypkg.tasks:enrich`, as the example's python step calls."""
    root = tmp_path_factory.getbasetemp() / "pkgs"
    package = root / "mypkg"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("def enrich(fact):\n    return {'fact': fact}\n")
    monkeypatch.syspath_prepend(str(root))
    return root


def problems_of(data: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(data, "wf.yaml", **kwargs)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def workflow(**steps: Any) -> dict[str, Any]:
    return {"name": "wf", "steps": steps}


def sim(**keys: Any) -> dict[str, Any]:
    return {"kind": "sim", **keys}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


# -- the valid example ------------------------------------------------------------------------


def test_the_design_example_workflow_is_valid(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "pipeline.yaml", REFERENCE_EXAMPLE))

    assert wf.name == "content-pipeline"
    assert wf.timeout_s == 300.0
    assert list(wf.steps) == ["research", "draft", "fanout", "publish"]
    research = wf.steps["research"]
    assert (research.retry.attempts, research.retry.backoff_s) == (3, 0.5)
    assert (research.timeout_s, research.estimate_s) == (30.0, 2.0)
    assert research.resources.memory_mib == 256.0
    assert wf.steps["draft"].needs == ("research",)
    assert isinstance(wf.steps["draft"].fallback, SimAction)
    assert isinstance(wf.steps["draft"].compensate, HttpAction)
    fanout = wf.steps["fanout"]
    assert isinstance(fanout.action, PythonAction)
    assert (fanout.action.call, fanout.max_parallel) == ("mypkg.tasks:enrich", 4)
    assert wf.steps["publish"].optional


def test_the_design_example_loads_from_json_too(tmp_path: Path) -> None:
    data = yaml.safe_load(REFERENCE_EXAMPLE)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(data))
    assert load_workflow(path) == load_workflow(write(tmp_path, "pipeline.yml", REFERENCE_EXAMPLE))


def test_step_keys_override_agent_keys() -> None:
    data = {
        "name": "wf",
        "agents": {"writer": {"kind": "sim", "output": "agent", "latency": "50ms", "seed": 1}},
        "steps": {"a": {"agent": "writer", "output": "step", "retry": {"attempts": 1}}},
    }
    action = parse_workflow(data, "wf.yaml").steps["a"].action
    assert isinstance(action, SimAction)
    assert (action.output, action.latency, action.seed) == ("step", 0.05, 1)


def test_an_agent_sets_the_kind_of_a_fallback_too() -> None:
    data = {
        "name": "wf",
        "agents": {"backup": {"kind": "sim", "output": "from backup"}},
        "steps": {"a": sim(fallback={"agent": "backup"})},
    }
    fallback = parse_workflow(data, "wf.yaml").steps["a"].fallback
    assert isinstance(fallback, SimAction)
    assert fallback.output == "from backup"


def test_a_workflow_round_trips_through_its_canonical_json(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, "pipeline.yaml", REFERENCE_EXAMPLE))
    canonical = wf.to_json()
    assert Workflow.model_validate(canonical) == wf
    assert Workflow.model_validate(json.loads(json.dumps(canonical))) == wf
    assert parse_workflow(canonical, "stored") == wf


def test_parsing_leaves_the_given_data_unchanged() -> None:
    data = yaml.safe_load(REFERENCE_EXAMPLE)
    before = copy.deepcopy(data)
    parse_workflow(data, "wf.yaml")
    assert data == before


# -- rejections, one line each ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({**workflow(a=sim()), "colour": "blue"}, "error: wf.yaml: colour: unknown key"),
        (workflow(a=sim(colour="blue")), "error: wf.yaml: steps.a.colour: unknown key"),
        (
            workflow(a=sim(retry={"attempts": 2, "tries": 3})),
            "error: wf.yaml: steps.a.retry.tries: unknown key",
        ),
        (
            workflow(a=sim(fallback={"kind": "sim", "colour": 1})),
            "error: wf.yaml: steps.a.fallback.colour: unknown key",
        ),
    ],
)
def test_unknown_keys_are_rejected_where_they_are(data: dict[str, Any], line: str) -> None:
    assert problems_of(data) == [line]


def test_an_unknown_key_suggests_the_key_that_was_meant() -> None:
    data = workflow(a=sim(neds=[], retry={"atempts": 2}))
    assert problems_of(data) == [
        "error: wf.yaml: steps.a.retry.atempts: unknown key; did you mean 'attempts'?",
        "error: wf.yaml: steps.a.neds: unknown key; did you mean 'needs'?",
    ]


def test_a_need_that_names_no_step_is_rejected() -> None:
    data = workflow(a=sim(), b=sim(needs=["a", "x"]))
    assert problems_of(data) == ["error: wf.yaml: steps.b.needs: names no step (got 'x')"]


def test_a_step_that_needs_itself_is_rejected() -> None:
    data = workflow(a=sim(needs=["a"]))
    assert problems_of(data) == [
        "error: wf.yaml: steps.a.needs: a step cannot need itself (got 'a')"
    ]


def test_a_cycle_is_printed_step_by_step() -> None:
    data = workflow(a=sim(needs=["b"]), b=sim(needs=["c"]), c=sim(needs=["a"]), d=sim())
    assert problems_of(data) == ["error: wf.yaml: steps: cycle a -> b -> c -> a"]


def test_each_cycle_gets_its_own_line() -> None:
    data = workflow(a=sim(needs=["b"]), b=sim(needs=["a"]), c=sim(needs=["d"]), d=sim(needs=["c"]))
    assert problems_of(data) == [
        "error: wf.yaml: steps: cycle a -> b -> a",
        "error: wf.yaml: steps: cycle c -> d -> c",
    ]


@pytest.mark.parametrize(
    ("step", "location", "value"),
    [
        (sim(timeout="5 parsecs"), "steps.a.timeout", "'5 parsecs'"),
        (sim(retry={"backoff": "soon"}), "steps.a.retry.backoff", "'soon'"),
        (sim(latency="fast"), "steps.a.latency", "'fast'"),
    ],
)
def test_a_bad_duration_names_the_step_and_field(step: dict[str, Any], location: str,
                                                 value: str) -> None:
    [line] = problems_of(workflow(a=step))
    assert line.startswith(f"error: wf.yaml: {location}: not a duration")
    assert line.endswith(f"(got {value})")


def test_union_members_do_not_leak_into_messages() -> None:
    problems = problems_of(workflow(a=sim(latency={"p50": "x"}, when={})))
    assert problems == [
        "error: wf.yaml: steps.a.when: should be a valid string or a valid boolean (got {})",
        "error: wf.yaml: steps.a.latency.p50: not a duration; use e.g. 250ms, 2s, 5m, 1h"
        " (got 'x')",
        "error: wf.yaml: steps.a.latency.p99: missing required field",
    ]


def test_an_unknown_kind_lists_the_known_kinds() -> None:
    assert problems_of(workflow(a={"kind": "telepathy"})) == [
        "error: wf.yaml: steps.a.kind: unknown kind (got 'telepathy');"
        " expected one of python, http, sim, wait, workflow, llm, n8n"
    ]


def test_a_step_without_a_kind_says_so() -> None:
    assert problems_of(workflow(a={"output": 1})) == [
        "error: wf.yaml: steps.a.kind: missing kind (or an agent that sets it)"
    ]


def test_a_missing_required_field_is_named() -> None:
    assert problems_of(workflow(a={"kind": "http"})) == [
        "error: wf.yaml: steps.a.url: missing required field"
    ]
    assert problems_of({"steps": {"a": sim()}}) == ["error: wf.yaml: name: missing required field"]


@pytest.mark.parametrize("where", ["step", "fallback", "compensate"])
def test_an_unknown_agent_is_rejected(where: str) -> None:
    ghost = {"agent": "ghost", "kind": "sim"}
    step = ghost if where == "step" else sim(**{where: ghost})
    data = {"name": "wf", "agents": {"writer": sim()}, "steps": {"a": step}}
    location = "steps.a.agent" if where == "step" else f"steps.a.{where}.agent"
    assert problems_of(data) == [
        f"error: wf.yaml: {location}: unknown agent (got 'ghost'); agents: writer"
    ]


def test_a_bad_name_and_a_bad_step_id_say_what_is_allowed() -> None:
    data = {"name": "Content Pipeline", "steps": {"bad id": sim()}}
    assert problems_of(data) == [
        "error: wf.yaml: name: should use only lowercase letters, digits, '-', '_' and '.'"
        " (got 'Content Pipeline')",
        "error: wf.yaml: steps.bad id: a step id uses letters, digits, '_', '-' and '.',"
        " and starts with a letter or digit (got 'bad id')",
    ]


def test_max_parallel_without_for_each_is_rejected() -> None:
    assert problems_of(workflow(a=sim(max_parallel=4))) == [
        "error: wf.yaml: steps.a.max_parallel: only applies to a step with for_each (got 4)"
    ]


def test_a_wrong_default_for_an_input_is_rejected() -> None:
    data = {**workflow(a=sim()), "inputs": {"n": {"type": "integer", "default": "many"}}}
    assert problems_of(data) == [
        "error: wf.yaml: inputs.n.default: should be an integer (got 'many')"
    ]


def test_an_unknown_input_type_is_rejected() -> None:
    data = {**workflow(a=sim()), "inputs": {"n": {"type": "str"}}}
    [line] = problems_of(data)
    assert line.startswith("error: wf.yaml: inputs.n.type: should be 'string', 'integer'")


def test_a_long_value_is_cut_in_the_message() -> None:
    [line] = problems_of(workflow(a=sim(timeout="x" * 500)))
    assert len(line) < 200
    assert line.endswith("...)")


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "name": "wf",
        "colour": "blue",
        "steps": {
            "a": {"kind": "telepathy"},
            "b": sim(needs=["a", "ghost"], timeout="soon", input={"x": "{{ steps.c.output }}"}),
            "c": sim(needs=["d"]),
            "d": sim(needs=["c"], agent="nobody"),
        },
    }
    assert problems_of(data) == [
        "error: wf.yaml: steps.a.kind: unknown kind (got 'telepathy');"
        " expected one of python, http, sim, wait, workflow, llm, n8n",
        "error: wf.yaml: steps.b.timeout: not a duration; use e.g. 250ms, 2s, 5m, 1h (got 'soon')",
        "error: wf.yaml: colour: unknown key",
        "error: wf.yaml: steps.b.needs: names no step (got 'ghost')",
        "error: wf.yaml: steps.b.input: reads steps.c, which is not among its needs; add it there",
        "error: wf.yaml: steps.d.agent: unknown agent (got 'nobody'); agents: none are defined",
        # the whole-workflow checks (podium.check) come after what the definition says alone
        "error: wf.yaml: steps: cycle c -> d -> c",
    ]


# -- expressions ------------------------------------------------------------------------------


def test_an_expression_may_read_any_upstream_step() -> None:
    data = workflow(
        a=sim(), b=sim(needs=["a"]),
        c=sim(needs=["b"], input={"x": "{{ steps.a.output }}"}, when="{{ steps.b.output }}"),
    )
    assert parse_workflow(data, "wf.yaml").steps["c"].action.input == {"x": "{{ steps.a.output }}"}


def test_an_expression_reading_a_step_that_is_not_upstream_is_rejected() -> None:
    data = workflow(a=sim(), b=sim(for_each="{{ steps.a.output }}", max_parallel=2))
    assert problems_of(data) == [
        "error: wf.yaml: steps.b.for_each: reads steps.a, which is not among its needs;"
        " add it there"
    ]


def test_an_expression_reading_no_step_is_rejected() -> None:
    data = workflow(a=sim(fallback={"kind": "sim", "output": "{{ steps.ghost.output }}"}))
    assert problems_of(data) == [
        "error: wf.yaml: steps.a.fallback.output: reads steps.ghost, which names no step"
    ]


def test_a_compensation_may_read_its_own_step() -> None:
    step = sim(compensate={"kind": "http", "url": "http://x/{{ steps.a.output.id }}"})
    parse_workflow(workflow(a=step), "wf.yaml")


def test_a_bad_expression_names_its_field() -> None:
    data = workflow(a={"kind": "http", "url": "http://x/{{ inputs.id ", "when": "{{ 1 + }}"})
    problems = problems_of(data)
    assert [p.split(": bad expression")[0] for p in problems] == [
        "error: wf.yaml: steps.a.when", "error: wf.yaml: steps.a.url",
    ]


def test_a_sandbox_violation_is_a_validation_error() -> None:
    [line] = problems_of(workflow(a=sim(input={"x": "{{ inputs.__class__ }}"})))
    assert line.startswith("error: wf.yaml: steps.a.input: expression '{{ inputs.__class__ }}'")
    assert "sandbox forbids" in line


# -- python calls -----------------------------------------------------------------------------


def test_an_unimportable_call_is_rejected() -> None:
    data = workflow(
        a={"kind": "python", "call": "no_such_module_here:run"},
        b={"kind": "python", "call": "mypkg.tasks:missing",
           "compensate": {"kind": "python", "call": "mypkg.tasks:enrich"}},
    )
    assert problems_of(data) == [
        "error: wf.yaml: steps.a.call: cannot import module 'no_such_module_here':"
        " No module named 'no_such_module_here' (got 'no_such_module_here:run')",
        "error: wf.yaml: steps.b.call: module 'mypkg.tasks' has no attribute 'missing'"
        " (got 'mypkg.tasks:missing')",
    ]


def test_calls_are_left_unresolved_when_asked() -> None:
    data = workflow(a={"kind": "python", "call": "no_such_module_here:run"})
    wf = parse_workflow(data, "wf.yaml", resolve_calls=False)
    assert wf.steps["a"].kind == "python"
    assert "no_such_module_here" not in sys.modules


def test_a_malformed_call_says_what_a_call_looks_like() -> None:
    assert problems_of(workflow(a={"kind": "python", "call": "mypkg.tasks.enrich"})) == [
        "error: wf.yaml: steps.a.call: should be module:function, e.g. mypkg.tasks:enrich"
        " (got 'mypkg.tasks.enrich')"
    ]


# -- files ------------------------------------------------------------------------------------


def test_malformed_yaml_is_one_line_with_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", """\
        name: wf
        steps:
          a: {kind: sim
          b: 1
        """)
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    [line] = caught.value.problems
    assert line.startswith(f"error: {path}: line 4, column 4: invalid YAML: ")
    assert "\n" not in line


def test_malformed_json_is_one_line_with_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '{"name": "wf",\n "steps": }')
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    assert caught.value.problems == [
        f"error: {path}: line 2, column 11: invalid JSON: Expecting value"
    ]


def test_a_key_written_twice_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "twice.yaml", """\
        name: wf
        steps:
          a: {kind: sim}
          a: {kind: http, url: "http://x"}
        """)
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    assert caught.value.problems == [
        f"error: {path}: line 4, column 3: invalid YAML: duplicate key 'a'"
    ]


@pytest.mark.parametrize(
    ("text", "what"),
    [("- a\n- b\n", "not a list (got ['a', 'b'])"), ("just text\n", "not a str (got 'just text')"),
     ("", "the file is empty")],
)
def test_a_top_level_that_is_not_a_mapping_is_rejected(tmp_path: Path, text: str,
                                                        what: str) -> None:
    path = write(tmp_path, "wf.yaml", text)
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    [line] = caught.value.problems
    assert line.startswith(f"error: {path}: ")
    assert what in line


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    assert caught.value.problems == [
        f"error: {path}: cannot read a workflow definition: No such file or directory"
    ]


def test_a_definition_over_10_mib_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(11 * 1024 * 1024)  # sparse: no real disk use
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(path)
    assert caught.value.problems == [
        f"error: {path}: the file is 11.0 MiB, over the 10 MiB limit for a workflow definition"
    ]


# -- sub-workflow files -----------------------------------------------------------------------


CHILD = """\
name: child
steps:
  only: {kind: sim, output: 42}
"""


def test_a_sub_workflow_file_is_inlined_as_its_canonical_json(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    write(tmp_path / "flows", "child.yaml", CHILD)
    parent = write(tmp_path, "parent.yaml", """\
        name: parent
        steps:
          sub: {kind: workflow, workflow: flows/child.yaml}
          named: {kind: workflow, workflow: registered-name}
        """)
    wf = load_workflow(parent)
    sub, named = wf.steps["sub"].action, wf.steps["named"].action
    assert isinstance(sub, WorkflowAction) and isinstance(named, WorkflowAction)
    assert sub.definition == load_workflow(tmp_path / "flows" / "child.yaml").to_json()
    assert named.definition is None
    assert Workflow.model_validate(wf.to_json()) == wf


def test_a_sub_workflow_is_found_relative_to_base_dir(tmp_path: Path) -> None:
    write(tmp_path, "child.yaml", CHILD)
    data = workflow(sub={"kind": "workflow", "workflow": "child.yaml"})
    wf = parse_workflow(data, "api", base_dir=tmp_path)
    action = wf.steps["sub"].action
    assert isinstance(action, WorkflowAction) and action.definition is not None
    assert action.definition["name"] == "child"


def test_the_problems_of_a_sub_workflow_are_reported_through_its_step(tmp_path: Path) -> None:
    write(tmp_path, "child.yaml", "name: child\nsteps:\n  only: {kind: telepathy}\n")
    data = workflow(
        sub={"kind": "workflow", "workflow": "child.yaml"},
        gone={"kind": "workflow", "workflow": "missing.yml"},
    )
    assert problems_of(data, base_dir=tmp_path) == [
        f"error: wf.yaml: steps.sub.workflow: {tmp_path / 'child.yaml'}: steps.only.kind:"
        " unknown kind (got 'telepathy'); expected one of python, http, sim, wait, workflow,"
        " llm, n8n",
        f"error: wf.yaml: steps.gone.workflow: {tmp_path / 'missing.yml'}:"
        " cannot read a workflow definition: No such file or directory",
    ]


def test_sub_workflow_files_that_include_each_other_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\nsteps:\n  s: {kind: workflow, workflow: b.yaml}\n")
    write(tmp_path, "b.yaml", "name: b\nsteps:\n  s: {kind: workflow, workflow: a.yaml}\n")
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(tmp_path / "a.yaml")
    assert caught.value.problems == [
        f"error: {tmp_path / 'a.yaml'}: steps.s.workflow: {tmp_path / 'b.yaml'}: steps.s.workflow:"
        " workflow files include each other: a.yaml -> b.yaml -> a.yaml"
    ]
