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
