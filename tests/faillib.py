"""Step bodies that fail inside helpers, for the failure-detail tests (engine, API, CLI)."""

from __future__ import annotations

from typing import Any


def _parse_amount(text: str) -> float:
    return float(text)  # ValueError for "twelve"


async def parse_order(amount: str) -> Any:
    return {"amount": _parse_amount(amount)}


def _login(token: str) -> None:
    raise PermissionError(f"token {token} was rejected")


async def call_service(token: str) -> Any:
    try:
        _login(token)
    except PermissionError as exc:
        raise RuntimeError(f"the service refused {token}") from exc


async def break_control_upkeep(seconds: float = 30.0) -> Any:
    """Makes the engine's control upkeep (a background duty) raise, then waits: the engine
    must stop and tell whoever waits for this run."""
    import asyncio

    from podium.control.plane import ControlPlane

    async def broken(self: ControlPlane) -> None:
        raise ZeroDivisionError("upkeep divided by zero")

    ControlPlane.tick = broken  # type: ignore[method-assign]
    await asyncio.sleep(seconds)
    return None
