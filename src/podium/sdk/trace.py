"""The workflow being defined: the steps and agents a `@workflow` function adds as it runs once.

Each step's `needs` are its `needs=` plus the steps its expressions read, minus any already
upstream of another: the edges a YAML author would write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from podium.errors import WorkflowInvalid
from podium.sdk.refs import Ref, StepRef, raw, steps_read

_CURRENT: ContextVar[Trace | None] = ContextVar("podium_sdk_trace", default=None)


class Trace:
    """Collects the raw (YAML-shaped) steps and agents of one workflow definition."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.steps: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}

    def problem(self, where: str, message: str) -> WorkflowInvalid:
        return WorkflowInvalid([f"error: {self.source}: {where}: {message}"])

    def add(self, step_id: str, action: Mapping[str, Any], options: Mapping[str, Any]) -> StepRef:
        """Adds a step from its action's fields and its options; returns its handle."""
        where = f"steps.{step_id}"
        if step_id in self.steps:
            raise self.problem(
                where, "the id is used twice; give the second step another (e.g. .options(id=...))"
            )
        step = {**self._options(where, options), **action}
        explicit = step.pop("needs", [])
        reads = steps_read({k: v for k, v in step.items() if k not in _POLICY_ONLY})
        needs = self._needs(explicit, [r for r in reads if r != step_id])
        self.steps[step_id] = {"needs": needs, **step} if needs else step
        return StepRef(step_id)

    def _options(self, where: str, options: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key == "needs":
                out[key] = [self._step_of(f"{where}.needs", v) for v in value]
            elif key == "agent":
                out[key] = self._agent(f"{where}.agent", value)
            elif not isinstance(value, Ref) and hasattr(value, "to_raw"):
                # a policy, or an Action (fallback, compensate)
                out[key] = value.to_raw()
            else:
                out[key] = raw(value)
        return out

    def _step_of(self, where: str, value: Any) -> str:
        if not isinstance(value, StepRef):
            raise self.problem(where, f"takes the steps' handles, not {type(value).__name__}"
                               f" {value!r}")
        if value.step_id not in self.steps:
            raise self.problem(where, f"step {value.step_id!r} is not defined in this workflow")
        return value.step_id

    def _agent(self, where: str, value: Any) -> str:
        name, to_raw = getattr(value, "name", None), getattr(value, "to_raw", None)
        if isinstance(value, Ref) or not isinstance(name, str) or to_raw is None:
            raise self.problem(where, f"takes an sdk.agent(...), not {type(value).__name__}")
        config = to_raw()
        if self.agents.setdefault(name, config) != config:
            raise self.problem(where, f"two different agents are named {name!r}")
        return name

    def _needs(self, explicit: list[str], reads: list[str]) -> list[str]:
        """`explicit` as given, then each step read that no other need already follows."""
        reads = [r for r in reads if r in self.steps and r not in explicit]
        chosen = [*explicit, *reads]
        covered = set().union(*(self._upstream(s) for s in chosen))
        return [*explicit, *(r for r in reads if r not in covered)]

    def _upstream(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.steps[step_id].get("needs", []))
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.steps.get(name, {}).get("needs", []))
        return seen


# Step keys whose values read no other step: every other key (the action's fields, `when`,
# `for_each`, `fallback`, `compensate`) may, and gives the step a need.
_POLICY_ONLY = frozenset(
    {"needs", "trigger", "optional", "retry", "timeout", "estimate", "resources", "max_parallel",
     "agent", "description", "circuit", "limits"}
)


def current(step_id: str) -> Trace:
    """The workflow being defined; an error names the step added outside of one."""
    trace = _CURRENT.get()
    if trace is None:
        raise WorkflowInvalid([
            f"error: step {step_id!r} is added outside a @workflow function; steps belong in"
            " the body of one"
        ])
    return trace


def active() -> Trace | None:
    return _CURRENT.get()


@contextmanager
def tracing(source: str) -> Iterator[Trace]:
    trace = Trace(source)
    token = _CURRENT.set(trace)
    try:
        yield trace
    finally:
        _CURRENT.reset(token)
