"""References to values known only at run time (inputs, step outputs, item), as `{{ }}` text.

A reference renders as the expression a YAML author would write; passing one into a step is
what makes that step depend on the step it reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

_NAME = re.compile(r"^[A-Za-z][\w-]*$")
_STEP_REF = re.compile(r"\bsteps\.([A-Za-z0-9_][A-Za-z0-9_-]*)|\bsteps\[['\"]([^'\"]+)['\"]\]")


class Ref:
    """An expression over what a step sees when it runs: `inputs.x`, `steps.a.output`, `item`.

    `ref.field`, `ref["key"]`, `ref[0]` and `ref[:8]` reach inside it; `ref.pipe("join(', ')")`
    applies Jinja filters; `str(ref)` (and an f-string) gives `{{ ... }}`.
    """

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        object.__setattr__(self, "_path", path)

    @property
    def expression(self) -> str:
        """The expression without its braces: `steps.extract.output.records`."""
        return str(object.__getattribute__(self, "_path"))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # dunder probes (copy, pickle, IPython) must not see a field
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, key: str | int | slice) -> Any:
        base = self.expression
        if isinstance(key, slice):
            if key.step is not None:
                raise TypeError("a slice of a reference takes no step")
            start = "" if key.start is None else int(key.start)
            stop = "" if key.stop is None else int(key.stop)
            return Ref(f"{base}[{start}:{stop}]")
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise TypeError(f"a reference is indexed by a name or a number (got {key!r})")
        if isinstance(key, int):
            return Ref(f"{base}[{key}]")
        if _NAME.match(key) and "-" not in key:
            return Ref(f"{base}.{key}")
        return Ref(f"{base}[{key!r}]")

    def pipe(self, *filters: str) -> Any:
        """The value through Jinja filters: `ref.pipe("map(attribute='angle')", "join(', ')")`."""
        return Ref(" | ".join([self.expression, *filters]))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a reference is read-only")

    def __str__(self) -> str:
        return "{{ " + self.expression + " }}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Ref({self.expression!r})"

    def __bool__(self) -> NoReturn:
        raise TypeError(
            f"{self} is only known when the workflow runs: a Python `if` cannot test it;"
            " give the step when=... instead"
        )

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            f"{self} is only known when the workflow runs: a Python loop cannot walk it;"
            " give the step for_each=... (or use .each(...)) instead"
        )

    def __len__(self) -> int:
        raise TypeError(f"{self} is only known when the workflow runs; use .pipe('length')")


class StepRef(Ref):
    """A step of the workflow being defined: it stands for the step's output (`ref["key"]`),
    and passed to `needs=` it orders without reading."""

    __slots__ = ("_step_id",)

    def __init__(self, step_id: str) -> None:
        super().__init__(f"steps.{step_id}.output")
        object.__setattr__(self, "_step_id", step_id)

    @property
    def step_id(self) -> str:
        return str(object.__getattribute__(self, "_step_id"))

    @property
    def output(self) -> Any:
        """The whole output, `{{ steps.<id>.output }}`."""
        return Ref(self.expression)

    def __repr__(self) -> str:
        return f"StepRef({self.step_id!r})"


def expr(text: str) -> Any:
    """Any expression, written as in YAML without the braces: `expr("inputs.n * 2")`."""
    return Ref(text.strip().removeprefix("{{").removesuffix("}}").strip())


def raw(value: Any) -> Any:
    """`value` as YAML would hold it: references become `{{ }}` text, tuples lists."""
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [raw(v) for v in value]
    return value


def steps_read(value: Any) -> list[str]:
    """The step ids `value`'s expressions read, in the order they first appear."""
    found: list[str] = []
    for text in _strings(value):
        for match in _STEP_REF.finditer(text):
            step_id = match.group(1) or match.group(2)
            if step_id not in found:
                found.append(step_id)
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
