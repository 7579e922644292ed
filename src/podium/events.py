"""The event envelope: one record per state change, stored then published.

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
SYSTEM = "system"
_node = f"{random.SystemRandom().getrandbits(48):012x}"  # this process, in every id
_clock: dict[str, Any] = {"ms": -1, "prefix": "", "seq": random.randrange(1 << 24)}


def _reseed_after_fork() -> None:
    global _node
    _node = f"{random.SystemRandom().getrandbits(48):012x}"


os.register_at_fork(after_in_child=_reseed_after_fork)


def new_id() -> str:
    """A UUIDv7: 48-bit Unix ms, a 24-bit per-process counter, then a 48-bit process id.

    Ids sort by creation (B-tree inserts stay local) and cost one format call: this runs
    twice per step, so the obvious uuid.UUID-based version showed up at 7% of engine time.
    """
    # Real time on purpose, not a Clock: ids must stay unique and sortable across processes
    # whatever clock an engine keeps (tests/test_clock.py allows it).
    ms = time.time_ns() // 1_000_000
    clock = _clock
    if ms != clock["ms"]:
        hexms = f"{ms:012x}"
        clock["ms"], clock["prefix"] = ms, f"{hexms[:8]}-{hexms[8:]}-7"
    seq = clock["seq"] = (clock["seq"] + 1) & 0xFFFFFF
    s = f"{seq:06x}"
    return f"{clock['prefix']}{s[:3]}-8{s[3:]}-{_node}"  # "8": the RFC 4122 variant bits


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, which
# showed up at 6% of the engine's time. Treat events as immutable all the same.
@dataclass(slots=True)
class Event:
    event_type: str  # domain.entity.action, e.g. agent.task.completed
    correlation_id: str  # the run id
    payload: dict[str, Any] = field(default_factory=dict)
    causation_id: str | None = None
    source: str = "podium.engine"
    priority: str = "normal"
    # When the event was recorded, on real time: a record, not timekeeping (nothing waits
    # or expires by it), so it does not follow an engine's Clock.
    timestamp: float = field(default_factory=time.time)
    event_id: str = field(default_factory=new_id)
    version: int = EVENT_VERSION
    actor: str = SYSTEM  # who caused it: `key:<id> (<name>)`, `cli:<user>@<host>` or `system`

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
            "actor": self.actor,
        }


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for an action: an API key, the local CLI user, or podium itself (`system`).

    `label` is what events carry in `actor`; the rest goes into audit entries.
    """

    id: str  # the API key's id, `cli:<user>@<host>`, or `system`
    name: str = ""  # the key's name
    role: str | None = None  # the key's role; None for the local CLI and podium itself
    client: str | None = None  # the client address of an API request

    @property
    def label(self) -> str:
        return f"key:{self.id} ({self.name})" if self.role is not None else self.id


SYSTEM_ACTOR = Actor(SYSTEM)


def audit_event(
    actor: Actor,
    action: str,
    target: str,
    outcome: str = "ok",
    *,
    run_id: str = "",
    **details: Any,
) -> Event:
    """An audit entry for an action of `actor` (`audit.<action>`, e.g. `audit.run.cancel`):
    what was asked, on what, with which outcome, from where. `run_id` files it with a run."""
    payload: dict[str, Any] = {
        "action": action, "target": target, "outcome": outcome,
        "actor_id": actor.id, "actor_name": actor.name, "role": actor.role,
        "client": actor.client, **details,
    }
    return Event(
        event_type=f"audit.{action}", correlation_id=run_id, payload=payload,
        source="podium.audit", actor=actor.label,
    )
