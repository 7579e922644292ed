"""`podium queue`: queued runs per priority, the oldest wait, and each priority's TTL.

Reads the store, so it shows every engine's and worker's queue (DESIGN §3.7).
"""

from __future__ import annotations

import time

from rich.table import Table

from podium.bus.events import utc_iso
from podium.cli.common import (
    JsonOption,
    StoreOption,
    guarded,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.model.workflow import PRIORITY_RANK
from podium.settings import Settings


@guarded
def queue_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """Show queue depth and oldest wait per priority, with the queue TTLs."""
    run_async(_show(settings_for(store, None), json_output))


async def _show(settings: Settings, json_output: bool) -> None:
    async with opened_store(settings) as store:
        stats = {s.priority: s for s in await store.queue_stats()}
    now = time.time()
    ttl = settings.control.queue.ttl
    rows = []
    for priority in PRIORITY_RANK:
        stat = stats.get(priority)
        oldest = stat.oldest_created_at if stat is not None else None
        rows.append(
            {
                "priority": priority,
                "depth": stat.depth if stat is not None else 0,
                "oldest_queued_at": utc_iso(oldest) if oldest is not None else None,
                "oldest_wait_s": round(now - oldest, 3) if oldest is not None else None,
                "ttl_s": getattr(ttl, priority),
            }
        )
    if json_output:
        print_json({"priorities": rows})
        return
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
