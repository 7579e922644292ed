"""The distributed store: PostgreSQL through a psycopg 3 async connection pool.

URL `postgresql://user[:password]@host[:port]/db[?schema=NAME]`: `schema` (or libpq's own
`options=-csearch_path=NAME`) keeps every table in that PostgreSQL schema, created if missing,
so tests and tenants isolate by name. A batch is one transaction sent in one pipeline.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import astuple
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from podium.clock import SYSTEM_CLOCK, Clock
from podium.errors import StoreError, StoreUnavailable
from podium.events import Event
from podium.redact import Redactor, redact_url_password
from podium.store import audit
from podium.store import circuits as breaker
from podium.store import pools as shares
from podium.store import rows as rowmap
from podium.store import schedules as sched
from podium.store.records import Batch, CircuitRecord, CircuitResult, RegisteredWorkflow
from podium.store.retention import (
    RUN_TABLES,
    AuditPrune,
    GcBatch,
    RetentionSQL,
    pick,
    prefix_before,
)
from podium.store.schedules import Schedule
from podium.store.schema import POSTGRES_MIGRATIONS
from podium.store.spend import (
    EPSILON_USD,
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
    EVENT_TYPES,
    POSTGRES,
    RUN_COLS,
    RUN_TYPES,
    SPEND_COLS,
    SPEND_TYPES,
    STEP_COLS,
    STEP_TYPES,
    UNFINISHED,
    Row,
    on_conflict_replace,
    on_run_conflict,
    upsert,
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Row]
Params = Sequence[Any] | Mapping[str, Any]
# (SQL, rows, index of the run id in a row for fencing or None, column types if the rows go
# as one array per column through unnest(), else None for executemany)
Statement = tuple[str, list[Row], int | None, tuple[str, ...] | None]
Fence = tuple[str, list[str]]  # the batch's owner, and the runs it writes, in key order

log = structlog.get_logger("podium.store")

CONNECT_TIMEOUT_S = 10
POOL_TIMEOUT_S = 15.0  # a write waits this long for a connection before the engine stops
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SEARCH_PATH_OPTION = re.compile(r"-c\s*search_path=([A-Za-z_][A-Za-z0-9_]*)")
# Lost connections, server restarts and rolled-back transactions: safe to try again once.
_RETRYABLE_SQLSTATES = ("08", "40", "57P01", "57P02", "57P03")
_FENCE_SQLSTATE = "PD001"  # raised by podium_fence() (schema.py): runs held by another engine


def _unnest(table: str, cols: str, types: tuple[str, ...]) -> str:
    """A multi-row INSERT taking one array per column: one statement for the whole batch,
    where executemany would pay psycopg's per-row cost on the event loop (4x the CPU).
    Arrays go binary (%b): no hex doubling of large outputs on the wire."""
    arrays = ", ".join(f"%b::{t}[]" for t in types)
    return f"INSERT INTO {table} ({cols}) SELECT * FROM unnest({arrays})"


_INSERT_DEFINITIONS = (
    "INSERT INTO definitions (digest, body) VALUES (%s, %b) ON CONFLICT (digest) DO NOTHING"
)
_UPSERT_RUNS = _unnest("runs", RUN_COLS, RUN_TYPES) + on_run_conflict("false")
_UPSERT_STEPS = _unnest("steps", STEP_COLS, STEP_TYPES) + on_conflict_replace(
    STEP_COLS, "run_id, step_id, idx"
)
# The audit chain's append (schema.py): the rows go as arrays with their content hashes. A
# retried batch may already be committed: the function skips events it has.
_APPEND_TYPES = (*EVENT_TYPES, "text")
_APPEND_EVENTS = (
    f"SELECT podium_append_events({', '.join(f'%b::{t}[]' for t in _APPEND_TYPES)})"
)
_UPSERT_DLQ = upsert("dlq", DLQ_COLS, "run_id", "%s")
_DELETE_DLQ = "DELETE FROM dlq WHERE run_id = %s"
_TAKE_SIGNAL = "UPDATE signals SET taken = true WHERE signal_id = %s"
# A retried batch may already be in: the key (run, step, index, ts, call) keeps no twin.
_INSERT_SPEND = _unnest("spend", SPEND_COLS, SPEND_TYPES) + " ON CONFLICT DO NOTHING"
# SKIP LOCKED: a run another engine is claiming (or writing) right now is left to it, never
# shared. LIMIT NULL is no limit.
_CLAIM = (
    f"WITH picked AS (SELECT run_id, {BY_PRIORITY} AS rank, created_at FROM runs"
    f" WHERE status IN {UNFINISHED}"
    " AND (owner IS NULL OR owner = %(owner)s OR lease_until < %(now)s)"
    " AND (%(ids)s::text[] IS NULL OR run_id = ANY(%(ids)s))"
    " ORDER BY rank, created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " UPDATE runs SET owner = %(owner)s, lease_until = %(until)s FROM picked"
    " WHERE runs.run_id = picked.run_id RETURNING runs.run_id, picked.rank, picked.created_at"
)


# -- rows ------------------------------------------------------------------------------------


def _statements(batch: Batch) -> list[Statement]:
    """The batch's rows, copied now: the engine goes on changing its states during the write.

    Runs and steps go in key order, so writers that overlap lock rows in one order. The DLQ
    list may name a run twice, which one upsert statement cannot take: it goes row by row.
    """
    statements: list[Statement] = [
        (_INSERT_DEFINITIONS, list(batch.definitions.items()), None, None),
        (
            _UPSERT_RUNS,
            [rowmap.run_params(batch.runs[k]) for k in sorted(batch.runs)],
            0,
            RUN_TYPES,
        ),
        (
            _UPSERT_STEPS,
            [rowmap.step_params(batch.steps[k]) for k in sorted(batch.steps)],
            0,
            STEP_TYPES,
        ),
        (_UPSERT_DLQ, [rowmap.dlq_params(d) for d in batch.dlq_add], 0, None),
        (_DELETE_DLQ, [(r,) for r in batch.dlq_remove], 0, None),
        (_TAKE_SIGNAL, [(s,) for s in batch.signals_taken], None, None),
        (_INSERT_SPEND, [spend_params(r) for r in batch.spend], 0, SPEND_TYPES),
        # Last: the chain's head row stays locked from here to the commit, which is as short
        # as it can be (concurrent engines wait for it in turn).
        _append_statement(batch.events),
    ]
    return [s for s in statements if s[1]]


def _append_statement(events: Sequence[Event]) -> Statement:
    rows = [rowmap.event_params(e) for e in events]
    return (_APPEND_EVENTS, [(*row, audit.content_hash(row)) for row in rows], 3, _APPEND_TYPES)


def _without(statements: list[Statement], lost: set[str]) -> list[Statement]:
    """The statements minus the rows of runs another engine holds."""
    if not lost:
        return statements
    return [
        (statement, [r for r in rows if col is None or r[col] not in lost], col, types)
        for statement, rows, col, types in statements
    ]


def _columns(rows: list[Row], types: tuple[str, ...]) -> list[list[Any]]:
    """Rows turned into one list per column; psycopg refuses a list mixing ints and floats."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    for i, sql_type in enumerate(types):
        if sql_type == "float8":
            columns[i] = [None if v is None else float(v) for v in columns[i]]
    return columns


async def _write_txn(conn: Conn, statements: list[Statement], fence: Fence | None) -> None:
    # BEGIN, the fence, every statement and COMMIT are queued in one pipeline that ends in one
    # Sync: one round trip (conn.transaction() would add a Sync after BEGIN and COMMIT).
    try:
        async with conn.pipeline(), conn.cursor() as cur:
            await cur.execute("BEGIN")
            if fence is not None and fence[1]:
                await cur.execute("SELECT podium_fence(%s, %s)", (fence[1], fence[0]))
            for statement, rows, _, types in statements:
                if rows and types:
                    await cur.execute(statement, _columns(rows, types))
                elif rows:
                    await cur.executemany(statement, rows)
            await cur.execute("COMMIT")
    except psycopg.Error:
        # The server skipped the rest of the pipeline, COMMIT included: end the aborted transaction.
        if conn.info.transaction_status == TransactionStatus.INERROR:
            await conn.rollback()
        raise


async def _write_fenced_txn(conn: Conn, statements: list[Statement], fence: Fence) -> set[str]:
    """Writes all but the rows of runs another engine holds; returns those runs.

    The fence refuses a batch naming the runs it found held; the batch is then sent again
    without them. That costs a second round trip only when an engine lost a lease.
    """
    owner, run_ids = fence
    lost: set[str] = set()
    while True:
        ids = [r for r in run_ids if r not in lost]
        try:
            await _write_txn(conn, _without(statements, lost), (owner, ids))
            return lost
        except psycopg.Error as exc:
            if exc.sqlstate != _FENCE_SQLSTATE or not exc.diag.message_detail:
                raise
            lost.update(orjson.loads(exc.diag.message_detail))


# -- budgets ---------------------------------------------------------------------------------

def _usage_union(scopes: Sequence[WindowScope], now: float) -> tuple[str, list[Any]]:
    """Rows (i, lim, spent, held): each scope's limit, spend in its window and holds."""
    parts, params = [], []
    for i, scope in enumerate(scopes):
        columns, args = usage_columns(scope, now, "%s")
        parts.append(f"SELECT {i} AS i, %s::float8 AS lim, {columns}")
        params.extend([float(scope.limit_usd), *args])
    return " UNION ALL ".join(parts), params


def _hold_statement(
    hold: BudgetHold, scopes: Sequence[WindowScope], now: float
) -> tuple[str, list[Any]]:
    """Inserts the hold only if every scope has room, and returns what each scope held before.

    Run under the scopes' advisory locks: two engines cannot both take the last dollar.
    """
    usage, params = _usage_union(scopes, now)
    statement = (
        f"WITH usage (i, lim, spent, held) AS ({usage}),"
        " placed AS (INSERT INTO budget_holds"
        " SELECT %s, %s, %s, %s::float8, %s, %s::float8 WHERE NOT EXISTS"
        " (SELECT 1 FROM usage WHERE spent + held + %s::float8 > lim + %s::float8)"
        " RETURNING 1)"
        " SELECT i, spent, held, (SELECT count(*) FROM placed) FROM usage ORDER BY i"
    )
    return statement, [*params, *hold_params(hold), float(hold.usd), EPSILON_USD]


def _budget_lock_key(schema: str | None, name: str) -> int:
    """The advisory lock of a budget scope's rows (all of them, or one workflow's)."""
    digest = hashlib.blake2b(
        f"podium.budget:{schema or ''}:{name}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _hold_txn(
    conn: Conn, locks: list[int], release: list[str], statement: str, params: list[Any]
) -> list[Row]:
    # One pipeline: BEGIN, the locks (in key order: no deadlock), the holds handed back, the
    # statement, COMMIT.
    try:
        async with conn.pipeline(), conn.cursor() as cur, conn.cursor() as result:
            await cur.execute("BEGIN")
            for key in locks:
                await cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            if release:
                await cur.execute("DELETE FROM budget_holds WHERE hold_id = ANY(%s)", (release,))
            await result.execute(statement, params)
            await cur.execute("COMMIT")
            return await result.fetchall()
    except psycopg.Error:
        if conn.info.transaction_status == TransactionStatus.INERROR:
            await conn.rollback()
        raise


def _pool_lock_key(schema: str | None, pool: str) -> int:
    """The advisory lock of one capacity pool's rows (a set_shares step holds it)."""
    digest = hashlib.blake2b(f"podium.pool:{schema or ''}:{pool}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# -- URLs and errors -------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str | None]:
    """libpq connection info for a store URL, and the schema its tables live in (if named)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    base = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    try:
        options = str(conninfo_to_dict(base).get("options") or "")
    except psycopg.Error as exc:
        shown = redact_url_password(url)
        raise StoreError(f"invalid store URL {shown}: {_one_line(exc)}") from None
    schema = dict(query).get("schema")
    if schema is None:
        found = _SEARCH_PATH_OPTION.search(options)
        return base, found.group(1) if found else None
    if not _SCHEMA_NAME.fullmatch(schema):
        raise StoreError(
            f"invalid schema name {schema!r} in the store URL; use letters, digits and _"
        )
    # Appended: of two `-c search_path=` options, the server keeps the last.
    return make_conninfo(base, options=f"{options} -c search_path={schema}".strip()), schema


def _one_line(exc: BaseException, secret: str | None = None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = Redactor([secret]).text(text)
    return text[:500]


# Operational errors that no retry mends: bad credentials, a missing database.
_PERMANENT_SQLSTATES = ("28", "3D")


def _transient(exc: psycopg.Error) -> bool:
    """The one place psycopg errors are classified for the journal: lost connections, a busy
    pool, serialization failures and deadlocks pass; constraint violations, bad SQL and bad
    credentials do not."""
    if not isinstance(exc, psycopg.OperationalError):  # PoolTimeout is one too
        return False
    return exc.sqlstate is None or not exc.sqlstate.startswith(_PERMANENT_SQLSTATES)


def _retryable(exc: psycopg.Error) -> bool:
    """A lost connection or a rolled-back transaction: nothing was half-done, try again."""
    if isinstance(exc, PoolTimeout) or not isinstance(exc, psycopg.OperationalError):
        return False
    return exc.sqlstate is None or exc.sqlstate.startswith(_RETRYABLE_SQLSTATES)


def _named_lock_key(schema: str | None, name: str) -> int:
    """The advisory lock of a store-wide duty (`exclusive`), per schema."""
    digest = hashlib.blake2b(f"podium.duty:{schema or ''}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _gc_statement(include_dlq: bool) -> str:
    """One batch of `podium gc` as one statement (one transaction): the picked runs are locked
    (SKIP LOCKED: a run being written is left for the next pass), deleted with their rows,
    and counted."""
    picked = pick(POSTGRES, include_dlq, lock=" FOR UPDATE OF r SKIP LOCKED")
    deletes = "".join(
        f", gone_{table} AS (DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM gone)"
        " RETURNING 1)"
        for table in RUN_TABLES
    )
    counts = "".join(f", (SELECT count(*) FROM gone_{table})" for table in RUN_TABLES)
    return (
        f"WITH picked AS ({picked}),"
        " gone AS (DELETE FROM runs WHERE run_id IN (SELECT run_id FROM picked)"
        f" RETURNING run_id, created_at){deletes}"
        f" SELECT (SELECT count(*) FROM gone){counts}, (SELECT max(created_at) FROM gone)"
    )


def _lock_key(schema: str | None) -> int:
    """A 64-bit advisory lock key per schema, so migrating one schema never waits on another."""
    digest = hashlib.blake2b(f"podium.migrate:{schema or ''}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# -- the store -------------------------------------------------------------------------------


class PostgresStore(RetentionSQL):
    dialect = POSTGRES

    def __init__(
        self, url: str, *, max_connections: int = 10, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.url = url
        self.schema_versions = (0, 0)
        self.clock = clock
        self.safe_url = redact_url_password(url)
        self._conninfo, self._schema = parse_url(url)
        password = conninfo_to_dict(self._conninfo).get("password")
        self._password = str(password) if password else None
        self._max_connections = max_connections
        self._pool: AsyncConnectionPool[Conn] | None = None

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._max_connections,
            open=False,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT_S,
            name="podium-store",
        )
        try:
            with self._mapped("open"):
                await self._migrate()
                await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            await pool.close()  # else its workers would go on trying to connect
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StoreError("the store is closed")
        return self._pool

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        """Translates psycopg errors at the edge: one line, never the password."""
        try:
            yield
        except psycopg.Error as exc:
            reason = _one_line(exc, self._password)
            message = f"cannot {action} the store {self.safe_url}: {reason}"
            if _transient(exc):
                raise StoreUnavailable(message) from None
            kind = exc.sqlstate or type(exc).__name__
            raise StoreError(f"{message} ({kind}; not retried)") from None

    async def _migrate(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        async with conn, conn.transaction():
            # Two processes starting at once: the second waits here, then finds nothing to do.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self._schema),))
            if self._schema:
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
                )
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
            await self._apply_migrations(conn, row[0] if row and row[0] else 0)
            await _link_old_events(conn)

    async def _apply_migrations(self, conn: Conn, current: int) -> None:
        if current > len(POSTGRES_MIGRATIONS):
            raise StoreError(
                f"the store {self.safe_url} has schema version {current}, newer than this podium"
                f" ({len(POSTGRES_MIGRATIONS)}); upgrade podium"
            )
        for version, script in enumerate(POSTGRES_MIGRATIONS[current:], start=current + 1):
            await conn.execute(script)  # whole: without parameters, several statements may run
            await conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        self.schema_versions = (current, len(POSTGRES_MIGRATIONS))

    async def _run(
        self, action: str, work: Callable[[Conn], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Runs `work` on a pooled connection; once more if the connection was lost."""
        with self._mapped(action):
            try:
                async with self.pool.connection() as conn:
                    return await work(conn)
            except psycopg.Error as exc:
                if not (retry and _retryable(exc)):
                    raise
                log.warning("store connection lost; retrying once", error=_one_line(exc))
            await self.pool.check()  # a server restart breaks every idle connection at once
            async with self.pool.connection() as conn:
                return await work(conn)

    async def _fetch(self, query: str, params: Params = (), *, action: str = "read") -> list[Row]:
        async def work(conn: Conn) -> list[Row]:
            # Binary results: bytea arrives as raw bytes rather than hex text twice its size.
            async with conn.cursor(binary=True) as cur:
                await cur.execute(query, params)
                return await cur.fetchall()

        return await self._run(action, work)

    async def _execute(self, query: str, params: Params = (), *, retry: bool = True) -> int:
        async def work(conn: Conn) -> int:
            return (await conn.execute(query, params)).rowcount

        return await self._run("write to", work, retry=retry)

    async def _audited_execute(
        self,
        audit: Event | None,
        query: str,
        params: Sequence[Any],
        *,
        only_if_changed: bool = False,
        retry: bool = True,
    ) -> int:
        async def change(conn: Conn) -> int:
            return (await conn.execute(query, params)).rowcount

        return await self._audited(
            audit, change, only_if_changed=only_if_changed, retry=retry
        )

    async def write(self, batch: Batch) -> set[str]:
        statements = _statements(batch)
        fence = (batch.owner, sorted(batch.run_ids())) if batch.owner else None

        async def work(conn: Conn) -> set[str]:
            if fence is None:
                await _write_txn(conn, statements, None)
                return set()
            return await _write_fenced_txn(conn, statements, fence)

        # Retrying is safe: every statement is an upsert, a delete or a no-op on a twin event.
        return await self._run("write to", work)

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
        params = {
            "owner": owner,
            "now": now,
            "until": now + lease_s,
            "ids": list(run_ids) if run_ids else None,
            "limit": limit,
        }
        rows = await self._fetch(_CLAIM, params, action="claim runs in")
        return [r[0] for r in sorted(rows, key=lambda r: (r[1], r[2]))]

    # -- circuit breakers --

    async def _circuit_txn(
        self, key: str, op: breaker.CircuitOp, audit: Event | None = None
    ) -> CircuitResult:
        # The row is locked FOR UPDATE.
        return await self._audited(
            audit, lambda conn: _circuit_change(conn, key, op, self.clock.now())
        )

    # -- schedules (`podium schedule`) --

    async def remove_schedule(self, key: str, audit: Event | None = None) -> Schedule | None:
        sql = (
            "DELETE FROM schedules WHERE schedule_id = (SELECT schedule_id FROM schedules"
            " WHERE schedule_id = %(key)s OR name = %(key)s"
            f" ORDER BY schedule_id = %(key)s DESC LIMIT 1) RETURNING {sched.SCHEDULE_COLS}"
        )

        async def remove(conn: Conn) -> Schedule | None:
            row = await (await conn.execute(sql, {"key": key})).fetchone()
            return sched.schedule_from_row(row) if row else None

        return await self._audited(audit, remove, only_if_changed=True)

    # -- budgets and cost accounting --

    async def hold_budget(
        self, hold: BudgetHold, scopes: Sequence[WindowScope], release: Sequence[str] = ()
    ) -> tuple[bool, list[ScopeUsage]]:
        statement, params = _hold_statement(hold, scopes, self.clock.now())
        locks = sorted({_budget_lock_key(self._schema, s.lock_name) for s in scopes})

        async def work(conn: Conn) -> list[Row]:
            return await _hold_txn(conn, locks, list(release), statement, params)

        # Not retried: a hold whose commit was lost in flight would count twice; it runs out.
        rows = await self._run("hold budget in", work, retry=False)
        found = [ScopeUsage(scopes[r[0]], r[1], r[2]) for r in rows]
        return bool(rows) and rows[0][3] == 1, found

    async def renew_budget_holds(self, holder: str, expires_at: float) -> None:
        await self._execute(
            "UPDATE budget_holds SET expires_at = %s WHERE holder = %s", (expires_at, holder)
        )
        await self._execute(
            "DELETE FROM budget_holds WHERE expires_at < %s AND holder <> %s",
            (self.clock.now(), holder),
        )

    async def budget_usage(self, scopes: Sequence[WindowScope]) -> list[ScopeUsage]:
        if not scopes:
            return []
        usage, params = _usage_union(scopes, self.clock.now())
        rows = await self._fetch(
            f"SELECT i, spent, held FROM ({usage}) AS u (i, lim, spent, held) ORDER BY i", params
        )
        return [ScopeUsage(scopes[r[0]], r[1], r[2]) for r in rows]

    # -- capacity pools and token buckets --

    async def set_shares(
        self, holder: str, requests: Sequence[shares.ShareRequest], ttl_s: float
    ) -> list[shares.ShareGrant]:
        # Pools locked in name order (no deadlock between two engines asking for two pools).
        ordered = sorted(requests, key=lambda r: r.pool)

        async def work(conn: Conn) -> list[shares.ShareGrant]:
            now = self.clock.now()
            grants: dict[str, shares.ShareGrant] = {}
            async with conn.transaction():
                for request in ordered:
                    grants[request.pool] = await self._set_share_txn(
                        conn, holder, request, now, ttl_s
                    )
            return [grants[r.pool] for r in requests]

        return await self._run("write to", work)

    async def _set_share_txn(
        self, conn: Conn, holder: str, request: shares.ShareRequest, now: float, ttl_s: float
    ) -> shares.ShareGrant:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s)", (_pool_lock_key(self._schema, request.pool),)
        )
        await conn.execute(
            "DELETE FROM pool_shares WHERE pool = %s AND expires_at < %s", (request.pool, now)
        )
        cursor = await conn.execute(
            "SELECT amount, wanted FROM pool_shares WHERE pool = %s AND holder != %s",
            (request.pool, holder),
        )
        result = shares.grant(request, await cursor.fetchall())
        if shares.keeps_row(request, result.granted):
            await conn.execute(
                f"INSERT INTO pool_shares ({shares.SHARE_COLS}) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (pool, holder) DO UPDATE SET amount = excluded.amount,"
                " in_use = excluded.in_use, wanted = excluded.wanted,"
                " expires_at = excluded.expires_at",
                shares.share_row(request, holder, result.granted, now + ttl_s),
            )
        else:
            await conn.execute(
                "DELETE FROM pool_shares WHERE pool = %s AND holder = %s", (request.pool, holder)
            )
        return result

    async def take_tokens(
        self, key: str, rate_per_s: float, burst: float, amount: float, *, allow_debt: bool = False
    ) -> float:
        async def work(conn: Conn) -> float:
            now = self.clock.now()
            async with conn.transaction():
                await conn.execute(
                    f"INSERT INTO buckets ({shares.BUCKET_COLS}) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (key) DO NOTHING",
                    (key, burst, now, rate_per_s, burst),
                )
                cursor = await conn.execute(
                    f"SELECT {shares.BUCKET_COLS} FROM buckets WHERE key = %s FOR UPDATE", (key,)
                )
                row = await cursor.fetchone()
                level = shares.BucketLevel(*row) if row else None
                granted, new = shares.take(level, now, rate_per_s, burst, amount, allow_debt)
                await conn.execute(
                    "UPDATE buckets SET tokens = %s, updated_at = %s, rate_per_s = %s,"
                    " burst = %s WHERE key = %s",
                    (new.tokens, new.updated_at, new.rate_per_s, new.burst, key),
                )
            return granted

        # Not retried: a take whose commit was lost in flight would be taken twice.
        return await self._run("write to", work, retry=False)

    # -- retention (`podium gc`) --

    async def delete_finished_runs(
        self, before: float, limit: int, *, include_dlq: bool = False, after: float = 0.0
    ) -> GcBatch:
        params = (after, before, before, self.clock.now(), limit)
        rows = await self._fetch(_gc_statement(include_dlq), params, action="delete from")
        runs, steps, signals, dlq, newest = rows[0]
        return GcBatch(int(runs), int(steps), int(signals), int(dlq), newest)

    async def prune_audit(self, before: float, limit: int) -> AuditPrune:
        async def work(conn: Conn) -> AuditPrune:
            async with conn.transaction():
                # The anchor's row lock: two pruners take turns (appends never touch it).
                cursor = await conn.execute(
                    "SELECT seq, hash FROM audit_anchor WHERE id = 1 FOR UPDATE"
                )
                anchor = await cursor.fetchone()
                assert anchor is not None
                cursor = await conn.execute(
                    "SELECT seq, ts, hash FROM events ORDER BY seq LIMIT %s", (limit,)
                )
                gone = prefix_before(await cursor.fetchall(), before)
                if not gone:
                    return AuditPrune(0, anchor[0], anchor[1])
                last_seq, _, last_hash = gone[-1]
                await conn.execute("DELETE FROM events WHERE seq <= %s", (last_seq,))
                await conn.execute(
                    "UPDATE audit_anchor SET seq = %s, hash = %s WHERE id = 1",
                    (last_seq, last_hash),
                )
                return AuditPrune(len(gone), last_seq, last_hash)

        return await self._run("prune the audit log of", work)

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        # A session advisory lock on a connection kept for the block: released when the block
        # ends, or by the server if this process dies.
        key = _named_lock_key(self._schema, name)
        with self._mapped("lock"):
            async with self.pool.connection() as conn:
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                row = await cursor.fetchone()
                held = bool(row and row[0])
                try:
                    yield held
                finally:
                    if held:
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    # -- API keys, the registry of API definitions, the audit chain --

    async def register_workflow(
        self, workflow: RegisteredWorkflow, body: bytes, audit: Event
    ) -> bool:
        async def register(conn: Conn) -> bool:
            await conn.execute(_INSERT_DEFINITIONS, (workflow.digest, body))
            cursor = await conn.execute(
                f"INSERT INTO workflows ({rowmap.WORKFLOW_COLS}) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                astuple(workflow),
            )
            return cursor.rowcount == 1

        return await self._audited(audit, register, only_if_changed=True)

    async def append_audit(self, events: Sequence[Event]) -> None:
        await self._audited(None, _nothing, extra=events)

    async def _audited(
        self,
        audit: Event | None,
        change: Callable[[Conn], Awaitable[T]],
        *,
        retry: bool = True,
        only_if_changed: bool = False,
        extra: Sequence[Event] = (),
    ) -> T:
        """Makes `change` and appends its audit entry in one transaction; with
        `only_if_changed`, a change that returns a falsy value is not audited."""
        events = [*extra, audit] if audit is not None else list(extra)

        async def work(conn: Conn) -> T:
            async with conn.transaction():
                result = await change(conn)
                if events and not (only_if_changed and not result):
                    statement, rows, _, _ = _append_statement(events)
                    await conn.execute(statement, _columns(rows, _APPEND_TYPES))
            return result

        return await self._run("write to", work, retry=retry)


async def _link_old_events(conn: Conn) -> None:
    """Brings events written before the audit chain existed into it, once (in the migration's
    transaction, under its lock)."""
    async with conn.cursor(binary=True) as cur:
        await cur.execute(f"SELECT seq, {EVENT_COLS} FROM events WHERE hash IS NULL ORDER BY seq")
        rows = await cur.fetchall()
    if not rows:
        return
    head = await (await conn.execute("SELECT hash FROM audit_head WHERE id = 1")).fetchone()
    assert head is not None
    updates, head_hash = audit.relink(head[0], rows)
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE events SET prev_hash = %s, hash = %s WHERE seq = %s", updates
        )
    await conn.execute(
        "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (rows[-1][0], head_hash)
    )


async def _nothing(conn: Conn) -> None:
    return None


async def _circuit_change(
    conn: Conn, key: str, op: breaker.CircuitOp, now: float
) -> CircuitResult:
    """Reads, changes and writes one circuit's row, locked FOR UPDATE (inside the caller's
    transaction)."""
    select = f"SELECT {breaker.CIRCUIT_COLS} FROM circuits WHERE key = %s FOR UPDATE"

    async def locked() -> CircuitRecord | None:
        row = await (await conn.execute(select, (key,))).fetchone()
        return breaker.circuit_from_row(row) if row else None

    old = await locked()
    result = op(old, now)
    if old is None and result.circuit is not None:
        # A first row: insert it closed (racing inserts meet here), lock, decide again.
        await conn.execute(
            "INSERT INTO circuits (key, state, updated_at) VALUES (%s, 'closed', %s)"
            " ON CONFLICT DO NOTHING",
            (key, now),
        )
        old = await locked()
        result = op(old, now)
    result, new = breaker.to_store(result, old, now)
    if new is not None:
        await conn.execute(
            "UPDATE circuits SET state = %s, failures = %s, successes = %s,"
            " trials = %s, opened_at = %s, cooldown_s = %s, forced = %s,"
            " updated_at = %s, trial_until = %s WHERE key = %s",
            (*breaker.circuit_params(new)[1:], key),
        )
    return result
