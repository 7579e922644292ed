"""The distributed bus on Redis Streams: `redis://host:port/db?prefix=NAME` (default podium).

Events are notifications, dropped if Redis stays down: the store's event log is the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from podium.bus.base import Dispatch
from podium.bus.redis_notices import RedisNotices
from podium.bus.transient import Notices
from podium.clock import SYSTEM_CLOCK, Clock, sleep_unless, wait_done
from podium.errors import PodiumError
from podium.events import Event
from podium.redact import Redactor, safe_url

T = TypeVar("T")
Entry = tuple[bytes, dict[bytes, bytes]]  # a stream entry: (id, fields); replies are bytes

log = structlog.get_logger("podium.bus")

PRIORITIES = ("critical", "high", "normal", "low")  # claims() serves them in this order
GROUP = "workers"
EVENTS_MAXLEN = 100_000  # approximate (MAXLEN ~): trimming whole macro-nodes is O(1)
PUBLISH_BATCH = 500  # events per pipelined round trip
BLOCK_MS = 1000  # a blocked read wakes this often to look for abandoned dispatches again
SCAN_CALLS = 8  # XAUTOCLAIM calls per stream per pull; the cursor carries the rest over
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
_JSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# Worth waiting out: the server restarts, is loading its data, or fails over to a replica.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
_FATAL = (AuthenticationError, AuthorizationError)  # ConnectionErrors no wait will fix


class BusClosed(PodiumError):
    """Raised by calls on a closed bus; ends subscribe() and claims() quietly."""

    code = "bus_closed"

    def __init__(self) -> None:
        super().__init__("the Redis bus is closed")


class RedisBus:
    distributed = True

    def __init__(
        self,
        url: str,
        *,
        connect_deadline_s: float = 5.0,  # __aenter__ gives up after this long
        flush_timeout_s: float = 5.0,  # __aexit__ waits this long for queued events
        max_queued: int = 100_000,  # events kept while Redis is down; the oldest go first
        clock: Clock = SYSTEM_CLOCK,  # retry backoff, reclaim scans and the flush timeout
    ) -> None:
        self.clock = clock
        client_url, prefix, self._where = _parse_url(url)
        try:
            # redis-py's own retries would hide outages from _call's backoff and double XADDs.
            # URL options (socket_timeout=...) override these; keep socket_timeout > BLOCK_MS.
            # A blocking pool: a burst of dispatches waits for a free connection instead of
            # failing with "Too many connections" (the default pool's cap is 100).
            pool = BlockingConnectionPool.from_url(
                client_url,
                max_connections=64,
                timeout=None,
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
            )
            self._redis = Redis(connection_pool=pool)
        except ValueError as exc:  # its messages name the option, never the password
            raise PodiumError(f"invalid bus URL for Redis at {self._where}: {exc}") from exc
        self._prefix = prefix
        self._notices: list[RedisNotices] = []
        self._events_key = f"{prefix}:events"
        self._completions_key = f"{prefix}:completions"
        self._dispatch_keys = {p: f"{prefix}:dispatch:{p}" for p in PRIORITIES}
        self._dead_key = f"{prefix}:dispatch:dead"
        self._connect_deadline_s = connect_deadline_s
        self._flush_timeout_s = flush_timeout_s
        self._outbox: deque[Event] = deque(maxlen=max_queued)
        self._to_dispatch: list[tuple[str, str, asyncio.Future[None]]] = []
        self._dispatching: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # events popped from the outbox but not yet written
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._closed = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RedisBus:
        try:
            await self._call(self._redis.ping, "PING", deadline_s=self._connect_deadline_s)
        except RedisError as exc:
            await self._shut()
            raise PodiumError(f"cannot reach Redis at {self._where}: {exc}") from exc
        except PodiumError:
            await self._shut()
            raise
        self._publisher = asyncio.create_task(self._publish_loop(), name="podium-bus-publisher")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for notices in self._notices:
            await notices.aclose()
        await self._stop_publisher()
        await self._shut()

    async def _shut(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            await self._redis.aclose(close_connection_pool=True)

    # Events: publish() queues, one background task writes; subscribe() tails the stream.

    def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            if len(self._outbox) == self._outbox.maxlen:
                self._note_drop()
            self._outbox.append(event)  # a full deque drops its oldest
        if events:
            self._wakeup.set()

    def _note_drop(self) -> None:
        if self._dropped == 0:
            log.warning("bus event queue full, dropping the oldest events", redis=self._where)
        self._dropped += 1

    async def _publish_loop(self) -> None:
        while not self._stopping or self._outbox:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._outbox:
                await self._send(self._take_batch())

    def _take_batch(self) -> list[Event]:
        batch = [self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))]
        self._in_flight = len(batch)
        return batch

    async def _send(self, batch: list[Event]) -> None:
        payloads = [p for p in map(_encode_event, batch) if p is not None]
        completed = [e.correlation_id for e in batch if e.event_type == "run.completed"]
        try:
            await self._call(lambda: self._xadd_events(payloads, completed), "XADD events")
        except PodiumError as exc:  # not transient: lose this batch, keep the publisher alive
            log.error("cannot publish events", redis=self._where, events=len(batch), error=str(exc))
        self._in_flight = 0
        if self._dropped:
            log.warning("bus dropped events while Redis was down", dropped=self._dropped)
            self._dropped = 0

    async def _xadd_events(self, payloads: list[bytes], completed: list[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self._events_key, {"e": payload}, maxlen=EVENTS_MAXLEN, approximate=True)
        for run_id in completed:  # a small stream of its own: waiters need only these
            pipe.xadd(
                self._completions_key, {"r": run_id}, maxlen=EVENTS_MAXLEN, approximate=True
            )
        await pipe.execute()

    async def _stop_publisher(self) -> None:
        self._stopping = True
        self._wakeup.set()
        if self._publisher is not None:
            flushed = await wait_done(self.clock, [self._publisher], self._flush_timeout_s)
            if not flushed:  # Redis is down: the store holds these events anyway
                self._publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._publisher
        unsent = len(self._outbox) + self._in_flight
        if unsent:
            log.warning("bus closed with events unpublished", redis=self._where, events=unsent)

    async def subscribe(self, run_id: str | None = None) -> AsyncIterator[Event]:
        try:
            last_id = await self._call(self._last_event_id, "XREVRANGE")
            while True:
                entries = await self._call(functools.partial(self._read_events, last_id), "XREAD")
                for entry_id, fields in entries:
                    last_id = entry_id  # the next read starts after it
                    event = _decode_event(fields)
                    if event and (run_id is None or event.correlation_id == run_id):
                        yield event
        except BusClosed:
            return

    async def completed_runs(self) -> AsyncIterator[str]:
        try:
            last_id = await self._call(
                functools.partial(self._newest_id, self._completions_key), "XREVRANGE"
            )
            while True:
                read = functools.partial(self._read_stream, self._completions_key, last_id)
                for entry_id, fields in await self._call(read, "XREAD"):
                    last_id = entry_id
                    yield _text(fields[b"r"])
        except BusClosed:
            return

    async def _newest_id(self, key: str) -> bytes:
        newest = _entry_list(await self._redis.xrevrange(key, count=1))
        return newest[0][0] if newest else b"0-0"

    async def _read_stream(self, key: str, after_id: bytes) -> list[Entry]:
        streams: dict[KeyT, StreamIdT] = {key: after_id}
        return _entries(await self._redis.xread(streams, count=PUBLISH_BATCH, block=BLOCK_MS))

    async def _last_event_id(self) -> bytes:
        # XREAD from `$` between two blocked reads would miss what came in between: start
        # from the newest id, then from each id seen.
        newest = _entry_list(await self._redis.xrevrange(self._events_key, count=1))
        return newest[0][0] if newest else b"0-0"

    async def _read_events(self, after_id: bytes) -> list[Entry]:
        streams: dict[KeyT, StreamIdT] = {self._events_key: after_id}
        return _entries(await self._redis.xread(streams, count=PUBLISH_BATCH, block=BLOCK_MS))

    def transient(self, redactor: Redactor) -> Notices:
        """Notices cross processes on pub/sub: the worker running a step publishes its deltas,
        an API process with a listener of the run reads them."""
        notices = RedisNotices(self._redis, self._prefix, redactor, self._pause)
        self._notices.append(notices)
        return notices

    # Dispatches: one stream per priority, one consumer group over them.

    async def dispatch(self, run_id: str, priority: str) -> None:
        """Queued with the other dispatches of this loop turn: one pipelined round trip."""
        key = self._dispatch_key(priority)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_dispatch.append((key, run_id, future))
        if len(self._to_dispatch) == 1:
            asyncio.get_running_loop().call_soon(self._flush_dispatches)
        await future

    def _flush_dispatches(self) -> None:
        batch, self._to_dispatch = self._to_dispatch, []

        async def send() -> None:
            pipe = self._redis.pipeline(transaction=False)
            for key, run_id, _ in batch:
                pipe.xadd(key, {"run_id": run_id})
            await pipe.execute()

        async def flush() -> None:
            try:
                await self._call(send, "XADD dispatch")
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for *_, future in batch:
                if not future.done():
                    future.set_result(None)

        task = asyncio.get_running_loop().create_task(flush())
        self._dispatching.add(task)
        task.add_done_callback(self._dispatching.discard)

    async def claims(self, consumer: str, idle_s: float) -> AsyncIterator[Dispatch]:
        claimer = _Claimer(self, consumer, idle_ms=max(1, int(idle_s * 1000)))
        try:
            await self._call(self._create_groups, "XGROUP CREATE")
            while True:
                yield await claimer.next()
        except BusClosed:
            return

    async def ack(self, dispatch: Dispatch) -> None:
        key = self._dispatch_key(dispatch.priority)

        async def op() -> None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xack(key, GROUP, dispatch.token)
            pipe.xdel(key, dispatch.token)  # acked entries are never read again: keep it short
            await pipe.execute()

        await self._call(op, "XACK")

    async def dead_letter(self, dispatch: Dispatch, reason: str) -> None:
        key = self._dispatch_key(dispatch.priority)
        fields: dict[FieldT, EncodableT] = {
            "run_id": dispatch.run_id,
            "priority": dispatch.priority,
            "reason": reason,
            "deliveries": dispatch.deliveries,
        }

        async def op() -> None:
            pipe = self._redis.pipeline(transaction=True)  # moved aside and acked, or neither
            pipe.xadd(self._dead_key, fields)
            pipe.xack(key, GROUP, dispatch.token)
            pipe.xdel(key, dispatch.token)
            await pipe.execute()

        await self._call(op, "dead letter")

    def _dispatch_key(self, priority: str) -> str:
        try:
            return self._dispatch_keys[priority]
        except KeyError:
            raise PodiumError(
                f"unknown priority {priority!r}; expected one of {', '.join(PRIORITIES)}"
            ) from None

    async def _create_groups(self) -> None:
        # Start at 0, not $: dispatches made before any worker started must not be skipped.
        pipe = self._redis.pipeline(transaction=False)
        for key in self._dispatch_keys.values():
            pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and not str(result).startswith("BUSYGROUP"):
                raise result

    # Every Redis call goes through here: outages are waited out, lost groups recreated.

    async def _call(
        self, op: Callable[[], Awaitable[T]], what: str, *, deadline_s: float | None = None
    ) -> T:
        give_up_at = None if deadline_s is None else self.clock.monotonic() + deadline_s
        delay_s, regroup = BACKOFF_MIN_S, False
        while True:
            if self._closed.is_set():
                raise BusClosed
            try:
                if regroup:
                    await self._create_groups()
                return await op()
            except _FATAL as exc:
                raise PodiumError(f"Redis at {self._where} refused {what}: {exc}") from exc
            except _TRANSIENT as exc:
                if give_up_at is not None and self.clock.monotonic() + delay_s > give_up_at:
                    raise
                self._warn_retry(what, exc, delay_s)
            except ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise PodiumError(f"Redis {what} failed at {self._where}: {exc}") from exc
                # The streams went with a restart (no persistence): recreate them and retry,
                # at once the first time, then with backoff should they keep vanishing.
                log.warning("Redis consumer group lost, recreating it", redis=self._where)
                if not regroup:
                    regroup = True
                    continue
            except RedisError as exc:
                raise PodiumError(f"Redis {what} failed at {self._where}: {exc}") from exc
            await self._pause(delay_s)
            delay_s = min(delay_s * 2, BACKOFF_MAX_S)

    def _warn_retry(self, what: str, exc: Exception, delay_s: float) -> None:
        if not self._closed.is_set():  # closing disconnects blocked reads: not news
            log.warning(
                "Redis unavailable, retrying",
                redis=self._where,
                op=what,
                error=str(exc),
                retry_in_s=delay_s,
            )

    async def _pause(self, delay_s: float) -> None:
        await sleep_unless(self.clock, self._closed, delay_s)  # closing cuts the wait short


class _Claimer:
    """One claims() generator's state: XAUTOCLAIM cursors and a few entries read but not given."""

    def __init__(self, bus: RedisBus, consumer: str, idle_ms: int) -> None:
        self._bus, self._redis = bus, bus._redis
        self._keys = bus._dispatch_keys
        self._consumer, self._idle_ms = consumer, idle_ms
        self._cursors: dict[str, bytes] = dict.fromkeys(PRIORITIES, b"0-0")
        self._buffer: deque[tuple[str, Entry]] = deque()  # at most one entry per priority
        self._next_reclaim = 0.0  # monotonic time of the next scan for abandoned entries

    async def next(self) -> Dispatch:
        while True:
            found = await self._from_buffer() or await self._reclaim() or await self._read_new()
            if found is not None:
                return found
            await self._read_blocking()

    async def _reclaim(self) -> Dispatch | None:
        """An entry another consumer took and left unacked past idle_ms: it died.

        Scanned again only a quarter of idle_ms after a scan that found nothing: an entry
        cannot become abandoned faster than that, and the scan costs four round trips.
        """
        if self._bus.clock.monotonic() < self._next_reclaim:
            return None
        for priority in PRIORITIES:
            for _ in range(SCAN_CALLS):
                claimed = await self._bus._call(
                    functools.partial(self._autoclaim, priority), "XAUTOCLAIM"
                )
                if claimed:
                    return await self._pending(priority, claimed[0])
                if self._cursors[priority] == b"0-0":  # scanned the whole backlog
                    break
        self._next_reclaim = self._bus.clock.monotonic() + self._idle_ms / 4000
        return None

    async def _autoclaim(self, priority: str) -> list[Entry]:
        """Claims at most one idle entry, scanning on from (and moving) this stream's cursor."""
        key, cursor = self._keys[priority], self._cursors[priority]
        reply = await self._redis.xautoclaim(
            key, GROUP, self._consumer, self._idle_ms, cursor, count=1
        )
        self._cursors[priority] = reply[0]
        return _entry_list(reply[1])

    async def _read_new(self) -> Dispatch | None:
        """The oldest new entry of the highest priority that has one; never waits.

        One round trip over all four streams; what else arrives (one per stream) is buffered.
        """
        streams: dict[KeyT, StreamIdT] = {self._keys[p]: ">" for p in PRIORITIES}
        read = functools.partial(self._read_group, streams, None)
        arrived = await self._bus._call(read, "XREADGROUP")
        arrived.sort(key=lambda item: PRIORITIES.index(item[0]))
        self._buffer.extend(arrived)
        return await self._from_buffer()

    async def _read_group(
        self, streams: dict[KeyT, StreamIdT], block_ms: int | None
    ) -> list[tuple[str, Entry]]:
        """New entries (one per stream at most), each with its priority."""
        reply = await self._redis.xreadgroup(
            GROUP, self._consumer, streams, count=1, block=block_ms
        )
        by_key = {key: p for p, key in self._keys.items()}
        return [(by_key[_text(key)], entry) for key, entry in _stream_entries(reply)]

    async def _read_blocking(self) -> None:
        """Waits up to BLOCK_MS on all streams; what arrives (one per stream) is buffered."""
        streams: dict[KeyT, StreamIdT] = {self._keys[p]: ">" for p in PRIORITIES}
        read = functools.partial(self._read_group, streams, BLOCK_MS)
        arrived = await self._bus._call(read, "XREADGROUP")
        arrived.sort(key=lambda item: PRIORITIES.index(item[0]))
        self._buffer.extend(arrived)

    async def _from_buffer(self) -> Dispatch | None:
        while self._buffer:
            priority, entry = self._buffer.popleft()
            dispatch = await self._pending(priority, entry)
            if dispatch is not None:
                return dispatch
        return None

    async def _pending(self, priority: str, entry: Entry) -> Dispatch | None:
        """The entry as ours to run, with its delivery count; None if acked or reclaimed since."""
        key, entry_id = self._keys[priority], entry[0]
        rows: list[dict[str, Any]] = await self._bus._call(
            lambda: self._redis.xpending_range(key, GROUP, entry_id, entry_id, 1), "XPENDING"
        )
        if not rows or _text(rows[0]["consumer"]) != self._consumer:
            return None
        return _to_dispatch(priority, entry, deliveries=int(rows[0]["times_delivered"]))


def _parse_url(url: str) -> tuple[str, str, str]:
    """The URL for redis-py (without `prefix`), the key prefix, and the URL for messages."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), "podium")
    if not prefix:
        raise PodiumError("the bus URL's prefix is empty; use ?prefix=NAME or leave it out")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    client_url = urlunsplit(parts._replace(query=rest))
    return client_url, prefix, safe_url(client_url)


def _stream_entries(reply: Any) -> list[tuple[bytes, Entry]]:
    """The entries of an XREAD/XREADGROUP reply, each with its stream's key."""
    return [(key, entry) for key, entries in reply or () for entry in entries]


def _entries(reply: Any) -> list[Entry]:
    return [entry for _, entry in _stream_entries(reply)]


def _entry_list(entries: Any) -> list[Entry]:
    """redis-py types entries loosely (str or None parts); with bytes replies they are bytes."""
    return list(entries or ())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _to_dispatch(priority: str, entry: Entry, deliveries: int) -> Dispatch:
    entry_id, fields = entry
    run_id = _text(fields.get(b"run_id", b""))
    return Dispatch(run_id, priority, _text(entry_id), deliveries=deliveries)


def _encode_event(event: Event) -> bytes | None:
    try:
        return orjson.dumps(event.to_json(), option=_JSON_OPTS)
    except TypeError as exc:  # the store kept it; subscribers just miss this notification
        log.error("cannot encode event for the bus", event_id=event.event_id, error=str(exc))
        return None


def _decode_event(fields: dict[bytes, bytes]) -> Event | None:
    try:
        data = orjson.loads(fields[b"e"])
        return Event(
            event_type=data["event_type"],
            correlation_id=data["correlation_id"],
            payload=data["payload"],
            causation_id=data["causation_id"],
            source=data["source"],
            priority=data["priority"],
            timestamp=datetime.fromisoformat(data["timestamp"]).timestamp(),
            event_id=data["event_id"],
            version=data["version"],
        )
    except (KeyError, TypeError, ValueError) as exc:  # a foreign writer: skip, don't stop
        log.warning("skipping a malformed bus event", error=str(exc))
        return None
