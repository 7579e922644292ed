"""Capacity pools shared by every engine: an engine-local semaphore per pool, sized by this
engine's share of the pool in the store (concurrency caps and resource admission).

Calls take and give back slots locally; the store is asked only to change a share. One task
grows the shares that demand outgrew, for every pool at once; `tick` renews the shares, gives
back capacity left idle for `linger_s`, and yields to other engines' unmet demand.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from podium.clock import Clock
from podium.errors import PodiumError
from podium.store.pools import EPSILON, ShareGrant, ShareRequest
from podium.store.roles import PoolStore
from podium.supervisor import Supervisor

log = structlog.get_logger("podium.control")

LINGER_S = 1.0  # a share above what is used for this long shrinks to the peak use meanwhile


@dataclass(eq=False, slots=True)
class Waiter:
    """A call waiting for `amount` of a pool (or of a token bucket: ratelimit.py), in line."""

    amount: float
    future: asyncio.Future[None]


@dataclass(eq=False)
class Pool:
    """One pool as this engine sees it: its share, what it uses, who waits for it."""

    name: str
    capacity: float
    share: float = 0.0  # held in the store
    in_use: float = 0.0
    entitled: float = math.inf  # the fair share while other engines wait, else unbounded
    asked: float = 0.0  # a synchronous take that did not fit (the head of the run queue)
    waiting: float = 0.0  # the sum asked by `waiters`
    waiters: deque[Waiter] = field(default_factory=deque)
    peak: float = 0.0  # the highest use since `window_at`
    window_at: float = 0.0  # on the pools' clock (monotonic)
    starved: bool = False  # the last grow got less than asked: retried on tick, not at once
    limit: float = 0.0  # min(share, entitled): what this engine may use now (kept by `set`)

    def set(self, *, share: float | None = None, entitled: float | None = None) -> None:
        if share is not None:
            self.share = share
        if entitled is not None:
            self.entitled = entitled
        self.limit = min(self.share, self.entitled)

    @property
    def demand(self) -> float:
        return self.in_use + self.waiting + self.asked

    def fits(self, amount: float) -> bool:
        return self.in_use + amount <= self.limit + EPSILON

    def take(self, amount: float) -> None:
        self.in_use += amount
        if self.in_use > self.peak:
            self.peak = self.in_use

    def grow_target(self) -> float:
        """What to ask for when the share is short. Nobody else waiting: all that is free (one
        round however the load rises; the store grants only what others leave, and what
        stays idle goes back after `linger_s`, or at once when others come to want it).
        Else the demand, within the fair share."""
        if self.entitled == math.inf:
            return self.capacity
        return self.wanted_share()

    def wanted_share(self) -> float:
        """The share to hold for the demand, within the fair share; never below the use."""
        return max(self.in_use, min(self.demand, self.entitled, self.capacity))


class SharePools:
    """Every pool this engine uses; `ops` counts store operations (tests, bench)."""

    def __init__(
        self, store: PoolStore, owner: str, *, ttl_s: float = 30.0, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.clock = store.clock if clock is None else clock
        self.owner = owner
        self.ttl_s = ttl_s  # a share not renewed for this long is free again (crashed holder)
        self.linger_s = LINGER_S
        self.on_change: Callable[[], None] | None = None  # shares changed: retry admission
        self.ops = 0
        self._pools: dict[str, Pool] = {}
        self._grower: asyncio.Task[None] | None = None
        self._tasks = Supervisor("pools")
        # One round at a time: two answers crossing could leave a local share the store no
        # longer grants.
        self._lock = asyncio.Lock()
        self._renewed_at = self.clock.monotonic()
        self._closed = False

    def pool(self, name: str, capacity: float) -> Pool:
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = Pool(name, capacity, window_at=self.clock.monotonic())
        pool.capacity = capacity
        return pool

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    # -- taking and giving back ------------------------------------------------------------

    def try_take(self, name: str, capacity: float, amount: float) -> bool:
        """Takes `amount` at once if the share has room; else asks for more and says no."""
        pool = self.pool(name, capacity)
        if not pool.waiters and pool.fits(amount):
            pool.take(amount)
            pool.asked = 0.0
            return True
        pool.asked = amount
        self._grow_soon()
        return False

    async def prime(self, capacities: dict[str, float]) -> None:
        """Takes a share of these pools before the first call needs one (engine start): the
        first runs then start without waiting for a store round trip."""
        if not capacities:
            return
        async with self._lock:
            pools = [self.pool(name, cap) for name, cap in capacities.items()]
            await self._round([(p, p.grow_target()) for p in pools])

    def ask(self, name: str, capacity: float, amount: float) -> None:
        """Records that `amount` more is wanted at once (the head of the run queue)."""
        self.pool(name, capacity).asked = amount
        self._grow_soon()

    async def room_for(self, wanted: dict[str, tuple[float, float]]) -> dict[str, float]:
        """Grows the shares for `amount` more of each pool {name: (capacity, amount)} now
        (one store operation if they lack room) and returns the room each has then."""
        pools = {name: self.pool(name, cap) for name, (cap, _) in wanted.items()}
        async with self._lock:
            targets = [
                (pool, pool.demand + wanted[name][1])
                for name, pool in pools.items()
                if pool.demand + wanted[name][1] > pool.limit + EPSILON
            ]
            if targets:
                await self._round(targets)
        return {name: p.limit - p.in_use - p.waiting for name, p in pools.items()}

    def force_take(self, name: str, capacity: float, amount: float) -> None:
        """Takes `amount` even past the share (a resumed run holds what it held before)."""
        self.pool(name, capacity).take(amount)
        self._grow_soon()

    def try_acquire(self, name: str, capacity: float, amount: float = 1.0) -> bool:
        """Takes `amount` if the share has room and nobody waits (the hot path: no await)."""
        pool = self._pools.get(name)
        if pool is None or pool.waiters or not pool.fits(amount):
            return False
        pool.take(amount)
        return True

    async def acquire(self, name: str, capacity: float, amount: float = 1.0) -> None:
        """Waits (first come, first served) until the pool has room for `amount`."""
        pool = self.pool(name, capacity)
        if not pool.waiters and pool.fits(amount):
            pool.take(amount)
            return
        waiter = Waiter(amount, asyncio.get_running_loop().create_future())
        pool.waiters.append(waiter)
        pool.waiting += amount
        self._grow_soon()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(name, amount)  # granted as it was cancelled: hand it on
            elif waiter in pool.waiters:
                pool.waiters.remove(waiter)
                pool.waiting -= amount
                self._wake(pool)
            raise

    def release(self, name: str, amount: float = 1.0) -> None:
        pool = self._pools.get(name)
        if pool is None:
            return
        pool.in_use = max(0.0, pool.in_use - amount)
        self._wake(pool)

    def _wake(self, pool: Pool) -> None:
        while pool.waiters and pool.fits(pool.waiters[0].amount):
            waiter = pool.waiters.popleft()
            pool.waiting -= waiter.amount
            if waiter.future.done():  # cancelled while queued
                continue
            pool.take(waiter.amount)
            waiter.future.set_result(None)

    # -- growing shares (off the hot path, one store operation per round) --------------------

    def _grow_soon(self) -> None:
        if self._grower is None and not self._closed:
            self._grower = self._tasks.start(self._grow(), name="grow-shares")

    async def _grow(self) -> None:
        try:
            while True:
                async with self._lock:
                    short = [(p, p.grow_target()) for p in self._pools.values() if _short(p)]
                    short = [(p, amount) for p, amount in short if not p.starved]
                    if not short:
                        return
                    await self._round(short)
        except PodiumError as exc:
            log.warning("growing capacity shares failed", error=str(exc))
        finally:
            self._grower = None

    async def _round(self, targets: Sequence[tuple[Pool, float]]) -> None:
        """One store operation setting this engine's share of each pool to its target
        (under `_lock`)."""
        # `wanted` is the real demand: headroom asked for is not shown to others as unmet.
        requests = [
            ShareRequest(p.name, amount, min(p.demand, p.capacity), p.in_use, p.capacity)
            for p, amount in targets
        ]
        for pool, amount in targets:
            # A shrink holds locally from now: a slot taken while the store answers could
            # otherwise sit outside the share that the store hands to another engine.
            pool.set(share=min(pool.share, amount))
        self.ops += 1
        grants = await self.store.set_shares(self.owner, requests, self.ttl_s)
        for (pool, amount), grant in zip(targets, grants, strict=True):
            pool.set(share=grant.granted, entitled=_fair_share(pool.capacity, grant))
            pool.starved = grant.granted + EPSILON < min(amount, pool.wanted_share())
            self._wake(pool)
        if self.on_change is not None:
            self.on_change()

    # -- upkeep ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """Learns other engines' demand, then grows, shrinks and renews shares as needed."""
        if not self._pools:
            return
        now = self.clock.monotonic()
        held = [p for p in self._pools.values() if p.share > EPSILON]
        if held:
            self.ops += 1
            grants = await self.store.pool_contention(self.owner, [p.name for p in held])
            for pool, grant in zip(held, grants, strict=True):
                pool.set(entitled=_fair_share(pool.capacity, grant))
                self._wake(pool)
        async with self._lock:
            targets = [
                (p, t) for p in self._pools.values() if (t := self._target(p, now)) is not None
            ]
            if targets:
                await self._round(targets)
        if now - self._renewed_at >= self.ttl_s / 3:
            self._renewed_at = now
            if any(p.share > EPSILON for p in self._pools.values()):
                self.ops += 1
                await self.store.renew_shares(self.owner, self.ttl_s)
        self._forget_idle()

    def _target(self, pool: Pool, now: float) -> float | None:
        """The share `pool` should move to now, or None to leave it."""
        pool.starved = False  # a starved pool asks again each tick
        wanted = pool.wanted_share()
        if wanted > pool.share + EPSILON or pool.share > pool.entitled + EPSILON:
            return wanted  # grow; or others wait: give back at once what is not in use
        if now - pool.window_at < self.linger_s:
            return None
        # A whole window has passed: keep its peak use, give back the rest of the share.
        keep = max(wanted, pool.peak)
        pool.peak, pool.window_at = pool.in_use, now
        return keep if pool.share > keep + EPSILON else None

    def _forget_idle(self) -> None:
        for name, pool in list(self._pools.items()):
            if pool.share <= EPSILON and pool.demand <= EPSILON and not pool.waiters:
                del self._pools[name]

    async def close(self) -> None:
        """Hands back every share (engine shutdown); waiters are left to their cancellation."""
        self._closed = True
        await self._tasks.close()  # the grower, cancelled and awaited
        if self._pools:
            self.ops += 1
            await self.store.drop_shares(self.owner)
            self._pools.clear()


def _short(pool: Pool) -> bool:
    return pool.wanted_share() > pool.share + EPSILON


def _fair_share(capacity: float, grant: ShareGrant) -> float:
    """Unbounded while nobody else waits; else an equal split among the engines that hold or
    want some (rounded up for whole-unit pools: the store still caps the sum)."""
    if grant.others_unmet <= EPSILON:
        return math.inf
    fair = capacity / (grant.others_active + 1)
    return math.ceil(fair) if float(capacity).is_integer() else fair
