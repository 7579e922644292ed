"""`/v1/queue`, `/v1/spend`, `/v1/budgets`: the control layer's state, as the CLI prints it.

Each answer is the document of `podium queue|spend|budgets --json`, for every engine.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES
from podium.control.budgets import windows_of
from podium.model.units import parse_duration
from podium.model.workflow import PRIORITY_RANK
from podium.store.documents import budget_json, queue_json, sorted_spend, spend_json

router = APIRouter(prefix="/v1", tags=["system"], responses=ERROR_RESPONSES)

Reader = Annotated[Principal, permit(Permission.SYSTEM_READ)]
SpendBy = Literal["workflow", "model", "run", "day", "hour"]


@router.get("/queue")
async def queue(engine: EngineDep, principal: Reader) -> dict[str, Any]:
    """Queued runs per priority, the oldest wait, and each priority's TTL."""
    ttl = engine.settings.control.queue.ttl
    stats = await engine.store.queue_stats()
    return queue_json(stats, {p: getattr(ttl, p) for p in PRIORITY_RANK}, engine.clock.now())


MAX_SINCE_S = 100 * 365 * 86400.0  # further back than any ledger: a date still formats


@router.get("/spend")
async def spend(
    engine: EngineDep,
    principal: Reader,
    by: SpendBy = "workflow",
    since: Annotated[str, Query(description="How far back: 30m, 24h, 7d...")] = "24h",
    workflow: str | None = None,
) -> dict[str, Any]:
    """What steps cost, grouped `by`, over the last `since`."""
    try:
        window_s = parse_duration(since)
        if window_s > MAX_SINCE_S:
            raise ValueError(f"at most {MAX_SINCE_S // 86400:.0f} days back (got {since!r})")
        start = engine.clock.now() - window_s
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "since"), "type": "value_error", "msg": str(exc)}]
        ) from None
    groups = await engine.store.spend_report(by, start, workflow)
    return spend_json(by, start, workflow, sorted_spend(groups, by))


@router.get("/budgets")
async def budgets(engine: EngineDep, principal: Reader) -> dict[str, Any]:
    """Each configured budget scope against its limit, over its rolling window."""
    config = engine.settings.control.budgets
    scopes = windows_of(config)
    usage = await engine.store.budget_usage(scopes) if scopes else []
    return {"scopes": [budget_json(u, config.warn_at, config.action) for u in usage]}
