"""The one seam every committed change passes through: observers, called in commit order.

The bus publisher is the first observer; metrics, traces and a live view register beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from podium.bus.base import Bus
from podium.engine.transitions import Transition
from podium.events import Event
from podium.store.records import RunState
from podium.store.spend import SpendRow

log = structlog.get_logger("podium.observers")


@dataclass(frozen=True, slots=True)
class Commit:
    """What one journal commit made durable: its events and status changes, in order, and
    the spend ledger's rows (paid calls, step results with a cost or tokens)."""

    events: Sequence[Event]
    transitions: Sequence[Transition]
    spend: Sequence[SpendRow] = ()


class TraceContexts(Protocol):
    """Gives each step attempt its trace context (registered by the tracing observer)."""

    def traceparent(
        self, run: RunState, step_id: str, index: int, attempt: int, role: str
    ) -> str:
        """The W3C traceparent of the attempt's span; `role` is "" for the step's own action,
        "fallback" or "compensate"."""


class Observer(Protocol):
    def committed(self, commit: Commit) -> None:
        """Called once per commit, after it is durable; must not block (it runs on the loop)."""


class BusPublisher:
    """Hands the committed events to the bus (subscribers, other processes)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def committed(self, commit: Commit) -> None:
        if commit.events:
            self._bus.publish(commit.events)


class Observers:
    """The registered observers. One that raises is logged and skipped: an observer never
    stops the engine or keeps the others from seeing the commit."""

    def __init__(self, *observers: Observer) -> None:
        self._observers: list[Observer] = list(observers)

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def remove(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def notify(self, commit: Commit) -> None:
        for observer in self._observers:
            try:
                observer.committed(commit)
            except Exception:
                log.exception("an observer failed", observer=type(observer).__name__)
