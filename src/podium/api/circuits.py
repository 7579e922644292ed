"""`/v1/circuits`: the circuit breakers every engine shares; an operator may force one.

Keys may hold `:` and `/` (`http:api.example.com/v1`), hence the path converter.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from podium.api.auth import Permission, Principal, permit
from podium.api.deps import EngineDep
from podium.api.errors import ERROR_RESPONSES, NotFound
from podium.control.circuits import force_circuit
from podium.engine.engine import Engine
from podium.events import audit_event
from podium.store.documents import circuit_json

router = APIRouter(prefix="/v1/circuits", tags=["circuits"], responses=ERROR_RESPONSES)

Writer = Annotated[Principal, permit(Permission.CIRCUITS_WRITE)]


@router.get("")
async def list_circuits(
    engine: EngineDep, principal: Annotated[Principal, permit(Permission.SYSTEM_READ)]
) -> dict[str, Any]:
    """`{"circuits": [...]}`, as `podium circuits --json`."""
    now = engine.clock.now()
    return {"circuits": [circuit_json(c, now) for c in await engine.store.list_circuits()]}


@router.post("/{key:path}/open")
async def open_circuit(key: str, engine: EngineDep, principal: Writer) -> dict[str, Any]:
    """Holds it open (calls go to their fallback) until closed."""
    return await _force(engine, principal, key, open_=True)


@router.post("/{key:path}/close")
async def close_circuit(key: str, engine: EngineDep, principal: Writer) -> dict[str, Any]:
    """Closes it and resets its counts; 404 for a circuit with no recorded state."""
    return await _force(engine, principal, key, open_=False)


async def _force(engine: Engine, principal: Principal, key: str, *, open_: bool) -> dict[str, Any]:
    action = "circuit.open" if open_ else "circuit.close"
    if not open_ and key not in {c.key for c in await engine.store.list_circuits()}:
        raise NotFound(f"no circuit {key!r} has recorded state (it is closed); GET /v1/circuits")
    audit = audit_event(principal.actor, action, key)
    result = await force_circuit(
        engine.store, key, open_=open_, source="podium.api", audit=audit
    )
    record = result.circuit
    return {
        "circuit": circuit_json(record, engine.clock.now()) if record is not None else None,
        "changed": result.transition is not None,
    }
