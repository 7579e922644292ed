"""Who waits for what and who holds what, as each engine publishes it for deadlock detection:
one row per engine holding its current view (JSON), expiring unless published again.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

import orjson

WAIT_VIEW_COLS = "holder, view, expires_at"

# Child run ids are derived from the parent step's idempotency key, so a retried or recovered
# step finds its child again (engine/host.py) and a deadlock check can tell which step waits
# for which child (control/deadlocks.py).
_CHILD_NAMESPACE = uuid.UUID("6f1c7a3e-5d0b-4c41-9b7e-0d3c2f6a9e11")


def step_key(run_id: str, step_id: str, index: int) -> str:
    """A step instance's idempotency key: `run/step`, or `run/step/index` for a for_each one."""
    base = f"{run_id}/{step_id}"
    return base if index < 0 else f"{base}/{index}"


def child_run_id(idempotency_key: str) -> str:
    """The id of the child run that the `workflow` step with this idempotency key starts."""
    return str(uuid.uuid5(_CHILD_NAMESPACE, idempotency_key))


@dataclass(frozen=True, slots=True)
class WaitRecord:
    """One step instance holding (`holds`) or waiting for (not `holds`) `amount` of a pool
    since `since`; `kind` is the step's action kind (a `workflow` step waits for its child)."""

    run_id: str
    step_id: str
    index: int
    workflow: str
    kind: str
    pool: str
    holds: bool
    amount: float
    capacity: float
    since: float


@dataclass(frozen=True, slots=True)
class RunLink:
    """An unfinished child run and its parent (`runs.parent_run_id`)."""

    run_id: str
    parent_run_id: str
    workflow: str
    created_at: float


def encode_view(records: list[WaitRecord]) -> bytes:
    return orjson.dumps([asdict(r) for r in records])


def decode_view(blob: bytes) -> list[WaitRecord]:
    items: list[dict[str, Any]] = orjson.loads(blob)
    return [WaitRecord(**item) for item in items]
