"""The event envelope of DESIGN §5: one record per state change, stored then published.

Events are frozen dataclasses; `to_json` is the wire and storage form.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EVENT_VERSION = 1


def new_id() -> str:
    """A time-ordered UUID (v7 layout): ids sort by creation, which keeps B-tree inserts local."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms << 80)
        | (0x7 << 76)
        | ((rand >> 64) & 0xFFF) << 64
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    event_type: str  # domain.entity.action, e.g. agent.task.completed
    correlation_id: str  # the run id
    payload: dict[str, Any] = field(default_factory=dict)
    causation_id: str | None = None
    source: str = "podium.engine"
    priority: str = "normal"
    timestamp: float = field(default_factory=time.time)
    event_id: str = field(default_factory=new_id)
    version: int = EVENT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "timestamp": utc_iso(self.timestamp),
            "version": self.version,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "source": self.source,
            "priority": self.priority,
            "payload": self.payload,
        }
