"""Event transport: in-process (embedded) or Redis Streams (distributed).

Both sit behind the same `Bus` interface; `open_bus(url)` picks one by the URL's scheme.
"""

from __future__ import annotations

from podium.bus.base import Bus, Dispatch
from podium.errors import PodiumError


def open_bus(url: str = "memory://") -> Bus:
    """The bus for a URL; backends are imported lazily so the embedded path needs no extras."""
    if url.startswith("memory:"):
        from podium.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from podium.bus.redis import RedisBus

        return RedisBus(url)
    raise PodiumError(
        f"unsupported bus URL {url.split('://')[0]}://; use memory:// or redis://host:port/db"
    )


__all__ = ["Bus", "Dispatch", "open_bus"]
