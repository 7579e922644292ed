"""Worker heartbeats: a worker silent for long is forgotten (deleted, no longer listed), one
silent for a while is still listed (as lost), on both stores."""

from __future__ import annotations

from podium.store.base import Store
from podium.store.records import FORGOTTEN_AFTER_S, WorkerInfo


def worker(name: str, beat: float) -> WorkerInfo:
    return WorkerInfo(name, "host", 1, 4, 0, "running", beat - 10, beat)


async def test_long_silent_workers_are_forgotten_and_not_listed(store: Store) -> None:
    now = store.clock.now()
    for name, beat in (("live", now), ("lost", now - 60), ("gone", now - FORGOTTEN_AFTER_S - 1)):
        await store.heartbeat(worker(name, beat))
    recent = await store.list_workers(seen_since=now - FORGOTTEN_AFTER_S)
    assert [w.worker_id for w in recent] == ["lost", "live"]
    assert len(await store.list_workers()) == 3
    assert await store.forget_workers(now - FORGOTTEN_AFTER_S) == 1
    assert {w.worker_id for w in await store.list_workers()} == {"live", "lost"}
