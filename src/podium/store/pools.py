"""Capacity pools (shares held per engine) and token buckets: rows and the arithmetic both SQL
stores apply under their lock, so SQLite and PostgreSQL decide alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SHARE_COLS = "pool, holder, amount, in_use, wanted, expires_at"
BUCKET_COLS = "key, tokens, updated_at, rate_per_s, burst"
EPSILON = 1e-9  # float slack: 0.1 + 0.2 must still fit in a capacity of 0.3


@dataclass(frozen=True, slots=True)
class ShareRequest:
    """What one engine asks of one pool: hold `amount` (granted up to what is free), and
    `wanted` in all (>= amount: the unmet part shows other engines the demand)."""

    pool: str
    amount: float
    wanted: float
    in_use: float  # what the engine uses of its share now (for display)
    capacity: float  # the pool's size, from the operator's config


@dataclass(frozen=True, slots=True)
class ShareGrant:
    """The share an engine now holds in a pool, and what the other holders want."""

    pool: str
    granted: float
    others_unmet: float = 0.0  # sum over other live holders of (wanted - amount) > 0
    others_active: int = 0  # other live holders that hold or want something


@dataclass(frozen=True, slots=True)
class PoolShare:
    """One holder's row (`podium resources`)."""

    pool: str
    holder: str
    amount: float
    in_use: float
    wanted: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class BucketLevel:
    """One token bucket, refilled to `updated_at` (`podium resources`)."""

    key: str
    tokens: float
    updated_at: float
    rate_per_s: float
    burst: float

    def level_at(self, now: float) -> float:
        return min(self.burst, self.tokens + max(0.0, now - self.updated_at) * self.rate_per_s)


def grant(request: ShareRequest, others: Iterable[tuple[float, float]]) -> ShareGrant:
    """The share `request` gets given the other live holders' (amount, wanted): never more
    than the capacity they leave free, so the sum of live shares stays within capacity."""
    held = 0.0
    unmet = 0.0
    active = 0
    for amount, wanted in others:
        held += amount
        unmet += max(0.0, wanted - amount)
        active += amount > EPSILON or wanted > amount + EPSILON
    free = max(0.0, request.capacity - held)
    amount = max(0.0, request.amount)
    granted = amount if amount <= free + EPSILON else free
    return ShareGrant(request.pool, granted, unmet, active)


def share_row(request: ShareRequest, holder: str, granted: float, expires_at: float) -> tuple[
    str, str, float, float, float, float
]:
    wanted = max(request.wanted, granted)
    return (request.pool, holder, granted, request.in_use, wanted, expires_at)


def keeps_row(request: ShareRequest, granted: float) -> bool:
    """A holder that holds and wants nothing has no row."""
    return granted > EPSILON or request.wanted > EPSILON or request.in_use > EPSILON


def take(
    level: BucketLevel | None,
    now: float,
    rate_per_s: float,
    burst: float,
    amount: float,
    allow_debt: bool,
) -> tuple[float, BucketLevel]:
    """Refills by the time elapsed (up to `burst`), then grants min(amount, tokens), or all
    of it when `allow_debt` (the level may go negative: real usage above an estimate).
    A negative `amount` gives tokens back (up to `burst`). Returns (granted, new level)."""
    tokens = burst if level is None else level.tokens
    if level is not None:
        tokens = min(burst, tokens + max(0.0, now - level.updated_at) * rate_per_s)
    if amount < 0:
        granted, tokens = amount, min(burst, tokens - amount)
    elif allow_debt:
        granted, tokens = amount, tokens - amount
    else:
        granted = max(0.0, min(amount, tokens))
        tokens -= granted
    return granted, BucketLevel(level.key if level else "", tokens, now, rate_per_s, burst)


def contention(
    holder: str, pools: Iterable[str], rows: Iterable[tuple[str, str, float, float]]
) -> list[ShareGrant]:
    """Per pool: the holder's share, and the others' unmet demand, from live
    (pool, holder, amount, wanted) rows."""
    mine: dict[str, float] = {}
    others: dict[str, list[tuple[float, float]]] = {}
    for pool, who, amount, wanted in rows:
        if who == holder:
            mine[pool] = amount
        else:
            others.setdefault(pool, []).append((amount, wanted))
    result = []
    for pool in pools:
        theirs = others.get(pool, [])
        unmet = sum(max(0.0, w - a) for a, w in theirs)
        active = sum(1 for a, w in theirs if a > EPSILON or w > a + EPSILON)
        result.append(ShareGrant(pool, mine.get(pool, 0.0), unmet, active))
    return result
