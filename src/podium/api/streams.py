"""Server-Sent Events over the bus: `event: <event_type>`, `data: <event JSON>`.

A run's stream replays the run's stored events, then follows the bus until `run.completed`;
beside them come the run's transient notices (`event: llm.delta`, no `id:`: never stored,
so never replayed), as the steps stream them (in this process, or in a worker on Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from podium.bus.base import Bus
from podium.bus.transient import Listener, Notice, Notices
from podium.events import Event
from podium.store.base import Store
from podium.store.roles import EventLog

KEEPALIVE_S = 15.0  # idle proxies and load balancers cut silent connections after 30-60 s
HISTORY_PAGE = 1000


class EventStreams:
    """The open streams of one app; `close()` ends them all, so a shutdown need not wait on
    clients that never hang up."""

    def __init__(self, keepalive_s: float = KEEPALIVE_S) -> None:
        self.keepalive_s = keepalive_s
        self.closed = asyncio.Event()

    def close(self) -> None:
        self.closed.set()


def sse(event: Event) -> str:
    data = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {event.event_id}\nevent: {event.event_type}\ndata: {data}\n\n"


def sse_notice(notice: Notice) -> str:
    data = json.dumps(
        {"correlation_id": notice.run_id, "event_type": notice.kind, "payload": notice.payload},
        separators=(",", ":"), ensure_ascii=False, default=str,
    )
    return f"event: {notice.kind}\ndata: {data}\n\n"


KEEPALIVE = ": keepalive\n\n"  # an SSE comment: clients ignore it


class _Ended(Exception):
    """The bus closed or the app is shutting down: the stream ends cleanly."""


class _Live:
    """The bus subscription, read one event at a time with a deadline; a run's notices, when
    followed too, come first: a step's deltas precede the events of its end."""

    def __init__(self, events: AsyncIterator[Event], notices: Listener | None = None) -> None:
        self._events = events
        self._next: asyncio.Future[Event] = asyncio.ensure_future(anext(events))
        self._notices = notices

    async def started(self) -> None:
        # One turn of the loop lets an in-process subscription register before the store is
        # read; a bus that registers later is covered by the store catch-up on each idle tick.
        await asyncio.sleep(0)

    async def next(self, closed: asyncio.Event, timeout_s: float) -> Event | Notice | None:
        """The next event or notice, or None after `timeout_s` of silence; `_Ended` when it
        is over."""
        notice = self._notices.pending() if self._notices is not None else None
        if notice is not None:
            return notice
        closing = asyncio.ensure_future(closed.wait())
        waiting: set[asyncio.Future[Any]] = {self._next, closing}
        noticed = None if self._notices is None else asyncio.ensure_future(self._notices.next())
        if noticed is not None:
            waiting.add(noticed)
        try:
            await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if noticed is not None:
                noticed.cancel()  # a notice not yet taken stays queued for the next call
        if noticed is not None and noticed.done() and not noticed.cancelled():
            return noticed.result()
        if closed.is_set():
            raise _Ended
        if not self._next.done():
            return None
        try:
            event = self._next.result()
        except StopAsyncIteration:
            raise _Ended from None
        self._next = asyncio.ensure_future(anext(self._events))
        return event

    async def close(self) -> None:
        if self._notices is not None:
            self._notices.close()
        self._next.cancel()
        # asyncio.wait, not await: a cancel of this task itself must still propagate.
        await asyncio.wait({self._next})
        if not self._next.cancelled():
            self._next.exception()  # retrieved: asyncio would log an unread StopAsyncIteration
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()


async def stream_events(
    store: Store,
    bus: Bus,
    streams: EventStreams,
    run_id: str | None,
    transient: Notices | None = None,
) -> AsyncIterator[str]:
    """Every event from now on (run_id None), or one run's whole story, as SSE text; with
    `transient`, a run's stream carries its transient notices too."""
    notices = None if transient is None or run_id is None else transient.listen(run_id)
    live = _Live(bus.subscribe(run_id), notices)
    try:
        await live.started()
        steps = _follow_all(live, streams) if run_id is None else _follow_run(
            store, live, streams, run_id
        )
        async with contextlib.aclosing(steps):  # a client that hangs up closes it at once
            async for chunk in steps:
                yield chunk
    finally:
        await live.close()


async def _follow_all(live: _Live, streams: EventStreams) -> AsyncGenerator[str, None]:
    with contextlib.suppress(_Ended):
        while True:
            event = await live.next(streams.closed, streams.keepalive_s)
            if event is None:
                yield KEEPALIVE
            elif isinstance(event, Event):
                yield sse(event)


async def _follow_run(
    store: Store, live: _Live, streams: EventStreams, run_id: str
) -> AsyncGenerator[str, None]:
    """Stored events first, then live ones; the store is read again whenever the bus is
    quiet, so an event the bus lost (or sent before the subscription) still arrives."""
    seen: set[str] = set()
    after_seq = 0
    with contextlib.suppress(_Ended):
        while True:
            row = await store.get_run(run_id)
            # Read before the events: if it is final, they hold its run.completed.
            finished = row is None or row.done
            for seq, stored in await _events_after(store, run_id, after_seq):
                after_seq = seq
                if stored.event_id not in seen:
                    seen.add(stored.event_id)
                    yield sse(stored)
            if finished:
                return
            while (event := await live.next(streams.closed, streams.keepalive_s)) is not None:
                if isinstance(event, Notice):
                    yield sse_notice(event)
                    continue
                if event.event_id not in seen:
                    seen.add(event.event_id)
                    yield sse(event)
                if event.event_type == "run.completed":
                    return
            yield KEEPALIVE


async def _events_after(store: EventLog, run_id: str, after_seq: int) -> list[tuple[int, Event]]:
    events: list[tuple[int, Event]] = []
    while page := await store.list_events(run_id, after_seq, HISTORY_PAGE):
        events.extend(page)
        after_seq = page[-1][0]
        if len(page) < HISTORY_PAGE:
            break
    return events
