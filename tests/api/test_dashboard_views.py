"""The dashboard's drawings and forms as plain functions: status colours readable, the graph
laid out by parallel groups (a fan-out of 100 wraps), the timeline of attempts and backoffs,
and a start form's values typed by the declared inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from podium.api.dashboard.colors import STATUS_COLORS, TEXT, contrast
from podium.api.dashboard.dag import MAX_ROWS, NODE_H, NODE_W, layout
from podium.api.dashboard.start import fields_of, inputs_of
from podium.api.dashboard.timeline import rows_of, timeline
from podium.errors import WorkflowInvalid
from podium.events import Event
from podium.model.status import RunStatus, StepStatus
from podium.model.workflow import Workflow
from podium.plan import build_plan


def test_every_status_colour_is_readable_under_its_text() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert {s.value for s in RunStatus} | {s.value for s in StepStatus} <= set(STATUS_COLORS)
    weak = {s: round(contrast(TEXT, c), 2) for s, c in STATUS_COLORS.items()
            if contrast(TEXT, c) < 4.5}
    assert not weak, f"below WCAG AA 4.5:1: {weak}"


def _fanout(width: int) -> Workflow:
    steps = {"start": {"kind": "sim"},
             **{f"p{k}": {"kind": "sim", "needs": ["start"]} for k in range(width)},
             "join": {"kind": "sim", "needs": [f"p{k}" for k in range(width)]}}
    return Workflow.model_validate({"name": "fan", "steps": steps})


def test_a_fanout_of_100_wraps_into_a_block_without_overlaps() -> None:
    wf = _fanout(100)
    plan = build_plan(wf)
    dag = layout(plan, {s: st.needs for s, st in wf.steps.items()}, {"p3": "failed"})
    assert len(dag.nodes) == 102 and [c.size for c in dag.columns] == [1, 100, 1]
    spots = {(n.x, n.y) for n in dag.nodes}
    assert len(spots) == 102  # no two steps drawn in one place
    assert dag.height <= MAX_ROWS * (NODE_H + 10) + 80
    assert len(dag.edges) == 2  # start -> the block -> join, not 200 crossing lines
    middle = [n for n in dag.nodes if n.step_id.startswith("p")]
    assert max(n.x for n in middle) - min(n.x for n in middle) >= 5 * NODE_W
    assert next(n for n in dag.nodes if n.step_id == "p3").status == "failed"
    assert {n.step_id for n in dag.nodes if n.critical} == set(plan.critical_path)


def test_a_small_graph_has_one_edge_per_need_and_marks_the_critical_path() -> None:
    wf = Workflow.model_validate({"name": "d", "steps": {
        "a": {"kind": "sim"}, "b": {"kind": "sim", "needs": ["a"], "estimate": "5s"},
        "c": {"kind": "sim", "needs": ["a"]}, "d": {"kind": "sim", "needs": ["b", "c"]}}})
    dag = layout(build_plan(wf), {s: st.needs for s, st in wf.steps.items()}, {})
    assert len(dag.edges) == 4
    assert {(e.source, e.target) for e in dag.edges if e.critical} == {("a", "b"), ("b", "d")}
    xs = {n.step_id: n.x for n in dag.nodes}
    assert xs["a"] < xs["b"] == xs["c"] < xs["d"]


def _event(kind: str, ts: float, **payload: object) -> Event:
    return Event(f"agent.task.{kind}", "run", dict(payload), timestamp=ts)


def test_the_timeline_shows_failed_attempts_backoff_and_a_fallback() -> None:
    events = [
        Event("run.queued", "run", {}, timestamp=100.0),
        _event("started", 100.0, step="a", index=-1, attempt=1),
        _event("retrying", 101.0, step="a", index=-1, attempt=1, delay_s=0.5, error="x"),
        _event("started", 101.5, step="a", index=-1, attempt=2),
        _event("fallback", 102.0, step="a", index=-1, error="x"),
        _event("completed", 102.5, step="a", index=-1),
        _event("waiting", 102.5, step="b", signal="approval"),
    ]
    rows = rows_of(["a", "b"], events)
    kinds = [(s.kind, s.start, s.end) for s in rows[0].segments]
    assert kinds == [("failed", 100.0, 101.0), ("backoff", 101.0, 101.5),
                     ("attempt", 101.5, 102.5)]
    assert [m.kind for m in rows[0].markers] == ["fallback"]
    assert rows[1].segments[0].kind == "wait" and rows[1].segments[0].end is None
    drawn = timeline(["a", "b"], events, now=104.0)
    assert drawn.span_s == pytest.approx(4.0)  # an open wait reaches to now
    assert len(drawn.bars) == 4 and len(drawn.markers) == 1


def test_the_timeline_draws_waits_for_a_slot_and_for_other_guards() -> None:
    events = [
        _event("started", 10.0, step="a", index=-1, attempt=1),
        _event("waiting", 10.0, step="a", index=-1, attempt=1, **{"for": "slot"}),
        _event("started", 12.0, step="a", index=-1, attempt=1, after_waiting=True),
        _event("waited", 12.0, step="a", index=-1, attempt=1, guard="limits", waited_s=2.0),
        _event("completed", 13.0, step="a", index=-1),
        _event("started", 10.0, step="b", index=-1, attempt=1),
        _event("waited", 11.5, step="b", index=-1, attempt=1, guard="circuit", waited_s=1.5),
        _event("completed", 12.5, step="b", index=-1),
    ]
    a, b = rows_of(["a", "b"], events)
    # The slot wait replaces the attempt's start: one wait bar, then one attempt bar.
    assert [(s.kind, s.start, s.end) for s in a.segments] == [
        ("wait", 10.0, 12.0), ("attempt", 12.0, 13.0)
    ]
    assert ("wait", 10.0, 11.5) in [(s.kind, s.start, s.end) for s in b.segments]


def test_start_form_values_are_typed_by_the_declared_inputs() -> None:
    wf = Workflow.model_validate({"name": "w", "inputs": {
        "topic": {"type": "string", "required": True}, "depth": {"type": "integer"},
        "ratio": {"type": "number"}, "dry": {"type": "boolean"},
        "tags": {"type": "array", "default": ["a"]}}, "steps": {"s": {"kind": "sim"}}})
    assert [f.widget for f in fields_of(wf)] == ["text", "number", "number", "checkbox",
                                                 "textarea"]
    values = inputs_of(wf, {"in_topic": "llamas", "in_depth": "3", "in_ratio": "0.5",
                            "in_dry": "on", "in_tags": '["x", "y"]'})
    assert values == {"topic": "llamas", "depth": 3, "ratio": 0.5, "dry": True,
                      "tags": ["x", "y"]}
    assert inputs_of(wf, {"in_topic": "t", "in_depth": ""}) == {"topic": "t", "dry": False}
    with pytest.raises(WorkflowInvalid, match=r"inputs\.depth"):
        inputs_of(wf, {"in_depth": "three"})


def test_the_trace_link_follows_the_template_and_the_runs_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    from podium.api.dashboard.run_page import TRACE_ENV, trace_url
    from podium.store.records import RunState

    row = RunState("run-1", "w", "1", "d", {})
    assert trace_url(row) is None  # no tracing UI configured
    monkeypatch.setenv(TRACE_ENV, "http://jaeger:16686/trace/{trace_id}?run={run_id}")
    derived = hashlib.sha256(b"run-1").hexdigest()[:32]
    assert trace_url(row) == f"http://jaeger:16686/trace/{derived}?run=run-1"
    # A run started under a span keeps its traceparent (`runs.trace_parent`).
    traced = SimpleNamespace(run_id="run-1", trace_parent=f"00-{'ab' * 16}-{'cd' * 8}-01")
    assert trace_url(traced) == f"http://jaeger:16686/trace/{'ab' * 16}?run=run-1"  # type: ignore[arg-type]
    monkeypatch.setenv(TRACE_ENV, "javascript:alert(1)")
    assert trace_url(row) is None
