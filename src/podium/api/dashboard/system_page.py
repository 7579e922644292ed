"""The system page: queues, workers, circuits, pauses, resource pools and rate buckets,
budgets and spend (charts), schedules and the dead-letter queue, from the API's own handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from podium.api import circuits, dlq, health, pauses, schedules, system
from podium.api.auth import Permission, Principal, permit
from podium.api.dashboard.gate import PREFIX
from podium.api.dashboard.render import page
from podium.api.deps import EngineDep
from podium.engine.engine import Engine

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Reader = Annotated[Principal, permit(Permission.SYSTEM_READ)]
CHART_W, BAR_H = 420, 18
SPEND_BY = ("day", "model", "workflow")
GONE_AFTER_S = 3600.0  # a lost worker is greyed, then left out once silent this long


@dataclass(frozen=True)
class ChartBar:
    label: str
    value: float
    y: int
    width: float


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[ChartBar]
    height: int
    total: float


def chart(title: str, groups: list[dict[str, Any]], limit: int = 14) -> Chart:
    """Horizontal bars of `usd` per group key (the newest days, the biggest others)."""
    shown = groups[-limit:] if title == "day" else groups[:limit]
    top = max((g["usd"] for g in shown), default=0.0) or 1.0
    bars = [ChartBar(str(g["key"]), g["usd"], 4 + i * (BAR_H + 4), CHART_W * g["usd"] / top)
            for i, g in enumerate(shown)]
    return Chart(title, bars, 8 + len(bars) * (BAR_H + 4), sum(g["usd"] for g in groups))


async def _spend(engine: Engine, principal: Principal) -> list[Chart]:
    charts = []
    for by in SPEND_BY:
        report = await system.spend(engine, principal, by=by, since="30d", workflow=None)  # type: ignore[arg-type]
        charts.append(chart(by, report.get("groups", [])))
    return charts


async def _workers(engine: Engine, principal: Principal) -> list[dict[str, Any]]:
    """Running and lost workers; stopped ones and those lost long ago are gone."""
    now = engine.clock.now()
    heard = {w.worker_id: w.heartbeat_at for w in await engine.store.list_workers()}
    shown = (await health.workers(engine, principal))["workers"]
    return [w for w in shown if w["state"] != "stopped"
            and now - heard.get(w["worker_id"], now) < GONE_AFTER_S]


async def _pools(engine: Engine) -> dict[str, Any]:
    now = engine.clock.now()
    shares = await engine.store.list_shares()
    buckets = await engine.store.list_buckets()
    return {
        "shares": [{"pool": s.pool, "holder": s.holder, "share": s.amount, "in_use": s.in_use,
                    "wanted": s.wanted} for s in shares],
        "buckets": [{"key": b.key, "level": round(b.level_at(now), 3)} for b in buckets],
    }


@router.get("/system", response_class=HTMLResponse)
async def system_page(request: Request, engine: EngineDep, principal: Reader) -> HTMLResponse:
    return page(
        request, "system.html",
        queue=await system.queue(engine, principal),
        workers=await _workers(engine, principal),
        circuits=(await circuits.list_circuits(engine, principal))["circuits"],
        pauses=(await pauses.list_pauses(engine, principal))["pauses"],
        pools=await _pools(engine),
        budgets=(await system.budgets(engine, principal))["scopes"],
        spend=await _spend(engine, principal),
        schedules=await schedules.list_schedules(engine, principal),
        dlq=await dlq.list_dlq(engine, principal, limit=100),
        chart_w=CHART_W, bar_h=BAR_H,
    )
