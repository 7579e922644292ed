"""`podium spend` (what was spent, grouped) and `podium budgets` (each scope against its limit).

Both read the spend ledger in the store, so they show every engine's and worker's spend.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from podium.cli.client import client_for
from podium.cli.common import (
    JsonOption,
    ServerOption,
    StoreOption,
    UsageProblem,
    guarded,
    note,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.control.budgets import money, windows_of
from podium.model.units import parse_duration
from podium.settings import Settings
from podium.store.documents import budget_json, sorted_spend, spend_json
from podium.store.spend import SPEND_GROUPS, ScopeUsage

ByOption = Annotated[
    str,
    typer.Option("--by", help=f"Group by {', '.join(SPEND_GROUPS)}", show_default=True),
]
SinceOption = Annotated[
    str, typer.Option("--since", help="How far back: 30m, 24h, 7d...", show_default=True)
]
WorkflowOption = Annotated[
    str | None, typer.Option("--workflow", metavar="NAME", help="Only this workflow's spend")
]


@guarded
def spend_command(
    by: ByOption = "workflow",
    since: SinceOption = "24h",
    workflow: WorkflowOption = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
    server: ServerOption = None,
) -> None:
    """Show what steps cost (USD, tokens, calls) from the spend ledger, grouped."""
    if by not in SPEND_GROUPS:
        raise UsageProblem(f"--by: choose one of {', '.join(SPEND_GROUPS)} (got {by!r})")
    try:
        since_s = parse_duration(since)
    except ValueError as exc:
        raise UsageProblem(f"--since: {exc}") from None
    client = client_for(server)
    if client is not None:
        with client:
            params = {"by": by, "since": since, "workflow": workflow}
            document: dict[str, Any] = client.get("/v1/spend", params)
    else:
        start = SYSTEM_CLOCK.now() - since_s
        document = run_async(_report(settings_for(store, None), by, start, workflow))
    if json_output:
        print_json(document)
    elif document["groups"]:
        out.print(_report_table(by, document["groups"]))
    else:
        note(f"nothing was spent in the last {since}")


async def _report(
    settings: Settings, by: str, since: float, workflow: str | None
) -> dict[str, Any]:
    async with opened_store(settings) as store:
        groups = await store.spend_report(by, since, workflow)
    return spend_json(by, since, workflow, sorted_spend(groups, by))


def _report_table(by: str, groups: list[dict[str, Any]]) -> Table:
    table = Table(title="spend")
    for column in (by, "usd", "of it estimated", "tokens in", "tokens out", "calls"):
        table.add_column(column, justify="left" if column == by else "right")
    for g in groups:
        table.add_row(g["key"] or "-", money(g["usd"]), money(g["estimated_usd"]),
                      str(g["tokens"]["input"]), str(g["tokens"]["output"]), str(g["calls"]))
    return table


@guarded
def budgets_command(
    json_output: JsonOption = False, store: StoreOption = None, server: ServerOption = None
) -> None:
    """Show each budget scope of podium.toml: limit, spent in its rolling window, held by
    calls in flight, what remains, and the action at the limit."""
    client = client_for(server)
    if client is not None:
        with client:
            rows: list[dict[str, Any]] = client.get("/v1/budgets")["scopes"]
    else:
        settings = settings_for(store, None)
        budgets = settings.control.budgets
        rows = [
            budget_json(u, budgets.warn_at, budgets.action) for u in run_async(_usage(settings))
        ]
    if json_output:
        print_json({"scopes": rows})
    elif rows:
        out.print(_scopes_table(rows))
    else:
        note("no budgets are configured (podium.toml [budgets]); run budgets come with workflows")


async def _usage(settings: Settings) -> list[ScopeUsage]:
    scopes = windows_of(settings.control.budgets)
    if not scopes:
        return []
    async with opened_store(settings) as store:
        return await store.budget_usage(scopes)


def _scopes_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="budgets (rolling windows)")
    for column in ("scope", "limit", "spent", "held", "remaining", "action"):
        table.add_column(column, justify="left" if column in ("scope", "action") else "right")
    for row in rows:
        table.add_row(
            str(row["scope"]),
            money(row["limit_usd"]),
            money(row["spent_usd"]),
            money(row["held_usd"]),
            money(row["remaining_usd"]),
            str(row["action"]),
        )
    return table
