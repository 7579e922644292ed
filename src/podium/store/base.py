"""The Store interface: durable state of runs, steps, events, DLQ and signals.

SQLite (embedded) implements it; a PostgreSQL store drops in behind the same methods.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from podium.events import Event
from podium.store.roles import (
    BatchWriter,
    BucketStore,
    BudgetStore,
    CacheStore,
    CircuitStore,
    EventLog,
    KeyStore,
    PoolStore,
    RetentionStore,
    RunStore,
    ScheduleStore,
    SignalStore,
    WaitStore,
    WorkerRegistry,
    WorkflowRegistry,
)

EVENT_PAGE = 1000


async def tail_events(
    store: EventLog, run_id: str | None, last: int | None
) -> list[tuple[int, Event]]:
    """The last `last` events (all with None) of a run or of the log, oldest first: the store
    pages forwards only."""
    kept: deque[tuple[int, Event]] = deque(maxlen=last)
    after = 0
    while True:
        page = await store.list_events(run_id, after_seq=after, limit=EVENT_PAGE)
        kept.extend(page)
        if len(page) < EVENT_PAGE:
            return list(kept)
        after = page[-1][0]


class Store(
    BatchWriter,
    RunStore,
    EventLog,
    SignalStore,
    CacheStore,
    WorkerRegistry,
    CircuitStore,
    ScheduleStore,
    BudgetStore,
    PoolStore,
    BucketStore,
    WaitStore,
    KeyStore,
    WorkflowRegistry,
    RetentionStore,
    Protocol,
):
    """Every role (roles.py): what an engine needs, and what each backend implements."""

    url: str
    # The schema version found on opening, and the one now (migrations applied in between).
    schema_versions: tuple[int, int]

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc: object) -> None: ...
