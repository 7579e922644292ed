"""`podium keys create | list | revoke`: API keys, made and revoked where the store is reachable.

A key is printed once, when it is made; the store keeps only a salted hash of it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from podium.api.keys import new_key
from podium.api.roles import ROLES
from podium.cli.common import (
    JsonOption,
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
from podium.cli.render import new_table
from podium.clock import SYSTEM_CLOCK
from podium.errors import PodiumError
from podium.events import Event, audit_event
from podium.model.units import parse_duration
from podium.settings import Settings
from podium.store.documents import key_json
from podium.store.records import ApiKeyRecord

keys_app = typer.Typer(
    help="API keys for `podium serve`: create (printed once), list, revoke.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)


@keys_app.command("create")
@guarded
def create_command(
    name: Annotated[str, typer.Option("--name", help="Who or what holds the key")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}")],
    scope: Annotated[str | None, typer.Option(
        "--scope", metavar="PATTERN", help="Only workflows whose name matches, e.g. 'team-a-*'"
    )] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", metavar="DURATION", help="Stop working after this long: 90d, 12h"
    )] = None,
    json_output: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Create a key and print it, this once."""
    expires_s = _expiry(expires)
    if role not in ROLES:
        raise UsageProblem(f"--role: unknown role {role!r}; use one of {', '.join(ROLES)}")
    if not name.strip():
        raise UsageProblem("--name: give the key a name")
    actor = local_actor()
    token, record = new_key(name, role, scope, expires_s, SYSTEM_CLOCK.now(), actor.label)
    audit = audit_event(actor, "key.create", record.key_id, name=name, role=role, scope=scope)
    run_async(_add(settings_for(store, None), record, audit))
    if json_output:
        row = key_json(record)
        print_json({k: row[k] for k in ("key_id", "name", "role", "scope", "expires_at")}
                   | {"key": token})
        return
    note(f"created key {record.key_id} ({name}, {role}); it is shown once, keep it now:")
    typer.echo(token)


def _expiry(expires: str | None) -> float | None:
    if expires is None:
        return None
    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        raise UsageProblem(f"--expires: {exc}") from None
    if seconds <= 0:
        raise UsageProblem("--expires: the key would expire at once; give e.g. 90d")
    return seconds


async def _add(settings: Settings, record: ApiKeyRecord, audit: Event) -> None:
    async with opened_store(settings) as opened:
        await opened.add_key(record, audit)


@keys_app.command("list")
@guarded
def list_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """The keys: id, name, role, scope, expiry; never a key or its hash."""
    rows = [key_json(k) for k in run_async(_list(settings_for(store, None)))]
    if json_output:
        print_json({"keys": rows})
        return
    table = new_table("API keys", ["id", "name", "role", "scope", "expires", "state"])
    now_iso = _now_iso()
    for row in rows:
        state = "revoked" if row["revoked_at"] else (
            "expired" if row["expires_at"] and row["expires_at"] <= now_iso else "active")
        table.add_row(row["key_id"], row["name"], row["role"], row["scope"] or "*",
                      row["expires_at"] or "never", state)
    out.print(table)


def _now_iso() -> str:
    from podium.events import utc_iso

    return utc_iso(SYSTEM_CLOCK.now())


async def _list(settings: Settings) -> list[ApiKeyRecord]:
    async with opened_store(settings) as opened:
        return await opened.list_keys()


@keys_app.command("revoke")
@guarded
def revoke_command(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (`keys list`)")],
    store: StoreOption = None,
) -> None:
    """Revoke a key: refused from the next request on, by every server on this store."""
    audit = audit_event(local_actor(), "key.revoke", key_id)
    if not run_async(_revoke(settings_for(store, None), key_id, audit)):
        raise PodiumError(f"no unrevoked API key with id {key_id!r}; `podium keys list` shows them")
    note(f"revoked key {key_id}")


async def _revoke(settings: Settings, key_id: str, audit: Event) -> bool:
    async with opened_store(settings) as opened:
        return await opened.revoke_key(key_id, SYSTEM_CLOCK.now(), audit)
