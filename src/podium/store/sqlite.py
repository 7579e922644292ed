"""The embedded store: one SQLite file in WAL mode, written by group commits.

`synchronous=NORMAL` survives a process crash (SIGKILL); `durability="full"` adds power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple
from pathlib import Path
from typing import Any, TypeVar

from podium.clock import SYSTEM_CLOCK, Clock
from podium.errors import StoreError, StoreUnavailable
from podium.events import Event
from podium.store import audit
from podium.store import circuits as breaker
from podium.store import pools as shares
from podium.store import rows as rowmap
from podium.store import schedules as sched
from podium.store.records import Batch, CircuitResult, RegisteredWorkflow
from podium.store.retention import (
    RUN_TABLES,
    AuditPrune,
    GcBatch,
    RetentionSQL,
    pick,
    prefix_before,
)
from podium.store.schedules import Schedule
from podium.store.schema import MIGRATIONS
from podium.store.spend import (
    BudgetHold,
    ScopeUsage,
    WindowScope,
    hold_params,
    spend_params,
    usage_columns,
)
from podium.store.sql import (
    BY_PRIORITY,
    DLQ_COLS,
    EVENT_COLS,
    RUN_COLS,
    SPEND_COLS,
    SQLITE,
    STEP_COLS,
    UNFINISHED,
    Row,
    on_run_conflict,
    upsert,
)

_T = TypeVar("_T")

_UPSERT_RUN = f"INSERT INTO runs ({RUN_COLS}) VALUES ({','.join('?' * 20)})" + on_run_conflict("0")
_UPSERT_STEP = upsert("steps", STEP_COLS, "run_id, step_id, idx", "?")
_INSERT_EVENT = (
    f"INSERT INTO events (seq, {EVENT_COLS}, prev_hash, hash) VALUES ({','.join('?' * 13)})"
)


# SQLite's errors that pass: another connection or process holds the lock, or the disk hiccuped.
_TRANSIENT = ("database is locked", "database table is locked", "database is busy", "disk i/o")


def _store_error(doing: str, exc: sqlite3.Error) -> StoreError:
    """The one place SQLite errors are classified: transient ones (retried by the journal)
    or permanent ones (a constraint, a missing table: retrying cannot help)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and any(t in text.lower() for t in _TRANSIENT):
        return StoreUnavailable(f"{doing}: {text}")
    return StoreError(f"{doing}: {text} ({type(exc).__name__}; not retried)")


# (SQL, rows, index of the run id in a row for fencing, or None if rows are not per run)
_Statement = tuple[str, list[tuple[Any, ...]], int | None]


def _lost_runs(db: sqlite3.Connection, owner: str, run_ids: set[str]) -> set[str]:
    """Runs of the batch that exist and are held by someone else (asked under the write lock)."""
    lost: set[str] = set()
    for chunk in SQLITE.chunks(list(run_ids)):
        clause, params = SQLITE.any_of("run_id", chunk)
        rows = db.execute(
            f"SELECT run_id FROM runs WHERE {clause} AND (owner IS NULL OR owner != ?)",
            [*params, owner],
        ).fetchall()
        lost.update(r[0] for r in rows)
    return lost


def _statements(batch: Batch) -> list[_Statement]:
    """The batch as (SQL, rows) pairs, values copied out of the engine's live objects."""
    out: list[_Statement] = []
    if batch.definitions:
        sql = "INSERT OR IGNORE INTO definitions VALUES (?, ?)"
        out.append((sql, list(batch.definitions.items()), None))
    if batch.runs:
        out.append((_UPSERT_RUN, [rowmap.run_params(r) for r in batch.runs.values()], 0))
    if batch.steps:
        out.append((_UPSERT_STEP, [rowmap.step_params(s) for s in batch.steps.values()], 0))
    if batch.dlq_add:
        sql = upsert("dlq", DLQ_COLS, "run_id", "?")
        out.append((sql, [rowmap.dlq_params(d) for d in batch.dlq_add], 0))
    if batch.dlq_remove:
        sql = "DELETE FROM dlq WHERE run_id = ?"
        out.append((sql, [(r,) for r in batch.dlq_remove], 0))
    if batch.signals_taken:
        sql = "UPDATE signals SET taken = 1 WHERE signal_id = ?"
        out.append((sql, [(s,) for s in batch.signals_taken], None))
    if batch.spend:
        # A retried batch may already be in: the key (run, step, index, ts, call) keeps no twin.
        sql = f"INSERT OR IGNORE INTO spend ({SPEND_COLS}) VALUES ({','.join('?' * 12)})"
        out.append((sql, [spend_params(r) for r in batch.spend], 0))
    return out


def _append_events(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Links event rows to the audit chain and inserts them (under the write lock, which
    orders appends across processes)."""
    if not rows:
        return
    head_seq, head_hash = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    linked, head_seq, head_hash = audit.chain(head_seq, head_hash, rows)
    db.executemany(_INSERT_EVENT, linked)
    db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (head_seq, head_hash))


def _link_old_events(db: sqlite3.Connection) -> None:
    """Brings events written before the audit chain existed into it, once."""
    rows = db.execute(
        f"SELECT seq, {EVENT_COLS} FROM events WHERE hash IS NULL ORDER BY seq"
    ).fetchall()
    if not rows:
        return
    head_hash = db.execute("SELECT hash FROM audit_head WHERE id = 1").fetchone()[0]
    updates, head_hash = audit.relink(head_hash, rows)
    db.executemany("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", updates)
    db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (rows[-1][0], head_hash))


def _scope_usage(db: sqlite3.Connection, scope: WindowScope, now: float) -> ScopeUsage:
    columns, params = usage_columns(scope, now, "?")
    spent, held = db.execute(f"SELECT {columns}", params).fetchone()
    return ScopeUsage(scope, spent, held)


def _delete_runs(db: sqlite3.Connection, run_ids: list[str]) -> list[int]:
    """Deletes these runs and their rows; how many went from each of RUN_TABLES, in order."""
    counts = [0] * len(RUN_TABLES)
    for chunk in SQLITE.chunks(run_ids):
        clause, params = SQLITE.any_of("run_id", chunk)
        for i, table in enumerate(RUN_TABLES):
            counts[i] += db.execute(f"DELETE FROM {table} WHERE {clause}", params).rowcount
        db.execute(f"DELETE FROM runs WHERE {clause}", params)
    return counts


def _prune_audit(db: sqlite3.Connection, before: float, limit: int) -> AuditPrune:
    """Deletes the chain's first links made before `before` (at most `limit`) and moves the
    anchor to the last one deleted."""
    rows = db.execute("SELECT seq, ts, hash FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
    gone = prefix_before(rows, before)
    if not gone:
        seq, hash_ = db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
        return AuditPrune(0, seq, hash_)
    last_seq, _, last_hash = gone[-1]
    db.execute("DELETE FROM events WHERE seq <= ?", (last_seq,))
    db.execute("UPDATE audit_anchor SET seq = ?, hash = ? WHERE id = 1", (last_seq, last_hash))
    return AuditPrune(len(gone), last_seq, last_hash)


class SQLiteStore(RetentionSQL):
    dialect = SQLITE

    def __init__(
        self, path: str, *, durability: str = "process", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.url = f"sqlite:///{path}"
        self.schema_versions = (0, 0)
        self.clock = clock
        self._path = path
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._db: sqlite3.Connection | None = None  # reads, on the loop
        # Every write, on the writer thread: waiting for SQLite's lock never stalls the loop.
        self._writer: sqlite3.Connection | None = None
        self._write_thread: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> SQLiteStore:
        # Migrating waits for the write lock (another process may hold it): off the loop.
        await asyncio.get_running_loop().run_in_executor(None, self.open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._migrate()
            self._writer = self._connect()
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="podium-sqlite")
        except StoreError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise StoreUnavailable(f"cannot open the store {self.url}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        # ":memory:" is shared between our two connections through SQLite's shared cache.
        target, uri = (
            ("file:podium-mem?mode=memory&cache=shared", True)
            if self._path == ":memory:"
            else (self._path, False)
        )
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=uri)
        db.execute("PRAGMA busy_timeout = 10000")  # other connections and processes share it
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self._synchronous}")
        return db

    def close(self) -> None:
        if self._write_thread is not None:
            self._write_thread.shutdown(wait=True)
            self._write_thread = None
        for db in (self._writer, self._db):
            if db is not None:
                db.close()
        self._db = self._writer = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is closed")
        return self._db

    def _migrate(self) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"the store {self.url} has schema version {current}, newer than this podium"
                    f" ({len(MIGRATIONS)}); upgrade podium"
                )
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (version,))
            self.schema_versions = (current, len(MIGRATIONS))
            _link_old_events(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def write(self, batch: Batch) -> set[str]:
        # Rows are copied here, on the loop, so the engine may go on changing its states;
        # SQLite's own work then runs on the writer thread, in parallel with the loop.
        statements = _statements(batch)
        events = [rowmap.event_params(e) for e in batch.events]
        fence = (batch.owner, batch.run_ids()) if batch.owner else None

        def apply(db: sqlite3.Connection) -> set[str]:
            lost = _lost_runs(db, *fence) if fence else set()
            for sql, rows, run_col in statements:
                if lost and run_col is not None:
                    rows = [r for r in rows if r[run_col] not in lost]
                db.executemany(sql, rows)
            _append_events(db, [e for e in events if e[3] not in lost] if lost else events)
            return lost

        return await self._on_writer(apply)

    async def _fetch(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self.db.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(f"cannot read the store {self.url}", exc) from exc

    async def _execute(self, query: str, params: Sequence[Any] = (), *, retry: bool = True) -> int:
        # `retry` is PostgreSQL's: here no commit is lost in flight.
        return await self._on_writer(lambda db: db.execute(query, params).rowcount)

    async def _audited_execute(
        self,
        audit: Event | None,
        query: str,
        params: Sequence[Any],
        *,
        only_if_changed: bool = False,
        retry: bool = True,
    ) -> int:
        def change(db: sqlite3.Connection) -> int:
            return db.execute(query, params).rowcount

        return await self._audited(audit, change, only_if_changed=only_if_changed)

    async def claim_unfinished(
        self,
        owner: str,
        lease_s: float,
        run_ids: Sequence[str] | None = None,
        *,
        limit: int | None = None,
    ) -> list[str]:
        if run_ids is not None and not run_ids:
            return []
        now = self.clock.now()
        only = f" AND run_id IN ({','.join('?' * len(run_ids))})" if run_ids else ""

        def claim(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT run_id FROM runs WHERE status IN {UNFINISHED}"
                f" AND (owner IS NULL OR owner = ? OR lease_until < ?){only}"
                f" ORDER BY {BY_PRIORITY}, created_at LIMIT ?",
                [owner, now, *(run_ids or ()), -1 if limit is None else limit],
            ).fetchall()
            db.executemany(
                "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ?",
                [(owner, now + lease_s, r[0]) for r in rows],
            )
            return [r[0] for r in rows]

        return await self._on_writer(claim)

    @contextlib.contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT` on `db`, rolled back on any error."""
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(f"cannot write to the store {self.url}", exc) from exc

    # -- circuit breakers --

    async def _circuit_txn(
        self, key: str, op: breaker.CircuitOp, audit: Event | None = None
    ) -> CircuitResult:
        # Under SQLite's write lock.
        return await self._audited(audit, lambda db: self._circuit_change(db, key, op))

    def _circuit_change(
        self, db: sqlite3.Connection, key: str, op: breaker.CircuitOp
    ) -> CircuitResult:
        now = self.clock.now()
        rows = db.execute(
            f"SELECT {breaker.CIRCUIT_COLS} FROM circuits WHERE key = ?", (key,)
        ).fetchall()
        old = breaker.circuit_from_row(rows[0]) if rows else None
        result, new = breaker.to_store(op(old, now), old, now)
        if new is not None:
            db.execute(
                f"INSERT OR REPLACE INTO circuits ({breaker.CIRCUIT_COLS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                breaker.circuit_params(new),
            )
        return result

    # -- schedules (`podium schedule`) --

    async def remove_schedule(self, key: str, audit: Event | None = None) -> Schedule | None:
        def remove(db: sqlite3.Connection) -> Schedule | None:
            rows = db.execute(
                f"SELECT {sched.SCHEDULE_COLS} FROM schedules WHERE schedule_id = ? OR name = ?"
                " ORDER BY schedule_id = ? DESC LIMIT 1",
                (key, key, key),
            ).fetchall()
            if not rows:
                return None
            db.execute("DELETE FROM schedules WHERE schedule_id = ?", (rows[0][0],))
            return sched.schedule_from_row(rows[0])

        return await self._audited(audit, remove, only_if_changed=True)

    # -- budgets and cost accounting --

    async def hold_budget(
        self, hold: BudgetHold, scopes: Sequence[WindowScope], release: Sequence[str] = ()
    ) -> tuple[bool, list[ScopeUsage]]:
        # Under SQLite's write lock: of two engines after the last dollar, one sees the other.
        now = self.clock.now()

        def place(db: sqlite3.Connection) -> tuple[bool, list[ScopeUsage]]:
            db.executemany("DELETE FROM budget_holds WHERE hold_id = ?", [(i,) for i in release])
            found = [_scope_usage(db, scope, now) for scope in scopes]
            placed = all(usage.fits(hold.usd) for usage in found)
            if placed:
                db.execute("INSERT INTO budget_holds VALUES (?,?,?,?,?,?)", hold_params(hold))
            return placed, found

        return await self._on_writer(place)

    async def renew_budget_holds(self, holder: str, expires_at: float) -> None:
        now = self.clock.now()

        def renew(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE budget_holds SET expires_at = ? WHERE holder = ?", (expires_at, holder)
            )
            db.execute("DELETE FROM budget_holds WHERE expires_at < ?", (now,))

        await self._on_writer(renew)

    async def budget_usage(self, scopes: Sequence[WindowScope]) -> list[ScopeUsage]:
        now = self.clock.now()
        try:
            return [_scope_usage(self.db, scope, now) for scope in scopes]
        except sqlite3.Error as exc:
            raise _store_error(f"cannot read the store {self.url}", exc) from exc

    # -- capacity pools and token buckets --

    async def set_shares(
        self, holder: str, requests: Sequence[shares.ShareRequest], ttl_s: float
    ) -> list[shares.ShareGrant]:
        def work(db: sqlite3.Connection) -> list[shares.ShareGrant]:
            now = self.clock.now()
            grants = []
            for request in requests:
                db.execute(
                    "DELETE FROM pool_shares WHERE pool = ? AND expires_at < ?", (request.pool, now)
                )
                others = db.execute(
                    "SELECT amount, wanted FROM pool_shares WHERE pool = ? AND holder != ?",
                    (request.pool, holder),
                ).fetchall()
                result = shares.grant(request, others)
                if shares.keeps_row(request, result.granted):
                    row = shares.share_row(request, holder, result.granted, now + ttl_s)
                    db.execute(f"INSERT OR REPLACE INTO pool_shares ({shares.SHARE_COLS})"
                               " VALUES (?, ?, ?, ?, ?, ?)", row)
                else:
                    db.execute(
                        "DELETE FROM pool_shares WHERE pool = ? AND holder = ?",
                        (request.pool, holder),
                    )
                grants.append(result)
            return grants

        return await self._on_writer(work)

    async def take_tokens(
        self, key: str, rate_per_s: float, burst: float, amount: float, *, allow_debt: bool = False
    ) -> float:
        def work(db: sqlite3.Connection) -> float:
            rows = db.execute(
                f"SELECT {shares.BUCKET_COLS} FROM buckets WHERE key = ?", (key,)
            ).fetchall()
            level = shares.BucketLevel(*rows[0]) if rows else None
            granted, new = shares.take(
                level, self.clock.now(), rate_per_s, burst, amount, allow_debt
            )
            db.execute(
                f"INSERT OR REPLACE INTO buckets ({shares.BUCKET_COLS}) VALUES (?, ?, ?, ?, ?)",
                (key, new.tokens, new.updated_at, new.rate_per_s, new.burst),
            )
            return granted

        return await self._on_writer(work)

    # -- retention (`podium gc`) --

    async def delete_finished_runs(
        self, before: float, limit: int, *, include_dlq: bool = False, after: float = 0.0
    ) -> GcBatch:
        query = pick(SQLITE, include_dlq)
        now = self.clock.now()

        def delete(db: sqlite3.Connection) -> GcBatch:
            picked = db.execute(query, (after, before, before, now, limit)).fetchall()
            if not picked:
                return GcBatch()
            steps, signals, dlq = _delete_runs(db, [r[0] for r in picked])
            return GcBatch(len(picked), steps, signals, dlq, max(r[1] for r in picked))

        return await self._on_writer(delete)

    async def prune_audit(self, before: float, limit: int) -> AuditPrune:
        return await self._on_writer(lambda db: _prune_audit(db, before, limit))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        # Every write takes SQLite's one write lock: two processes' passes interleave batch by
        # batch, each deleting what the other left; no lock is worth more than that.
        yield True

    # -- API keys, the registry of API definitions, the audit chain --

    async def register_workflow(
        self, workflow: RegisteredWorkflow, body: bytes, audit: Event
    ) -> bool:
        def register(db: sqlite3.Connection) -> bool:
            db.execute("INSERT OR IGNORE INTO definitions VALUES (?, ?)", (workflow.digest, body))
            sql = f"INSERT OR IGNORE INTO workflows ({rowmap.WORKFLOW_COLS}) VALUES (?,?,?,?,?)"
            return db.execute(sql, astuple(workflow)).rowcount == 1

        return await self._audited(audit, register, only_if_changed=True)

    async def append_audit(self, events: Sequence[Event]) -> None:
        rows = [rowmap.event_params(e) for e in events]
        await self._on_writer(lambda db: _append_events(db, rows))

    async def _audited(
        self,
        audit: Event | None,
        change: Callable[[sqlite3.Connection], _T],
        *,
        only_if_changed: bool = False,
    ) -> _T:
        """Makes `change` and appends its audit entry in one transaction; with
        `only_if_changed`, a change that returns a falsy value is not audited."""
        entry = [rowmap.event_params(audit)] if audit is not None else []

        def work(db: sqlite3.Connection) -> _T:
            result = change(db)
            if not (only_if_changed and not result):
                _append_events(db, entry)
            return result

        return await self._on_writer(work)

    async def _on_writer(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Runs `work` in one write transaction on the writer thread: waiting there for the
        write lock (a batch committing) does not stall the event loop."""
        if self._write_thread is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_thread, self._writer_txn, work)

    def _writer_txn(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._writer is None:
            raise StoreError("the store is closed")
        with self._transaction(self._writer) as db:
            return work(db)
