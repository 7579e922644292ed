"""The workloads W1–W6 of bench/README.md, built as workflow dicts and validated into `Workflow`s.

A `Spec` says what to run, how many runs go at once (`concurrency`) and how many rounds follow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from podium.model.workflow import Workflow

NOOP = "bench.tasks:noop"
SLEEPY = "bench.tasks:sleepy"
NAMES = ("W1", "W2", "W3", "W4", "W5", "W6")


@dataclass(frozen=True)
class Spec:
    name: str
    shape: str
    workflow: Workflow
    concurrency: int  # runs submitted at once in one round
    repeats: int = 1  # rounds, one after another

    @property
    def n_workflows(self) -> int:
        return self.concurrency * self.repeats

    @cached_property
    def needs(self) -> dict[str, tuple[str, ...]]:
        """Each step's predecessors, for pairing decision latencies."""
        return {step_id: step.needs for step_id, step in self.workflow.steps.items()}

    @property
    def steps_per_workflow(self) -> int:
        return len(self.workflow.steps)

    def scaled(self, factor: float) -> Spec:
        """Shrinks the number of runs (rounds for W5), never below one."""
        if self.repeats > 1:
            return replace(self, repeats=max(1, round(self.repeats * factor)))
        return replace(self, concurrency=max(1, round(self.concurrency * factor)))


def _ref(step_id: str) -> str:
    return f"{{{{ steps.{step_id}.output }}}}"


def step(i: int, needs: list[str], call: str = NOOP) -> dict[str, Any]:
    """A python step; it receives its predecessor's output, or the list of them for a join."""
    body: dict[str, Any] = {"kind": "python", "call": call, "input": {"i": i}}
    if needs:
        body["needs"] = needs
        body["input"]["prev"] = _ref(needs[0]) if len(needs) == 1 else [_ref(n) for n in needs]
    return body


def chain(name: str, length: int) -> Workflow:
    steps = {f"s{i}": step(i, [f"s{i - 1}"] if i else []) for i in range(length)}
    return Workflow.model_validate({"name": name, "steps": steps})


def diamond(name: str, width: int, call: str = NOOP) -> Workflow:
    """start → `width` parallel steps → join (which receives every parallel output)."""
    middle = [f"p{k}" for k in range(width)]
    steps = {"start": step(0, [])}
    steps.update({p: step(k + 1, ["start"], call) for k, p in enumerate(middle)})
    steps["join"] = step(width + 1, middle)
    return Workflow.model_validate({"name": name, "steps": steps})


# Per step: limits, a circuit and a resource demand that are all far from binding, so the
# bench measures what the control layer costs when configured (`--control`), not throttling.
_NOT_BINDING: dict[str, Any] = {
    "agent": "worker",
    "limits": {"max_concurrent": 1_000_000, "rpm": 1e9},
    "circuit": {"failures": 1_000_000},
    "resources": {"cpu": 0.001, "api_calls": 1},
}


def with_control(workflow: Workflow) -> Workflow:
    """The same workflow with non-binding control settings on every step and a run budget."""
    data = workflow.to_json()
    data["steps"] = {sid: {**body, **_NOT_BINDING} for sid, body in data["steps"].items()}
    data["budget"] = {"usd": 1_000_000}
    return Workflow.model_validate(data)


def build(name: str) -> Spec:
    """The spec of one workload by id (W1..W6)."""
    match name:
        case "W1":
            return Spec(name, "chain", chain("bench-w1-chain", 10), 200)
        case "W2":
            return Spec(name, "diamond", diamond("bench-w2-diamond", 8), 200)
        case "W3":
            return Spec(name, "fanout", diamond("bench-w3-fanout", 100), 20)
        case "W4":
            return Spec(name, "sleepy diamond", diamond("bench-w4-sleepy", 8, SLEEPY), 200)
        case "W5":
            return Spec(name, "decision latency", chain("bench-w5-latency", 10), 1, repeats=50)
        case "W6":
            return Spec(name, "backlog", diamond("bench-w6-backlog", 8), 10_000)
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(NAMES)}")
