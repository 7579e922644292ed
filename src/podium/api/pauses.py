"""`/v1/pauses`: the operator's brake on a workflow or an agent (`podium pause|resume`).

New steps of a paused workflow or agent wait; in-flight ones finish. Changes are audited.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES
from podium.store.documents import pauses_json

router = APIRouter(prefix="/v1/pauses", tags=["pauses"], responses=ERROR_RESPONSES)

Scope = Literal["workflow", "agent"]
Writer = Annotated[Principal, permit(Permission.PAUSES_WRITE)]


@router.get("")
async def list_pauses(
    engine: EngineDep, principal: Annotated[Principal, permit(Permission.SYSTEM_READ)]
) -> dict[str, Any]:
    """What is paused: `{"pauses": [{"scope", "name"}]}`."""
    return pauses_json(await engine.store.list_paused())


@router.put("/{scope}/{name}")
async def pause(scope: Scope, name: str, engine: EngineDep, principal: Writer) -> dict[str, Any]:
    """Pauses it; `changed` is false if it already was."""
    changed = await engine.pause(scope, name, True, actor=principal.actor)
    return {"scope": scope, "name": name, "paused": True, "changed": changed}


@router.delete("/{scope}/{name}")
async def resume(scope: Scope, name: str, engine: EngineDep, principal: Writer) -> dict[str, Any]:
    """Lets its new steps start again; `changed` is false if it was not paused."""
    changed = await engine.pause(scope, name, False, actor=principal.actor)
    return {"scope": scope, "name": name, "paused": False, "changed": changed}
