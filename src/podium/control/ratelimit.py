"""Rate limits shared by every engine: token buckets in the store, spent from local grants.

An engine takes tokens from the store's bucket in small chunks (at most a tenth of the burst
beyond what its waiting calls need, so no engine hoards), spends them locally, and hands back
what it left unused for `GIVE_BACK_S`. Debts (real usage above an estimate) settle on tick.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import structlog

from podium.clock import Clock
from podium.control.pools import Waiter
from podium.errors import PodiumError
from podium.store.pools import EPSILON
from podium.store.roles import BucketStore

log = structlog.get_logger("podium.control")

BURST_S = 1.0  # a bucket holds one second of its rate: a limit per minute is spread evenly
CHUNK = 0.1  # of the burst: what one take asks beyond the waiting calls' need
GIVE_BACK_S = 1.0  # local tokens unused this long go back to the store
MAX_WAIT_S = 1.0  # a waiting engine asks the store again at least this often


def per_minute(limit_per_min: float, burst_s: float = BURST_S) -> tuple[float, float]:
    """(rate per second, burst) of a per-minute limit (`rpm`, `tpm`)."""
    rate = limit_per_min / 60.0
    return rate, max(rate * burst_s, 1.0)


@dataclass(eq=False)
class Bucket:
    key: str
    rate_per_s: float
    burst: float
    tokens: float = 0.0  # granted to this engine, not spent yet; negative: a debt to settle
    waiting: float = 0.0
    waiters: deque[Waiter] = field(default_factory=deque)
    used_at: float = 0.0  # on the buckets' clock (monotonic)
    filler: asyncio.Task[None] | None = None


class TokenBuckets:
    """The buckets this engine spends from; `ops` counts store operations."""

    def __init__(self, store: BucketStore, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = store.clock if clock is None else clock
        self.burst_s = BURST_S  # seconds of its rate a bucket holds
        self.ops = 0
        # Calls that had to wait for tokens, per bucket key, since start (read by metrics).
        self.waits: dict[str, int] = {}
        self._buckets: dict[str, Bucket] = {}
        self._closed = False

    def bucket(self, key: str, rate_per_s: float, burst: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(
                key, rate_per_s, burst, used_at=self.clock.monotonic()
            )
        bucket.rate_per_s, bucket.burst = rate_per_s, burst
        return bucket

    def try_take(self, key: str, amount: float) -> bool:
        """Spends `amount` of the local grant if it suffices and nobody waits (no await)."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.waiters or bucket.tokens + EPSILON < amount:
            return False
        bucket.tokens -= amount
        bucket.used_at = self.clock.monotonic()
        return True

    async def take(self, key: str, rate_per_s: float, burst: float, amount: float) -> None:
        """Waits (first come, first served) until `amount` tokens are this engine's."""
        bucket = self.bucket(key, rate_per_s, burst)
        bucket.used_at = self.clock.monotonic()
        if not bucket.waiters and bucket.tokens + EPSILON >= amount:
            bucket.tokens -= amount
            return
        waiter = Waiter(amount, asyncio.get_running_loop().create_future())
        self.waits[key] = self.waits.get(key, 0) + 1
        bucket.waiters.append(waiter)
        bucket.waiting += amount
        if bucket.filler is None:
            bucket.filler = asyncio.get_running_loop().create_task(self._fill(bucket))
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                bucket.tokens += amount  # granted as it was cancelled: keep for the next call
            elif waiter in bucket.waiters:
                bucket.waiters.remove(waiter)
                bucket.waiting -= amount
            self._wake(bucket)
            raise

    async def prime(self, buckets: dict[str, tuple[float, float]]) -> None:
        """Takes a first grant of these buckets {key: (rate, burst)} before calls need it
        (a new workflow's limits): the first wave of calls then waits for no store trip."""
        for key, (rate, burst) in buckets.items():
            bucket = self.bucket(key, rate, burst)
            if bucket.tokens <= EPSILON and bucket.filler is None and not self._closed:
                self.ops += 1
                bucket.tokens += await self.store.take_tokens(key, rate, burst, CHUNK * burst)
                bucket.used_at = self.clock.monotonic()
                self._wake(bucket)

    def give_back(self, key: str, amount: float) -> None:
        """Unused tokens (a refused call, an estimate above real usage) for the next call."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens += amount
            self._wake(bucket)

    def owe(self, key: str, amount: float) -> None:
        """Tokens used beyond what was taken: settled from the next grants, or on tick."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens -= amount

    def _wake(self, bucket: Bucket) -> None:
        while bucket.waiters and bucket.tokens + EPSILON >= bucket.waiters[0].amount:
            waiter = bucket.waiters.popleft()
            bucket.waiting -= waiter.amount
            if waiter.future.done():
                continue
            bucket.tokens -= waiter.amount
            waiter.future.set_result(None)

    async def _fill(self, bucket: Bucket) -> None:
        """Asks the store until every waiter is served; one task per bucket at a time."""
        try:
            while bucket.waiters:
                need = bucket.waiting - bucket.tokens
                ask = max(need, CHUNK * bucket.burst) if need > 0 else 0.0
                if ask > 0:
                    self.ops += 1
                    bucket.tokens += await self.store.take_tokens(
                        bucket.key, bucket.rate_per_s, bucket.burst, ask
                    )
                self._wake(bucket)
                if bucket.waiters:
                    short = bucket.waiters[0].amount - bucket.tokens
                    await self.clock.sleep(min(max(short / bucket.rate_per_s, 0.005), MAX_WAIT_S))
        except PodiumError as exc:
            log.warning("taking rate-limit tokens failed", bucket=bucket.key, error=str(exc))
            await self.clock.sleep(MAX_WAIT_S)  # then the next caller starts another filler
        finally:
            bucket.filler = None
            if bucket.waiters and not self._closed:
                bucket.filler = asyncio.get_running_loop().create_task(self._fill(bucket))

    async def tick(self) -> None:
        """Settles debts and hands back tokens left unused for GIVE_BACK_S."""
        now = self.clock.monotonic()
        for bucket in list(self._buckets.values()):
            if bucket.waiters or bucket.filler is not None:
                continue
            if bucket.tokens < -EPSILON:
                await self._settle(bucket, -bucket.tokens, allow_debt=True)
            elif bucket.tokens > EPSILON and now - bucket.used_at >= GIVE_BACK_S:
                await self._settle(bucket, -bucket.tokens, allow_debt=False)
            elif abs(bucket.tokens) <= EPSILON and now - bucket.used_at >= GIVE_BACK_S:
                del self._buckets[bucket.key]

    async def _settle(self, bucket: Bucket, amount: float, *, allow_debt: bool) -> None:
        bucket.tokens += amount
        self.ops += 1
        try:
            await self.store.take_tokens(
                bucket.key, bucket.rate_per_s, bucket.burst, amount, allow_debt=allow_debt
            )
        except PodiumError:
            bucket.tokens -= amount  # try again next tick
            raise

    async def close(self) -> None:
        """Hands every unused token back, and pays every debt (engine shutdown)."""
        self._closed = True
        for bucket in list(self._buckets.values()):
            if bucket.filler is not None:
                bucket.filler.cancel()
            if abs(bucket.tokens) > EPSILON:
                await self._settle(bucket, -bucket.tokens, allow_debt=bucket.tokens < 0)
        self._buckets.clear()

    def levels(self) -> dict[str, float]:
        """Tokens held locally per bucket (for tests and `podium resources`)."""
        return {key: b.tokens for key, b in self._buckets.items()}
