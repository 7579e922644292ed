"""Transient notices across processes on Redis pub/sub, one channel per run.

The channel is `{prefix}:transient:{run_id}`; published from a bounded buffer (full: the new
notice is dropped), never retried, read only while a listener of the run is open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from podium.bus.transient import MAX_QUEUED, Listener, Notice, Transient
from podium.redact import Redactor

log = structlog.get_logger("podium.bus")

MAX_UNSENT = 10_000  # notices waiting for the publisher task; past this, new ones are dropped
SEND_BATCH = 500  # PUBLISHes per pipelined round trip
READ_S = 0.1  # a read wakes this often to follow the runs listened to (subscribe, unsubscribe)
MAX_PAYLOAD = 1 << 20  # a received notice larger than this is skipped, not decoded


class RedisNotices:
    """A process's notices: published to their run's channel, and read from the channels of
    the runs its listeners follow (one pub/sub connection, opened while anyone listens)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        redactor: Redactor,
        pause: Callable[[float], Awaitable[None]],  # waits out an outage; cut short by closing
        *,
        max_unsent: int = MAX_UNSENT,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._redis = redis
        self._channel_prefix = f"{prefix}:transient:"
        self._redactor = redactor
        self._pause = pause
        self._unsent: deque[tuple[str, bytes]] = deque()
        self._max_unsent = max_unsent
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._followed = asyncio.Event()  # set when the set of runs listened to changes
        self._local = Transient(max_queued=max_queued, watch=self._watch)  # already masked
        self._runs: set[str] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._failing = False

    def listening(self, run_id: str) -> bool:
        return True  # a listener elsewhere cannot be seen from here without a round trip

    def publish(self, notice: Notice) -> None:
        if self._closed:
            return
        if len(self._unsent) >= self._max_unsent:
            self._dropped += 1
            return
        payload = self._redactor.value(notice.payload) if self._redactor else notice.payload
        try:
            data = orjson.dumps({"run_id": notice.run_id, "kind": notice.kind, "payload": payload})
        except TypeError as exc:
            log.warning("cannot encode a transient notice", kind=notice.kind, error=str(exc))
            return
        self._unsent.append((self._channel_prefix + notice.run_id, data))
        self._wakeup.set()
        self._start("sender", self._send_loop)

    def listen(self, run_id: str) -> Listener:
        return self._local.listen(run_id)

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _start(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._closed:
            return
        task = self._tasks.get(name)
        if task is None or task.done():
            self._tasks[name] = asyncio.get_running_loop().create_task(
                loop(), name=f"podium-notices-{name}"
            )

    # Publishing: one task, so the notices of a run keep their order.

    async def _send_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._unsent:
                batch = [self._unsent.popleft() for _ in range(min(SEND_BATCH, len(self._unsent)))]
                await self._send(batch)

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for channel, data in batch:
            pipe.publish(channel, data)
        try:
            await pipe.execute()
        except RedisError as exc:  # transient by nature: lost, not retried
            if not self._failing:  # once per outage, not once per delta
                log.warning("cannot publish transient notices", error=str(exc))
            self._failing = True
        else:
            self._failing = False
        if self._dropped:
            log.warning("transient notices dropped, the publisher fell behind",
                        dropped=self._dropped)
            self._dropped = 0

    # Listening: subscribed to a run's channel while this process has a listener of it.

    def _watch(self, run_id: str, listened: bool) -> None:
        if listened:
            self._runs.add(run_id)
        else:
            self._runs.discard(run_id)
        self._followed.set()
        self._start("reader", self._read_loop)

    async def _read_loop(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._follow(pubsub)
            except (RedisError, OSError) as exc:
                log.warning("cannot read transient notices, retrying", error=str(exc))
                await self._pause(1.0)
            finally:
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _follow(self, pubsub: PubSub) -> None:
        subscribed: set[str] = set()
        while True:
            self._followed.clear()
            wanted = {self._channel_prefix + run_id for run_id in self._runs}
            if gone := subscribed - wanted:
                await pubsub.unsubscribe(*gone)
            if new := wanted - subscribed:
                await pubsub.subscribe(*new)
            subscribed = wanted
            if not subscribed:
                await self._followed.wait()
                continue
            # A short timeout, not a cancel: cancelling a read could leave a reply half read.
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_S)
            if message is not None and message.get("type") == "message":
                self._deliver(message["channel"], message["data"])

    def _deliver(self, channel: Any, data: Any) -> None:
        if not isinstance(data, bytes) or len(data) > MAX_PAYLOAD:
            return
        run_id = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            fields = orjson.loads(data)
            notice = Notice(
                run_id.removeprefix(self._channel_prefix), str(fields["kind"]),
                dict(fields["payload"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("skipping a malformed transient notice")
            return
        self._local.publish(notice)
