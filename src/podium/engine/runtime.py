"""In-memory state of one active run: its definition, plan, steps and for_each items.

The store holds the durable copy; this is what the state machine reads to decide, without queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from podium.model.workflow import Step, Workflow
from podium.plan import Plan, build_plan
from podium.store.records import RunState, StepState


@dataclass(frozen=True, eq=False)
class Compiled:
    """A workflow definition with what every run of it reuses: digest, canonical JSON, plan."""

    workflow: Workflow
    digest: str
    body: bytes
    plan: Plan
    roots: tuple[str, ...]

    @classmethod
    def of(cls, workflow: Workflow) -> Compiled:
        body = orjson.dumps(workflow.to_json(), option=orjson.OPT_SORT_KEYS)
        plan = build_plan(workflow)
        roots = tuple(s for s in plan.order if not workflow.steps[s].needs)
        return cls(workflow, hashlib.sha256(body).hexdigest()[:32], body, plan, roots)

    def step(self, step_id: str) -> Step:
        return self.workflow.steps[step_id]


class StepsView(Mapping[str, Mapping[str, Any]]):
    """`steps.<id>.output` / `.status` for expressions, read live from the run's step states."""

    def __init__(self, steps: Mapping[str, StepState]) -> None:
        self._steps = steps

    def __getitem__(self, step_id: str) -> Mapping[str, Any]:
        state = self._steps[step_id]
        return {"output": state.output, "status": state.status, "error": state.error}

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)


@dataclass(eq=False)
class RunRuntime:
    row: RunState
    compiled: Compiled
    steps: dict[str, StepState]
    instances: dict[str, list[StepState]] = field(default_factory=dict)
    items: dict[str, list[Any]] = field(default_factory=dict)
    signal_ids: dict[tuple[str, int], int] = field(default_factory=dict)
    completed: int = 0
    compensating: bool = False
    last_event_id: str | None = None  # the causation of the next event

    @property
    def run_id(self) -> str:
        return self.row.run_id

    @property
    def workflow(self) -> Workflow:
        return self.compiled.workflow

    def all_states(self) -> Iterator[StepState]:
        yield from self.steps.values()
        for instances in self.instances.values():
            yield from instances

    def compensation_units(self) -> Iterator[StepState]:
        """What compensation undoes one by one: plain steps and each `for_each` instance."""
        for state in self.all_states():
            if state.index >= 0 or state.step_id not in self.instances:
                yield state

    def context(
        self, st: StepState, attempt: int, secrets: Mapping[str, str]
    ) -> dict[str, Any]:
        """What `{{ }}` expressions of this step see; `secrets` holds only the allowed names."""
        ctx: dict[str, Any] = {
            "inputs": self.row.inputs,
            "steps": StepsView(self.steps),
            "run": {"id": self.run_id, "workflow": self.row.workflow, "attempt": attempt},
            "secrets": secrets,
        }
        if st.index >= 0:
            ctx["item"] = self.items[st.step_id][st.index]
            ctx["index"] = st.index
        return ctx

    def next_seq(self) -> int:
        self.completed += 1
        return self.completed
