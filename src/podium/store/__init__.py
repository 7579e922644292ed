"""Durable state behind one interface: SQLite (embedded) now, PostgreSQL with distributed mode."""

from __future__ import annotations

from podium.errors import PodiumError
from podium.store.base import Store
from podium.store.records import Batch, DlqEntry, RunState, Signal, StepState


def open_store(url: str, *, durability: str = "process") -> Store:
    """The store for a URL (`sqlite:///path.db`, `postgresql://...`); backends load lazily."""
    if url.startswith("sqlite:///"):
        from podium.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:", durability=durability)
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg is only imported by processes that use PostgreSQL; PostgreSQL's own
        # synchronous_commit setting governs durability there.
        from podium.store.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split("://")[0] if "://" in url else url
    raise PodiumError(
        f"unsupported store URL {scheme!r}; use sqlite:///path.db or postgresql://host/db"
    )


__all__ = ["Batch", "DlqEntry", "RunState", "Signal", "StepState", "Store", "open_store"]
