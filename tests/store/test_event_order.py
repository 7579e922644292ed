"""Readers see events in commit order: a tailer paging by seq while 3 engines write at once.

Once a reader has passed seq N, no event below N may appear later; else the tailer misses it.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from podium.bus import open_bus
from podium.engine.engine import Engine
from podium.events import Event
from podium.model.workflow import Workflow
from podium.settings import Settings
from podium.store import Store, open_store

ENGINES = 3
RUNS_PER_ENGINE = 12
ITEMS = 8  # for_each instances per run: each makes its own events
PAGE = 7  # small pages: the tailer reads often, in the middle of concurrent commits


def _fan_out() -> Workflow:
    return Workflow.model_validate({
        "name": "fan",
        "steps": {
            "src": {"kind": "sim", "output": list(range(ITEMS))},
            "each": {
                "kind": "sim",
                "needs": ["src"],
                "for_each": "{{ steps.src.output }}",
                "input": {"item": "{{ item }}"},
            },
        },
    })


class Tailer:
    """Reads the whole log forwards by seq, as SSE, `podium events --follow` and audit do."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: list[tuple[int, Event]] = []

    @property
    def last(self) -> int:
        return self.seen[-1][0] if self.seen else 0

    async def read(self) -> None:
        while page := await self.store.list_events(None, after_seq=self.last, limit=PAGE):
            self.seen.extend(page)

    async def follow(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.read()
            await asyncio.sleep(0)  # let the engines write between reads, however busy
        await self.read()  # one last read after every run is final


async def _submit_and_wait(engine: Engine, workflow: Workflow) -> list[str]:
    run_ids = [await engine.submit(workflow) for _ in range(RUNS_PER_ENGINE)]
    for run_id in run_ids:
        await engine.wait_done(run_id)
    return run_ids


async def test_a_tailer_sees_every_committed_event_once_in_one_order(store_url: str) -> None:
    settings = Settings(poll_interval_s=0.02, lease_s=30, store_retry_s=0.5)
    workflow = _fan_out()
    async with AsyncExitStack() as stack:
        engines = []
        for _ in range(ENGINES):  # each its own store (connection pool) and bus
            store = await stack.enter_async_context(open_store(store_url))
            bus = await stack.enter_async_context(open_bus("memory://"))
            engines.append(await stack.enter_async_context(Engine(store, bus, settings)))
        reader = await stack.enter_async_context(open_store(store_url))
        tailer, done = Tailer(reader), asyncio.Event()
        following = asyncio.create_task(tailer.follow(done))
        try:
            submitted = await asyncio.gather(
                *(_submit_and_wait(engine, workflow) for engine in engines)
            )
        finally:
            done.set()
            await following
        runs = [await reader.get_run(r) for batch in submitted for r in batch]
        assert all(run is not None and run.status == "succeeded" for run in runs)
        stored = await _everything(reader)

    seqs = [seq for seq, _ in tailer.seen]
    ids = [event.event_id for _, event in tailer.seen]
    assert seqs == sorted(set(seqs)), "seq went backwards or repeated for the tailer"
    assert len(ids) == len(set(ids)), "an event reached the tailer twice"
    # The real property: nothing committed behind the tailer's position after it passed it.
    assert [(s, e.event_id) for s, e in stored] == list(zip(seqs, ids, strict=True))
    completed = {e.correlation_id for _, e in stored if e.event_type == "run.completed"}
    assert len(completed) == ENGINES * RUNS_PER_ENGINE
    assert len(stored) > ENGINES * RUNS_PER_ENGINE * ITEMS  # many events, many commits


async def _everything(store: Store) -> list[tuple[int, Event]]:
    found: list[tuple[int, Event]] = []
    while page := await store.list_events(None, after_seq=found[-1][0] if found else 0):
        found.extend(page)
    return found
