"""`podium spend` (what was spent, grouped) and `podium budgets` (each scope against its limit).

Both read the spend ledger in the store, so they show every engine's and worker's spend.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from podium.bus.events import utc_iso
from podium.cli.common import (
    JsonOption,
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
from podium.control.budgets import money, scope_title, windows_of
from podium.model.units import parse_duration
from podium.settings import Settings
from podium.store.spend import SPEND_GROUPS, ScopeUsage, SpendGroup

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
) -> None:
    """Show what steps cost (USD, tokens, calls) from the spend ledger, grouped."""
    if by not in SPEND_GROUPS:
        raise UsageProblem(f"--by: choose one of {', '.join(SPEND_GROUPS)} (got {by!r})")
    try:
        since_s = parse_duration(since)
    except ValueError as exc:
        raise UsageProblem(f"--since: {exc}") from None
    start = time.time() - since_s
    groups = run_async(_report(settings_for(store, None), by, start, workflow))
    if json_output:
        print_json(_report_json(by, start, workflow, groups))
    elif groups:
        out.print(_report_table(by, groups))
    else:
        note(f"nothing was spent in the last {since}")


async def _report(
    settings: Settings, by: str, since: float, workflow: str | None
) -> list[SpendGroup]:
    async with opened_store(settings) as store:
        groups = await store.spend_report(by, since, workflow)
    if by in ("day", "hour"):
        return sorted(groups, key=lambda g: g.key)
    return sorted(groups, key=lambda g: (-g.usd, g.key))


def _group_json(group: SpendGroup) -> dict[str, Any]:
    return {
        "usd": round(group.usd, 9),
        "tokens": {"input": group.tokens_in, "output": group.tokens_out},
        "calls": group.calls,
    }


def _report_json(
    by: str, since: float, workflow: str | None, groups: list[SpendGroup]
) -> dict[str, Any]:
    total = SpendGroup(
        "total",
        sum(g.usd for g in groups),
        sum(g.tokens_in for g in groups),
        sum(g.tokens_out for g in groups),
        sum(g.calls for g in groups),
    )
    return {
        "by": by,
        "since": utc_iso(since),
        "workflow": workflow,
        "groups": [{"key": g.key, **_group_json(g)} for g in groups],
        "total": _group_json(total),
    }


def _report_table(by: str, groups: list[SpendGroup]) -> Table:
    table = Table(title="spend")
    for column in (by, "usd", "tokens in", "tokens out", "calls"):
        table.add_column(column, justify="left" if column == by else "right")
    for g in groups:
        table.add_row(g.key or "-", money(g.usd), str(g.tokens_in), str(g.tokens_out),
                      str(g.calls))
    return table


@guarded
def budgets_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """Show each budget scope of podium.toml: limit, spent in its rolling window, held by
    calls in flight, what remains, and the action at the limit."""
    settings = settings_for(store, None)
    rows = [_scope_json(u, settings) for u in run_async(_usage(settings))]
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


def _scope_json(usage: ScopeUsage, settings: Settings) -> dict[str, Any]:
    scope, budgets = usage.scope, settings.control.budgets
    return {
        "scope": scope.scope,
        "title": scope_title(scope),
        "window_s": scope.window_s,
        "limit_usd": scope.limit_usd,
        "spent_usd": round(usage.spent_usd, 9),
        "held_usd": round(usage.held_usd, 9),
        "remaining_usd": round(max(scope.limit_usd - usage.spent_usd - usage.held_usd, 0.0), 9),
        "warn_at": budgets.warn_at,
        "action": budgets.action,
    }


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
