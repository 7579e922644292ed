"""Deadlock detection: which steps of this engine hold and wait for pool slots (`WaitRegistry`),
and the periodic check that finds cycles in the store-wide view and fails the youngest waiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from podium.clock import Clock
from podium.control.config import DeadlockCheck
from podium.control.guard import Call, Emit
from podium.control.waitfor import (
    Cycle,
    Graph,
    build_graph,
    describe,
    find_deadlocks,
    members_payload,
    step_node,
)
from podium.errors import DeadlockDetected, PodiumError
from podium.store.roles import WaitStore
from podium.store.waits import RunLink, WaitRecord

log = structlog.get_logger("podium.control")

StepKey = tuple[str, str, int]  # (run, step, index)
MAX_DEPTH = 32  # generations of child runs followed from the waiting steps' runs


def _key(call: Call) -> StepKey:
    return (call.run_id, call.step.id, call.index)


@dataclass(eq=False, slots=True)
class _Hold:
    call: Call
    pool: str
    capacity: float
    amount: float
    since: float


@dataclass(eq=False, slots=True)
class Waiting:
    """A step waiting for a pool slot: its task, cancelled with `error` to break a cycle."""

    registry: WaitRegistry
    call: Call
    pool: str
    capacity: float
    amount: float
    since: float
    task: asyncio.Task[object] | None = None
    error: DeadlockDetected | None = None

    def __enter__(self) -> Waiting:
        self.task = asyncio.current_task()
        self.registry.waits[_key(self.call)] = self
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        key = _key(self.call)
        if self.registry.waits.get(key) is self:
            del self.registry.waits[key]
        if self.error is None or kind is None or not issubclass(kind, asyncio.CancelledError):
            return
        # The cancel was ours: the step fails with the deadlock's error, unless someone else
        # (a run cancel, the engine stopping) cancelled it too.
        assert self.task is not None
        if self.task.uncancel() == 0:
            raise self.error from None


@dataclass(slots=True)
class WaitRegistry:
    """What this engine's step attempts hold and wait for, kept by the limits guard."""

    clock: Clock
    holds: dict[StepKey, list[_Hold]] = field(default_factory=dict)
    waits: dict[StepKey, Waiting] = field(default_factory=dict)

    def held(self, call: Call, pool: str, capacity: float, amount: float = 1.0) -> None:
        hold = _Hold(call, pool, capacity, amount, self.clock.now())
        self.holds.setdefault(_key(call), []).append(hold)

    def released(self, call: Call) -> None:
        self.holds.pop(_key(call), None)

    def waiting(self, call: Call, pool: str, capacity: float, amount: float = 1.0) -> Waiting:
        """`with registry.waiting(...): await the slot` makes the wait visible (and breakable)."""
        return Waiting(self, call, pool, capacity, amount, self.clock.now())

    def records(self) -> list[WaitRecord]:
        held = [
            _record(h.call, h.pool, True, h.amount, h.capacity, h.since)
            for holds in self.holds.values()
            for h in holds
        ]
        waiting = [
            _record(w.call, w.pool, False, w.amount, w.capacity, w.since)
            for w in self.waits.values()
        ]
        return held + waiting

    def fail(self, run_id: str, step_id: str, index: int, error: DeadlockDetected) -> bool:
        """Breaks this step's wait with `error`; False if it does not wait here (now)."""
        waiting = self.waits.get((run_id, step_id, index))
        if waiting is None or waiting.task is None or waiting.task.done():
            return False
        waiting.error = error
        waiting.task.cancel()
        return True


def _record(
    call: Call, pool: str, holds: bool, amount: float, capacity: float, since: float
) -> WaitRecord:
    return WaitRecord(
        call.run_id, call.step.id, call.index, call.workflow, call.action.kind, pool, holds,
        amount, capacity, since,
    )


class ChildRuns(Protocol):
    async def unfinished_children(self, run_ids: Sequence[str]) -> list[RunLink]: ...


class DeadlockStore(WaitStore, ChildRuns, Protocol):
    """What the check needs of the store."""


class DeadlockDetector:
    """Every `check_every`, publishes this engine's holds and waits, reads every engine's, and
    breaks each cycle seen in two checks in a row (a wait that just ended is no deadlock) whose
    victim waits in this engine: one engine acts on a cycle, however many see it."""

    def __init__(
        self, config: DeadlockCheck, store: DeadlockStore, owner: str, waits: WaitRegistry,
        emit: Emit, *, clock: Clock,
    ) -> None:
        self.config = config
        self.store = store
        self.owner = owner
        self.waits = waits
        self.emit = emit
        self.clock = clock
        self.broken = 0  # deadlocks broken by this engine (a metric to export)
        self._suspects: set[tuple[object, ...]] = set()  # cycles seen by the last check
        self._published = False

    async def tick(self) -> None:
        """One check, for the engine's background duty: a store error waits for the next."""
        try:
            await self.check()
        except PodiumError as exc:
            log.warning("checking for deadlocks failed", error=str(exc))

    async def check(self) -> list[Cycle]:
        """One round; returns the cycles this engine broke."""
        records = self.waits.records()
        if records or self._published:
            # A view outlives two missed checks only: a crashed engine's waits fade out.
            ttl_s = 2.5 * self.config.check_every
            await self.store.publish_waits(self.owner, records, ttl_s)
            self._published = bool(records)
        if not self.waits.waits:  # only an engine whose step waits can hold a victim
            self._suspects.clear()
            return []
        views = await self.store.list_waits()
        everyone = [r for _, view in views for r in view]
        graph = build_graph(everyone, await self._children({r.run_id for r in everyone}))
        cycles = find_deadlocks(graph)
        seen = {_signature(graph, c) for c in cycles}
        confirmed = [c for c in cycles if _signature(graph, c) in self._suspects]
        self._suspects = seen
        return [c for c in confirmed if self._break(graph, c)]

    async def _children(self, run_ids: set[str]) -> list[RunLink]:
        """The unfinished descendants of these runs, generation by generation."""
        links: list[RunLink] = []
        seen = set(run_ids)
        frontier = sorted(run_ids)
        for _ in range(MAX_DEPTH):
            if not frontier:
                break
            found = await self.store.unfinished_children(frontier)
            links += found
            frontier = sorted({link.run_id for link in found} - seen)
            seen.update(frontier)
        return links

    def _break(self, graph: Graph, cycle: Cycle) -> bool:
        if cycle.victim is None:
            return False
        victim = graph[cycle.victim]
        message = describe(graph, cycle)
        key = next(
            (k for k in self.waits.waits if step_node(*k) == cycle.victim), None
        )
        if key is None or not self.waits.fail(*key, DeadlockDetected(message)):
            return False  # another engine holds the victim: it acts
        self.broken += 1
        log.warning("deadlock broken", run_id=victim.run_id, step=victim.step, cycle=message)
        payload = {
            "cycle": members_payload(graph, cycle.members),
            "victim": {"run_id": victim.run_id, "workflow": victim.workflow, "step": victim.step},
            "error": message,
        }
        self.emit(victim.run_id, "system.deadlock.detected", payload)
        return True


def _signature(graph: Graph, cycle: Cycle) -> tuple[object, ...]:
    """The same waits in the same cycle: a wait that ended and began again is a new one."""
    return tuple((m, graph[m].since) for m in sorted(cycle.component))
