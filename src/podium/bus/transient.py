"""Transient notices (a streamed step's text deltas) for live listeners, and their fan-out.

Never stored nor journaled: a notice nobody listens to is dropped; a slow listener loses some.
Payloads are masked like every value podium writes (a secret split across two deltas is not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from podium.redact import Redactor

# A listener that does not keep up loses notices past this many, rather than grow memory.
MAX_QUEUED = 1000


@dataclass(frozen=True, slots=True)
class Notice:
    """One transient notice of a run: `kind` (e.g. "llm.delta") and a small JSON payload."""

    run_id: str
    kind: str
    payload: dict[str, Any]


class Notices(Protocol):
    """Where a step's notices go and listeners take them (a bus hands one to the engine)."""

    def listening(self, run_id: str) -> bool:
        """False only if nobody can be listening to the run: its notices need not be built."""

    def publish(self, notice: Notice) -> None:
        """Masks the notice and hands it on, never waiting."""

    def listen(self, run_id: str) -> Listener:
        """The run's notices from now on, until the listener is closed."""


class Transient:
    """Fans notices out to the listeners of their run (in this process), waiting for none.

    `watch(run_id, True)` is told when a run gets its first listener, `watch(run_id, False)`
    when its last one leaves (a bus follows the run's notices elsewhere meanwhile)."""

    def __init__(
        self,
        redactor: Redactor | None = None,
        max_queued: int = MAX_QUEUED,
        watch: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._listeners: dict[str, list[asyncio.Queue[Notice]]] = {}
        self._redactor = redactor or Redactor()
        self._max_queued = max_queued
        self._watch = watch

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
        queues = self._listeners.setdefault(run_id, [])
        queues.append(queue)
        if len(queues) == 1 and self._watch is not None:
            self._watch(run_id, True)
        return Listener(self, run_id, queue)

    def _forget(self, run_id: str, queue: asyncio.Queue[Notice]) -> None:
        queues = self._listeners.get(run_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues and self._listeners.pop(run_id, None) is not None and self._watch:
            self._watch(run_id, False)


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
