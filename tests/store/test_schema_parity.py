"""SQLite's and PostgreSQL's migrations build the same schema: tables, columns, keys, indexes.

The two migration tuples are kept parallel by hand; this catches a change made to one only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg

from podium.store.postgres import PostgresStore, parse_url
from podium.store.schema import MIGRATIONS, POSTGRES_MIGRATIONS
from podium.store.sqlite import SQLiteStore

# PostgreSQL's type names by family; SQLite has no boolean (0 and 1 in an INTEGER).
_FAMILIES = {
    "text": "text",
    "bytea": "blob",
    "double precision": "real",
    "integer": "integer",
    "bigint": "integer",
    "boolean": "integer",
}
# The one difference on purpose (schema.py, migration 1): PostgreSQL's batch append relies on
# a unique event_id to skip the events of a retried batch; SQLite's writer never retries.
_POSTGRES_ONLY_UNIQUE = {("events", ("event_id",))}


@dataclass(frozen=True)
class Shape:
    """What the stores rely on of a schema: column names, type families, nullability, keys."""

    columns: dict[str, list[tuple[str, str, bool]]]  # table -> [(name, family, not null)]
    primary_keys: dict[str, tuple[str, ...]]
    unique: set[tuple[str, tuple[str, ...]]]
    indexes: dict[str, tuple[str, tuple[str, ...], bool]]  # name -> (table, columns, partial)
    version: int


def _sqlite_shape(path: Path) -> Shape:
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )]
        columns, keys, unique, indexes = {}, {}, set(), {}
        for table in tables:
            info = db.execute(f"PRAGMA table_info({table})").fetchall()
            columns[table] = [(r[1], r[2].lower(), bool(r[3] or r[5])) for r in info]
            key = tuple(r[1] for r in sorted(info, key=lambda r: r[5]) if r[5])
            if key:
                keys[table] = key
            for _, name, is_unique, origin, partial in db.execute(
                f"PRAGMA index_list({table})"
            ):
                cols = tuple(r[2] for r in db.execute(f"PRAGMA index_info({name})"))
                if origin == "c":
                    indexes[name] = (table, cols, bool(partial))
                elif origin == "u" and is_unique:
                    unique.add((table, cols))
        version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        return Shape(columns, keys, unique, indexes, version)
    finally:
        db.close()


_PG_COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable = 'NO' FROM information_schema.columns
WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position
"""
# Every index of the schema's tables with its key and INCLUDE columns in order, and whether it
# backs the primary key, a unique constraint, or is an index of its own.
_PG_INDEXES = """
SELECT i.relname, t.relname, array_agg(a.attname ORDER BY k.n), x.indisprimary,
       c.contype IS NOT NULL, x.indpred IS NOT NULL
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace s ON s.oid = t.relnamespace AND s.nspname = current_schema()
CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype IN ('p', 'u')
GROUP BY i.relname, t.relname, x.indisprimary, c.contype, x.indpred
"""


def _postgres_shape(url: str) -> Shape:
    conninfo, _ = parse_url(url)
    with psycopg.connect(conninfo) as conn:
        columns: dict[str, list[tuple[str, str, bool]]] = {}
        for table, name, sql_type, not_null in conn.execute(_PG_COLUMNS):
            columns.setdefault(table, []).append((name, _FAMILIES[sql_type], not_null))
        keys, unique, indexes = {}, set(), {}
        for name, table, cols, primary, constraint, partial in conn.execute(_PG_INDEXES):
            if primary:
                keys[table] = tuple(cols)
            elif constraint:
                unique.add((table, tuple(cols)))
            else:
                indexes[name] = (table, tuple(cols), partial)
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert row is not None
        return Shape(columns, keys, unique, indexes, row[0])


async def test_both_backends_migrate_to_the_same_schema(
    tmp_path: Path, postgres_url: str
) -> None:
    async with SQLiteStore(str(tmp_path / "podium.db")):
        pass
    async with PostgresStore(postgres_url):
        pass
    lite, pg = _sqlite_shape(tmp_path / "podium.db"), _postgres_shape(postgres_url)

    assert len(MIGRATIONS) == len(POSTGRES_MIGRATIONS) == lite.version == pg.version
    assert sorted(lite.columns) == sorted(pg.columns)
    for table, columns in lite.columns.items():
        assert columns == pg.columns[table], table
    assert lite.primary_keys == pg.primary_keys
    assert lite.unique == pg.unique - _POSTGRES_ONLY_UNIQUE
    assert lite.indexes == pg.indexes
