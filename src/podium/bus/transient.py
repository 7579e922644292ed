"""Transient notices of this process (a streamed step's text deltas) for live listeners.

Never stored nor journaled: a notice nobody listens to is dropped; a slow listener loses some.
Payloads are masked like every value podium writes (a secret split across two deltas is not).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from podium.redact import Redactor

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

    def __init__(self, redactor: Redactor | None = None, max_queued: int = MAX_QUEUED) -> None:
        self._listeners: dict[str, list[asyncio.Queue[Notice]]] = {}
        self._redactor = redactor or Redactor()
        self._max_queued = max_queued

    def publish(self, notice: Notice) -> None:
        queues = self._listeners.get(notice.run_id, ())
        if queues and self._redactor:
            notice = Notice(notice.run_id, notice.kind, self._redactor.value(notice.payload))
        for queue in queues:
            if queue.qsize() < self._max_queued:
                queue.put_nowait(notice)

    def listening(self, run_id: str) -> bool:
        return bool(self._listeners.get(run_id))

    def listen(self, run_id: str) -> Listener:
        """The run's notices from now on, until the listener is closed."""
        queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._listeners.setdefault(run_id, []).append(queue)
        return Listener(self, run_id, queue)

    def _forget(self, run_id: str, queue: asyncio.Queue[Notice]) -> None:
        queues = self._listeners.get(run_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            self._listeners.pop(run_id, None)


class Listener:
    """One listener's notices, in order: `pending()` takes what came without waiting."""

    def __init__(self, transient: Transient, run_id: str, queue: asyncio.Queue[Notice]) -> None:
        self._transient = transient
        self._run_id = run_id
        self.queue = queue

    def pending(self) -> Notice | None:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def next(self) -> Notice:
        return await self.queue.get()

    def close(self) -> None:
        self._transient._forget(self._run_id, self.queue)
