"""Property tests of the run state machine alone: no store, no engine, no event loop.

Hypothesis draws a workflow and a history (results, failures, cancels, timeouts, pauses, crashes
and recoveries, compensations in any order); every history must keep the machine's promises.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podium.check import parse_workflow
from podium.engine.machine import Effects, Outcome, RunMachine
from podium.engine.rules import CLEANUP_TRIGGERS, Gate, trigger_gate
from podium.engine.runtime import Compiled, RunRuntime
from podium.engine.transitions import (
    RUN_EDGES,
    STEP_EDGES,
    IllegalTransition,
    move_run,
    move_step,
)
from podium.events import SYSTEM_ACTOR
from podium.model.status import RUN_FINAL, STEP_FINAL, RunStatus, StepStatus
from podium.steps import StepResult
from podium.store.records import RunState, StepState

RULES = ["all_success", "all_done", "one_success", "one_failed", "none_failed"]
Key = tuple[str, int]


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    steps: dict[str, Any] = {}
    for i in range(n):
        needs = draw(st.lists(st.sampled_from(range(i)), unique=True, max_size=3)) if i else []
        step: dict[str, Any] = {
            "kind": "sim",
            "needs": [f"s{j}" for j in needs],
            "trigger": draw(st.sampled_from(RULES)),
            "optional": draw(st.booleans()),
        }
        if draw(st.integers(0, 3)) == 0:
            step["for_each"] = list(range(draw(st.integers(0, 3))))
            step["max_parallel"] = draw(st.integers(1, 2))
        if draw(st.booleans()):
            step["compensate"] = {"kind": "sim"}
        steps[f"s{i}"] = step
    timeout = draw(st.sampled_from([None, "1h"]))
    return {"name": "prop", "steps": steps, **({"timeout": timeout} if timeout else {})}


def _encode(step_id: str, output: Any) -> bytes:
    return orjson.dumps(output)


class History:
    """Plays the engine's part: carries out effects the way engine.py does, and checks each."""

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.paused = False
        row = RunState("r1", "prop", "1", compiled.digest, {}, created_at=0.0)
        steps = {sid: StepState("r1", sid) for sid in compiled.plan.order}
        self.machine = self._machine(RunRuntime(row, compiled, steps))
        self.shadow: dict[Key, str] = {}  # what the journal holds: the statuses committed
        self.run_status = "queued"
        self.running: dict[Key, StepState] = {}
        self.held: list[StepState] = []
        self.compensate: list[StepState] = []
        self.finished = 0

    def _machine(self, rt: RunRuntime) -> RunMachine:
        return RunMachine(rt, paused=lambda workflow, agent: self.paused, encode=_encode)

    @property
    def rt(self) -> RunRuntime:
        return self.machine.run

    def apply(self, fx: Effects) -> None:
        assert not (self.finished and fx.transitions), "a finished run changed again"
        for t in fx.transitions:
            if t.step_id is None:
                assert (RunStatus(t.source), RunStatus(t.target)) in RUN_EDGES
                assert t.source == self.run_status, "the run moved from a status it was not in"
                self.run_status = t.target
            else:
                key = (t.step_id, t.index)
                assert (StepStatus(t.source), StepStatus(t.target)) in STEP_EDGES
                assert self.shadow.get(key, "pending") == t.source, (key, t)
                assert key in fx.steps, "a step changed status without being journaled"
                self.shadow[key] = t.target
        for key in fx.cancel:
            self.running.pop(key, None)
        for state in fx.start:
            key = (state.step_id, state.index)
            assert state.status == StepStatus.RUNNING and key not in self.running
            if state.index < 0:
                self._check_may_start(state)
            self.running[key] = state
        self.held.extend(fx.held)
        if fx.compensate:
            assert self.rt.row.stopping is not None, "compensation without a stop"
            self.compensate = list(fx.compensate)
        if fx.finished:
            self.finished += 1
            assert self.rt.row.status in RUN_FINAL
            assert fx.notices[-1][0] == "run.completed"
            assert not self.running, "a run finished while steps still ran"

    def _check_may_start(self, state: StepState) -> None:
        step = self.compiled.step(state.step_id)
        stopping = self.rt.row.stopping
        assert stopping in (None, "failed")
        assert stopping is None or step.trigger in CLEANUP_TRIGGERS
        upstream = [self.rt.steps[n].status for n in step.needs]
        assert trigger_gate(step.trigger, upstream) is Gate.READY

    def crash(self, now: float) -> None:
        """The process dies: a new machine resumes from what was committed."""
        old = self.rt
        row = replace(old.row)
        states = [replace(s) for s in old.all_states()]
        rt = RunRuntime(row, self.compiled, {s.step_id: s for s in states if s.index < 0})
        for s in states:
            if s.index >= 0:
                rt.instances.setdefault(s.step_id, []).append(s)
        rt.completed = old.completed
        self.machine = self._machine(rt)
        self.running, self.held, self.compensate = {}, [], []
        self.apply(self.machine.resume(now, "engine-2"))

    def release_all(self, now: float) -> None:
        held, self.held = self.held, []
        for state in held:
            self.apply(self.machine.release(now, state))


def _result(ok: bool) -> Outcome:
    if ok:
        return Outcome(StepResult(output="x", cost_usd=0.01), b'"x"')
    return Outcome(error="boom", error_type="RuntimeError")


def _drain(h: History, now: float, data: st.DataObject) -> None:
    """Lets the run end: no pause, every running step and compensation reports."""
    h.paused = False
    h.release_all(now)
    for _ in range(500):
        if h.finished:
            return
        if h.running:
            key = sorted(h.running)[0]
            h.apply(h.machine.finished(now, h.running.pop(key), _result(data.draw(st.booleans()))))
        elif h.compensate:
            h.apply(h.machine.compensated(now, h.compensate.pop(0), _result(True)))
            if not h.compensate:
                h.apply(h.machine.compensation_done(now))
        elif h.held:
            h.release_all(now)
        else:
            raise AssertionError(f"stuck: {h.rt.row.status}, steps {h.shadow}")
    raise AssertionError("the run never finished")


ACTIONS = ["finish", "finish", "finish", "cancel", "timeout", "pause", "crash", "compensate"]


def _act(h: History, action: str, now: float, data: st.DataObject) -> None:
    machine = h.machine
    if action == "finish" and h.running:
        key = data.draw(st.sampled_from(sorted(h.running)))
        h.apply(machine.finished(now, h.running.pop(key), _result(data.draw(st.booleans()))))
    elif action == "cancel":
        h.apply(machine.stop(now, RunStatus.CANCELLED, "cancelled by a test"))
    elif action == "timeout" and h.compiled.workflow.timeout_s is not None:
        h.apply(machine.stop(now, RunStatus.TIMED_OUT, "timed out"))
    elif action == "pause":
        h.paused = not h.paused
        if not h.paused:
            h.release_all(now)
    elif action == "crash":
        h.crash(now)
    elif action == "compensate" and h.compensate:
        h.apply(machine.compensated(now, h.compensate.pop(0), _result(data.draw(st.booleans()))))
        if not h.compensate:
            h.apply(machine.compensation_done(now))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflows(), st.data())
def test_every_history_keeps_the_machines_promises(
    spec: dict[str, Any], data: st.DataObject
) -> None:
    compiled = Compiled.of(parse_workflow(spec, source="<prop>"))
    h = History(compiled)
    h.apply(h.machine.queued(0.0, SYSTEM_ACTOR))
    h.apply(h.machine.start(1.0))
    now = 1.0
    for _ in range(data.draw(st.integers(0, 25))):
        if h.finished:
            break
        now += 1.0
        _act(h, data.draw(st.sampled_from(ACTIONS)), now, data)
    _drain(h, now + 1.0, data)

    rt = h.rt
    assert h.finished == 1
    # Every step ended, and no instance runs or waits on (one a failure or a stop kept from
    # starting stays pending: it never ran).
    assert all(s.status in STEP_FINAL for s in rt.steps.values())
    assert all(status in {*STEP_FINAL, "pending"} for status in h.shadow.values()), h.shadow
    stopping = rt.row.stopping
    if stopping in ("cancelled", "timed_out"):
        assert rt.row.status == stopping
    elif stopping == "failed":
        assert rt.row.status in ("failed", "compensated")
        assert any(
            s.status == "failed" and not compiled.step(s.step_id).optional
            for s in rt.steps.values()
        )
    else:
        degraded = any(s.status == "failed" or s.fallback_used for s in rt.steps.values())
        assert rt.row.status == ("degraded" if degraded else "succeeded")
    # A late result (a step that was cancelled but still reported) changes nothing.
    some = next(iter(rt.steps.values()))
    assert h.machine.finished(now + 2, some, _result(True)).transitions == []


def test_the_table_refuses_what_it_does_not_list() -> None:
    row = RunState("r", "w", "1", "d", {}, status="succeeded")
    with pytest.raises(IllegalTransition, match="succeeded -> running"):
        move_run(row, RunStatus.RUNNING, 0.0)
    assert row.status == "succeeded"
    step = StepState("r", "a", status="skipped")
    with pytest.raises(IllegalTransition, match="step a of run r: skipped -> running"):
        move_step(step, StepStatus.RUNNING, 0.0)
    done = StepState("r", "a", status="running")
    moved = move_step(done, StepStatus.SUCCEEDED, 5.0)
    assert (moved.source, moved.target, moved.at, done.status) == (
        "running", "succeeded", 5.0, "succeeded"
    )


def test_every_final_status_is_reachable_and_none_is_left() -> None:
    reachable = {target for _, target in RUN_EDGES}
    assert set(RUN_FINAL) <= reachable
    final_sources = {source for source, _ in STEP_EDGES if source in STEP_FINAL}
    assert final_sources == {StepStatus.SUCCEEDED}  # only compensation undoes a result


def test_no_engine_code_but_the_transition_table_assigns_a_status() -> None:
    engine_dir = Path(__file__).resolve().parents[2] / "src" / "podium" / "engine"
    assigns = re.compile(r"\.status\s*(=[^=]|,[^=\n]*=[^=])")
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(engine_dir.glob("*.py"))
        if path.name != "transitions.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if assigns.search(line.split("#", 1)[0])
    ]
    assert not offenders, "change a status through transitions.move_*:\n" + "\n".join(offenders)
