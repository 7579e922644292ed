"""Step bodies of the benchmark workflows: an async no-op and a 50 ms sleeper.

Each records its start (at entry) and end (just before return) in `TIMES`, keyed by (run, step).
In a worker process of the distributed configuration (`BENCH_TIMES_DIR` set) each also appends
`run step start end` to `times-PID.tsv` there, for the bench process to read afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from podium.steps import StepContext

# (run_id, step_id) -> (perf_counter at entry, perf_counter just before return)
TIMES: dict[tuple[str, str], tuple[float, float]] = {}
SLEEP_S = 0.05
_TIMES_DIR = os.environ.get("BENCH_TIMES_DIR")
_times_fd: list[int] = []  # this process's times file, opened on first use


def _record(ctx: StepContext | None, start: float) -> None:
    if ctx is None:
        return
    end = time.perf_counter()
    if _TIMES_DIR is None:
        TIMES[(ctx.run_id, ctx.step_id)] = (start, end)
        return
    if not _times_fd:
        path = os.path.join(_TIMES_DIR, f"times-{os.getpid()}.tsv")
        _times_fd.append(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    # One unbuffered write per body: nothing is lost however the worker ends.
    os.write(_times_fd[0], f"{ctx.run_id}\t{ctx.step_id}\t{start!r}\t{end!r}\n".encode())


async def noop(i: int, prev: Any = None, ctx: StepContext | None = None) -> dict[str, int]:
    """Returns `{"i": i}`; `prev` is the predecessor's output (a list of them for a join)."""
    start = time.perf_counter()
    output = {"i": i}
    _record(ctx, start)
    return output


async def sleepy(i: int, prev: Any = None, ctx: StepContext | None = None) -> dict[str, int]:
    """Like `noop`, after sleeping 50 ms on the loop (W4's parallel steps)."""
    start = time.perf_counter()
    await asyncio.sleep(SLEEP_S)
    output = {"i": i}
    _record(ctx, start)
    return output
