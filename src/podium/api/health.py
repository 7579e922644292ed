"""Probes and fleet state: `/healthz` (alive), `/readyz` (the store answers), `/v1/workers`.

Probe bodies name no URL or error detail: the log has those, a probe is often public.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES
from podium.events import utc_iso
from podium.store.records import FORGOTTEN_AFTER_S, WorkerInfo

router = APIRouter(tags=["health"], responses=ERROR_RESPONSES)
log = structlog.get_logger("podium.api")

READY_TIMEOUT_S = 2.0  # well under a Kubernetes probe's default 1-10 s period
ALIVE_AFTER_S = 10.0  # a worker silent for longer is listed as lost (as `podium workers`)


@router.get("/healthz")
async def healthz(engine: EngineDep) -> JSONResponse:
    """200 while the process can do its job. After a failed commit or a background duty's
    unexpected exception the engine stops for good (its runs wait in the store for
    recovery), so only a restart helps: 503 asks for one."""
    if engine.failure is not None:
        cause = "a store failure" if engine.journal.failure else "a background duty failed"
        reason = f"the engine stopped after {cause}; a restart recovers its runs"
        return JSONResponse({"status": "failed", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(engine: EngineDep) -> JSONResponse:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await engine.store.list_runs(limit=1)
    except Exception as exc:  # whatever it is, this replica cannot serve right now
        log.warning("readiness check failed", error=type(exc).__name__)
        return JSONResponse(
            {"status": "unavailable", "reason": "the store does not answer"}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@router.get("/v1/workers")
async def workers(
    engine: EngineDep, principal: Annotated[Principal, permit(Permission.SYSTEM_READ)]
) -> dict[str, list[dict[str, Any]]]:
    now = engine.clock.now()
    listed = await engine.store.list_workers(seen_since=now - FORGOTTEN_AFTER_S)
    return {"workers": [_worker(w, now) for w in listed]}


def _worker(w: WorkerInfo, now: float) -> dict[str, Any]:
    lost = w.state != "stopped" and now - w.heartbeat_at >= ALIVE_AFTER_S
    return {
        "worker_id": w.worker_id, "host": w.host, "pid": w.pid,
        "state": "lost" if lost else w.state, "concurrency": w.concurrency, "active": w.active,
        "started_at": utc_iso(w.started_at), "heartbeat_at": utc_iso(w.heartbeat_at),
    }
