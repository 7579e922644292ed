"""`@step`: a Python function as a step kind `python` (`call: module:function`).

Called in a `@workflow` body, a step function adds a step whose input is the arguments given
(references become expressions) and returns its output's handle, typed as the function's result.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar, Unpack, cast, overload

from podium.errors import WorkflowInvalid
from podium.sdk.actions import Action
from podium.sdk.policies import StepOptions
from podium.sdk.refs import raw
from podium.sdk.trace import active, current

P = ParamSpec("P")
R = TypeVar("R")
Isolate = Literal["thread", "process"]


class Task(Generic[P, R]):
    """A step function. In a `@workflow` body, `task(...)` adds it as a step; `.options(...)`
    changes its id or policy; `.each(items)` runs it once per item; `.bind(...)` makes it a
    fallback or a compensation; `.fn` is the plain function."""

    def __init__(
        self, fn: Callable[P, Any], *, step_id: str | None = None, isolate: Isolate | None = None,
        options: StepOptions | None = None,
    ) -> None:
        self.fn = fn
        self.step_id = step_id or fn.__name__
        self.isolate = isolate
        self.step_options: StepOptions = options or {}
        functools.update_wrapper(self, fn)
        # What podium's python step kind runs when a `call` names this object.
        self.__podium_function__ = fn

    @property
    def call(self) -> str:
        """`module:function`, as the step's `call`."""
        name = self.fn.__qualname__
        if "<locals>" in name:
            raise WorkflowInvalid([
                f"error: step function {name!r} is defined inside a function; podium imports"
                " it by name, so define it at module level"
            ])
        return f"{self.fn.__module__}:{name}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if active() is None:
            raise TypeError(
                f"step function {self.step_id!r} is called outside a @workflow body;"
                f" call its plain function, {self.step_id}.fn(...)"
            )
        trace = current(self.step_id)
        action = self.bind(*args, **kwargs).to_raw()
        return cast(R, trace.add(self.step_id, action, dict(self.step_options)))

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> Action:
        """This function with these arguments as an action (for fallback= or compensate=)."""
        fields: dict[str, Any] = {"call": self.call}
        given = _arguments(self.fn, self.step_id, args, kwargs)
        if given:
            fields["input"] = raw(given)
        if self.isolate is not None:
            fields["isolate"] = self.isolate
        return Action("python", fields)

    def options(
        self, *, id: str | None = None, isolate: Isolate | None = None,
        **options: Unpack[StepOptions],
    ) -> Task[P, R]:
        """The same function with another step id or policy (given keys replace these)."""
        merged = cast(StepOptions, {**self.step_options, **options})
        return Task(self.fn, step_id=id or self.step_id, isolate=isolate or self.isolate,
                    options=merged)

    def each(self, items: Any, *, max_parallel: int | None = None) -> Task[P, list[R]]:
        """One instance per item of `items` (a reference to a list, or a list); the arguments
        may use `sdk.item` and `sdk.index`. The step's output is the list of theirs."""
        options = cast(StepOptions, {**self.step_options, "for_each": items})
        if max_parallel is not None:
            options["max_parallel"] = max_parallel
        return Task(self.fn, step_id=self.step_id, isolate=self.isolate, options=options)


def _arguments(
    fn: Callable[..., Any], step_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The step's input: arguments by parameter name (`ctx` is podium's to give)."""
    signature = inspect.signature(fn)
    params = [p for name, p in signature.parameters.items() if name != "ctx"]
    try:
        bound = signature.replace(parameters=params).bind(*args, **kwargs)
    except TypeError as exc:
        raise WorkflowInvalid([f"error: steps.{step_id}.input: {exc}"]) from None
    given: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            raise WorkflowInvalid([
                f"error: steps.{step_id}.input: *{name} cannot be given: podium passes a"
                " step's input as keyword arguments"
            ])
        else:
            given[name] = value
    return given


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def step(
    fn: Callable[P, Coroutine[Any, Any, R]], /, *, id: str | None = None,
    isolate: Isolate | None = None, **options: Unpack[StepOptions],
) -> Task[P, R]: ...


@overload
def step(
    fn: Callable[P, R], /, *, id: str | None = None, isolate: Isolate | None = None,
    **options: Unpack[StepOptions],
) -> Task[P, R]: ...


@overload
def step(
    *, id: str | None = None, isolate: Isolate | None = None, **options: Unpack[StepOptions]
) -> _Decorator: ...


def step(
    fn: Callable[..., Any] | None = None, /, *, id: str | None = None,
    isolate: Isolate | None = None, **options: Unpack[StepOptions],
) -> Task[Any, Any] | _Decorator:
    """Makes a function a step: `@step`, `@step(retry=RetryPolicy(attempts=5), timeout="30s")`,
    or `step(imported_function, ...)`. Sync functions run in a thread (or a process,
    `isolate="process"`), async ones on the loop; a parameter named `ctx` receives the step's
    context (give it a default, `ctx: StepContext | None = None`, so calls need not pass it)."""

    def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
        return Task(func, step_id=id, isolate=isolate, options=options)

    if fn is not None:
        return decorate(fn)
    return cast(_Decorator, decorate)
