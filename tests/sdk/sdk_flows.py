"""Workflows defined with podium.sdk for the SDK tests (importable as `sdk_flows:NAME`).

Each shows one behaviour the tests assert; the step bodies are deliberately trivial.
"""

from __future__ import annotations

from typing import Annotated, Any

from podium import StepContext, sdk


@sdk.step
async def fetch(n: int) -> dict[str, Any]:
    return {"items": list(range(n))}


@sdk.step(retry=sdk.RetryPolicy(attempts=2, backoff="10ms"))
def double(value: int, ctx: StepContext | None = None) -> dict[str, Any]:
    attempt = ctx.attempt if ctx is not None else 0
    return {"value": value * 2, "attempt": attempt}


@sdk.step
def total(values: list[dict[str, Any]]) -> int:
    return sum(v["value"] for v in values)


@sdk.step
def undo(what: str) -> dict[str, str]:
    return {"undone": what}


@sdk.workflow(name="sums")
def sums(n: int = 3) -> None:
    fetched = fetch(n=n)
    doubled = double.each(fetched["items"], max_parallel=2)(value=sdk.item)
    total(values=doubled)


@sdk.workflow(name="chain")
def chain(label: Annotated[str, sdk.Input(description="what to call it")],
          size: float | None = None, flags: dict[str, Any] | None = None) -> None:
    """`c` reads `a` and `b`, but `b` already follows `a`: c needs only b."""
    a = sdk.sim(output={"x": 1}).step("a")
    b = sdk.sim(output={"y": a["x"]}).step("b")
    sdk.sim(output={"sum": f"{a['x']}+{b.y}", "label": label}).step("c")
    sdk.sim(output={}).step(
        "d", needs=[a], when=b["y"], compensate=undo.bind(what=f"d of {sdk.run.id[:8]}"),
        fallback=sdk.python("sdk_flows:undo", input={"what": "fallback"}),
    )


@sdk.workflow(name="twice")
def twice() -> None:
    sdk.sim().step("same")
    sdk.sim().step("same")


@sdk.workflow(name="branching")
def branching(go: bool = True) -> None:
    flag = sdk.sim(output={"go": go}).step("flag")
    if flag["go"]:  # a reference has no truth value at definition time
        sdk.sim().step("then")


@sdk.workflow(name="strings")
def strings() -> None:
    first = sdk.sim().step("first")
    sdk.sim().step("second", needs=["first", first])


@sdk.workflow(name="invalid")
def invalid() -> None:
    sdk.sim(fail_rate=2.0).step("bad")
    sdk.llm(prompt="hi").step("unpriced")


def not_a_workflow() -> None:
    """Named by a test to see the CLI refuse it."""
