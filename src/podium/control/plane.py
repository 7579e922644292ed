"""The control plane of one engine: its guards, in the order a call must pass them.

Built from the operator's ControlConfig; with nothing configured it has no guards at all.
"""

from __future__ import annotations

from podium.control.config import ControlConfig
from podium.control.guard import Emit, Guard
from podium.store.base import Store


class ControlPlane:
    def __init__(self, config: ControlConfig, store: Store, owner: str, emit: Emit) -> None:
        self.config = config
        self.store = store
        self.owner = owner  # the engine's id: holder of its reservations in the store
        self.emit = emit
        # Order matters: refuse cheaply (budget, open circuit) before waiting in line.
        self.guards: list[Guard] = []

    async def start(self) -> None:
        """Loads shared state before the first call."""

    async def tick(self) -> None:
        """Every poll interval: refresh shared state, renew and hand back reservations."""

    async def close(self) -> None:
        """On shutdown: hands back everything this engine holds."""
