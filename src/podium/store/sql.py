"""The SQL that the SQLite and PostgreSQL stores share: columns, queries and their row mapping.

A `Dialect` names what differs in the text; a backend supplies how a statement runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from podium.clock import Clock
from podium.errors import StoreError
from podium.events import Event
from podium.model.workflow import PRIORITY_RANK
from podium.store import circuits as breaker
from podium.store import codec, waits
from podium.store import pools as shares
from podium.store import rows as rowmap
from podium.store import schedules as sched
from podium.store.records import (
    ApiKeyRecord,
    AuditEntry,
    AuditHead,
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
from podium.store.schedules import Schedule
from podium.store.spend import SpendGroup, group_key, report_select

Row = tuple[Any, ...]


def columns_of(spec: str) -> tuple[str, tuple[str, ...]]:
    """`"a text, b int4"` -> `("a, b", ("text", "int4"))`: names for SQL, PostgreSQL types for
    the arrays a batch sends."""
    pairs = [column.split() for column in spec.split(",")]
    return ", ".join(name for name, _ in pairs), tuple(sql_type for _, sql_type in pairs)


RUN_COLS, RUN_TYPES = columns_of(
    "run_id text, workflow text, workflow_version text, definition_digest text, inputs bytea,"
    " priority text, status text, created_at float8, started_at float8, finished_at float8,"
    " error text, parent_run_id text, cost_usd float8, tokens_in int8, tokens_out int8,"
    " owner text, lease_until float8, stopping text, trusted bool, trace_parent text"
)
STEP_COLS, STEP_TYPES = columns_of(
    "run_id text, step_id text, idx int4, status text, attempts int4, started_at float8,"
    " finished_at float8, error text, fallback_used bool, completed_seq int4, wake_at float8,"
    " compensation_error text, cost_usd float8, tokens_in int8, tokens_out int8, output bytea,"
    " error_type text, traceback text"
)
EVENT_COLS, EVENT_TYPES = columns_of(
    "event_id text, event_type text, ts float8, run_id text, causation_id text, source text,"
    " priority text, version int4, payload bytea, actor text"
)
SPEND_COLS, SPEND_TYPES = columns_of(
    "run_id text, step_id text, idx int4, ts float8, workflow text, model text,"
    " tokens_in int8, tokens_out int8, usd float8, attempt int4, call_id text, estimated bool"
)
DLQ_COLS = "run_id, workflow, status, error, failed_steps, added_at"
WORKER_COLS = "worker_id, host, pid, concurrency, active, state, started_at, heartbeat_at"
UNFINISHED = "('queued', 'running')"
# Unknown priorities sort last, as the engine's own queue cannot hold them.
BY_PRIORITY = (
    "CASE priority "
    + " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in PRIORITY_RANK.items())
    + f" ELSE {len(PRIORITY_RANK)} END"
)


def on_conflict_replace(cols: str, key: str) -> str:
    """The tail of an INSERT of `cols` that replaces the row with the same `key`."""
    keys = key.replace(" ", "").split(",")
    changed = [c for c in cols.replace(" ", "").split(",") if c not in keys]
    sets = ", ".join(f"{c} = excluded.{c}" for c in changed)
    return f" ON CONFLICT ({key}) DO UPDATE SET {sets}"


def upsert(table: str, cols: str, key: str, mark: str) -> str:
    """One row's INSERT of every column, replacing the row with the same `key`."""
    marks = ", ".join([mark] * len(cols.split(",")))
    return f"INSERT INTO {table} ({cols}) VALUES ({marks})" + on_conflict_replace(cols, key)


def on_run_conflict(false: str) -> str:
    """The tail of a batch's INSERT of runs: what a run's row takes from the engine's state.
    A cancel request outlives the write only while the run is unfinished."""
    changed = (
        "status, created_at, started_at, finished_at, error, cost_usd, tokens_in, tokens_out,"
        " owner, lease_until, stopping"
    )
    return (
        on_conflict_replace(changed, "run_id")
        + f", cancel_requested = CASE WHEN excluded.status IN {UNFINISHED}"
        f" THEN runs.cancel_requested ELSE {false} END"
    )


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the shared SQL text leaves to the database."""

    mark: str  # the driver's placeholder
    true: str  # boolean literals (SQLite keeps 1 and 0 in INTEGER columns)
    false: str
    day: str  # spend's `ts` as a whole number of days, then of hours, since the epoch
    hour: str
    arrays: bool  # a list goes as one array parameter (`= ANY`), else one mark per value
    max_list: int  # values one statement may bind (SQLite's bound-parameter limit)

    def sql(self, text: str) -> str:
        """Shared text is written with `?`; this dialect's placeholder replaces it."""
        return text.replace("?", self.mark) if self.mark != "?" else text

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values` (not empty), and the parameters that says so."""
        if self.arrays:
            return f"{column} = ANY({self.mark})", [list(values)]
        return f"{column} IN ({', '.join([self.mark] * len(values))})", list(values)

    def chunks(self, values: Sequence[str]) -> Iterator[Sequence[str]]:
        for start in range(0, len(values), self.max_list):
            yield values[start : start + self.max_list]


SQLITE = Dialect(
    mark="?", true="1", false="0", day="CAST(ts / 86400 AS INTEGER)",
    hour="CAST(ts / 3600 AS INTEGER)", arrays=False, max_list=900,
)
POSTGRES = Dialect(
    mark="%s", true="true", false="false", day="floor(ts / 86400)::bigint",
    hour="floor(ts / 3600)::bigint", arrays=True, max_list=1 << 30,
)


class SQLStore(ABC):
    """The Store methods whose SQL is the same on both backends, over two primitives."""

    url: str
    clock: Clock
    dialect: Dialect

    @abstractmethod
    async def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """The rows of one read."""

    @abstractmethod
    async def _execute(self, query: str, params: Sequence[Any] = (), *, retry: bool = True) -> int:
        """One write statement in its own transaction; the rows it changed. `retry`: the
        statement may run again if its connection was lost (safe unless it inserts)."""

    @abstractmethod
    async def _audited_execute(
        self,
        audit: Event | None,
        query: str,
        params: Sequence[Any],
        *,
        only_if_changed: bool = False,
        retry: bool = True,
    ) -> int:
        """One write statement and its audit entry in one transaction; with
        `only_if_changed`, a statement that changed no row is not audited."""

    @abstractmethod
    async def _circuit_txn(
        self, key: str, op: breaker.CircuitOp, audit: Event | None = None
    ) -> CircuitResult:
        """Reads, changes and writes one circuit's row in one transaction, with `audit`'s
        entry; two engines changing one circuit take turns."""

    async def _one(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self._fetch(self.dialect.sql(query), params)
        return rows[0] if rows else None

    async def _all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._fetch(self.dialect.sql(query), params)

    # -- runs, steps, leases --

    async def get_run(self, run_id: str) -> RunState | None:
        row = await self._one(f"SELECT {RUN_COLS} FROM runs WHERE run_id = ?", (run_id,))
        return rowmap.run_from_row(row) if row else None

    async def get_steps(self, run_id: str) -> list[StepState]:
        rows = await self._all(
            f"SELECT {STEP_COLS} FROM steps WHERE run_id = ? ORDER BY step_id, idx", (run_id,)
        )
        return [rowmap.step_from_row(r) for r in rows]

    async def get_definition(self, digest: str) -> dict[str, Any]:
        row = await self._one("SELECT body FROM definitions WHERE digest = ?", (digest,))
        if row is None:
            raise StoreError(f"the store has no workflow definition {digest}")
        result: dict[str, Any] = orjson.loads(row[0])
        return result

    async def list_runs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
        page: RunPage | None = None,
    ) -> list[RunState]:
        where, params = self._run_filter(statuses, workflow, page)
        if page is not None and page.before is not None:
            # Keyset: the next page starts after the last row shown, whatever was added since.
            where.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params += [page.before[0], page.before[0], page.before[1]]
        only = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._all(
            f"SELECT {RUN_COLS} FROM runs {only} ORDER BY created_at DESC, run_id DESC LIMIT ?",
            [*params, limit],
        )
        return [rowmap.run_from_row(r) for r in rows]

    async def count_runs(
        self, *, workflow: str | None = None, page: RunPage | None = None
    ) -> dict[str, int]:
        where, params = self._run_filter(None, workflow, page)
        only = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._all(f"SELECT status, count(*) FROM runs {only} GROUP BY status", params)
        return {r[0]: int(r[1]) for r in rows}

    def _run_filter(
        self, statuses: Sequence[str] | None, workflow: str | None, page: RunPage | None
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if statuses:
            clause, values = self.dialect.any_of("status", statuses)
            where.append(clause)
            params.extend(values)
        if workflow:
            where.append("workflow = ?")
            params.append(workflow)
        if page is not None:
            if page.since is not None:
                where.append("created_at >= ?")
                params.append(page.since)
            if page.until is not None:
                where.append("created_at < ?")
                params.append(page.until)
            if page.run_id_contains:
                where.append("run_id LIKE ? ESCAPE '!'")
                params.append(f"%{_like_escaped(page.run_id_contains)}%")
        return where, params

    async def finished_runs(self, run_ids: Sequence[str]) -> list[str]:
        finished: list[str] = []
        for chunk in self.dialect.chunks(run_ids):
            clause, params = self.dialect.any_of("run_id", chunk)
            rows = await self._all(
                f"SELECT run_id FROM runs WHERE {clause} AND status NOT IN {UNFINISHED}", params
            )
            finished.extend(r[0] for r in rows)
        return finished

    async def claim_for_replay(self, owner: str, lease_s: float, run_id: str) -> bool:
        claimed = await self._execute(
            self.dialect.sql(
                "UPDATE runs SET owner = ?, lease_until = ?"
                f" WHERE run_id = ? AND status NOT IN {UNFINISHED}"
            ),
            (owner, self.clock.now() + lease_s, run_id),
        )
        return claimed == 1

    async def renew_leases(self, owner: str, lease_s: float) -> None:
        await self._execute(
            self.dialect.sql(
                f"UPDATE runs SET lease_until = ? WHERE owner = ? AND status IN {UNFINISHED}"
            ),
            (self.clock.now() + lease_s, owner),
        )

    async def release_leases(self, owner: str) -> None:
        await self._execute(
            self.dialect.sql("UPDATE runs SET owner = NULL, lease_until = NULL WHERE owner = ?"),
            (owner,),
        )

    async def lease_holders(self, run_ids: Sequence[str] | None = None) -> list[LeaseHolder]:
        holders: dict[str, LeaseHolder] = {}
        for chunk in self.dialect.chunks(run_ids) if run_ids is not None else [None]:
            clause, params = self.dialect.any_of("run_id", chunk) if chunk else ("1 = 1", [])
            rows = await self._all(
                "SELECT owner, count(*), max(lease_until) FROM runs"
                f" WHERE status IN {UNFINISHED} AND owner IS NOT NULL AND lease_until >= ?"
                f" AND {clause} GROUP BY owner",
                [self.clock.now(), *params],
            )
            for owner, runs, until in rows:
                seen = holders.get(owner)
                if seen is not None:
                    runs, until = runs + seen.runs, max(until, seen.until)
                holders[owner] = LeaseHolder(owner, runs, until)
        return list(holders.values())

    # -- the DLQ and the priority queue --

    async def list_dlq(self, limit: int = 100) -> list[DlqEntry]:
        rows = await self._all(
            f"SELECT {DLQ_COLS} FROM dlq ORDER BY added_at DESC LIMIT ?", (limit,)
        )
        return [rowmap.dlq_from_row(r) for r in rows]

    async def get_dlq(self, run_id: str) -> DlqEntry | None:
        row = await self._one(f"SELECT {DLQ_COLS} FROM dlq WHERE run_id = ?", (run_id,))
        return rowmap.dlq_from_row(row) if row else None

    async def purge_dlq(self, audit: Event | None = None) -> int:
        return await self._audited_execute(audit, "DELETE FROM dlq", ())

    async def overdue_queued(self, ttl_s: Mapping[str, float], limit: int) -> list[str]:
        now = self.clock.now()
        overdue = " OR ".join("(priority = ? AND created_at < ?)" for _ in ttl_s)
        params = [v for p, ttl in ttl_s.items() for v in (p, now - ttl)]
        rows = await self._all(
            f"SELECT run_id FROM runs WHERE status = 'queued' AND ({overdue})"
            " AND (owner IS NULL OR lease_until < ?) ORDER BY created_at LIMIT ?",
            [*params, now, limit],
        )
        return [r[0] for r in rows]

    async def queue_stats(self) -> list[QueueStat]:
        rows = await self._all(
            "SELECT priority, count(*), min(created_at) FROM runs WHERE status = 'queued'"
            f" GROUP BY priority ORDER BY min({BY_PRIORITY})"
        )
        return [QueueStat(r[0], r[1], r[2]) for r in rows]

    async def run_activity(self, since: float) -> RunActivity:
        # Three index-backed counts (runs_created, runs_unfinished): cheap at any table size.
        window = await self._one(
            "SELECT count(*), avg(coalesce(finished_at, ?) - started_at) FROM runs"
            " WHERE created_at >= ?",
            (self.clock.now(), since),
        )
        running = await self._one("SELECT count(*) FROM runs WHERE status = 'running'")
        dead = await self._one("SELECT count(*) FROM dlq")
        assert window is not None and running is not None and dead is not None
        mean = None if window[1] is None else float(window[1])
        return RunActivity(int(window[0]), mean, int(running[0]), int(dead[0]))

    # -- signals, cancels, pauses --

    async def add_signal(
        self, run_id: str, name: str, payload: Any, audit: Event | None = None
    ) -> None:
        query = "INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)"
        params = (run_id, name, orjson.dumps(payload), self.clock.now())
        # Not retried: an INSERT whose commit was lost in flight could deliver it twice.
        await self._audited_execute(audit, self.dialect.sql(query), params, retry=False)

    async def pending_signals(self, run_ids: Sequence[str]) -> list[Signal]:
        if not run_ids:
            return []
        clause, params = self.dialect.any_of("run_id", run_ids)
        rows = await self._all(
            "SELECT signal_id, run_id, name, payload, created_at FROM signals"
            f" WHERE taken = {self.dialect.false} AND {clause} ORDER BY signal_id",
            params,
        )
        return [Signal(r[0], r[1], r[2], orjson.loads(r[3]), r[4]) for r in rows]

    async def request_cancel(self, run_id: str, audit: Event | None = None) -> None:
        query = f"UPDATE runs SET cancel_requested = {self.dialect.true} WHERE run_id = ?"
        await self._audited_execute(audit, self.dialect.sql(query), (run_id,))

    async def cancel_requests(self, run_ids: Sequence[str]) -> list[str]:
        if not run_ids:
            return []
        clause, params = self.dialect.any_of("run_id", run_ids)
        rows = await self._all(
            f"SELECT run_id FROM runs WHERE cancel_requested = {self.dialect.true}"
            f" AND status IN {UNFINISHED} AND {clause}",
            params,
        )
        return [r[0] for r in rows]

    async def set_paused(
        self, scope: str, name: str, paused: bool, audit: Event | None = None
    ) -> bool:
        params: tuple[Any, ...]
        if paused:
            query = "INSERT INTO pauses VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
            params = (scope, name, self.clock.now())
        else:
            query, params = "DELETE FROM pauses WHERE scope = ? AND name = ?", (scope, name)
        return await self._audited_execute(audit, self.dialect.sql(query), params) == 1

    async def list_paused(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in await self._all("SELECT scope, name FROM pauses")]

    # -- the response cache, workers --

    async def cache_get(self, key: str) -> Any | None:
        row = await self._one(
            "SELECT value FROM llm_cache WHERE key = ? AND expires_at > ?",
            (key, self.clock.now()),
        )
        return codec.decode(bytes(row[0])) if row else None

    async def cache_put(self, key: str, value: Any, ttl_s: float) -> None:
        await self._execute(
            upsert("llm_cache", "key, value, expires_at", "key", self.dialect.mark),
            (key, codec.encode(value), self.clock.now() + ttl_s),
        )

    async def heartbeat(self, worker: WorkerInfo) -> None:
        await self._execute(
            upsert("workers", WORKER_COLS, "worker_id", self.dialect.mark),
            (
                worker.worker_id, worker.host, worker.pid, worker.concurrency, worker.active,
                worker.state, worker.started_at, worker.heartbeat_at,
            ),
        )

    async def forget_workers(self, silent_since: float) -> int:
        return await self._execute(
            self.dialect.sql("DELETE FROM workers WHERE heartbeat_at < ?"), (silent_since,)
        )

    async def list_workers(self, seen_since: float | None = None) -> list[WorkerInfo]:
        since, params = ("WHERE heartbeat_at >= ?", [seen_since]) if seen_since else ("", [])
        rows = await self._all(
            f"SELECT {WORKER_COLS} FROM workers {since} ORDER BY started_at", params
        )
        return [WorkerInfo(*row) for row in rows]

    # -- the event log and the audit chain --

    async def list_events(
        self, run_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Event]]:
        if run_id is None:
            rows = await self._all(
                f"SELECT seq, {EVENT_COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        else:
            rows = await self._all(
                f"SELECT seq, {EVENT_COLS} FROM events WHERE run_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (run_id, after_seq, limit),
            )
        return [rowmap.event_from_row(r) for r in rows]

    async def audit_entries(
        self,
        after_seq: int = 0,
        limit: int = 1000,
        *,
        actor: str | None = None,
        run_id: str | None = None,
        since: float | None = None,
    ) -> list[AuditEntry]:
        where: list[str] = ["seq > ?"]
        params: list[Any] = [after_seq]
        if actor is not None:  # the label's start: its length is counted here, in characters
            where.append("substr(actor, 1, ?) = ?")
            params.extend([len(actor), actor])
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        rows = await self._all(
            f"SELECT seq, {EVENT_COLS}, prev_hash, hash FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            [*params, limit],
        )
        return [rowmap.audit_entry_from_row(r) for r in rows]

    async def audit_head(self) -> AuditHead:
        rows = await self._all("SELECT seq, hash FROM audit_head WHERE id = 1")
        return AuditHead(*rows[0])

    # -- circuit breakers --

    async def list_circuits(self) -> list[CircuitRecord]:
        rows = await self._all(f"SELECT {breaker.CIRCUIT_COLS} FROM circuits ORDER BY key")
        return [breaker.circuit_from_row(r) for r in rows]

    async def circuit_failure(
        self, key: str, *, failures: int, cooldown_s: float
    ) -> CircuitResult:
        op = breaker.failed(key, failures=failures, cooldown_s=cooldown_s)
        return await self._circuit_txn(key, op)

    async def circuit_success(self, key: str, *, successes: int, trial: bool) -> CircuitResult:
        return await self._circuit_txn(key, breaker.succeeded(successes=successes, trial=trial))

    async def take_circuit_trial(
        self, key: str, *, cooldown_s: float, half_open_max: int, lease_s: float
    ) -> CircuitResult:
        op = breaker.take_trial(cooldown_s=cooldown_s, half_open_max=half_open_max, lease_s=lease_s)
        return await self._circuit_txn(key, op)

    async def release_circuit_trial(self, key: str) -> CircuitResult:
        return await self._circuit_txn(key, breaker.release_trial)

    async def force_circuit(
        self, key: str, *, open_: bool, audit: Event | None = None
    ) -> CircuitResult:
        return await self._circuit_txn(key, breaker.forced(key, open_=open_), audit)

    # -- schedules (`podium schedule`) --

    async def add_schedule(self, schedule: Schedule, audit: Event | None = None) -> bool:
        marks = ", ".join([self.dialect.mark] * 15)
        query = (
            f"INSERT INTO schedules ({sched.SCHEDULE_COLS}) VALUES ({marks})"
            " ON CONFLICT DO NOTHING"
        )
        params = sched.schedule_params(schedule)
        # Not retried: an INSERT whose commit was lost in flight would then find its own name.
        added = await self._audited_execute(
            audit, query, params, only_if_changed=True, retry=False
        )
        return added == 1

    async def list_schedules(self) -> list[Schedule]:
        rows = await self._all(f"SELECT {sched.SCHEDULE_COLS} FROM schedules ORDER BY name")
        return [sched.schedule_from_row(r) for r in rows]

    async def get_schedule(self, key: str) -> Schedule | None:
        row = await self._one(
            f"SELECT {sched.SCHEDULE_COLS} FROM schedules WHERE schedule_id = ? OR name = ?"
            " ORDER BY schedule_id = ? DESC LIMIT 1",
            (key, key, key),
        )
        return sched.schedule_from_row(row) if row else None

    async def due_schedules(self, now: float, stale_before: float) -> list[Schedule]:
        rows = await self._all(
            f"SELECT {sched.SCHEDULE_COLS} FROM schedules"
            " WHERE (pending_tick IS NULL AND next_at <= ?)"
            " OR (pending_tick IS NOT NULL AND pending_since < ?)"
            " ORDER BY coalesce(pending_tick, next_at) LIMIT 1000",
            (now, stale_before),
        )
        return [sched.schedule_from_row(r) for r in rows]

    async def next_schedule_at(self) -> float | None:
        row = await self._one("SELECT min(next_at) FROM schedules WHERE pending_tick IS NULL")
        return row[0] if row else None

    async def claim_schedule_tick(
        self, schedule_id: str, tick: float, next_at: float | None, now: float
    ) -> bool:
        # One UPDATE: of two schedulers, the second waits for the first's commit, then finds
        # next_at moved on. Not retried: a claim whose commit was lost in flight stays
        # pending, and whichever scheduler takes the stale claim over finishes it.
        claimed = await self._execute(
            self.dialect.sql(
                "UPDATE schedules SET next_at = ?, pending_tick = ?, pending_since = ?"
                " WHERE schedule_id = ? AND next_at = ? AND pending_tick IS NULL"
            ),
            (next_at, tick, now, schedule_id, tick),
            retry=False,
        )
        return claimed == 1

    async def reclaim_schedule_tick(
        self, schedule_id: str, tick: float, claimed_at: float, now: float
    ) -> bool:
        claimed = await self._execute(
            self.dialect.sql(
                "UPDATE schedules SET pending_since = ?"
                " WHERE schedule_id = ? AND pending_tick = ? AND pending_since = ?"
            ),
            (now, schedule_id, tick, claimed_at),
            retry=False,
        )
        return claimed == 1

    async def finish_schedule_tick(
        self, schedule_id: str, tick: float, run_id: str | None, now: float
    ) -> None:
        await self._execute(
            *sched.finish_tick_sql(schedule_id, tick, run_id, now, self.dialect.mark)
        )

    # -- budgets and cost accounting --

    async def release_budget_holds(self, hold_ids: Sequence[str]) -> None:
        if hold_ids:
            clause, params = self.dialect.any_of("hold_id", hold_ids)
            await self._execute(f"DELETE FROM budget_holds WHERE {clause}", params)

    async def spend_report(
        self, by: str, since: float, workflow: str | None = None
    ) -> list[SpendGroup]:
        keys = {
            "workflow": "workflow",
            "model": "coalesce(model, '')",
            "run": "run_id",
            "day": self.dialect.day,
            "hour": self.dialect.hour,
        }
        query, params = report_select(
            keys[by], since, workflow, self.dialect.mark, self.dialect.true
        )
        return [
            SpendGroup(group_key(by, r[0]), r[1], int(r[2]), int(r[3]), r[4], r[5])
            for r in await self._fetch(query, params)
        ]

    # -- capacity pools and token buckets --

    async def pool_contention(self, holder: str, pools: Sequence[str]) -> list[shares.ShareGrant]:
        if not pools:
            return []
        clause, params = self.dialect.any_of("pool", pools)
        rows = await self._all(
            f"SELECT pool, holder, amount, wanted FROM pool_shares WHERE expires_at >= ?"
            f" AND {clause}",
            [self.clock.now(), *params],
        )
        return shares.contention(holder, pools, rows)

    async def renew_shares(self, holder: str, ttl_s: float) -> None:
        await self._execute(
            self.dialect.sql("UPDATE pool_shares SET expires_at = ? WHERE holder = ?"),
            (self.clock.now() + ttl_s, holder),
        )

    async def drop_shares(self, holder: str) -> None:
        await self._execute(
            self.dialect.sql("DELETE FROM pool_shares WHERE holder = ?"), (holder,)
        )

    async def list_shares(self) -> list[shares.PoolShare]:
        rows = await self._all(
            f"SELECT {shares.SHARE_COLS} FROM pool_shares WHERE expires_at >= ?"
            " ORDER BY pool, holder",
            (self.clock.now(),),
        )
        return [shares.PoolShare(*r) for r in rows]

    async def list_buckets(self) -> list[shares.BucketLevel]:
        rows = await self._all(f"SELECT {shares.BUCKET_COLS} FROM buckets ORDER BY key")
        return [shares.BucketLevel(*r) for r in rows]

    # -- what steps hold and wait for (deadlock detection) --

    async def publish_waits(
        self, holder: str, records: Sequence[waits.WaitRecord], ttl_s: float
    ) -> None:
        if not records:
            await self._execute(
                self.dialect.sql("DELETE FROM wait_views WHERE holder = ?"), (holder,)
            )
            return
        blob = waits.encode_view(list(records))
        query = upsert("wait_views", waits.WAIT_VIEW_COLS, "holder", self.dialect.mark)
        await self._execute(query, (holder, blob, self.clock.now() + ttl_s))

    async def list_waits(self) -> list[tuple[str, list[waits.WaitRecord]]]:
        rows = await self._all(
            "SELECT holder, view FROM wait_views WHERE expires_at >= ? ORDER BY holder",
            (self.clock.now(),),
        )
        return [(r[0], waits.decode_view(bytes(r[1]))) for r in rows]

    async def unfinished_children(self, run_ids: Sequence[str]) -> list[waits.RunLink]:
        links: list[waits.RunLink] = []
        for chunk in self.dialect.chunks(run_ids):
            clause, params = self.dialect.any_of("parent_run_id", chunk)
            rows = await self._all(
                "SELECT run_id, parent_run_id, workflow, created_at FROM runs"
                f" WHERE status IN {UNFINISHED} AND {clause}",
                params,
            )
            links += [waits.RunLink(*r) for r in rows]
        return links

    # -- API keys and registered workflows --

    async def add_key(self, key: ApiKeyRecord, audit: Event) -> None:
        marks = ", ".join([self.dialect.mark] * 9)
        query = f"INSERT INTO api_keys ({rowmap.KEY_COLS}) VALUES ({marks})"
        await self._audited_execute(audit, query, rowmap.key_params(key), retry=False)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._one(f"SELECT {rowmap.KEY_COLS} FROM api_keys WHERE key_id = ?", (key_id,))
        return rowmap.key_from_row(row) if row else None

    async def list_keys(self) -> list[ApiKeyRecord]:
        rows = await self._all(f"SELECT {rowmap.KEY_COLS} FROM api_keys ORDER BY created_at")
        return [rowmap.key_from_row(r) for r in rows]

    async def revoke_key(self, key_id: str, now: float, audit: Event) -> bool:
        query = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"
        revoked = await self._audited_execute(
            audit, self.dialect.sql(query), (now, key_id), only_if_changed=True
        )
        return revoked == 1

    async def get_registered(
        self, name: str, digest: str | None = None
    ) -> tuple[RegisteredWorkflow, dict[str, Any]] | None:
        only, params = ("AND digest = ?", [name, digest]) if digest is not None else ("", [name])
        row = await self._one(
            f"SELECT {rowmap.WORKFLOW_COLS} FROM workflows WHERE name = ? {only}"
            " ORDER BY registered_at DESC LIMIT 1",
            params,
        )
        if row is None:
            return None
        found = RegisteredWorkflow(*row)
        return found, await self.get_definition(found.digest)

    async def list_registered(
        self, name: str | None = None, limit: int = 100
    ) -> list[RegisteredWorkflow]:
        only, params = ("WHERE name = ?", [name]) if name is not None else ("", [])
        rows = await self._all(
            f"SELECT {rowmap.WORKFLOW_COLS} FROM workflows {only}"
            " ORDER BY registered_at DESC LIMIT ?",
            [*params, limit],
        )
        return [RegisteredWorkflow(*r) for r in rows]


def _like_escaped(text: str) -> str:
    """`text` matched literally inside a LIKE pattern (`!` is the escape character)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
