"""A step body's timeout, armed only if the body waits: most bodies finish without waiting.

`asyncio.timeout` costs a timer and a context object per attempt (about 7 µs, a tenth of a
step's engine time) even for a body that returns at once, which no timer can ever interrupt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


async def within(body: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Runs `body` in this task; raises TimeoutError once `timeout_s` has passed since the
    call, as `asyncio.timeout` would. The body runs until it first waits before any timer
    exists; the timer is then armed for what is left of the time."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        waiting_on = body.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    async with asyncio.timeout_at(deadline):
        return await _Resumed(body, waiting_on)


class _Resumed(Generic[T]):
    """Awaits the rest of a coroutine already run up to its first wait (what `await` does
    for one that has not started: hand each future it waits on to the task, pass each
    result or exception back in)."""

    __slots__ = ("_body", "_waiting_on")

    def __init__(self, body: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._body, self._waiting_on = body, waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        body, waiting_on = self._body, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                body.close()
                raise
            except BaseException as exc:  # a cancellation (the timer's, or the task's)
                try:
                    waiting_on = body.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    waiting_on = body.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
