"""`podium queue`: queued runs per priority, the oldest wait, and each priority's TTL.

Reads the store, so it shows every engine's and worker's queue.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from podium.cli.client import client_for
from podium.cli.common import (
    JsonOption,
    ServerOption,
    StoreOption,
    guarded,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.model.workflow import PRIORITY_RANK
from podium.settings import Settings
from podium.store.documents import queue_json


@guarded
def queue_command(
    json_output: JsonOption = False, store: StoreOption = None, server: ServerOption = None
) -> None:
    """Show queue depth and oldest wait per priority, with the queue TTLs."""
    client = client_for(server)
    if client is not None:
        with client:
            document: dict[str, Any] = client.get("/v1/queue")
    else:
        document = run_async(_read(settings_for(store, None)))
    if json_output:
        print_json(document)
        return
    rows = document["priorities"]
    table = Table(title="queue")
    for column in ("priority", "queued", "oldest wait", "ttl"):
        table.add_column(column)
    for row in rows:
        wait = row["oldest_wait_s"]
        table.add_row(
            str(row["priority"]),
            str(row["depth"]),
            "-" if wait is None else f"{wait:.1f}s",
            f"{row['ttl_s']:g}s",
        )
    out.print(table)


async def _read(settings: Settings) -> dict[str, Any]:
    async with opened_store(settings) as store:
        stats = await store.queue_stats()
    ttl = settings.control.queue.ttl
    return queue_json(stats, {p: getattr(ttl, p) for p in PRIORITY_RANK}, SYSTEM_CLOCK.now())
