"""Durable state behind one interface: SQLite (embedded) now, PostgreSQL with distributed mode."""

from __future__ import annotations

from podium.clock import SYSTEM_CLOCK, Clock
from podium.errors import PodiumError
from podium.store.base import Store
from podium.store.records import Batch, DlqEntry, RunState, Signal, StepState


def open_store(url: str, *, durability: str = "process", clock: Clock = SYSTEM_CLOCK) -> Store:
    """The store for a URL (`sqlite:///path.db`, `postgresql://...`); backends load lazily.
    `clock` is the time its leases, TTLs, buckets and windows are kept by."""
    if url.startswith("sqlite:///"):
        from podium.store.sqlite import SQLiteStore

        path = url.removeprefix("sqlite:///") or ":memory:"
        return SQLiteStore(path, durability=durability, clock=clock)
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg is only imported by processes that use PostgreSQL; PostgreSQL's own
        # synchronous_commit setting governs durability there.
        from podium.store.postgres import PostgresStore

        return PostgresStore(url, clock=clock)
    scheme = url.split("://")[0] if "://" in url else url
    raise PodiumError(
        f"unsupported store URL {scheme!r}; use sqlite:///path.db or postgresql://host/db"
    )


__all__ = ["Batch", "DlqEntry", "RunState", "Signal", "StepState", "Store", "open_store"]
