"""The Bus interface: committed events to subscribers, and queued runs to workers.

The engine publishes only after the store committed; subscribers never see an uncommitted change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from podium.bus.transient import Notices
from podium.events import Event
from podium.redact import Redactor


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A queued run handed to one worker; acked once the run is final (or not ours to run)."""

    run_id: str
    priority: str
    token: str  # the transport's handle, e.g. a Redis stream entry id
    deliveries: int = 1  # how often it was handed out: past a bound it is poison


class Bus(Protocol):
    # False: the engine that submits a run executes it (embedded). True: workers do.
    distributed: bool

    async def __aenter__(self) -> Bus: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def publish(self, events: Sequence[Event]) -> None:
        """Hands committed events to subscribers without blocking the engine."""

    def subscribe(self, run_id: str | None = None) -> AsyncIterator[Event]:
        """Events from now on (of one run, or all), until the bus closes."""

    def completed_runs(self) -> AsyncIterator[str]:
        """Ids of runs that completed from now on (what `Engine.wait_done` listens to)."""

    def transient(self, redactor: Redactor) -> Notices:
        """Where an engine's transient notices (a streamed step's deltas) go and its listeners
        take them from: this process only, or every process on the bus. Masked with
        `redactor` before they leave."""

    async def dispatch(self, run_id: str, priority: str) -> None:
        """Offers a committed, queued run to the workers."""

    def claims(self, consumer: str, idle_s: float) -> AsyncIterator[Dispatch]:
        """Runs for this worker: new ones by priority, and ones another worker took but left
        unacknowledged for longer than `idle_s` (it died). Pull-based: the next item is
        fetched when the caller asks for it, so a busy worker takes nothing."""

    async def ack(self, dispatch: Dispatch) -> None: ...

    async def dead_letter(self, dispatch: Dispatch, reason: str) -> None:
        """Moves a poison dispatch (delivered too often) aside, and acks it."""
