"""Step bodies and helpers for the circuit breaker tests: bodies count their calls.

`CALLS`, `FAILING`, `IN_FLIGHT` and `GATE` are module globals, reset by each test module's
fixture.
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.control.config import ControlConfig
from podium.engine.engine import Engine
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store.base import Store

CALLS: dict[str, int] = {}
FAILING: set[str] = set()  # bodies that fail while their name is here
IN_FLIGHT = {"now": 0, "peak": 0}
# Set by a test to keep calls made with `held` in flight until it opens the gate: calls are
# held for as long as the test needs, not for a time a busy machine may overrun.
GATE: asyncio.Event | None = None


def reset() -> None:
    global GATE
    CALLS.clear()
    FAILING.clear()
    IN_FLIGHT.update(now=0, peak=0)
    GATE = None


async def body(name: str, delay: float = 0.0, held: bool = False) -> dict[str, Any]:
    """Counts the call; fails while `name` is in FAILING; stays in flight `delay` seconds (a
    step that hangs until its timeout) or, if `held`, until the test opens GATE."""
    CALLS[name] = CALLS.get(name, 0) + 1
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["peak"] = max(IN_FLIGHT["peak"], IN_FLIGHT["now"])
    try:
        if held:
            assert GATE is not None, "a held call needs circuitlib.GATE"
            await GATE.wait()
        if delay:
            await asyncio.sleep(delay)
        if name in FAILING:
            raise RuntimeError(f"{name} is down")
        return {"name": name}
    finally:
        IN_FLIGHT["now"] -= 1


def settings(control: ControlConfig | None = None) -> Settings:
    return Settings(
        poll_interval_s=0.02, lease_s=5, store_retry_s=0.5, control=control or ControlConfig()
    )


def workflow(
    circuit: dict[str, Any] | None = None,
    *,
    name: str = "api",
    agent: bool = False,
    attempts: int = 1,
    delay: float = 0.0,
    held: bool = False,
    timeout: str = "5s",
) -> Workflow:
    """One step calling `body(name)` (through an agent named `name` if `agent`), with a sim
    fallback, and the given circuit policy."""
    action = {
        "kind": "python",
        "call": "circuitlib:body",
        "input": {"name": name, "delay": delay, "held": held},
    }
    step: dict[str, Any] = {
        "retry": {"attempts": attempts, "backoff": "10ms"},
        "timeout": timeout,
        "fallback": {"kind": "sim", "output": {"fallback": True}},
    }
    if circuit is not None:
        step["circuit"] = circuit
    agents: dict[str, Any] = {}
    if agent:
        agents[name] = action
        step["agent"] = name
    else:
        step.update(action)
    return Workflow.model_validate({"name": "circuit-wf", "agents": agents, "steps": {"s": step}})


async def run_settled(engine: Engine, wf: Workflow) -> Any:
    """Runs the workflow and waits until the circuit bookkeeping it caused is in the store."""
    summary = await asyncio.wait_for(engine.run(wf), 20)
    await engine.control.circuits.flush()
    return summary


async def events_of(store: Store, prefix: str = "system.circuit.") -> list[tuple[str, Any]]:
    return [
        (e.event_type, e.payload)
        for _, e in await store.list_events(limit=10_000)
        if e.event_type.startswith(prefix)
    ]
