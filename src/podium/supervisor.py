"""Tasks with an owner: named, referenced until done, their failures logged, closed together.

A task the event loop holds only weakly can be garbage-collected mid-flight, and one nobody
awaits dies silently. A Supervisor keeps every task it starts until it ends, logs an
unexpected exception with its traceback, and on `close` cancels and awaits what is left. A
task started `critical` (an engine's background duty) is one the owner cannot do without:
its unexpected end is recorded in `fatal` and reported to `on_fatal`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("podium.tasks")
CLOSE_GRACE_S = 30.0  # how long a cancelled task may take to end before it is left behind
_T = TypeVar("_T")


class Supervisor:
    def __init__(
        self, name: str, on_fatal: Callable[[str, BaseException], None] | None = None
    ) -> None:
        self.name = name
        self._on_fatal = on_fatal
        self._tasks: dict[asyncio.Task[Any], bool] = {}  # task -> critical
        self.fatal: BaseException | None = None  # the first critical task's failure
        self.fatal_task: str | None = None  # and that task's name

    def start(
        self, coro: Coroutine[Any, Any, _T], *, name: str, critical: bool = False
    ) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks[task] = critical
        task.add_done_callback(self._ended)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if task not in self._tasks:  # seen already (by join or close)
            return
        critical = self._tasks.pop(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved: asyncio does not complain about it later
        if exc is None:
            return
        log.error(
            "a critical task failed; its owner stops" if critical else "a task failed",
            task=task.get_name(),
            error_type=type(exc).__name__, error=str(exc), exc_info=exc,
        )
        if critical and self.fatal is None:
            self.fatal, self.fatal_task = exc, task.get_name()
            if self._on_fatal is not None:
                self._on_fatal(task.get_name(), exc)

    async def join(self) -> None:
        """Waits for every task (and any they start meanwhile) to end, cancelling none."""
        while self._tasks:
            tasks = list(self._tasks)
            await asyncio.wait(tasks)
            for task in tasks:
                self._ended(task)

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Cancels every task and waits until all have ended (a task started while closing
        is cancelled too). A task still running `grace_s` after its cancel is left behind,
        logged with where it waits: closing never hangs on one that ignores its cancel."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=grace_s)
            for task in tasks:
                if task in stuck:
                    self._tasks.pop(task, None)
                    log.error(
                        "a task did not end when cancelled; left behind",
                        task=task.get_name(), waiting_in=_where(task),
                    )
                else:
                    self._ended(task)


def _where(task: asyncio.Task[Any]) -> str:
    """The innermost frames a suspended task waits in, for a log line."""
    frames = task.get_stack(limit=None)[-3:]
    return " < ".join(
        f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno})"
        for f in reversed(frames)
    )
