"""Sandboxed `{{ ... }}` expressions over inputs, step outputs, item, index, run and secrets.

A string that is exactly one expression keeps the value's type; any other string renders to text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError

from podium.errors import ExpressionError
from podium.model.bounds import BoundedEnvironment, RenderLimit, bounded, bounded_text

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
# `steps.a.output.items[0]`, `inputs['x']`: plain lookups, evaluated without Jinja (hot path).
_PATH = re.compile(r"^\s*([A-Za-z][\w]*)((?:\.[A-Za-z][\w-]*|\[\d+\]|\['[^'_][^']*'\])*)\s*$")
_PATH_PART = re.compile(r"\.([A-Za-z][\w-]*)|\[(\d+)\]|\['([^']*)'\]")
_STEP_REF = re.compile(r"\bsteps\.([A-Za-z0-9_][A-Za-z0-9_-]*)|\bsteps\[['\"]([^'\"]+)['\"]\]")


class _Env(BoundedEnvironment):
    """Dotted access looks up keys before attributes, so `output.items` is the key `items`."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


_ENV = _Env(undefined=StrictUndefined, autoescape=False)

Evaluator = Callable[[Mapping[str, Any]], Any]


def has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_template(v) for v in value)
    return False


@lru_cache(maxsize=4096)
def compile_text(text: str) -> Evaluator:
    """Compiles once; raises ExpressionError for a syntax error."""
    try:
        single = _SINGLE.match(text)
        if single is not None:
            expr = _ENV.compile_expression(single.group("expr"), undefined_to_none=False)
            slow: Evaluator = bounded(lambda ctx: _defined(expr(**ctx)))
            path = _PATH.match(single.group("expr"))
            return slow if path is None else _path_evaluator(path, slow)
        template = _ENV.from_string(text)
        return bounded(lambda ctx: _render_text(template, ctx))
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"bad expression {text!r}: {exc.message}") from None


def _render_text(template: Template, ctx: Mapping[str, Any]) -> str:
    # `Template.render` joins everything first; this stops at the size limit as it goes.
    return bounded_text(template.root_render_func(template.new_context(dict(ctx))))


def _short(text: str, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _path_evaluator(path: re.Match[str], slow: Evaluator) -> Evaluator:
    """Looks a dotted path up in dicts and lists directly; anything else goes through Jinja,
    which gives the same result (or the same error) at ten times the cost."""
    root = path.group(1)
    parts: list[str | int] = [
        m.group(1) or m.group(3) if m.group(2) is None else int(m.group(2))
        for m in _PATH_PART.finditer(path.group(2))
    ]

    def evaluate(ctx: Mapping[str, Any]) -> Any:
        try:
            value = ctx[root]
            for part in parts:
                kind = type(value)
                if kind is dict or (kind is not list and isinstance(value, Mapping)):
                    if not isinstance(part, str):
                        return slow(ctx)
                    value = value[part]
                elif kind is list and isinstance(part, int):
                    value = value[part]
                else:
                    return slow(ctx)
            return value
        except (KeyError, IndexError):
            return slow(ctx)

    return evaluate


def _defined(value: Any) -> Any:
    """A lone expression returns Undefined instead of raising: raise its error here, so a
    missing name or an unsafe attribute fails the step rather than reaching it as a value."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # UndefinedError, or SecurityError if unsafe
    return value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Renders every template string inside `value` (dicts and lists recursively)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        return _evaluate(value, compile_text(value), context)
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


def _evaluate(text: str, evaluator: Evaluator, context: Mapping[str, Any]) -> Any:
    """Runs a compiled expression; whatever it raises becomes one ExpressionError."""
    try:
        return evaluator(context)
    except ExpressionError:
        raise
    except RenderLimit as exc:
        raise ExpressionError(f"expression {_short(text)} {exc}") from None
    except SecurityError as exc:
        raise ExpressionError(f"expression {text!r} is not allowed: {exc}") from None
    except UndefinedError as exc:
        raise ExpressionError(f"expression {text!r}: {exc.message}") from None
    except Exception as exc:  # a user expression can raise anything (1/0, bad index...)
        raise ExpressionError(f"expression {text!r} failed: {exc}") from None


def compile_render(value: Any) -> Evaluator | None:
    """`render(value, ctx)` compiled once: the walk over `value` happens here, so each call
    evaluates only its expressions; None when `value` holds none. Parts without expressions
    are shared between calls, as an unrendered value is."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return None
        evaluator = compile_text(value)
        return lambda ctx: _evaluate(value, evaluator, ctx)
    if isinstance(value, Mapping):
        parts = [(k, v, compile_render(v)) for k, v in value.items()]
        if all(part is None for _, _, part in parts):
            return None
        return lambda ctx: {k: v if part is None else part(ctx) for k, v, part in parts}
    if isinstance(value, list | tuple):
        items = [(v, compile_render(v)) for v in value]
        if all(part is None for _, part in items):
            return None
        return lambda ctx: [v if part is None else part(ctx) for v, part in items]
    return None



def check(value: Any) -> list[str]:
    """Problems visible without running: syntax errors and access to private attributes."""
    problems: list[str] = []
    for text in _strings(value):
        if "{{" not in text and "{%" not in text:
            continue
        try:
            compile_text(text)
        except ExpressionError as exc:
            problems.append(str(exc))
            continue
        if "env" in text and "env" in meta.find_undeclared_variables(_ENV.parse(text)):
            problems.append(
                f"expression {text!r}: `env` is not available; use secrets.NAME for names"
                " allowed in [secrets] allow"
            )
        problems += _private_access(text)
    return problems


def _private_access(text: str) -> list[str]:
    """Names and attributes starting with `_` (`__import__`, `x.__class__`, `x['_y']`): the
    sandbox refuses them at run time; the template's syntax tree shows them before."""
    problems: list[str] = []
    for node in _ENV.parse(text).find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Name) and node.name.startswith("_"):
            problems.append(
                f"expression {text!r} uses the name {node.name!r}: names starting with _ are"
                " not available in the sandbox"
            )
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            problems.append(
                f"expression {text!r} reaches the private attribute {node.attr!r}, which the"
                " sandbox forbids"
            )
        elif (
            isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str) and node.arg.value.startswith("_")
        ):
            problems.append(
                f"expression {text!r} reaches the private key {node.arg.value!r}, which the"
                " sandbox forbids"
            )
    return problems[:1]  # one line per problem: the first such access says it


def step_refs(value: Any) -> set[str]:
    """The step ids an expression reads through `steps.<id>`."""
    refs: set[str] = set()
    for text in _strings(value):
        for match in _STEP_REF.finditer(text):
            refs.add(match.group(1) or match.group(2))
    return refs


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []
