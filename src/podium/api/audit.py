"""`/v1/audit`: the hash-chained audit log, read over the API (`audit:read`, admins).

Entries come oldest first from `after_seq`; `/v1/audit/head` is the chain's newest link.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES
from podium.store.audit import entry_json

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=ERROR_RESPONSES)
AuditReader = Annotated[Principal, permit(Permission.AUDIT_READ)]
MAX_LIST = 1000
MAX_SEQ = 2**62  # a sequence number both stores can hold (a 64-bit integer)


@router.get("")
async def list_audit(
    engine: EngineDep,
    principal: AuditReader,
    actor: Annotated[str | None, Query(description="actor labels starting so: key:3f2a")] = None,
    run_id: str | None = None,
    since: Annotated[str | None, Query(description="ISO 8601 time, e.g. 2026-01-31T12:00:00Z")]
    = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    entries = await engine.store.audit_entries(
        after_seq, limit, actor=actor, run_id=run_id, since=_timestamp(since)
    )
    return {"entries": [entry_json(e) for e in entries]}


def _timestamp(since: str | None) -> float | None:
    if since is None:
        return None
    try:
        return datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise RequestValidationError([{
            "loc": ("query", "since"), "type": "value_error",
            "msg": "not an ISO 8601 time; use e.g. 2026-01-31T12:00:00Z",
        }]) from None


@router.get("/head")
async def audit_head(engine: EngineDep, principal: AuditReader) -> dict[str, Any]:
    """Keep this hash elsewhere: `podium audit verify --expect-head` proves nothing was cut."""
    head = await engine.store.audit_head()
    return {"seq": head.seq, "hash": head.hash}
