"""`@workflow`: a function whose parameters are the inputs and whose body adds the steps.

The body runs once, when the definition is first needed, with references in place of the
inputs; the result is validated exactly as a YAML file is, into the same `Workflow` model.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, overload

from podium import check
from podium.errors import WorkflowInvalid
from podium.model.loader import read_text
from podium.model.workflow import Workflow
from podium.sdk.policies import Budget, Duration, Input, InputType, Priority
from podium.sdk.refs import Ref, raw
from podium.sdk.trace import tracing
from podium.settings import Settings

_TYPES: tuple[tuple[tuple[type, ...], InputType], ...] = (
    ((bool,), "boolean"),  # before int: bool is an int
    ((str,), "string"),
    ((int,), "integer"),
    ((float,), "number"),
    ((dict, Mapping), "object"),
    ((list, tuple, Sequence), "array"),
)


class WorkflowDef:
    """A workflow defined in Python. `build()` gives the validated `Workflow` (what `podium.run`,
    `build_plan`, the API take); `to_yaml()` the same as YAML; `definition()` the raw mapping."""

    def __init__(
        self, fn: Callable[..., Any], *, name: str | None = None, version: int | str | None = None,
        description: str | None = None, priority: Priority | None = None,
        timeout: Duration | None = None, budget: Budget | None = None,
        on_constrained: Literal["queue", "degrade", "reject"] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self._header = {
            "version": version, "description": description, "priority": priority,
            "timeout": timeout, "budget": None if budget is None else budget.to_raw(),
            "on_constrained": on_constrained,
        }
        self._definition: dict[str, Any] | None = None

    @property
    def source(self) -> str:
        """`module:function`, how problems name this definition (and the CLI loads it)."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def definition(self) -> dict[str, Any]:
        """The workflow as YAML would hold it (flat steps), from one run of the body."""
        if self._definition is None:
            self._definition = self._trace()
        return self._definition

    def build(self, *, settings: Settings | None = None) -> Workflow:
        """Validates the definition as `podium.parse_workflow` does: every problem at once
        (WorkflowInvalid), calls imported, models priced from `settings` (default: Settings())."""
        pricing = (settings or Settings()).control.pricing
        return check.parse_workflow(self.definition(), self.source, self._base_dir(),
                                    pricing=pricing)

    def to_yaml(self, *, settings: Settings | None = None) -> str:
        """The workflow as a YAML document that loads back to the same model."""
        return self.build(settings=settings).to_yaml()

    def _base_dir(self) -> Path | None:
        try:
            return Path(inspect.getfile(self.fn)).resolve().parent
        except (TypeError, OSError):
            return None  # defined interactively: only registered child workflows then

    def _trace(self) -> dict[str, Any]:
        inputs = _inputs(self.fn, self.source)
        with tracing(self.source) as trace:
            self.fn(**{name: Ref(f"inputs.{name}") for name in inputs})
        data: dict[str, Any] = {"name": self.name}
        data.update({k: raw(v) for k, v in self._header.items() if v is not None})
        if inputs:
            data["inputs"] = inputs
        if trace.agents:
            data["agents"] = trace.agents
        data["steps"] = trace.steps
        return data


def _inputs(fn: Callable[..., Any], source: str) -> dict[str, dict[str, Any]]:
    """`inputs:` from the parameters: type from the annotation, required unless defaulted."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # a bad annotation can raise anything; name it
        message = f"error: {source}: inputs: cannot read the annotations: {exc}"
        raise WorkflowInvalid([message]) from None
    inputs: dict[str, dict[str, Any]] = {}
    for name, param in inspect.signature(fn).parameters.items():
        where = f"error: {source}: inputs.{name}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise WorkflowInvalid([f"{where}: an input is a plain named parameter"])
        annotation, extra = _split_annotated(hints.get(name, str))
        kind = extra.type or _input_type(annotation)
        if kind is None:
            raise WorkflowInvalid([
                f"{where}: cannot declare an input of type {annotation!r}; annotate it with str,"
                " int, float, bool, dict or list, or give Input(type=...)"
            ])
        spec: dict[str, Any] = {"type": kind}
        has_default = param.default is not inspect.Parameter.empty
        required = extra.required if extra.required is not None else not has_default
        if required:
            spec["required"] = True
        if has_default and param.default is not None:
            spec["default"] = raw(param.default)
        if extra.description is not None:
            spec["description"] = extra.description
        inputs[name] = spec
    return inputs


def _split_annotated(annotation: Any) -> tuple[Any, Input]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        found = [m for m in metadata if isinstance(m, Input)]
        return base, found[0] if found else Input()
    return annotation, Input()


def _input_type(annotation: Any) -> InputType | None:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):  # `str | None`: an optional str
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _input_type(arms[0]) if len(arms) == 1 else None
    base = origin or annotation
    if not isinstance(base, type):
        return None
    for bases, kind in _TYPES:
        if issubclass(base, bases):
            return kind
    return None


@overload
def workflow(fn: Callable[..., Any], /) -> WorkflowDef: ...


@overload
def workflow(
    *, name: str | None = None, version: int | str | None = None, description: str | None = None,
    priority: Priority | None = None, timeout: Duration | None = None,
    budget: Budget | None = None,
    on_constrained: Literal["queue", "degrade", "reject"] | None = None,
) -> Callable[[Callable[..., Any]], WorkflowDef]: ...


def workflow(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
    version: int | str | None = None, description: str | None = None,
    priority: Priority | None = None, timeout: Duration | None = None,
    budget: Budget | None = None,
    on_constrained: Literal["queue", "degrade", "reject"] | None = None,
) -> WorkflowDef | Callable[[Callable[..., Any]], WorkflowDef]:
    """Defines a workflow: `@workflow(name="etl", timeout="5m")` over a function whose
    parameters are its inputs (`batch: int = 12`) and whose body calls its steps."""

    def decorate(func: Callable[..., Any]) -> WorkflowDef:
        return WorkflowDef(func, name=name, version=version, description=description,
                           priority=priority, timeout=timeout, budget=budget,
                           on_constrained=on_constrained)

    return decorate(fn) if fn is not None else decorate


def from_yaml(
    text: str, *, source: str = "workflow", base_dir: Path | None = None,
    settings: Settings | None = None,
) -> Workflow:
    """A workflow from YAML (or JSON) text, checked as a file is: calls imported, models priced."""
    pricing = (settings or Settings()).control.pricing
    return check.parse_workflow(read_text(text, source), source, base_dir, pricing=pricing)
