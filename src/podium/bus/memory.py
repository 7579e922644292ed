"""In-process bus: each subscriber gets its own unbounded queue.

It is the embedded default (`memory://`); nothing crosses a process boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from podium.bus.events import Event

_CLOSED = None


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str | None, asyncio.Queue[Event | None]]] = []

    async def __aenter__(self) -> MemoryBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, queue in self._subscribers:
            queue.put_nowait(_CLOSED)
        self._subscribers.clear()

    def publish(self, events: Sequence[Event]) -> None:
        for run_id, queue in self._subscribers:
            for event in events:
                if run_id is None or event.correlation_id == run_id:
                    queue.put_nowait(event)

    async def subscribe(self, run_id: str | None = None) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        entry = (run_id, queue)
        self._subscribers.append(entry)
        try:
            while (event := await queue.get()) is not _CLOSED:
                assert event is not None
                yield event
        finally:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
