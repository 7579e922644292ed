"""RedisBus against a real Redis at 127.0.0.1:6379: events, dispatch by priority, recovery.

Each test works under its own key prefix, deleted afterwards; Redis itself is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import redis
from structlog.testing import capture_logs

from podium.bus import Dispatch, open_bus
from podium.bus.redis import RedisBus
from podium.clock import FakeClock
from podium.errors import PodiumError
from podium.events import Event

T = TypeVar("T")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PROBE = "test.probe"


@pytest.fixture(scope="module")
def redis_unreachable() -> str | None:
    """Why the test Redis cannot be used, or None; asked once per module."""
    try:
        with redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=3) as client:
            client.ping()
            return None
    except redis.RedisError as exc:
        return str(exc)


@pytest.fixture
def prefix(redis_unreachable: str | None) -> Iterator[str]:
    """A fresh key prefix, its keys deleted afterwards. Fails under CI, else skips."""
    if redis_unreachable is not None:
        message = f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {redis_unreachable}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"t-{uuid.uuid4().hex}"
    yield name
    with redis.Redis(REDIS_HOST, REDIS_PORT) as client:
        keys = list(client.scan_iter(match=f"{name}:*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A plain client to look at the streams from outside the bus."""
    with redis.Redis(REDIS_HOST, REDIS_PORT) as plain:
        yield plain


def bus_url(prefix: str, port: int = REDIS_PORT) -> str:
    return f"redis://{REDIS_HOST}:{port}/0?prefix={prefix}"


@pytest.fixture
async def bus(prefix: str) -> AsyncIterator[RedisBus]:
    async with RedisBus(bus_url(prefix)) as opened:
        yield opened


async def eventually(check: Callable[[], bool], timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.02)


async def waking_sleepers_until_done(clock: FakeClock, work: Awaitable[T]) -> T:
    """Awaits `work`, moving `clock` to the next sleeper's deadline whenever one sleeps on it:
    the bus's backoffs and timeouts pass at once, in the order they would for real."""
    task = asyncio.ensure_future(work)
    async with asyncio.timeout(30):
        while not task.done():
            deadline = clock.next_deadline()
            if deadline is not None:
                clock.advance(deadline - clock.monotonic())
            await asyncio.sleep(0.005)
    return await task


async def live_subscription(bus: RedisBus, run_id: str | None = None) -> AsyncIterator[Event]:
    """A subscription known to be reading: probes are published until one comes back."""
    events = bus.subscribe(run_id)
    first = asyncio.ensure_future(anext(events))
    async with asyncio.timeout(10):
        while not first.done():
            bus.publish([Event(PROBE, run_id or "probe")])
            await asyncio.wait({first}, timeout=0.2)
    assert first.result().event_type == PROBE
    return events


async def take(events: AsyncIterator[Event], count: int) -> list[Event]:
    """The next `count` events that are not probes."""
    taken: list[Event] = []
    async with asyncio.timeout(10):
        while len(taken) < count:
            event = await anext(events)
            if event.event_type != PROBE:
                taken.append(event)
    return taken


def pending(client: redis.Redis, key: str) -> int:
    return int(client.xpending(key, "workers")["pending"])


class Relay:
    """A TCP relay to Redis that a test can cut, as an outage would, without touching Redis."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, REDIS_HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        self._writers |= {writer, upstream}
        await asyncio.gather(
            _pipe(reader, upstream), _pipe(upstream_reader, writer), return_exceptions=True
        )
        for end in (writer, upstream):
            end.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    opened = Relay()
    await opened.start()
    yield opened
    with contextlib.suppress(AssertionError):
        await opened.stop()


# Events


async def test_open_bus_gives_a_distributed_redis_bus_for_a_redis_url(prefix: str) -> None:
    async with open_bus(bus_url(prefix)) as opened:
        assert isinstance(opened, RedisBus)
        assert opened.distributed is True


async def test_published_events_reach_a_subscriber_in_order_with_the_full_envelope(
    bus: RedisBus,
) -> None:
    events = await live_subscription(bus)
    sent = [
        Event(
            "agent.task.completed",
            f"run-{i % 3}",
            payload={"i": i, "nested": {"ok": True}, "text": "héllo"},
            causation_id=f"cause-{i}",
            source="test.source",
            priority="high",
        )
        for i in range(1200)  # more than one pipelined batch
    ]
    bus.publish(sent[:700])
    bus.publish(sent[700:])
    received = await take(events, len(sent))
    assert [e.to_json() for e in received] == [e.to_json() for e in sent]
    assert received[0].timestamp == pytest.approx(sent[0].timestamp, abs=1e-6)


async def test_a_subscriber_for_one_run_sees_only_that_runs_events(bus: RedisBus) -> None:
    events = await live_subscription(bus, run_id="run-a")
    bus.publish([Event("step.a", "run-a"), Event("step.b", "run-b"), Event("step.c", "run-a")])
    bus.publish([Event("run.completed", "run-b"), Event("run.completed", "run-a")])
    received = await take(events, 3)
    assert [(e.event_type, e.correlation_id) for e in received] == [
        ("step.a", "run-a"),
        ("step.c", "run-a"),
        ("run.completed", "run-a"),
    ]


async def test_a_subscription_ends_when_the_bus_closes(prefix: str) -> None:
    async with RedisBus(bus_url(prefix)) as opened:
        events = await live_subscription(opened)
        reading = asyncio.ensure_future(anext(events, None))
    async with asyncio.timeout(5):
        assert await reading is None


# Dispatch


async def test_claims_hand_out_runs_strictly_by_priority(bus: RedisBus) -> None:
    for run_id, priority in [("r-low", "low"), ("r-normal", "normal"), ("r-crit", "critical")]:
        await bus.dispatch(run_id, priority)
    claims = bus.claims("worker-1", idle_s=60)
    got = [await anext(claims) for _ in range(3)]
    assert [(d.run_id, d.priority, d.deliveries) for d in got] == [
        ("r-crit", "critical", 1),
        ("r-normal", "normal", 1),
        ("r-low", "low", 1),
    ]


async def test_a_dispatch_made_while_a_worker_waits_wakes_it(bus: RedisBus) -> None:
    claims = bus.claims("worker-1", idle_s=60)
    waiting = asyncio.ensure_future(anext(claims))
    await asyncio.sleep(0.05)  # let it reach the blocking read; correctness does not depend on it
    await bus.dispatch("r-1", "high")
    async with asyncio.timeout(5):
        assert (await waiting).run_id == "r-1"


async def test_two_consumers_never_get_the_same_dispatch(bus: RedisBus) -> None:
    run_ids = [f"r-{i}" for i in range(30)]
    for i, run_id in enumerate(run_ids):
        await bus.dispatch(run_id, ("critical", "high", "normal", "low")[i % 4])
    taken: list[tuple[str, str]] = []

    async def work(consumer: str) -> None:
        async for dispatch in bus.claims(consumer, idle_s=60):
            taken.append((consumer, dispatch.run_id))
            await asyncio.sleep(0)  # let the other consumer in between
            await bus.ack(dispatch)

    workers = [asyncio.ensure_future(work(name)) for name in ("worker-a", "worker-b")]
    try:
        await eventually(lambda: len(taken) >= len(run_ids))
        await asyncio.sleep(0.3)  # time for a duplicate to show up, if there were one
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert sorted(run_id for _, run_id in taken) == sorted(run_ids)


async def test_a_dispatch_left_unacked_by_a_dead_worker_is_reclaimed_after_idle_s(
    bus: RedisBus,
) -> None:
    await bus.dispatch("r-1", "normal")
    dead = bus.claims("worker-dead", idle_s=0.3)
    first = await anext(dead)
    await dead.aclose()  # it stops iterating and never acks: as if it died
    # Idle time is Redis's to count: a worker that waits an hour for an entry to go idle
    # scans all along beside one that waits 0.3 s, and must not take it.
    patient = bus.claims("worker-patient", idle_s=3600)
    patient_got = asyncio.ensure_future(anext(patient))
    survivor = bus.claims("worker-alive", idle_s=0.3)
    async with asyncio.timeout(10):
        again = await anext(survivor)
    assert not patient_got.done()
    patient_got.cancel()
    await asyncio.gather(patient_got, return_exceptions=True)
    assert (again.run_id, again.token, first.deliveries, again.deliveries) == (
        "r-1",
        first.token,
        1,
        2,
    )


async def test_dead_letter_moves_a_poison_dispatch_aside_and_acks_it(
    bus: RedisBus, prefix: str, client: redis.Redis
) -> None:
    await bus.dispatch("r-poison", "high")
    dispatch = await anext(bus.claims("worker-1", idle_s=60))
    await bus.dead_letter(Dispatch("r-poison", "high", dispatch.token, deliveries=5), "poison")
    [(_, fields)] = client.xrange(f"{prefix}:dispatch:dead")
    assert fields == {
        b"run_id": b"r-poison",
        b"priority": b"high",
        b"reason": b"poison",
        b"deliveries": b"5",
    }
    assert pending(client, f"{prefix}:dispatch:high") == 0
    assert client.xlen(f"{prefix}:dispatch:high") == 0


async def test_ack_removes_the_dispatch_for_good(
    bus: RedisBus, prefix: str, client: redis.Redis
) -> None:
    await bus.dispatch("r-1", "low")
    claims = bus.claims("worker-1", idle_s=0.1)
    dispatch = await anext(claims)
    assert pending(client, f"{prefix}:dispatch:low") == 1
    await bus.ack(dispatch)
    assert pending(client, f"{prefix}:dispatch:low") == 0
    assert client.xlen(f"{prefix}:dispatch:low") == 0
    await bus.dispatch("r-2", "low")
    assert (await anext(claims)).run_id == "r-2"  # not r-1 again, though idle_s has passed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:pw@127.0.0.1:port/0", "invalid bus URL .*Port could not be cast"),
        ("redis://:pw@127.0.0.1:6379/0?socket_timeout=soon", "'socket_timeout'"),
        ("redis://:pw@127.0.0.1:6379/0?prefix=", "prefix is empty"),
    ],
)
def test_a_malformed_url_is_refused_without_echoing_the_password(url: str, message: str) -> None:
    with pytest.raises(PodiumError, match=message) as caught:
        RedisBus(url)
    assert ":pw@" not in str(caught.value)


async def test_dispatch_rejects_an_unknown_priority(bus: RedisBus) -> None:
    with pytest.raises(PodiumError, match="unknown priority 'urgent'"):
        await bus.dispatch("r-1", "urgent")


async def test_claims_recreate_the_group_when_the_streams_vanish(
    bus: RedisBus, prefix: str, client: redis.Redis
) -> None:
    claims = bus.claims("worker-1", idle_s=60)
    await bus.dispatch("r-1", "normal")
    await bus.ack(await anext(claims))
    client.delete(*(f"{prefix}:dispatch:{p}" for p in ("critical", "high", "normal", "low")))
    await bus.dispatch("r-2", "normal")  # what a restart without persistence leaves behind
    with capture_logs() as logs:
        async with asyncio.timeout(10):
            assert (await anext(claims)).run_id == "r-2"
    assert [e["event"] for e in logs] == ["Redis consumer group lost, recreating it"]


# Outages


async def test_opening_a_bus_on_an_unreachable_redis_fails_clearly_without_the_password(
    prefix: str,
) -> None:
    url = "redis://:s3cr3t-pw@127.0.0.1:1/0?socket_connect_timeout=0.2&prefix=" + prefix
    clock = FakeClock()
    bus = RedisBus(url, connect_deadline_s=1.0, clock=clock)
    with capture_logs() as logs, pytest.raises(PodiumError) as caught:
        await waking_sleepers_until_done(clock, bus.__aenter__())
    assert clock.monotonic() <= 1.0  # it gave up by its deadline, not at the default 5 s
    assert str(caught.value).startswith("cannot reach Redis at redis://127.0.0.1:1")
    assert "s3cr3t-pw" not in str(caught.value)
    assert logs and all("s3cr3t-pw" not in repr(entry) for entry in logs)


async def test_publishing_while_redis_is_unreachable_neither_raises_nor_blocks(
    prefix: str,
) -> None:
    bus = RedisBus(
        f"redis://127.0.0.1:1/0?socket_connect_timeout=0.2&prefix={prefix}", connect_deadline_s=0.5
    )
    with pytest.raises(PodiumError):
        await bus.__aenter__()
    bus.publish([Event("agent.task.started", "r-1") for _ in range(1000)])  # a plain call
    await asyncio.wait_for(bus.__aexit__(None, None, None), timeout=5)


async def test_events_published_during_an_outage_arrive_once_redis_is_back(
    prefix: str, relay: Relay
) -> None:
    async with (
        RedisBus(bus_url(prefix)) as watcher,
        RedisBus(bus_url(prefix, relay.port), flush_timeout_s=10) as cut_off,
    ):
        events = await live_subscription(watcher, run_id="r-1")
        await relay.stop()
        with capture_logs() as logs:
            cut_off.publish([Event(f"step.{i}", "r-1") for i in range(50)])  # never awaits
            await eventually(lambda: any(e["event"].startswith("Redis unav") for e in logs))
            await relay.start()  # the same port: Redis is back
            received = await take(events, 50)
    assert [e.event_type for e in received] == [f"step.{i}" for i in range(50)]


async def test_closing_a_bus_while_redis_is_down_gives_up_after_the_flush_timeout(
    prefix: str, relay: Relay
) -> None:
    clock = FakeClock()
    bus = RedisBus(bus_url(prefix, relay.port), flush_timeout_s=0.5, clock=clock)
    await bus.__aenter__()
    await relay.stop()
    bus.publish([Event("agent.task.started", "r-1")])
    with capture_logs() as logs:
        await waking_sleepers_until_done(clock, bus.__aexit__(None, None, None))
    assert clock.monotonic() <= 0.5  # the publisher's backoff did not keep it past the timeout
    assert any(e["event"] == "bus closed with events unpublished" for e in logs)


async def test_the_queue_keeps_the_newest_events_when_redis_stays_down(prefix: str) -> None:
    bus = RedisBus(f"redis://127.0.0.1:1/0?prefix={prefix}", max_queued=10)
    with capture_logs() as logs:
        bus.publish([Event(f"step.{i}", "r-1") for i in range(25)])
    assert [e.event_type for e in bus._outbox] == [f"step.{i}" for i in range(15, 25)]
    assert [e["event"] for e in logs] == ["bus event queue full, dropping the oldest events"]
    await bus.__aexit__(None, None, None)
