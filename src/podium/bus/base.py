"""The Bus interface: publish committed events to whoever subscribes.

The engine publishes only after the store committed; subscribers never see an uncommitted change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from podium.bus.events import Event


class Bus(Protocol):
    async def __aenter__(self) -> Bus: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def publish(self, events: Sequence[Event]) -> None:
        """Hands committed events to subscribers without blocking the engine."""

    def subscribe(self, run_id: str | None = None) -> AsyncIterator[Event]:
        """Events from now on (of one run, or all), until the bus closes."""
