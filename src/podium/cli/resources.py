"""`podium resources [--json]`: capacity pools (capacity, each engine's share, in use, wanted)
and rate limits (configured rate and burst, each bucket's level now), as the store holds them.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from podium.cli.common import (
    JsonOption,
    StoreOption,
    guarded,
    note,
    opened_store,
    out,
    print_json,
    run_async,
    settings_for,
)
from podium.clock import SYSTEM_CLOCK
from podium.control.admission import RESOURCES, pool_name
from podium.control.config import ControlConfig
from podium.control.limits import GLOBAL_POOL
from podium.control.ratelimit import per_minute
from podium.model.workflow import Limits
from podium.settings import Settings
from podium.store.pools import BucketLevel, PoolShare


@guarded
def resources_command(json_output: JsonOption = False, store: StoreOption = None) -> None:
    """Capacity pools and rate limits every engine shares: who holds what, and how full."""
    settings = settings_for(store, None)
    shares, buckets = run_async(_read(settings))
    document = resources_json(settings.control, shares, buckets, SYSTEM_CLOCK.now())
    if json_output:
        print_json(document)
        return
    _print(document)


async def _read(settings: Settings) -> tuple[list[PoolShare], list[BucketLevel]]:
    async with opened_store(settings) as store:
        return await store.list_shares(), await store.list_buckets()


def configured_capacities(config: ControlConfig) -> dict[str, float]:
    """Pool name -> capacity for the pools the config bounds by name (not per-key ones)."""
    caps: dict[str, float] = {}
    for resource in RESOURCES:
        value = getattr(config.resources, resource)
        if value is not None:
            caps[pool_name(resource)] = float(value)
    if config.limits.max_concurrent is not None:
        caps[GLOBAL_POOL] = float(config.limits.max_concurrent)
    scoped = [(f"agent:{n}", a.limits) for n, a in config.agents.items() if a.limits]
    scoped += [(f"provider:{n}", lim) for n, lim in config.providers.items()]
    for scope, limits in scoped:
        if limits is not None and limits.max_concurrent is not None:
            caps[scope] = float(limits.max_concurrent)
    return caps


def resources_json(
    config: ControlConfig, shares: list[PoolShare], buckets: list[BucketLevel], now: float
) -> dict[str, Any]:
    caps = configured_capacities(config)
    by_pool: dict[str, list[PoolShare]] = {name: [] for name in caps}
    for share in shares:
        by_pool.setdefault(share.pool, []).append(share)
    pools = [
        {
            "pool": name,
            "capacity": caps.get(name),  # None: a per-key pool, or no longer configured
            "held": sum(s.amount for s in held),
            "in_use": sum(s.in_use for s in held),
            "wanted": sum(max(s.wanted, s.amount) for s in held),
            "holders": [
                {"holder": s.holder, "share": s.amount, "in_use": s.in_use, "wanted": s.wanted,
                 "expires_in_s": round(max(0.0, s.expires_at - now), 3)}
                for s in held
            ],
        }
        for name, held in sorted(by_pool.items())
    ]
    return {"pools": pools, "rate_limits": _rate_limits(config, buckets, now)}


def _rate_limits(
    config: ControlConfig, buckets: list[BucketLevel], now: float
) -> list[dict[str, Any]]:
    scoped: list[tuple[str, Limits]] = [
        (f"agent:{n}", a.limits) for n, a in config.agents.items() if a.limits
    ]
    scoped += [(f"provider:{n}", lim) for n, lim in config.providers.items()]
    rows = []
    for scope, limits in scoped:
        for unit, per_min in (("rpm", limits.rpm), ("tpm", limits.tpm)):
            if per_min is None:
                continue
            rate, burst = per_minute(per_min)
            levels = [b for b in buckets if _bucket_of(b.key, scope, unit)]
            rows.append({
                "scope": scope, "limit": unit, "per_minute": per_min, "rate_per_s": rate,
                "burst": burst, "key": limits.key,
                "buckets": [{"bucket": b.key, "level": round(b.level_at(now), 3)} for b in levels],
            })
    return rows


def _bucket_of(key: str, scope: str, unit: str) -> bool:
    """`agent:writer:rpm`, or per key `agent:writer[acme]:rpm`."""
    return key.endswith(f":{unit}") and (
        key == f"{scope}:{unit}" or key.startswith(f"{scope}[")
    )


def _print(document: dict[str, Any]) -> None:
    if not document["pools"] and not document["rate_limits"]:
        note("no capacity or rate limit is configured, and no engine holds a share")
        return
    pools = Table(title="capacity pools")
    for column in ("pool", "capacity", "held", "in use", "wanted", "holders"):
        pools.add_column(column)
    for pool in document["pools"]:
        holders = ", ".join(
            f"{h['holder']}: {h['share']:g} ({h['in_use']:g} in use)" for h in pool["holders"]
        )
        capacity = pool["capacity"]
        pools.add_row(
            pool["pool"], "-" if capacity is None else f"{capacity:g}", f"{pool['held']:g}",
            f"{pool['in_use']:g}", f"{pool['wanted']:g}", holders or "-",
        )
    out.print(pools)
    if document["rate_limits"]:
        limits = Table(title="rate limits")
        for column in ("scope", "limit", "per minute", "burst", "buckets (level now)"):
            limits.add_column(column)
        for row in document["rate_limits"]:
            levels = ", ".join(f"{b['bucket']}: {b['level']:g}" for b in row["buckets"])
            limits.add_row(
                row["scope"], row["limit"], f"{row['per_minute']:g}", f"{row['burst']:g}",
                levels or "full (unused)",
            )
        out.print(limits)
