"""`podium pause workflow|agent NAME` and `podium resume ...`: the operator's brake.

New steps of a paused workflow or agent wait (status `ready`); in-flight ones finish.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

import typer

from podium.cli.client import client_for
from podium.cli.common import (
    ServerOption,
    StoreOption,
    guarded,
    local_actor,
    note,
    opened_store,
    run_async,
    settings_for,
)
from podium.events import audit_event
from podium.settings import Settings

Scope = Annotated[Literal["workflow", "agent"], typer.Argument(help="workflow or agent")]
Name = Annotated[str, typer.Argument(help="The workflow's or agent's name")]


@guarded
def pause_command(
    scope: Scope, name: Name, store: StoreOption = None, server: ServerOption = None
) -> None:
    """Stop new steps of a workflow or an agent from starting (in-flight ones finish)."""
    _set(store, server, scope, name, paused=True)


@guarded
def resume_command(
    scope: Scope, name: Name, store: StoreOption = None, server: ServerOption = None
) -> None:
    """Let new steps of a paused workflow or agent start again."""
    _set(store, server, scope, name, paused=False)


def _set(store: str | None, server: str | None, scope: str, name: str, *, paused: bool) -> None:
    client = client_for(server)
    if client is not None:
        path = f"/v1/pauses/{scope}/{quote(name, safe='')}"
        with client:
            document = client.put(path) if paused else client.delete(path)
        changed = bool(document["changed"])
    else:
        changed = run_async(_store_set(settings_for(store, None), scope, name, paused=paused))
    state = "paused" if paused else "resumed"
    already = "" if changed else " (it already was)"
    note(f"{scope} {name} {state}{already}; engines apply it within their poll interval")


async def _store_set(settings: Settings, scope: str, name: str, *, paused: bool) -> bool:
    async with opened_store(settings) as store:
        action = "pause.set" if paused else "pause.clear"
        audit = audit_event(local_actor(), action, f"{scope}:{name}")
        return await store.set_paused(scope, name, paused, audit=audit)
