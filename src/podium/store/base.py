"""The Store interface: durable state of runs, steps, events, DLQ and signals.

SQLite (embedded) implements it; a PostgreSQL store drops in behind the same methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from podium.bus.events import Event
from podium.store.records import (
    Batch,
    DlqEntry,
    QueueStat,
    RunState,
    Signal,
    StepState,
    WorkerInfo,
)


class Store(Protocol):
    url: str

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def write(self, batch: Batch) -> set[str]:
        """Commits the whole batch in one transaction, or nothing.

        Returns the runs whose rows were left out because `batch.owner` no longer holds
        them (a late write from an engine presumed dead is a no-op: the fencing rule).
        """

    async def get_run(self, run_id: str) -> RunState | None: ...

    async def get_steps(self, run_id: str) -> list[StepState]: ...

    async def get_definition(self, digest: str) -> dict[str, Any]: ...

    async def list_runs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
    ) -> list[RunState]: ...

    async def finished_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Those of `run_ids` that reached a final status."""

    async def claim_unfinished(
        self, owner: str, lease_s: float, run_ids: Sequence[str] | None = None,
        *, limit: int | None = None,
    ) -> list[str]:
        """Takes the lease of unfinished runs nobody holds (or whose holder's lease ran out),
        by priority then age; two callers never get the same run."""

    async def claim_for_replay(self, owner: str, lease_s: float, run_id: str) -> bool:
        """Takes a dead-lettered (final) run, so its replay's writes pass the fence."""

    async def heartbeat(self, worker: WorkerInfo) -> None: ...

    async def set_paused(self, scope: str, name: str, paused: bool) -> bool:
        """Pauses or resumes a workflow or agent (`scope`); False if nothing changed."""

    async def list_paused(self) -> list[tuple[str, str]]: ...

    async def cache_get(self, key: str) -> Any | None:
        """A cached response, if one is stored under `key` and has not expired."""

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None: ...

    async def list_workers(self) -> list[WorkerInfo]: ...

    async def renew_leases(self, owner: str, lease_s: float) -> None: ...

    async def release_leases(self, owner: str) -> None: ...

    async def list_events(
        self, run_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Event]]: ...

    async def list_dlq(self, limit: int = 100) -> list[DlqEntry]: ...

    async def get_dlq(self, run_id: str) -> DlqEntry | None: ...

    async def purge_dlq(self) -> int: ...

    async def add_signal(self, run_id: str, name: str, payload: Any) -> None: ...

    async def pending_signals(self, run_ids: Sequence[str]) -> list[Signal]: ...

    async def request_cancel(self, run_id: str) -> None: ...

    async def cancel_requests(self, run_ids: Sequence[str]) -> list[str]: ...

    # -- the priority queue (DESIGN §3.7) --

    async def overdue_queued(self, ttl_s: Mapping[str, float], limit: int) -> list[str]:
        """Queued runs nobody holds that waited longer than their priority's TTL."""

    async def queue_stats(self) -> list[QueueStat]:
        """Per priority: how many runs are queued and since when the oldest waits."""
