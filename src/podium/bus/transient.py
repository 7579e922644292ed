"""Transient notices of this process (a streamed step's text deltas) for live listeners.

Never stored nor journaled: a notice nobody listens to is dropped; a slow listener loses some.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

# A listener that does not keep up loses notices past this many, rather than grow memory.
MAX_QUEUED = 1000


@dataclass(frozen=True, slots=True)
class Notice:
    """One transient notice of a run: `kind` (e.g. "llm.delta") and a small JSON payload."""

    run_id: str
    kind: str
    payload: dict[str, Any]


class Transient:
    """Fans notices out to the listeners of their run, without waiting for any of them."""

    def __init__(self, max_queued: int = MAX_QUEUED) -> None:
        self._listeners: dict[str, list[asyncio.Queue[Notice]]] = {}
        self._max_queued = max_queued

    def publish(self, notice: Notice) -> None:
        for queue in self._listeners.get(notice.run_id, ()):
            if queue.qsize() < self._max_queued:
                queue.put_nowait(notice)

    def listening(self, run_id: str) -> bool:
        return bool(self._listeners.get(run_id))

    async def subscribe(self, run_id: str) -> AsyncIterator[Notice]:
        """The run's notices from now on, until the caller stops iterating."""
        queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._listeners.setdefault(run_id, []).append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            queues = self._listeners.get(run_id, [])
            if queue in queues:
                queues.remove(queue)
            if not queues:
                self._listeners.pop(run_id, None)
