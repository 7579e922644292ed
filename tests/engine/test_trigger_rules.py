"""Trigger rules and `when` decide which steps run and which are skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import steplib
from hypothesis import given
from hypothesis import strategies as st
from steplib import make_workflow

from podium.engine.engine import Engine
from podium.engine.rules import Gate, trigger_gate


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    steplib.reset()
    yield


def py(fn: str, **inp: object) -> dict[str, object]:
    return {"kind": "python", "call": f"steplib:{fn}", "input": inp, "retry": {"attempts": 1}}


@pytest.mark.parametrize(
    ("rule", "upstream", "gate"),
    [
        ("all_success", ["succeeded", "succeeded"], Gate.READY),
        ("all_success", ["succeeded", "skipped"], Gate.SKIP),
        ("all_success", ["succeeded", "running"], Gate.WAIT),
        ("all_done", ["failed", "skipped"], Gate.READY),
        ("all_done", ["failed", "running"], Gate.WAIT),
        ("one_success", ["failed", "succeeded"], Gate.READY),
        ("one_success", ["failed", "skipped"], Gate.SKIP),
        ("one_failed", ["succeeded", "failed"], Gate.READY),
        ("one_failed", ["succeeded", "skipped"], Gate.SKIP),
        ("none_failed", ["succeeded", "skipped"], Gate.READY),
        ("none_failed", ["succeeded", "failed"], Gate.SKIP),
        ("none_failed", ["pending", "succeeded"], Gate.WAIT),
    ],
)
def test_trigger_rules_follow_airflow_meanings(rule: str, upstream: list[str], gate: Gate) -> None:
    assert trigger_gate(rule, upstream) is gate


async def test_a_false_when_skips_the_step_and_its_all_success_dependents(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": py("ok", name="a"),
            "b": {**py("ok", name="b"), "needs": ["a"], "when": "{{ inputs.go == 'yes' }}"},
            "c": {**py("ok", name="c"), "needs": ["b"]},
            "d": {**py("ok", name="d"), "needs": ["b"], "trigger": "none_failed"},
        },
        inputs={"go": {"type": "string", "default": "no"}},
    )
    summary = await engine.run(wf)
    assert summary.status == "succeeded"
    assert [summary.steps[s].status for s in "abcd"] == [
        "succeeded",
        "skipped",
        "skipped",
        "succeeded",
    ]
    assert summary.steps["b"].output is None
    assert "b" not in steplib.CALLS and "c" not in steplib.CALLS


async def test_a_true_when_runs_the_step(engine: Engine) -> None:
    wf = make_workflow({"a": {**py("ok", name="a"), "when": "{{ 1 < 2 }}"}})
    assert (await engine.run(wf)).steps["a"].status == "succeeded"


async def test_one_failed_and_all_done_steps_run_after_an_optional_failure(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {**py("fail", name="a"), "optional": True},
            "b": py("ok", name="b"),
            "alert": {**py("ok", name="alert"), "needs": ["a", "b"], "trigger": "one_failed"},
            "cleanup": {**py("ok", name="cleanup"), "needs": ["a", "b"], "trigger": "all_done"},
            "happy": {**py("ok", name="happy"), "needs": ["a", "b"]},
            "either": {**py("ok", name="either"), "needs": ["a", "b"], "trigger": "one_success"},
        }
    )
    summary = await engine.run(wf)
    assert summary.status == "degraded"
    statuses = {k: v.status for k, v in summary.steps.items()}
    assert statuses == {
        "a": "failed",
        "b": "succeeded",
        "alert": "succeeded",
        "cleanup": "succeeded",
        "happy": "skipped",
        "either": "succeeded",
    }


async def test_one_success_is_skipped_when_every_upstream_failed(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": {**py("fail", name="a"), "optional": True},
            "b": {**py("fail", name="b"), "optional": True},
            "c": {**py("ok", name="c"), "needs": ["a", "b"], "trigger": "one_success"},
        }
    )
    summary = await engine.run(wf)
    assert summary.steps["c"].status == "skipped"
    assert summary.status == "degraded"


async def test_independent_steps_run_concurrently(engine: Engine) -> None:
    wf = make_workflow({f"s{i}": py("tracked", name=f"s{i}", delay=0.05) for i in range(6)})
    assert (await engine.run(wf)).status == "succeeded"
    assert steplib.CONCURRENT["peak"] == 6


async def test_expressions_pass_native_outputs_between_steps(engine: Engine) -> None:
    wf = make_workflow(
        {
            "a": py("ok", name="a", value={"items": [1, 2, 3], "n": 2}),
            "b": {
                **py(
                    "echo",
                    xs="{{ steps.a.output['items'] }}",
                    items="{{ steps.a.output.items }}",
                    text="n={{ steps.a.output.n }}",
                ),
                "needs": ["a"],
            },
        }
    )
    summary = await engine.run(wf)
    assert summary.steps["b"].output == {"xs": [1, 2, 3], "items": [1, 2, 3], "text": "n=2"}


STATUSES = ["pending", "ready", "running", "succeeded", "failed", "skipped", "cancelled",
            "compensated"]


def _by_definition(rule: str, upstream: list[str]) -> Gate:
    """The rules as Airflow words them, counted the slow, obvious way."""
    ok = sum(s == "succeeded" for s in upstream)
    failed = sum(s in ("failed", "cancelled") for s in upstream)
    finished = ok + failed + sum(s == "skipped" for s in upstream)
    all_done = finished == len(upstream)
    if not upstream:
        return Gate.READY
    match rule:
        case "all_success":
            if ok == len(upstream):
                return Gate.READY
            return Gate.SKIP if finished > ok else Gate.WAIT
        case "all_done":
            return Gate.READY if all_done else Gate.WAIT
        case "one_success":
            return Gate.READY if ok else (Gate.SKIP if all_done else Gate.WAIT)
        case "one_failed":
            return Gate.READY if failed else (Gate.SKIP if all_done else Gate.WAIT)
        case _:
            return Gate.SKIP if failed else (Gate.READY if all_done else Gate.WAIT)


@given(
    rule=st.sampled_from(["all_success", "all_done", "one_success", "one_failed", "none_failed"]),
    upstream=st.lists(st.sampled_from(STATUSES), max_size=12),
)
def test_the_gate_matches_the_rules_definitions(rule: str, upstream: list[str]) -> None:
    assert trigger_gate(rule, upstream) is _by_definition(rule, upstream)
