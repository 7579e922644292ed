"""`GET /metrics`: the Prometheus text format of this process's engine and the store's state.

Needs `metrics:read` (role `metrics` and up); `[metrics] auth` may open it to loopback or all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from podium.api.auth import METRICS_PATH, Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES
from podium.observe.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["metrics"], responses=ERROR_RESPONSES)


@router.get(METRICS_PATH, response_class=Response)
async def metrics(
    engine: EngineDep, principal: Annotated[Principal, permit(Permission.METRICS_READ)]
) -> Response:
    """Counters and histograms of the runs this process ran; queue, workers, circuits,
    budgets and desired workers read from the store (at most once a second). `podium serve`
    attaches the metrics when it starts; an app made otherwise counts from the first scrape."""
    body = await Metrics.attach(engine).exposition()
    return Response(body, media_type=CONTENT_TYPE)
