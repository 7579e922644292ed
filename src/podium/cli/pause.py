"""`podium pause workflow|agent NAME`, `podium resume ...` and `podium pause list`: the brake.

New steps of a paused workflow or agent wait (status `ready`); in-flight ones finish.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

import typer

from podium.cli.client import client_for
from podium.cli.common import (
    JsonOption,
    ServerOption,
    StoreOption,
    UsageProblem,
    guarded,
    local_actor,
    note,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.events import audit_event
from podium.settings import Settings
from podium.store.documents import pauses_json

Scope = Annotated[Literal["workflow", "agent"], typer.Argument(help="workflow or agent")]
Name = Annotated[str, typer.Argument(help="The workflow's or agent's name")]
PauseScope = Annotated[
    Literal["workflow", "agent", "list"],
    typer.Argument(help="workflow or agent (then NAME), or list: what is paused now"),
]


@guarded
def pause_command(
    scope: PauseScope,
    name: Annotated[str | None, typer.Argument(help="The workflow's or agent's name")] = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
    server: ServerOption = None,
) -> None:
    """Stop new steps of a workflow or an agent from starting (in-flight ones finish);
    `podium pause list` shows what is paused."""
    if scope == "list":
        if name is not None:
            raise UsageProblem(f"`podium pause list` takes no name (got {name!r})")
        _list(store, server, json_output)
        return
    if name is None:
        raise UsageProblem(f"`podium pause {scope}` needs the {scope}'s name")
    _set(store, server, scope, name, paused=True)


def _list(store: str | None, server: str | None, json_output: bool) -> None:
    client = client_for(server)
    if client is not None:
        with client:
            document: dict[str, Any] = client.get("/v1/pauses")
    else:
        document = run_async(_store_list(settings_for(store, None)))
    if json_output:
        print_json(document)
        return
    pauses = document["pauses"]
    if not pauses:
        note("nothing is paused")
        return
    for pause in pauses:
        out.print(f"{pause['scope']} {pause['name']}", markup=False, highlight=False)


async def _store_list(settings: Settings) -> dict[str, Any]:
    async with opened_store(settings) as store:
        return pauses_json(await store.list_paused())


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
