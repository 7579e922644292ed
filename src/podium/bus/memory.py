"""In-process bus: each subscriber gets its own unbounded queue.

It is the embedded default (`memory://`); nothing crosses a process boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from podium.bus.base import Dispatch
from podium.bus.transient import Notices, Transient
from podium.events import Event
from podium.redact import Redactor

_CLOSED = None


class MemoryBus:
    distributed = False

    def __init__(self) -> None:
        self._subscribers: list[tuple[str | None, asyncio.Queue[Event | None]]] = []
        self._dispatches: asyncio.Queue[Dispatch] = asyncio.Queue()
        self._counter = 0

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

    async def completed_runs(self) -> AsyncIterator[str]:
        async for event in self.subscribe():
            if event.event_type == "run.completed":
                yield event.correlation_id

    def transient(self, redactor: Redactor) -> Notices:
        return Transient(redactor)

    # Dispatch within one process: only useful to exercise a Worker without Redis.

    async def dispatch(self, run_id: str, priority: str) -> None:
        self._counter += 1
        await self._dispatches.put(Dispatch(run_id, priority, str(self._counter)))

    async def claims(self, consumer: str, idle_s: float) -> AsyncIterator[Dispatch]:
        while True:
            yield await self._dispatches.get()

    async def ack(self, dispatch: Dispatch) -> None:
        return None

    async def dead_letter(self, dispatch: Dispatch, reason: str) -> None:
        return None
