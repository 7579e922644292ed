"""Transient notices across processes on the Redis bus: two buses on one Redis stand for a
worker that runs a step and an API process with a listener of its run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from clocklib import eventually
from redislib import redis_prefix, redis_url, subscribers

from podium.bus import Bus, open_bus
from podium.bus.transient import Listener, Notice
from podium.redact import Redactor

__all__ = ["redis_prefix"]  # the fixture, used by name

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture
async def buses(redis_prefix: str) -> AsyncIterator[tuple[Bus, Bus]]:
    """(the publishing process's bus, the listening process's bus)."""
    async with open_bus(redis_url(redis_prefix)) as worker, open_bus(
        redis_url(redis_prefix)
    ) as api:
        yield worker, api


async def _listening(prefix: str, run_id: str, count: int = 1) -> None:
    channel = f"{prefix}:transient:{run_id}"
    await eventually(lambda: subscribers(channel) == count, timeout_s=10)


async def _take(listener: Listener, count: int) -> list[Notice]:
    async with asyncio.timeout(10):
        return [await listener.next() for _ in range(count)]


def _delta(run_id: str, text: str) -> Notice:
    return Notice(run_id, "llm.delta", {"step": "ask", "text": text})


async def test_a_listener_in_another_process_gets_its_runs_deltas_in_order_and_masked(
    buses: tuple[Bus, Bus], redis_prefix: str
) -> None:
    worker, api = buses
    sink = worker.transient(Redactor([SECRET]))
    listener = api.transient(Redactor()).listen("run-a")
    await _listening(redis_prefix, "run-a")
    assert sink.listening("run-a")  # from the worker, a listener elsewhere may always be there

    texts = [f"piece {i} " for i in range(200)] + [f"key={SECRET}"]
    for text in texts:
        sink.publish(_delta("run-b", "not yours"))
        sink.publish(_delta("run-a", text))

    got = await _take(listener, len(texts))
    assert [n.payload["text"] for n in got[:-1]] == texts[:-1]
    assert {(n.run_id, n.kind) for n in got} == {("run-a", "llm.delta")}
    assert SECRET not in got[-1].payload["text"] and "key=" in got[-1].payload["text"]
    assert listener.pending() is None  # nothing of run-b's
    listener.close()


async def test_a_closed_listener_gets_nothing_more_and_its_channel_is_left(
    buses: tuple[Bus, Bus], redis_prefix: str
) -> None:
    worker, api = buses
    sink, notices = worker.transient(Redactor()), api.transient(Redactor())
    first = notices.listen("run-a")
    await _listening(redis_prefix, "run-a")
    sink.publish(_delta("run-a", "before"))
    assert [n.payload["text"] for n in await _take(first, 1)] == ["before"]

    first.close()
    await _listening(redis_prefix, "run-a", count=0)  # unsubscribed once nobody listens
    second = notices.listen("run-a")
    await _listening(redis_prefix, "run-a")
    sink.publish(_delta("run-a", "after"))
    assert [n.payload["text"] for n in await _take(second, 1)] == ["after"]
    assert first.pending() is None
    second.close()


async def test_two_listeners_of_a_run_share_one_subscription(
    buses: tuple[Bus, Bus], redis_prefix: str
) -> None:
    worker, api = buses
    sink, notices = worker.transient(Redactor()), api.transient(Redactor())
    one, two = notices.listen("run-a"), notices.listen("run-a")
    await _listening(redis_prefix, "run-a")
    sink.publish(_delta("run-a", "hello"))
    assert [n.payload["text"] for n in await _take(one, 1)] == ["hello"]
    assert [n.payload["text"] for n in await _take(two, 1)] == ["hello"]
    one.close()
    sink.publish(_delta("run-a", "still"))
    assert [n.payload["text"] for n in await _take(two, 1)] == ["still"]
    assert subscribers(f"{redis_prefix}:transient:run-a") == 1
    two.close()


async def test_closing_the_bus_ends_publishing_and_listening(redis_prefix: str) -> None:
    async with open_bus(redis_url(redis_prefix)) as api:
        listener = api.transient(Redactor()).listen("run-a")
        await _listening(redis_prefix, "run-a")
    await _listening(redis_prefix, "run-a", count=0)
    assert listener.pending() is None
