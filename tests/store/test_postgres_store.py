"""What only the PostgreSQL store does: schemas by URL, racing migrations, reconnects, secrecy.

Every test gets a fresh schema from the `postgres_url` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from podium.errors import StoreError, StoreUnavailable
from podium.events import Event
from podium.redact import redact_url_password as redact
from podium.store import Batch, RunState, StepState, open_store
from podium.store.postgres import PostgresStore, parse_url
from podium.store.schema import POSTGRES_MIGRATIONS


def make_run(run_id: str) -> RunState:
    return RunState(run_id, "wf", "1", "d", {}, created_at=time.time())


def base_of(url: str) -> str:
    return url.split("?")[0]


def test_the_url_names_the_schema_and_hides_the_password() -> None:
    conninfo, schema = parse_url("postgresql://u:pw@h/db?schema=t_1&sslmode=disable")
    assert schema == "t_1"
    assert "search_path=t_1" in conninfo and "sslmode=disable" in conninfo
    assert parse_url("postgres://h/db?options=-csearch_path%3Dother")[1] == "other"
    both, schema = parse_url("postgresql://h/db?options=-csearch_path%3Da&schema=b")
    assert schema == "b" and both.endswith("search_path=a -c search_path=b'")
    assert redact("postgresql://u:pw@h/db?password=pw2") == "postgresql://u:***@h/db?password=***"


def test_a_schema_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(StoreError, match="invalid schema name"):
        parse_url("postgresql://h/db?schema=a;drop")


async def test_an_unreachable_server_is_one_clear_line_without_the_password() -> None:
    store = open_store("postgresql://bob:hunter2@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(StoreUnavailable) as caught:
        await store.__aenter__()
    message = str(caught.value)
    assert message.startswith("cannot open the store postgresql://bob:***@127.0.0.1:1/db")
    assert "hunter2" not in message and "\n" not in message


async def test_schemas_keep_stores_apart(postgres_url: str) -> None:
    other = f"t_{uuid.uuid4().hex}"
    other_url = f"{base_of(postgres_url)}?options=-csearch_path%3D{other}"
    try:
        async with open_store(postgres_url) as mine, open_store(other_url) as theirs:
            await mine.write(Batch(runs={"r1": make_run("r1")}))
            assert await theirs.get_run("r1") is None
            assert await mine.get_run("r1") is not None
    finally:
        with psycopg.connect(base_of(postgres_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other)))


async def test_stores_opening_at_once_migrate_the_schema_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    for store in stores:
        await store.close()

    with psycopg.connect(postgres_url.replace("?schema=", "?options=-csearch_path%3D")) as conn:
        versions = conn.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v in range(1, len(POSTGRES_MIGRATIONS) + 1)]


async def test_a_write_survives_the_server_dropping_every_connection(postgres_url: str) -> None:
    app = f"podium-test-{uuid.uuid4().hex[:12]}"  # kill only this test's connections
    async with open_store(f"{postgres_url}&application_name={app}") as store:
        await store.write(Batch(runs={"r1": make_run("r1")}))
        with psycopg.connect(base_of(postgres_url), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (app,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        await store.write(Batch(runs={"r2": make_run("r2")}))
        assert await store.get_run("r2") is not None


async def test_a_batch_is_one_round_trip(postgres_url: str, tmp_path: Path) -> None:
    trace = tmp_path / "libpq.trace"
    batch = Batch(owner="me", definitions={"d": b"{}"}, dlq_remove=["x"], signals_taken=[1])
    for i in range(50):
        batch.runs[f"r{i}"] = make_run(f"r{i}")
        step = StepState(f"r{i}", "s", status="succeeded", output_blob=b"j{}")
        batch.steps[step.key] = step
        batch.events.append(Event("agent.task.completed", f"r{i}", {"i": i}))
    async with PostgresStore(postgres_url, max_connections=1) as store:
        with trace.open("w") as out:
            async with store.pool.connection() as conn:  # the pool's only connection
                conn.pgconn.trace(out.fileno())
            await store.write(batch)
            async with store.pool.connection() as conn:
                conn.pgconn.untrace()
        assert len(await store.list_events()) == 50

    sent = [line.split("\t")[3] for line in trace.read_text().splitlines() if "\tF\t" in line]
    assert sent.count("Sync") == 1
