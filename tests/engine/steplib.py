"""Step bodies for engine tests: they record calls so tests can count executions.

`CALLS` and `ORDER` are module globals reset by the `reset` fixture in each test module.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from podium.errors import NonRetryable, Retry
from podium.model.workflow import Workflow
from podium.steps import StepContext

CALLS: dict[str, int] = {}
ORDER: list[str] = []
KEYS: list[str] = []
CONCURRENT = {"now": 0, "peak": 0}


def make_workflow(steps: dict[str, Any], **fields: Any) -> Workflow:
    return Workflow.model_validate(
        {"name": fields.pop("name", "test-wf"), "steps": steps, **fields}
    )


def reset() -> None:
    CALLS.clear()
    ORDER.clear()
    KEYS.clear()
    CONCURRENT.update(now=0, peak=0)


def _count(name: str) -> int:
    CALLS[name] = CALLS.get(name, 0) + 1
    ORDER.append(name)
    return CALLS[name]


async def ok(name: str, value: Any = None, delay: float = 0.0) -> Any:
    _count(name)
    if delay:
        await asyncio.sleep(delay)
    return value if value is not None else {"name": name}


async def flaky(name: str, failures: int, value: Any = None) -> Any:
    """Fails the first `failures` calls, then succeeds."""
    if _count(name) <= failures:
        raise RuntimeError(f"{name} flaked")
    return value if value is not None else {"name": name}


async def fail(name: str) -> Any:
    _count(name)
    raise RuntimeError(f"{name} failed on purpose")


async def never_retry(name: str) -> Any:
    _count(name)
    raise NonRetryable(f"{name} cannot succeed")


async def retry_after(name: str, after: float) -> Any:
    if _count(name) == 1:
        raise Retry("try later", after=after)
    return {"at": time.monotonic()}


async def slow(name: str, seconds: float) -> Any:
    _count(name)
    await asyncio.sleep(seconds)
    return {"name": name, "late": True}


def sync_sleep(name: str, seconds: float) -> Any:
    _count(name)
    time.sleep(seconds)
    return {"name": name}


async def tracked(name: str, delay: float = 0.02) -> Any:
    """Records how many instances run at once."""
    _count(name)
    CONCURRENT["now"] += 1
    CONCURRENT["peak"] = max(CONCURRENT["peak"], CONCURRENT["now"])
    try:
        await asyncio.sleep(delay)
    finally:
        CONCURRENT["now"] -= 1
    return {"name": name}


async def with_ctx(name: str, ctx: StepContext) -> Any:
    _count(name)
    KEYS.append(ctx.idempotency_key)
    if CALLS[name] == 1:
        raise RuntimeError("first attempt fails")
    return {"key": ctx.idempotency_key, "attempt": ctx.attempt, "run": ctx.run_id}


async def echo(**kwargs: Any) -> Any:
    return kwargs


async def big(size: int) -> Any:
    return {"blob": "x" * size}
