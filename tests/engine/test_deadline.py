"""`within`: a step body's timeout, armed only once the body waits."""

from __future__ import annotations

import asyncio

import pytest

from podium.engine.deadline import within


async def test_a_body_that_never_waits_returns_its_value() -> None:
    async def body() -> int:
        return 7

    assert await within(body(), 0) == 7  # no time left, yet nothing could interrupt it


async def test_a_body_that_waits_gets_each_result_and_returns() -> None:
    loop = asyncio.get_running_loop()

    async def body() -> list[str]:
        seen = []
        for word in ("a", "b"):
            future: asyncio.Future[str] = loop.create_future()
            loop.call_soon(future.set_result, word)
            seen.append(await future)
        await asyncio.sleep(0)  # a bare yield to the loop
        return seen

    assert await within(body(), 60) == ["a", "b"]


async def test_a_body_still_waiting_at_the_deadline_is_cancelled_and_times_out() -> None:
    ended: list[str] = []

    async def body() -> None:
        try:
            await asyncio.get_running_loop().create_future()  # never resolved
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    with pytest.raises(TimeoutError):
        await within(body(), 0)
    assert ended == ["cancelled"]


async def test_errors_before_and_after_the_first_wait_reach_the_caller() -> None:
    async def early() -> None:
        raise ValueError("before")

    async def late() -> None:
        await asyncio.sleep(0)
        raise KeyError("after")

    with pytest.raises(ValueError, match="before"):
        await within(early(), 60)
    with pytest.raises(KeyError, match="after"):
        await within(late(), 60)


async def test_a_body_that_swallows_the_cancellation_returns_as_under_asyncio_timeout() -> None:
    async def body() -> str:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            return "cleaned up"
        return "never"

    async with asyncio.timeout(0):
        plain = await body()
    assert await within(body(), 0) == plain == "cleaned up"


async def test_cancelling_the_task_cancels_the_body_not_a_timeout() -> None:
    started = asyncio.Event()
    ended: list[str] = []

    async def body() -> None:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            ended.append("finally")

    task = asyncio.create_task(within(body(), 60))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["finally"]
