"""Bounds on one expression render: an operations budget, a size limit on every value an
expression builds, and a wall-clock net behind them, so no definition can stall the loop.

The primary limits are counts, not time, so a render that passes once passes every time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OPS = 20_000  # loop iterations, calls, filters and intercepted operators per render
MAX_CHARS = 1024 * 1024  # characters (or items) of any value an expression builds
MAX_INT_BITS = 64 * 1024  # ~20,000 decimal digits
MAX_RENDER_S = 0.5  # the safety net, checked every 1,024 operations
_CLOCK_EVERY = 1023

# `%-10.3f`, `%(name)20s`: the width and precision of a printf-style field.
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\d*)(?:\.(\d*))?")
# `{:>20}`, `{0:_^30.2f}`: the width and precision of a str.format field.
_FORMAT_FIELD = re.compile(r"\{[^{}:]*:[^{}\d]*?0?(\d*)[,_]?(?:\.(\d*))?[^{}]*\}")


_PLAIN_NUMBERS = (int, float)


class RenderLimit(Exception):
    """A render went over a bound; the message is the tail of a sentence about the expression."""


class _Budget:
    __slots__ = ("deadline", "ops")

    def __init__(self) -> None:
        self.ops = 0
        # Real CPU-bound time on purpose: a guard against a runaway template, not a Clock's
        # (a fake clock would never end a render that loops).
        self.deadline = time.monotonic() + MAX_RENDER_S

    def charge(self) -> None:
        self.ops += 1
        if self.ops > MAX_OPS:
            raise RenderLimit(f"exceeds the render budget of {MAX_OPS} operations")
        if not self.ops & _CLOCK_EVERY and time.monotonic() > self.deadline:
            raise RenderLimit(f"exceeds the render time limit of {MAX_RENDER_S:g}s")


_BUDGET: ContextVar[_Budget | None] = ContextVar("podium_render_budget", default=None)


def bounded(evaluate: Callable[[Mapping[str, Any]], Any]) -> Callable[[Mapping[str, Any]], Any]:
    """`evaluate` with a fresh budget for each call (a render inside a render shares it)."""

    def run(ctx: Mapping[str, Any]) -> Any:
        if _BUDGET.get() is not None:
            return evaluate(ctx)
        token = _BUDGET.set(_Budget())
        try:
            return evaluate(ctx)
        finally:
            _BUDGET.reset(token)

    return run


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # the environment used outside `bounded`: still bounded, per call
        budget = _Budget()
    return budget


def bounded_text(chunks: Iterator[str]) -> str:
    """Joins a template's output, stopping as soon as it passes MAX_CHARS."""
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_CHARS:
            raise _too_big(size)
        parts.append(chunk)
    return "".join(parts)


class _Counted:
    """An iterator that charges one operation per item."""

    __slots__ = ("_budget", "_items")

    def __init__(self, items: Iterator[Any], budget: _Budget) -> None:
        self._items = items
        self._budget = budget

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        self._budget.charge()
        return next(self._items)


def _too_big(size: int, what: str = "characters") -> RenderLimit:
    return RenderLimit(f"would produce {size} {what}, over the limit of {MAX_CHARS}")


def _check_size(size: int) -> None:
    if size > MAX_CHARS:
        raise _too_big(size)


def _check_ints(values: Any) -> None:
    """Refuses a width, count or indent bigger than any value may be."""
    for value in values:
        if isinstance(value, tuple | list) and len(value) <= 64:
            _check_ints(value)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
            raise RenderLimit(f"takes the number {value}, over the limit of {MAX_CHARS}")


def _field_sizes(fields: re.Pattern[str], text: str) -> int:
    """The characters the widths and precisions of a format string's fields ask for at least."""
    total = 0
    for match in fields.finditer(text):
        total += sum(int(group) for group in match.groups() if group)
    return total


def _check_result(value: Any, budget: _Budget) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        if len(value) > MAX_CHARS:
            what = "characters" if isinstance(value, str | bytes) else "items"
            raise _too_big(len(value), what)
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise RenderLimit(
            f"would produce a {value.bit_length()}-bit integer, over the limit of {MAX_INT_BITS}"
        )
    elif isinstance(value, Iterator) and not isinstance(value, _Counted):
        return _Counted(value, budget)  # a lazy filter (map, select, slice...) pays per item
    return value


def _len(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


# -- predicted sizes of the operations whose output can outgrow their inputs many times ---------


def _predict_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        _predict_multiply(left, right)
        _predict_multiply(right, left)
    elif operator == "**" and _is_int(left) and _is_int(right):
        if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
            raise RenderLimit(
                f"would produce a {left.bit_length() * right}-bit integer,"
                f" over the limit of {MAX_INT_BITS}"
            )
    elif operator == "+":
        _check_size(_len(left) + _len(right))
    elif operator == "%" and isinstance(left, str):
        _check_ints(right if isinstance(right, tuple) else (right,))
        _check_size(len(left) + _field_sizes(_PRINTF_FIELD, left))


def _predict_multiply(value: Any, times: Any) -> None:
    if not _is_int(times):
        return
    if isinstance(value, str | bytes | list | tuple):
        _check_size(len(value) * max(times, 0))
    elif _is_int(value) and value.bit_length() + times.bit_length() > MAX_INT_BITS:
        bits = value.bit_length() + times.bit_length()
        raise RenderLimit(f"would produce a {bits}-bit integer, over the limit of {MAX_INT_BITS}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _predict_replace(text: Any, old: Any, new: Any, *rest: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = len(text) + 1 if old == "" else text.count(old)
        _check_size(len(text) + count * max(len(new) - len(old), 0))


def _predict_join(separator: Any, items: Any) -> None:
    if isinstance(separator, str) and isinstance(items, list | tuple | dict | str):
        _check_size(len(separator) * len(items))


def _predict_indent(text: Any, width: Any = 4, *rest: Any) -> None:
    if isinstance(text, str) and isinstance(width, str):
        _check_size(len(text) + (text.count("\n") + 1) * len(width))


def _predict_expandtabs(text: Any, tabsize: Any = 8) -> None:
    if isinstance(text, str) and _is_int(tabsize):
        _check_size(len(text) + text.count("\t") * tabsize)


def _predict_format(text: Any, *args: Any) -> None:
    if isinstance(text, str):
        _check_size(len(text) + _field_sizes(_FORMAT_FIELD, text))


def _predict_printf(text: Any, *args: Any) -> None:
    if isinstance(text, str):
        _check_size(len(text) + _field_sizes(_PRINTF_FIELD, text))


def _predict_wordwrap(text: Any, width: Any = 79, *rest: Any, **kwargs: Any) -> None:
    wrap = kwargs.get("wrapstring", rest[1] if len(rest) > 1 else None)
    if isinstance(text, str) and isinstance(wrap, str) and _is_int(width):
        _check_size(len(text) + (len(text) // max(width, 1) + 1) * len(wrap))


def _predict_tojson(value: Any, indent: Any = None) -> None:
    if _is_int(indent) and indent > 64:
        raise RenderLimit(f"takes an indent of {indent}, over the limit of 64")


_FILTER_PREDICTORS: dict[str, Callable[..., None]] = {
    "replace": _predict_replace,
    "join": lambda items, separator="", *rest: _predict_join(separator, items),
    "indent": _predict_indent,
    "format": _predict_printf,
    "wordwrap": _predict_wordwrap,
    "tojson": _predict_tojson,
}
_STR_METHOD_PREDICTORS: dict[str, Callable[..., None]] = {
    "replace": _predict_replace,
    "join": _predict_join,
    "expandtabs": _predict_expandtabs,
    "format": _predict_format,
    "format_map": _predict_format,
}


def _predict_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    method = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format to police it
    owner = getattr(method, "__self__", None)
    if isinstance(owner, str):
        predict = _STR_METHOD_PREDICTORS.get(getattr(method, "__name__", ""))
        if predict is not None:
            predict(owner, *args, **{k: v for k, v in kwargs.items() if not k.startswith("_")})


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    predict = _FILTER_PREDICTORS.get(name)
    # Filters marked pass_context/pass_environment get that first: not a user value.
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)  # keeps `jinja_pass_arg`, which tells Jinja what to pass first
    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.charge()
        _check_ints(args[skip + 1 :])
        _check_ints(kwargs.values())
        if predict is not None:
            predict(*args[skip:], **kwargs)
        return _check_result(func(*args, **kwargs), budget)

    return run


class _CountingCodeGenerator(CodeGenerator):
    """Compiles every `{% for %}` over a counting iterator and checks every `~` concatenation."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        iterable = node.iter
        # Templates cannot spell an EnvironmentAttribute node, so this one is surely ours.
        counted = nodes.EnvironmentAttribute("counted", lineno=iterable.lineno)
        node.iter = nodes.Call(counted, [iterable], [], None, None, lineno=iterable.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = iterable

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        target = node.node
        if isinstance(target, nodes.EnvironmentAttribute) and target.name == "counted":
            self.write("environment.counted(")  # straight, not through the sandbox's `call`
            self.visit(node.args[0], frame)
            self.write(")")
        else:
            super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with every loop, call, filter and size-changing operator counted and sized."""

    code_generator_class = _CountingCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)  # builds any amount of text; no workflow needs it
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def counted(self, iterable: Any) -> _Counted:
        return _Counted(iter(iterable), _budget())

    def checked(self, value: Any) -> Any:
        return _check_result(value, _budget())

    def call(
        __self,  # the sandbox's own spelling, so a keyword `self` can pass through
        __context: Any,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        budget = _budget()
        budget.charge()
        _check_ints(args)
        _check_ints(v for k, v in kwargs.items() if not k.startswith("_"))
        _predict_call(__obj, args, kwargs)
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (__self.counted(args[0]), *args[1:])
        return _check_result(super().call(__context, __obj, *args, **kwargs), budget)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.charge()
        if (type(left) in _PLAIN_NUMBERS and type(right) in _PLAIN_NUMBERS) and (
            operator in "+%" or float in (type(left), type(right))
        ):
            return self.binop_table[operator](left, right)  # cannot grow much: the fast path
        _predict_binop(operator, left, right)
        return _check_result(self.binop_table[operator](left, right), budget)
