"""The event envelope of DESIGN §5: one record per state change, stored then published.

Events are frozen dataclasses; `to_json` is the wire and storage form.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EVENT_VERSION = 1
_rng = random.Random()  # seeded from os.urandom; a forked child reseeds its copy
_bits = _rng.getrandbits
os.register_at_fork(after_in_child=_rng.seed)


def new_id() -> str:
    """A time-ordered UUID (v7 layout): ids sort by creation, which keeps B-tree inserts local.

    Ids need uniqueness, not secrecy, so the fast Mersenne generator is enough here.
    """
    ms = time.time_ns() // 1_000_000
    value = (ms << 80) | (0x7 << 76) | (_bits(12) << 64) | (0b10 << 62) | _bits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
