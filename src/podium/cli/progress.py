"""The progress of runs on stderr while the CLI waits: a live table (a TTY) or one line per step.

Driven by bus events; the final summary, read from the store, stays the authoritative result.
"""

from __future__ import annotations

import asyncio
import enum

from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from podium.bus.base import Bus
from podium.cli.common import err
from podium.cli.view import RunView, run_line, run_table, step_line
from podium.clock import SYSTEM_CLOCK
from podium.events import Event
from podium.store.base import Store

MAX_BUFFERED = 10_000  # events of runs not tracked yet; other runs' events must not pile up
SETTLE_S = 1.0  # how long to let the last events of a finished run arrive before reading the store
REFRESH_PER_S = 10


class Display(enum.Enum):
    LIVE = "live"  # a table redrawn in place: stderr is a terminal
    LINES = "lines"  # one line per finished step: stderr is a file or a pipe
    QUIET = "quiet"  # --json: nothing but the result


def pick_display(json_output: bool) -> Display:
    if json_output:
        return Display.QUIET
    return Display.LIVE if err.is_terminal else Display.LINES


class Follower:
    """Feeds bus events to the views of the runs it follows and shows them on stderr.

    Enter it before submitting, so no early event is missed: events of runs not tracked yet
    are buffered, then replayed over the view when `track` is called.
    """

    def __init__(self, bus: Bus, display: Display) -> None:
        self._bus = bus
        self._display = display
        self._views: dict[str, RunView] = {}
        self._buffer: dict[str, list[Event]] = {}
        self._buffered = 0
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None

    async def __aenter__(self) -> Follower:
        self._task = asyncio.create_task(self._consume())
        await asyncio.sleep(0)  # lets the subscription register before anything is submitted
        if self._display is Display.LIVE:
            self._live = Live(
                console=err, refresh_per_second=REFRESH_PER_S, transient=False,
                get_renderable=self.renderable, redirect_stdout=False,
            )
            self._live.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()  # draws the last frame and leaves it on screen
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def track(self, view: RunView) -> None:
        self._views[view.run_id] = view
        for event in self._buffer.pop(view.run_id, []):
            self._apply(view, event)

    def renderable(self) -> RenderableType:
        now = SYSTEM_CLOCK.now()
        return Group(*(run_table(view, now) for view in list(self._views.values())))

    async def settle(self, store: Store) -> None:
        """After the runs ended: lets their last events arrive, else reads the final state."""
        clock = SYSTEM_CLOCK
        deadline = clock.monotonic() + SETTLE_S
        while not all(v.finished for v in self._views.values()) and clock.monotonic() < deadline:
            await clock.sleep(0.01)
        for view in self._views.values():
            if not view.finished:
                row = await store.get_run(view.run_id)
                if row is not None:
                    view.seed(row, await store.get_steps(view.run_id))
        if self._live is not None:
            self._live.refresh()

    async def _consume(self) -> None:
        async for event in self._bus.subscribe():
            view = self._views.get(event.correlation_id)
            if view is not None:
                self._apply(view, event)
            elif self._buffered < MAX_BUFFERED:
                self._buffer.setdefault(event.correlation_id, []).append(event)
                self._buffered += 1

    def _apply(self, view: RunView, event: Event) -> None:
        finished = view.apply(event)
        if self._display is not Display.LINES:
            return
        if finished is not None:
            self._print(view, step_line(finished))
        elif event.event_type == "run.completed":
            self._print(view, run_line(view))

    def _print(self, view: RunView, line: Text) -> None:
        if len(self._views) > 1:  # several runs interleave: say whose step it is
            line = Text(f"[{view.run_id[-8:]}] ").append_text(line)
        err.print(line, soft_wrap=True)
