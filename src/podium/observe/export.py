"""Hands finished spans to the span export process (observe/otlp_child.py) over a pipe.

The engine's process only appends each span, a plain tuple, to a bounded queue; a sender
thread writes them in batches (marshal: a C loop over ints, strings and dicts) and the child
process encodes the protobuf and posts it, away from the event loop and its GIL. A full queue
drops spans and counts them (logged once); a dead or stuck child never blocks the engine.
`OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and `OTEL_BSP_SCHEDULE_DELAY` size
the queue, the batches and the longest a span waits, as they do for the SDK's batch processor.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import structlog

from podium.observe import otlp_child

log = structlog.get_logger("podium.tracing")

_PIPE_BYTES = 1024 * 1024  # F_SETPIPE_SZ: room for a few batches while the child encodes
_SHUTDOWN_S = 15.0  # for the sender to hand over the queue, then for the child to export it


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _plain(value: Any) -> Any:
    """`value` made of the exact types marshal takes (an enum member becomes its value)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (list if isinstance(value, list) else tuple)(_plain(v) for v in value)
    return str(value)


class ExportProcess:
    """The engine's end of the span export process (a SpanSink)."""

    def __init__(self, resource: Mapping[str, Any], environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self._max_queue = _number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self._batch = min(_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), self._max_queue)
        self._delay_s = _number(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._spans: deque[tuple[Any, ...]] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._dead = False
        self.dropped = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-P", str(Path(otlp_child.__file__))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
            env={**os.environ, **{k: v for k, v in env.items() if k.startswith("OTEL_")}},
        )
        stdin = self._proc.stdin
        assert stdin is not None
        self._stdin: IO[bytes] = stdin
        with contextlib.suppress(AttributeError, OSError):  # Linux only; a default pipe works
            import fcntl

            fcntl.fcntl(stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._write(otlp_child.frame(dict(resource)))
        self._sender = threading.Thread(
            target=self._send_loop, name="podium-span-export", daemon=True
        )
        self._sender.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def dead(self) -> bool:
        """The child is gone: spans are dropped (and counted) from now on."""
        return self._dead

    def ready(self, timeout_s: float) -> bool:
        """Waits (up to `timeout_s`) until the child is set up; False if it is not."""
        out = self._proc.stdout
        assert out is not None
        readable, _, _ = select.select([out], [], [], timeout_s)
        return bool(readable) and out.readline() == b"ready\n"

    # -- the engine's side: never blocks --------------------------------------------------------

    def emit(self, span: tuple[Any, ...]) -> None:
        spans = self._spans
        if len(spans) >= self._max_queue or self._dead:
            self._drop(1)
            return
        spans.append(span)
        if len(spans) == self._batch:
            self._wake.set()

    def _drop(self, count: int) -> None:
        if not self.dropped:
            log.warning(
                "spans dropped: the span export process is gone or behind",
                queue=self._max_queue, dead=self._dead,
            )
        self.dropped += count

    # -- the sender thread -----------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._dead:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            if self._proc.poll() is not None:  # died: drop from now on, not once full
                self._dead = True
                self._drop(len(self._spans))
                self._spans.clear()
                break
            self._send_queued()
            if self._closing:
                break

    def _send_queued(self) -> None:
        spans, size = self._spans, self._batch
        while spans and not self._dead:
            batch = [spans.popleft() for _ in range(min(len(spans), size))]
            try:
                data = otlp_child.frame(batch)
            except ValueError:  # a value marshal does not take (a str or int subclass...)
                data = otlp_child.frame([_plain(span) for span in batch])
            if not self._write(data):
                self._drop(len(batch) + len(spans))
                spans.clear()

    def _write(self, data: bytes) -> bool:
        view = memoryview(data)
        try:
            while view:  # unbuffered: a write interrupted by a signal may be partial
                view = view[self._stdin.write(view) or 0:]
        except (OSError, ValueError):  # the child died (broken pipe) or the pipe was closed
            self._dead = True
            return False
        return True

    # -- the end -----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Sends what is queued, lets the child export it, and waits for it (within a bound:
        a child that hangs is killed, its spans lost)."""
        self._closing = True
        self._wake.set()
        self._sender.join(_SHUTDOWN_S)
        if self._sender.is_alive():  # stuck writing to a child that reads no more
            self._proc.kill()
            self._sender.join(5)
        if self._spans:  # left behind by a child that died meanwhile
            self._drop(len(self._spans))
            self._spans.clear()
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()
        try:
            self._proc.wait(_SHUTDOWN_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self.dropped:
            log.warning("spans dropped", count=self.dropped)
