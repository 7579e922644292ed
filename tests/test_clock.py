"""The injectable clock: FakeClock's behaviour, and no direct time calls left in src/podium.

Everything that keeps time takes a `podium.clock.Clock`; a direct `time.time()` elsewhere
would make the code it is in untestable without waiting, so a scan keeps them out.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from podium.clock import (
    SYSTEM_CLOCK,
    Clock,
    FakeClock,
    SystemClock,
    sleep_unless,
    wait_done,
)

SRC = Path(__file__).resolve().parents[1] / "src" / "podium"
# What reads or waits on real time, by the name an allow-list entry gives it. Timeouts and
# timers count: `asyncio.timeout(5)` waits five real seconds whatever clock the code keeps.
DIRECT = {
    name: re.compile(pattern)
    for name, pattern in {
        "time.time(": r"\btime\.time\(",
        "time.time_ns(": r"\btime\.time_ns\(",
        "time.monotonic(": r"\btime\.monotonic(_ns)?\(",
        "time.perf_counter(": r"\btime\.perf_counter(_ns)?\(",
        "time.sleep(": r"\btime\.sleep\(",
        "datetime.now(": r"\b(datetime\.(now|utcnow|today)|date\.today)\(",
        "loop.time(": r"\b(loop|get_running_loop\(\)|get_event_loop\(\))\.time\(",
        "call_later(": r"\.call_(later|at)\(",
        "asyncio.sleep(": r"\basyncio\.sleep\(",
        "asyncio.timeout(": r"\basyncio\.(timeout|timeout_at|wait_for)\(",
        "asyncio.wait(timeout=": r"\basyncio\.wait\(.*\btimeout=",
    }.items()
}
# `await asyncio.sleep(0)` only hands the loop a turn: no time is kept or waited for.
YIELD = re.compile(r"\basyncio\.sleep\(0\)")
# Justified exceptions, by file and the name of the call:
ALLOWED = {
    # the clock itself
    "clock.py": {
        "time.time(", "time.monotonic(", "asyncio.sleep(", "asyncio.timeout(",
        "asyncio.wait(timeout=",
    },
    # event ids (unique and sortable across processes) and event timestamps (records):
    # real time on purpose, whatever clock an engine keeps
    "events.py": {"time.time_ns("},
    # the render time limit guards against a runaway template: real CPU time on purpose
    "model/bounds.py": {"time.monotonic("},
    # A step's timeout bounds its body, whose work (HTTP, a python call) takes real time.
    "engine/deadline.py": {"loop.time(", "asyncio.timeout("},
    # Closing gives cancelled tasks real seconds to end: they unwind real work.
    "supervisor.py": {"asyncio.wait(timeout="},
    # Shutdown gives background duties 10 real seconds to finish their store round trip (the
    # run time limit sleeps on the clock).
    "engine/engine.py": {"asyncio.wait(timeout="},
    # A probe answers within real seconds: the kubelet waiting on it keeps real time.
    "api/health.py": {"asyncio.timeout("},
    # The keep-alive of an event stream is for real clients and proxies idling it out.
    "api/streams.py": {"asyncio.wait(timeout="},
    # The CLI is a process an operator waits on: its drain and its polls of a remote server
    # take real seconds (a synchronous client has no loop to fake).
    "cli/common.py": {"asyncio.wait(timeout="},
    "cli/client.py": {"time.sleep("},
    "cli/runs.py": {"time.sleep("},
    # An HTTP-date Retry-After is a date on the real calendar, from another machine.
    "steps/http.py": {"datetime.now("},
}


def _calls(code: str) -> list[str]:
    code = YIELD.sub("", code)
    return [name for name, pattern in DIRECT.items() if pattern.search(code)]


def _offenders() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in _calls(line.split("#", 1)[0]):
                if name not in ALLOWED.get(rel, set()):
                    found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_direct_time_calls_outside_the_clock() -> None:
    offenders = _offenders()
    assert not offenders, "use an injected podium.clock.Clock instead:\n" + "\n".join(offenders)


def test_every_allowed_call_is_still_there() -> None:
    stale = []
    for rel, names in ALLOWED.items():
        code = "\n".join(line.split("#", 1)[0] for line in (SRC / rel).read_text().splitlines())
        stale += [f"{rel}: {name}" for name in names if name not in _calls(code)]
    assert not stale, "drop these allow-list entries:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("x = time.time() + 1; await asyncio.sleep(0.5)", ["time.time(", "asyncio.sleep("]),
        ("await asyncio.sleep(0)", []),
        ("time.sleep(1); t = time.perf_counter_ns()", ["time.perf_counter(", "time.sleep("]),
        ("datetime.now(UTC); date.today()", ["datetime.now("]),
        ("asyncio.get_running_loop().time()", ["loop.time("]),
        ("loop.call_at(when, f)", ["call_later("]),
        ("async with asyncio.timeout(5):", ["asyncio.timeout("]),
        ("await asyncio.wait_for(x, 5)", ["asyncio.timeout("]),
        ("await asyncio.wait(tasks, timeout=5)", ["asyncio.wait(timeout="]),
        ("await asyncio.wait(tasks, return_when=FIRST_COMPLETED)", []),
        ("datetime.fromtimestamp(x); clock.now()", []),
    ],
)
def test_the_scan_finds_what_it_looks_for(line: str, names: list[str]) -> None:
    assert sorted(_calls(line)) == sorted(names)


def test_the_system_clock_is_real_time() -> None:
    assert isinstance(SYSTEM_CLOCK, SystemClock) and isinstance(SYSTEM_CLOCK, Clock)
    assert abs(SYSTEM_CLOCK.now() - time.time()) < 5
    assert SYSTEM_CLOCK.monotonic() <= time.monotonic()


async def test_a_fake_clock_stands_still_until_advanced() -> None:
    clock = FakeClock(start=1000.0, monotonic_start=5.0)
    assert isinstance(clock, Clock)
    assert (clock.now(), clock.monotonic()) == (1000.0, 5.0)
    await asyncio.sleep(0.01)
    assert (clock.now(), clock.monotonic()) == (1000.0, 5.0)
    clock.advance(2.5)
    assert (clock.now(), clock.monotonic()) == (1002.5, 7.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_sleepers_wake_in_deadline_order_once_their_time_has_come() -> None:
    clock = FakeClock()
    woken: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append(name)

    tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in
             (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0))]
    await clock.settle()
    assert clock.sleepers == 4 and clock.next_deadline() == 1.0
    clock.advance(0.5)
    await clock.settle()
    assert woken == []
    clock.advance(0.5)  # exactly at the deadline: due
    await clock.settle()
    assert woken == ["a", "a2"]
    clock.advance(10)
    await clock.settle()
    assert woken == ["a", "a2", "b", "c"] and clock.sleepers == 0
    await asyncio.gather(*tasks)


async def test_sleep_zero_yields_once_and_waits_for_no_advance() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    task = asyncio.ensure_future(other())
    await clock.sleep(0)
    order.append("after")
    await clock.sleep(-1)
    assert order == ["other", "after"] and clock.sleepers == 0
    await task


async def test_a_cancelled_sleeper_is_skipped() -> None:
    clock = FakeClock()
    task = asyncio.ensure_future(clock.sleep(1))
    await clock.settle()
    task.cancel()
    await clock.settle()
    assert clock.sleepers == 0 and clock.next_deadline() is None
    clock.advance(2)
    assert task.cancelled()


async def test_run_for_stops_at_each_deadline_so_loops_go_round() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    async def loop() -> None:
        while True:
            await clock.sleep(0.25)
            ticks.append(clock.monotonic())

    task = asyncio.ensure_future(loop())
    await clock.run_for(1.0)
    task.cancel()
    assert ticks == [0.25, 0.5, 0.75, 1.0] and clock.monotonic() == 1.0


async def test_sleep_unless_returns_early_when_the_event_is_set() -> None:
    clock, event = FakeClock(), asyncio.Event()
    waiting = asyncio.ensure_future(sleep_unless(clock, event, 10))
    await clock.settle()
    event.set()
    assert await waiting is True and clock.sleepers == 0
    event.clear()
    waiting = asyncio.ensure_future(sleep_unless(clock, event, 10))
    await clock.run_for(10)
    assert await waiting is False
    assert await sleep_unless(SYSTEM_CLOCK, event, 0.001) is False


async def test_wait_done_ends_when_the_tasks_do_or_the_clock_says_so() -> None:
    clock, release = FakeClock(), asyncio.Event()
    quick = asyncio.ensure_future(release.wait())
    stuck = asyncio.ensure_future(asyncio.Event().wait())
    waiting = asyncio.ensure_future(wait_done(clock, [quick], 10))
    await clock.settle()
    release.set()
    assert await waiting is True and clock.monotonic() == 0 and clock.sleepers == 0
    waiting = asyncio.ensure_future(wait_done(clock, [quick, stuck], 10))
    await clock.run_for(9.9)
    assert not waiting.done()
    await clock.run_for(0.1)
    assert await waiting is False and not stuck.done()
    assert await wait_done(SYSTEM_CLOCK, [stuck], 0.001) is False
    stuck.cancel()
