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


@dataclass(slots=True)
class BookedCalls:
    """The paid calls of a run booked in the spend ledger as they ended (`llm` calls, an
    agent loop's turns) while this engine held it, and the part of them that committed step
    results count. The rest (a failed or retried attempt's calls, the turns of a loop still
    running) is spend no step's cost shows: the run's cost and its budget add it."""

    usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    in_results_usd: float = 0.0
    in_results_in: int = 0
    in_results_out: int = 0

    def booked(self, usd: float, tokens_in: int, tokens_out: int) -> None:
        self.usd += usd
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out

    def resulted(self, usd: float, tokens_in: int, tokens_out: int) -> None:
        """A committed result whose calls are in the ledger already (`StepResult.ledgered`)."""
        self.in_results_usd += usd
        self.in_results_in += tokens_in
        self.in_results_out += tokens_out

    def outside_results(self) -> tuple[float, int, int]:
        """(usd, tokens in, tokens out) booked but counted by no step's result."""
        return (
            max(self.usd - self.in_results_usd, 0.0),
            max(self.tokens_in - self.in_results_in, 0),
            max(self.tokens_out - self.in_results_out, 0),
        )


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
    booked: BookedCalls = field(default_factory=BookedCalls)

    @property
    def run_id(self) -> str:
        return self.row.run_id

    @property
    def workflow(self) -> Workflow:
        return self.compiled.workflow

    def spent_usd(self) -> float:
        """What the run has cost so far: its committed results, and its ledger-booked calls
        that no result counts (the spend ledger's total for the run, as this engine knows
        it; `podium spend --by run` agrees once the run is over)."""
        return sum(s.cost_usd for s in self.compensation_units()) + self.booked.outside_results()[0]

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
