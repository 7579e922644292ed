"""`podium pause workflow|agent NAME` and `podium resume ...`: the operator's brake.

New steps of a paused workflow or agent wait (status `ready`); in-flight ones finish.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from podium.cli.common import StoreOption, guarded, note, opened_store, run_async, settings_for
from podium.settings import Settings

Scope = Annotated[Literal["workflow", "agent"], typer.Argument(help="workflow or agent")]
Name = Annotated[str, typer.Argument(help="The workflow's or agent's name")]


@guarded
def pause_command(scope: Scope, name: Name, store: StoreOption = None) -> None:
    """Stop new steps of a workflow or an agent from starting (in-flight ones finish)."""
    run_async(_set(settings_for(store, None), scope, name, paused=True))


@guarded
def resume_command(scope: Scope, name: Name, store: StoreOption = None) -> None:
    """Let new steps of a paused workflow or agent start again."""
    run_async(_set(settings_for(store, None), scope, name, paused=False))


async def _set(settings: Settings, scope: str, name: str, *, paused: bool) -> None:
    async with opened_store(settings) as store:
        changed = await store.set_paused(scope, name, paused)
    state = "paused" if paused else "resumed"
    already = "" if changed else " (it already was)"
    note(f"{scope} {name} {state}{already}; engines apply it within their poll interval")
