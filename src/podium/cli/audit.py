"""`podium audit verify | list | head`: check and read the hash-chained audit log in the store.

`verify` names the first edited, deleted, inserted or reordered entry and exits 1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer

from podium.cli.common import (
    EXIT_FAILED,
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
from podium.cli.render import clip, new_table
from podium.clock import SYSTEM_CLOCK
from podium.events import utc_iso
from podium.model.units import parse_duration
from podium.settings import Settings
from podium.store.audit import Verdict, entry_json, verify
from podium.store.base import Store
from podium.store.records import AuditEntry, AuditHead

audit_app = typer.Typer(
    help="The audit log: every state change and API action, chained by hash.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
PAGE = 1000


@audit_app.command("verify")
@guarded
def verify_command(
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", metavar="HASH",
                     help="A head hash kept elsewhere (`podium audit head`): the chain must"
                     " still contain it, so history was not cut short"),
    ] = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Check every link of the chain; exit 1 naming the first bad entry."""
    verdict, found, anchor = run_async(_verify(settings_for(store, None), expect_head))
    problem = verdict.problem
    if problem is None and expect_head is not None and not found:
        problem = f"the chain does not contain the expected head {expect_head}: it was rewritten"
        if anchor.seq:
            problem += f" (or pruned by retention: the chain now starts after entry {anchor.seq})"
    if json_output:
        print_json({"ok": problem is None, "entries": verdict.checked,
                    "head_hash": verdict.head_hash, "problem": problem,
                    "bad_seq": verdict.bad_seq, "anchor_seq": anchor.seq})
    elif problem is None:
        since = f", from the retention anchor at entry {anchor.seq}" if anchor.seq else ""
        out.print(f"audit chain intact: {verdict.checked} entries{since},"
                  f" head {verdict.head_hash}")
    else:
        note(f"audit chain broken: {problem}")
    if problem is not None:
        raise typer.Exit(EXIT_FAILED)


async def _verify(
    settings: Settings, expect_head: str | None
) -> tuple[Verdict, bool, AuditHead]:
    async with opened_store(settings) as store:
        verdict, found, anchor = await _verify_once(store, expect_head)
        if not verdict.ok and await store.audit_anchor() != anchor:
            # Retention pruned the chain's start meanwhile: look again from the new anchor.
            verdict, found, anchor = await _verify_once(store, expect_head)
    return verdict, found, anchor


async def _verify_once(
    store: Store, expect_head: str | None
) -> tuple[Verdict, bool, AuditHead]:
    found = [False]
    anchor = await store.audit_anchor()
    head = await store.audit_head()
    found[0] = anchor.seq > 0 and anchor.hash == expect_head

    async def entries() -> AsyncIterator[AuditEntry]:
        async for entry in _all(store):
            found[0] = found[0] or entry.hash == expect_head
            yield entry

    return await verify(entries(), head, anchor), found[0], anchor


async def _all(store: Store) -> AsyncIterator[AuditEntry]:
    after = 0
    while page := await store.audit_entries(after, PAGE):
        for entry in page:
            yield entry
        after = page[-1].seq


@audit_app.command("list")
@guarded
def list_command(
    actor: Annotated[str | None, typer.Option("--actor", help="Entries whose actor starts so, "
                                             "e.g. key:3f2a or cli:")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Entries of this run")] = None,
    since: Annotated[str | None, typer.Option("--since", help="How far back: 30m, 24h, 7d")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 100,
    json_output: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List audit entries, oldest first."""
    start = None
    if since is not None:
        try:
            start = SYSTEM_CLOCK.now() - parse_duration(since)
        except ValueError as exc:
            raise UsageProblem(f"--since: {exc}") from None
    entries = run_async(_list(settings_for(store, None), actor, run_id, start, limit))
    if json_output:
        print_json({"entries": [entry_json(e) for e in entries]})
        return
    table = new_table("audit", ["seq", "time (UTC)", "actor", "event", "run", "details"],
                      right=("seq",))
    for entry in entries:
        event = entry.event
        table.add_row(str(entry.seq), utc_iso(event.timestamp)[:23], event.actor,
                      event.event_type, event.correlation_id, clip(_details(event.payload), 60))
    out.print(table)


def _details(payload: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in payload.items() if v is not None)


async def _list(
    settings: Settings, actor: str | None, run_id: str | None, since: float | None, limit: int
) -> list[AuditEntry]:
    async with opened_store(settings) as store:
        return await store.audit_entries(0, limit, actor=actor, run_id=run_id, since=since)


@audit_app.command("head")
@guarded
def head_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """Print the newest entry's hash: keep it elsewhere to prove later that no history was
    cut off (`podium audit verify --expect-head HASH`)."""
    head = run_async(_head(settings_for(store, None)))
    if json_output:
        print_json({"seq": head.seq, "hash": head.hash})
    else:
        out.print(f"{head.seq} {head.hash}")


async def _head(settings: Settings) -> AuditHead:
    async with opened_store(settings) as store:
        return await store.audit_head()
