"""`/v1/keys` (admin), `/v1/whoami`, and the OpenAPI document behind a key.

A key is shown once, in the answer that creates it; listings never hold a key or its hash.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES, KeyNotFound
from podium.api.keys import new_key
from podium.events import audit_event
from podium.model.units import parse_duration
from podium.store.documents import key_json

router = APIRouter(prefix="/v1", tags=["access"], responses=ERROR_RESPONSES)
KeysAdmin = Annotated[Principal, permit(Permission.KEYS_ADMIN)]


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    role: Literal["metrics", "viewer", "operator", "developer", "admin"]
    scope: str | None = Field(None, min_length=1, max_length=200,
                              description="a glob over workflow names, e.g. team-a-*")
    expires: str | None = Field(None, description="a duration: 90d, 12h; none: never")

    @field_validator("expires")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("the expiry must be after now")
        return value


@router.get("/keys")
async def list_keys(engine: EngineDep, principal: KeysAdmin) -> dict[str, list[dict[str, Any]]]:
    return {"keys": [key_json(k) for k in await engine.store.list_keys()]}


@router.post("/keys", status_code=201)
async def create_key(body: CreateKey, engine: EngineDep, principal: KeysAdmin) -> dict[str, Any]:
    """The new key is in `key`, this once: the store keeps only a hash of it."""
    expires_s = None if body.expires is None else parse_duration(body.expires)
    token, record = new_key(
        body.name, body.role, body.scope, expires_s, engine.clock.now(), principal.actor.label
    )
    audit = audit_event(principal.actor, "key.create", record.key_id, name=record.name,
                        role=record.role, scope=record.scope)
    await engine.store.add_key(record, audit)
    return {**key_json(record), "key": token}


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, engine: EngineDep, principal: KeysAdmin) -> dict[str, Any]:
    """Effective on the next request, in every server on this store."""
    audit = audit_event(principal.actor, "key.revoke", key_id)
    if not await engine.store.revoke_key(key_id, engine.clock.now(), audit):
        raise KeyNotFound(key_id)
    return {"key_id": key_id, "revoked": True}


@router.get("/whoami")
async def whoami(
    principal: Annotated[Principal, permit(Permission.RUNS_READ)],
) -> dict[str, Any]:
    """The caller's key: every role may ask (all hold `runs:read`)."""
    actor = principal.actor
    return {
        "key_id": actor.id, "name": actor.name, "role": principal.role,
        "scope": principal.scope, "actor": actor.label,
        "permissions": sorted(p.value for p in Permission if principal.may(p)),
    }


def add_openapi_route(app: FastAPI) -> None:
    """The schema, for any key: it tells what the API offers, which a key holder may know."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(
        request: Request, principal: Annotated[Principal, permit(Permission.RUNS_READ)]
    ) -> JSONResponse:
        return JSONResponse(request.app.openapi())
