"""The store's roles: one small protocol per kind of state, so a caller names what it uses.

`podium.store.base.Store` is all of them together; SQLite and PostgreSQL implement that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from podium.clock import Clock
from podium.events import Event
from podium.store.pools import BucketLevel, PoolShare, ShareGrant, ShareRequest
from podium.store.records import (
    ApiKeyRecord,
    AuditEntry,
    AuditHead,
    Batch,
    CircuitRecord,
    CircuitResult,
    DlqEntry,
    LeaseHolder,
    QueueStat,
    RegisteredWorkflow,
    RunActivity,
    RunPage,
    RunState,
    Signal,
    StepState,
    WorkerInfo,
)
from podium.store.retention import AuditPrune, GcBatch
from podium.store.schedules import Schedule
from podium.store.spend import BudgetHold, ScopeUsage, SpendGroup, WindowScope
from podium.store.waits import RunLink, WaitRecord


class Clocked(Protocol):
    """A store role that keeps time: by `clock`, not the wall, so tests can move it."""

    clock: Clock  # the time leases, TTLs, buckets and windows are kept by


class BatchWriter(Protocol):
    """The journal's group commits."""

    async def write(self, batch: Batch) -> set[str]:
        """Commits the whole batch in one transaction, or nothing.

        Returns the runs whose rows were left out because `batch.owner` no longer holds
        them (a late write from an engine presumed dead is a no-op: the fencing rule).
        """


class RunStore(Clocked, Protocol):
    """Runs, their steps and definitions; claims and leases; the DLQ; the priority queue
   ."""

    async def get_run(self, run_id: str) -> RunState | None: ...

    async def get_steps(self, run_id: str) -> list[StepState]: ...

    async def get_definition(self, digest: str) -> dict[str, Any]: ...

    async def list_runs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
        page: RunPage | None = None,
    ) -> list[RunState]:
        """Newest first; `page` narrows further and holds the keyset cursor."""

    async def count_runs(
        self, *, workflow: str | None = None, page: RunPage | None = None
    ) -> dict[str, int]:
        """How many runs per status (the cursor in `page` is ignored)."""

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

    async def renew_leases(self, owner: str, lease_s: float) -> None: ...

    async def release_leases(self, owner: str) -> None: ...

    async def lease_holders(self, run_ids: Sequence[str] | None = None) -> list[LeaseHolder]:
        """Who holds unfinished runs (of `run_ids`, or all) under a live lease, and until when."""

    async def list_dlq(self, limit: int = 100) -> list[DlqEntry]: ...

    async def get_dlq(self, run_id: str) -> DlqEntry | None: ...

    async def purge_dlq(self, audit: Event | None = None) -> int: ...

    async def overdue_queued(self, ttl_s: Mapping[str, float], limit: int) -> list[str]:
        """Queued runs nobody holds that waited longer than their priority's TTL."""

    async def queue_stats(self) -> list[QueueStat]:
        """Per priority: how many runs are queued and since when the oldest waits."""

    async def run_activity(self, since: float) -> RunActivity:
        """Runs created since `since` and how long they ran, runs running, the DLQ's size."""


class EventLog(Protocol):
    """The event log and the audit hash chain over it."""

    async def list_events(
        self, run_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Event]]: ...

    async def append_audit(self, events: Sequence[Event]) -> None:
        """Audit entries of actions that change nothing else (a refused request)."""

    async def audit_entries(
        self,
        after_seq: int = 0,
        limit: int = 1000,
        *,
        actor: str | None = None,
        run_id: str | None = None,
        since: float | None = None,
    ) -> list[AuditEntry]:
        """Chain links in order; the filters pick entries (`actor` matches the label's start)."""

    async def audit_head(self) -> AuditHead:
        """Where the chain ends (recorded in its own row, so a cut tail shows)."""


class SignalStore(Clocked, Protocol):
    """What operators send runs: signals, cancel requests, pauses."""

    async def add_signal(
        self, run_id: str, name: str, payload: Any, audit: Event | None = None
    ) -> None: ...

    async def pending_signals(self, run_ids: Sequence[str]) -> list[Signal]: ...

    async def request_cancel(self, run_id: str, audit: Event | None = None) -> None: ...

    async def cancel_requests(self, run_ids: Sequence[str]) -> list[str]: ...

    async def set_paused(
        self, scope: str, name: str, paused: bool, audit: Event | None = None
    ) -> bool:
        """Pauses or resumes a workflow or agent (`scope`); False if nothing changed."""

    async def list_paused(self) -> list[tuple[str, str]]: ...


class CacheStore(Clocked, Protocol):
    """The LLM response cache."""

    async def cache_get(self, key: str) -> Any | None:
        """A cached response, if one is stored under `key` and has not expired."""

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None: ...


class WorkerRegistry(Protocol):
    """Worker heartbeats (`podium workers`)."""

    async def heartbeat(self, worker: WorkerInfo) -> None: ...

    async def forget_workers(self, silent_since: float) -> int:
        """Deletes the workers whose last heartbeat is older than `silent_since`."""

    async def list_workers(self, seen_since: float | None = None) -> list[WorkerInfo]:
        """Workers (that beat at or after `seen_since`, if given), oldest first."""


class CircuitStore(Clocked, Protocol):
    """Circuit breakers. Each change is one atomic read-modify-write of the
    circuit's row; the result says which transition it made (opened | half_opened | closed),
    so its caller emits the event."""

    async def list_circuits(self) -> list[CircuitRecord]: ...

    async def circuit_failure(
        self, key: str, *, failures: int, cooldown_s: float
    ) -> CircuitResult:
        """Counts a failed call; opens the circuit at `failures` in a row (or if half-open)."""

    async def circuit_success(self, key: str, *, successes: int, trial: bool) -> CircuitResult:
        """Resets the count; a trial's success counts towards closing a half-open circuit."""

    async def take_circuit_trial(
        self, key: str, *, cooldown_s: float, half_open_max: int, lease_s: float
    ) -> CircuitResult:
        """May a call pass an open/half-open circuit (`allowed`), holding a trial slot (`trial`)?
        Half-opens it once the cool-down has passed."""

    async def release_circuit_trial(self, key: str) -> CircuitResult: ...

    async def force_circuit(
        self, key: str, *, open_: bool, audit: Event | None = None
    ) -> CircuitResult:
        """The operator holds it open (until closed), or closes it and resets its counts."""


class ScheduleStore(Protocol):
    """Schedules (`podium schedule`). A tick is claimed by compare-and-set on `next_at`, so two
    schedulers on one store never fire the same tick; the claimed tick stays `pending_tick`
    until its run is submitted."""

    async def add_schedule(self, schedule: Schedule, audit: Event | None = None) -> bool:
        """Adds a schedule; False (nothing written) if its name is taken."""

    async def list_schedules(self) -> list[Schedule]: ...

    async def get_schedule(self, key: str) -> Schedule | None:
        """The schedule with this id, else the one with this name."""

    async def remove_schedule(self, key: str, audit: Event | None = None) -> Schedule | None:
        """Removes the schedule with this id (else name); the removed one, or None."""

    async def due_schedules(self, now: float, stale_before: float) -> list[Schedule]:
        """Schedules whose `next_at` has come (and no tick is pending), and those whose
        pending tick was claimed before `stale_before` (its scheduler presumably died)."""

    async def next_schedule_at(self) -> float | None:
        """The earliest `next_at` of any schedule: when a scheduler should look again."""

    async def claim_schedule_tick(
        self, schedule_id: str, tick: float, next_at: float | None, now: float
    ) -> bool:
        """Moves `next_at` from `tick` (as the caller read it) to `next_at` and marks `tick`
        pending, if nobody did so first: True for exactly one caller per tick."""

    async def reclaim_schedule_tick(
        self, schedule_id: str, tick: float, claimed_at: float, now: float
    ) -> bool:
        """Takes over a pending tick whose claim (made at `claimed_at`) went stale."""

    async def finish_schedule_tick(
        self, schedule_id: str, tick: float, run_id: str | None, now: float
    ) -> None:
        """The pending `tick` is submitted as `run_id` (None: it could not be): clears it."""


class BudgetStore(Clocked, Protocol):
    """Budgets and cost accounting. Spend rows arrive with step results
    (`Batch.spend`); holds set money aside for calls in flight. Windows are rolling: a scope
    counts spend with `ts` in its last `window_s`."""

    async def hold_budget(
        self, hold: BudgetHold, scopes: Sequence[WindowScope], release: Sequence[str] = ()
    ) -> tuple[bool, list[ScopeUsage]]:
        """Places `hold` only if every scope has room for it (spend in the window + unexpired
        holds + `hold.usd` <= limit), atomically across engines; returns whether it did and
        each scope's usage as found, before the hold. The `release` holds go first, in the
        same transaction (handed back by calls whose cost is in the ledger by now)."""

    async def release_budget_holds(self, hold_ids: Sequence[str]) -> None: ...

    async def renew_budget_holds(self, holder: str, expires_at: float) -> None:
        """Extends every hold of `holder`, and drops other holders' expired holds."""

    async def budget_usage(self, scopes: Sequence[WindowScope]) -> list[ScopeUsage]: ...

    async def spend_report(
        self, by: str, since: float, workflow: str | None = None
    ) -> list[SpendGroup]:
        """Totals of spend rows after `since`, grouped `by` workflow, model, run, day or hour."""


class PoolStore(Clocked, Protocol):
    """Capacity pools. A pool's capacity is split into shares, one per engine
    (`holder`); live shares never sum past the capacity. A share expires `ttl_s` after its last
    renewal: a crashed engine's capacity comes back on its own."""

    async def set_shares(
        self, holder: str, requests: Sequence[ShareRequest], ttl_s: float
    ) -> list[ShareGrant]:
        """Sets this holder's share of each pool to `amount` where the capacity left by the
        other live holders allows (else to what is free), records `wanted`, renews them; one
        atomic step per pool. A request for nothing (0, 0, 0) drops the row."""

    async def pool_contention(self, holder: str, pools: Sequence[str]) -> list[ShareGrant]:
        """Per pool, this holder's share and what the other live holders want beyond theirs."""

    async def renew_shares(self, holder: str, ttl_s: float) -> None: ...

    async def drop_shares(self, holder: str) -> None:
        """Hands back every share of this holder (engine shutdown)."""

    async def list_shares(self) -> list[PoolShare]:
        """The live shares of every pool, by pool then holder."""


class WaitStore(Clocked, Protocol):
    """What each engine's steps hold and wait for, published for the deadlock check: every
    engine reads the store-wide view. A view expires unless published again."""

    async def publish_waits(self, holder: str, records: Sequence[WaitRecord], ttl_s: float) -> None:
        """Replaces this engine's view; an empty one drops it."""

    async def list_waits(self) -> list[tuple[str, list[WaitRecord]]]:
        """Every live view: (engine, its records)."""

    async def unfinished_children(self, run_ids: Sequence[str]) -> list[RunLink]:
        """The queued or running children of these runs."""


class BucketStore(Clocked, Protocol):
    """Token buckets: rate limits shared by every engine."""

    async def take_tokens(
        self, key: str, rate_per_s: float, burst: float, amount: float, *, allow_debt: bool = False
    ) -> float:
        """Refills the bucket by the time elapsed (up to `burst`, full when new), then takes
        min(amount, tokens), or all of `amount` if `allow_debt`; negative gives back."""

    async def list_buckets(self) -> list[BucketLevel]: ...


class KeyStore(Protocol):
    """API keys; an `audit` event joins the chain in the change's transaction."""

    async def add_key(self, key: ApiKeyRecord, audit: Event) -> None: ...

    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list_keys(self) -> list[ApiKeyRecord]: ...

    async def revoke_key(self, key_id: str, now: float, audit: Event) -> bool:
        """Marks the key revoked; False (and nothing written) if no such unrevoked key."""


class WorkflowRegistry(Protocol):
    """Workflow definitions registered over the API."""

    async def register_workflow(
        self, workflow: RegisteredWorkflow, body: bytes, audit: Event
    ) -> bool:
        """Keeps the definition (canonical JSON `body`) under its name and digest; False if
        that name already has that digest (nothing written, audit included)."""

    async def get_registered(
        self, name: str, digest: str | None = None
    ) -> tuple[RegisteredWorkflow, dict[str, Any]] | None:
        """The newest registration of `name` (or the one with `digest`) and its definition."""

    async def list_registered(
        self, name: str | None = None, limit: int = 100
    ) -> list[RegisteredWorkflow]:
        """Registrations, newest first."""


class RetentionStore(Clocked, Protocol):
    """Retention (`podium gc`): finished runs deleted in short batches, and the audit chain
    pruned from its start behind an anchor, so what stays still verifies."""

    async def delete_finished_runs(
        self, before: float, limit: int, *, include_dlq: bool = False, after: float = 0.0
    ) -> GcBatch:
        """Deletes at most `limit` runs that finished before `before` (created at or after
        `after`), oldest first, with their steps, signals and DLQ entry, in one transaction.
        Never a run that is unfinished, under a live lease, a child of an unfinished run, the
        parent of an unfinished one, or dead-lettered (unless `include_dlq`)."""

    async def gc_preview(self, before: float, *, include_dlq: bool = False) -> GcBatch:
        """What a whole pass of `delete_finished_runs` would delete now (a dry run)."""

    async def prune_audit(self, before: float, limit: int) -> AuditPrune:
        """Deletes the chain's first links (at most `limit`) up to the first made at or after
        `before`, and records the last one deleted as the anchor."""

    async def audit_prune_preview(self, before: float) -> int:
        """How many links a whole pass of `prune_audit` would delete now."""

    async def audit_anchor(self) -> AuditHead:
        """The last link pruned (seq 0 and 64 zeros if none): the chain starts after it."""

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """A store-wide turn at the duty `name`: True inside the block if this process has it
        (no other holds it), False if another process does. Not waited for."""
