"""The distributed store: PostgreSQL through a psycopg 3 async connection pool.

URL `postgresql://user[:password]@host[:port]/db[?schema=NAME]`: `schema` (or libpq's own
`options=-csearch_path=NAME`) keeps every table in that PostgreSQL schema, created if missing,
so tests and tenants isolate by name. A batch is one transaction sent in one pipeline.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from podium.bus.events import Event
from podium.errors import StoreUnavailable
from podium.store.records import Batch, DlqEntry, RunState, Signal, StepState
from podium.store.schema import POSTGRES_MIGRATIONS

T = TypeVar("T")
Row = tuple[Any, ...]
Conn = psycopg.AsyncConnection[Row]
Params = Sequence[Any] | Mapping[str, Any]

log = structlog.get_logger("podium.store")

CONNECT_TIMEOUT_S = 10
POOL_TIMEOUT_S = 15.0  # a write waits this long for a connection before the engine stops
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SEARCH_PATH_OPTION = re.compile(r"-c\s*search_path=([A-Za-z_][A-Za-z0-9_]*)")
# Lost connections, server restarts and rolled-back transactions: safe to try again once.
_RETRYABLE_SQLSTATES = ("08", "40", "57P01", "57P02", "57P03")

_RUN_COLS = (
    "run_id, workflow, workflow_version, definition_digest, inputs, priority, status, created_at,"
    " started_at, finished_at, error, parent_run_id, cost_usd, tokens_in, tokens_out, owner,"
    " lease_until, stopping"
)
_STEP_COLS = (
    "run_id, step_id, idx, status, attempts, started_at, finished_at, error, fallback_used,"
    " completed_seq, wake_at, compensation_error, cost_usd, tokens_in, tokens_out, output"
)
_EVENT_COLS = "event_id, event_type, ts, run_id, causation_id, source, priority, version, payload"
_DLQ_COLS = "run_id, workflow, status, error, failed_steps, added_at"
_UNFINISHED = "('queued', 'running')"

# Blobs are sent as binary parameters (%b): no hex doubling of large outputs on the wire.
_INSERT_DEFINITIONS = (
    "INSERT INTO definitions (digest, body) VALUES (%s, %b) ON CONFLICT (digest) DO NOTHING"
)
_UPSERT_RUNS = (
    f"INSERT INTO runs ({_RUN_COLS}) VALUES (%s, %s, %s, %s, %b, {', '.join(['%s'] * 13)})"
    " ON CONFLICT (run_id) DO UPDATE SET status = excluded.status,"
    " started_at = excluded.started_at, finished_at = excluded.finished_at,"
    " error = excluded.error, cost_usd = excluded.cost_usd,"
    " tokens_in = excluded.tokens_in, tokens_out = excluded.tokens_out,"
    " owner = excluded.owner, lease_until = excluded.lease_until,"
    " stopping = excluded.stopping,"
    " cancel_requested = CASE WHEN excluded.status IN"
    f" {_UNFINISHED} THEN runs.cancel_requested ELSE false END"
)
_UPSERT_STEPS = (
    f"INSERT INTO steps ({_STEP_COLS}) VALUES ({', '.join(['%s'] * 15)}, %b)"
    " ON CONFLICT (run_id, step_id, idx) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _STEP_COLS.replace(" ", "").split(",")[3:])
)
# A retried batch may already be committed: the unique event_id keeps the log free of twins.
_INSERT_EVENTS = (
    f"INSERT INTO events ({_EVENT_COLS}) VALUES ({', '.join(['%s'] * 8)}, %b)"
    " ON CONFLICT (event_id) DO NOTHING"
)
_UPSERT_DLQ = (
    f"INSERT INTO dlq ({_DLQ_COLS}) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (run_id) DO UPDATE SET workflow = excluded.workflow,"
    " status = excluded.status, error = excluded.error,"
    " failed_steps = excluded.failed_steps, added_at = excluded.added_at"
)
_DELETE_DLQ = "DELETE FROM dlq WHERE run_id = %s"
_TAKE_SIGNAL = "UPDATE signals SET taken = true WHERE signal_id = %s"
# SKIP LOCKED: a run another engine is claiming right now is left to it, never shared.
_CLAIM = (
    "WITH picked AS (SELECT run_id, created_at FROM runs"
    f" WHERE status IN {_UNFINISHED}"
    " AND (owner IS NULL OR owner = %(owner)s OR lease_until < %(now)s)"
    " AND (%(ids)s::text[] IS NULL OR run_id = ANY(%(ids)s))"
    " ORDER BY created_at FOR UPDATE SKIP LOCKED)"
    " UPDATE runs SET owner = %(owner)s, lease_until = %(until)s FROM picked"
    " WHERE runs.run_id = picked.run_id RETURNING runs.run_id, picked.created_at"
)


# -- rows ------------------------------------------------------------------------------------


def _run_params(r: RunState) -> Row:
    return (
        r.run_id,
        r.workflow,
        r.workflow_version,
        r.definition_digest,
        orjson.dumps(r.inputs),
        r.priority,
        r.status,
        r.created_at,
        r.started_at,
        r.finished_at,
        r.error,
        r.parent_run_id,
        r.cost_usd,
        r.tokens_in,
        r.tokens_out,
        r.owner,
        r.lease_until,
        r.stopping,
    )


def _step_params(s: StepState) -> Row:
    return (
        s.run_id,
        s.step_id,
        s.index,
        s.status,
        s.attempts,
        s.started_at,
        s.finished_at,
        s.error,
        s.fallback_used,
        s.completed_seq,
        s.wake_at,
        s.compensation_error,
        s.cost_usd,
        s.tokens_in,
        s.tokens_out,
        s.output_blob,
    )


def _event_params(e: Event) -> Row:
    return (
        e.event_id,
        e.event_type,
        e.timestamp,
        e.correlation_id,
        e.causation_id,
        e.source,
        e.priority,
        e.version,
        orjson.dumps(e.payload),
    )


def _dlq_params(d: DlqEntry) -> Row:
    failed_steps = orjson.dumps(d.failed_steps).decode()
    return (d.run_id, d.workflow, d.status, d.error, failed_steps, d.added_at)


def _run_from_row(row: Row) -> RunState:
    return RunState(
        run_id=row[0],
        workflow=row[1],
        workflow_version=row[2],
        definition_digest=row[3],
        inputs=orjson.loads(row[4]),
        priority=row[5],
        status=row[6],
        created_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        error=row[10],
        parent_run_id=row[11],
        cost_usd=row[12],
        tokens_in=row[13],
        tokens_out=row[14],
        owner=row[15],
        lease_until=row[16],
        stopping=row[17],
    )


def _step_from_row(row: Row) -> StepState:
    return StepState(
        run_id=row[0],
        step_id=row[1],
        index=row[2],
        status=row[3],
        attempts=row[4],
        started_at=row[5],
        finished_at=row[6],
        error=row[7],
        fallback_used=row[8],
        completed_seq=row[9],
        wake_at=row[10],
        compensation_error=row[11],
        cost_usd=row[12],
        tokens_in=row[13],
        tokens_out=row[14],
        output_blob=row[15],
    )


def _event_from_row(row: Row) -> tuple[int, Event]:
    return row[0], Event(
        event_id=row[1],
        event_type=row[2],
        timestamp=row[3],
        correlation_id=row[4],
        causation_id=row[5],
        source=row[6],
        priority=row[7],
        version=row[8],
        payload=orjson.loads(row[9]),
    )


def _dlq_from_row(row: Row) -> DlqEntry:
    return DlqEntry(row[0], row[1], row[2], row[3], tuple(orjson.loads(row[4])), row[5])


def _batch_statements(batch: Batch) -> Iterator[tuple[str, list[Row]]]:
    """Each table's rows of a batch. Runs and steps go in key order, so two engines writing
    overlapping rows lock them in the same order and cannot deadlock."""
    yield _INSERT_DEFINITIONS, list(batch.definitions.items())
    yield _UPSERT_RUNS, [_run_params(batch.runs[k]) for k in sorted(batch.runs)]
    yield _UPSERT_STEPS, [_step_params(batch.steps[k]) for k in sorted(batch.steps)]
    yield _INSERT_EVENTS, [_event_params(e) for e in batch.events]
    yield _UPSERT_DLQ, [_dlq_params(d) for d in batch.dlq_add]
    yield _DELETE_DLQ, [(r,) for r in batch.dlq_remove]
    yield _TAKE_SIGNAL, [(s,) for s in batch.signals_taken]


async def _write_txn(conn: Conn, batch: Batch) -> None:
    # One pipeline: BEGIN, every executemany and COMMIT travel in a single round trip.
    async with conn.pipeline(), conn.transaction(), conn.cursor() as cur:
        for statement, rows in _batch_statements(batch):
            if rows:
                await cur.executemany(statement, rows)


# -- URLs and errors -------------------------------------------------------------------------


def redact(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if "password=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _schema_from(query: list[tuple[str, str]], options: str) -> str | None:
    schema = dict(query).get("schema")
    if schema is None:
        found = _SEARCH_PATH_OPTION.search(options)
        return found.group(1) if found else None
    if not _SCHEMA_NAME.fullmatch(schema):
        raise StoreUnavailable(
            f"invalid schema name {schema!r} in the store URL; use letters, digits and _"
        )
    return schema


def parse_url(url: str) -> tuple[str, str | None]:
    """libpq connection info for a store URL, and the schema its tables live in (if named)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    base = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    try:
        options = str(conninfo_to_dict(base).get("options") or "")
    except psycopg.Error as exc:
        raise StoreUnavailable(f"invalid store URL {redact(url)}: {_one_line(exc)}") from None
    schema = _schema_from(query, options)
    if schema is None or _SEARCH_PATH_OPTION.search(options):
        return base, schema
    return make_conninfo(base, options=f"{options} -c search_path={schema}".strip()), schema


def _one_line(exc: BaseException, secret: str | None = None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = text.replace(secret, "***")
    return text[:500]


def _retryable(exc: psycopg.Error) -> bool:
    """A lost connection or a rolled-back transaction: nothing was half-done, try again."""
    if isinstance(exc, PoolTimeout) or not isinstance(exc, psycopg.OperationalError):
        return False
    return exc.sqlstate is None or exc.sqlstate.startswith(_RETRYABLE_SQLSTATES)


def _lock_key(schema: str | None) -> int:
    """A 64-bit advisory lock key per schema, so migrating one schema never waits on another."""
    digest = hashlib.blake2b(f"podium.migrate:{schema or ''}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# -- the store -------------------------------------------------------------------------------


class PostgresStore:
    def __init__(self, url: str, *, max_connections: int = 10) -> None:
        self.url = url
        self.safe_url = redact(url)
        self._conninfo, self._schema = parse_url(url)
        password = conninfo_to_dict(self._conninfo).get("password")
        self._password = str(password) if password else None
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max_connections,
            open=False,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT_S,
            name="podium-store",
        )
        self._open = False

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        with self._mapped("open"):
            await self._migrate()
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self._pool.close()

    @contextmanager
    def _mapped(self, action: str) -> Iterator[None]:
        """Translates psycopg errors at the edge: one line, never the password."""
        try:
            yield
        except psycopg.Error as exc:
            reason = _one_line(exc, self._password)
            raise StoreUnavailable(f"cannot {action} the store {self.safe_url}: {reason}") from None

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

    async def _apply_migrations(self, conn: Conn, current: int) -> None:
        if current > len(POSTGRES_MIGRATIONS):
            raise StoreUnavailable(
                f"the store {self.safe_url} has schema version {current}, newer than this podium"
                f" ({len(POSTGRES_MIGRATIONS)}); upgrade podium"
            )
        for version, script in enumerate(POSTGRES_MIGRATIONS[current:], start=current + 1):
            for statement in filter(str.strip, script.split(";")):
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))

    async def _run(
        self, action: str, work: Callable[[Conn], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Runs `work` on a pooled connection; once more if the connection was lost."""
        with self._mapped(action):
            try:
                async with self._pool.connection() as conn:
                    return await work(conn)
            except psycopg.Error as exc:
                if not (retry and _retryable(exc)):
                    raise
                log.warning("store connection lost; retrying once", error=_one_line(exc))
            await self._pool.check()  # a server restart breaks every idle connection at once
            async with self._pool.connection() as conn:
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

    async def write(self, batch: Batch) -> None:
        # Retrying is safe: every statement is an upsert, a delete or a no-op on a twin event.
        await self._run("write to", lambda conn: _write_txn(conn, batch))

    async def get_run(self, run_id: str) -> RunState | None:
        rows = await self._fetch(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = %s", (run_id,))
        return _run_from_row(rows[0]) if rows else None

    async def get_steps(self, run_id: str) -> list[StepState]:
        rows = await self._fetch(
            f"SELECT {_STEP_COLS} FROM steps WHERE run_id = %s ORDER BY step_id, idx", (run_id,)
        )
        return [_step_from_row(r) for r in rows]

    async def get_definition(self, digest: str) -> dict[str, Any]:
        rows = await self._fetch("SELECT body FROM definitions WHERE digest = %s", (digest,))
        if not rows:
            raise StoreUnavailable(f"the store has no workflow definition {digest}")
        result: dict[str, Any] = orjson.loads(rows[0][0])
        return result

    async def list_runs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
    ) -> list[RunState]:
        rows = await self._fetch(
            f"SELECT {_RUN_COLS} FROM runs"
            " WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))"
            " AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)"
            " ORDER BY created_at DESC, run_id DESC LIMIT %(limit)s",
            {
                "statuses": list(statuses) if statuses else None,
                "workflow": workflow or None,
                "limit": limit,
            },
        )
        return [_run_from_row(r) for r in rows]

    async def claim_unfinished(
        self, owner: str, lease_s: float, run_ids: Sequence[str] | None = None
    ) -> list[str]:
        now = time.time()
        params = {
            "owner": owner,
            "now": now,
            "until": now + lease_s,
            "ids": list(run_ids) if run_ids else None,
        }
        rows = await self._fetch(_CLAIM, params, action="claim runs in")
        return [r[0] for r in sorted(rows, key=lambda r: r[1])]

    async def renew_leases(self, owner: str, lease_s: float) -> None:
        await self._execute(
            f"UPDATE runs SET lease_until = %s WHERE owner = %s AND status IN {_UNFINISHED}",
            (time.time() + lease_s, owner),
        )

    async def release_leases(self, owner: str) -> None:
        await self._execute(
            "UPDATE runs SET owner = NULL, lease_until = NULL WHERE owner = %s", (owner,)
        )

    async def list_events(
        self, run_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Event]]:
        rows = await self._fetch(
            f"SELECT seq, {_EVENT_COLS} FROM events"
            " WHERE (%(run_id)s::text IS NULL OR run_id = %(run_id)s) AND seq > %(after)s"
            " ORDER BY seq LIMIT %(limit)s",
            {"run_id": run_id, "after": after_seq, "limit": limit},
        )
        return [_event_from_row(r) for r in rows]

    async def list_dlq(self, limit: int = 100) -> list[DlqEntry]:
        rows = await self._fetch(
            f"SELECT {_DLQ_COLS} FROM dlq ORDER BY added_at DESC LIMIT %s", (limit,)
        )
        return [_dlq_from_row(r) for r in rows]

    async def get_dlq(self, run_id: str) -> DlqEntry | None:
        rows = await self._fetch(f"SELECT {_DLQ_COLS} FROM dlq WHERE run_id = %s", (run_id,))
        return _dlq_from_row(rows[0]) if rows else None

    async def purge_dlq(self) -> int:
        return await self._execute("DELETE FROM dlq")

    async def add_signal(self, run_id: str, name: str, payload: Any) -> None:
        # Not retried: an INSERT whose commit was lost in flight could deliver the signal twice.
        await self._execute(
            "INSERT INTO signals (run_id, name, payload, created_at) VALUES (%s, %s, %b, %s)",
            (run_id, name, orjson.dumps(payload), time.time()),
            retry=False,
        )

    async def pending_signals(self, run_ids: Sequence[str]) -> list[Signal]:
        if not run_ids:
            return []
        rows = await self._fetch(
            "SELECT signal_id, run_id, name, payload, created_at FROM signals"
            " WHERE NOT taken AND run_id = ANY(%s) ORDER BY signal_id",
            (list(run_ids),),
        )
        return [Signal(r[0], r[1], r[2], orjson.loads(r[3]), r[4]) for r in rows]

    async def request_cancel(self, run_id: str) -> None:
        await self._execute("UPDATE runs SET cancel_requested = true WHERE run_id = %s", (run_id,))

    async def cancel_requests(self, run_ids: Sequence[str]) -> list[str]:
        if not run_ids:
            return []
        rows = await self._fetch(
            f"SELECT run_id FROM runs WHERE cancel_requested AND status IN {_UNFINISHED}"
            " AND run_id = ANY(%s)",
            (list(run_ids),),
        )
        return [r[0] for r in rows]
