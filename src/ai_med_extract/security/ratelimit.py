"""Rate limits: per client per minute, per API key per hour, and a per-second burst cap.

Built on the ``limits`` library's sliding window counters: each (limit, client) pair costs two
counters that expire on their own, so memory and CPU per request stay constant however many distinct
clients call. Counters live in memory (one process) by default, or in Redis when
``AME_SECURITY__RATE_LIMIT__REDIS_URL`` is set, so every replica and worker shares them.

The interface other components use::

    limiter = RateLimiter.from_settings(settings.security.rate_limit)
    decision = await limiter.hit(ip="203.0.113.7", key_id=12)   # or hit_scope("jobs", ident, item)
    decision.allowed, decision.retry_after, decision.headers()
    await limiter.close()
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from ai_med_extract.config import RateLimitSettings


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit: allowed or not, and what the ``RateLimit-*`` headers say."""

    allowed: bool
    retry_after: int = 0
    scope: str = ""
    limit: int = 0
    remaining: int = 0
    reset_after: int = 0

    def headers(self) -> dict[str, str]:
        if not self.limit:
            return {}
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


ALLOW = Decision(True)


class BoundedMemoryStorage(MemoryStorage):
    """The library's in-memory storage, with expiry kept in a heap instead of periodic full scans.

    Each counter is pushed once when it is created and popped once when it expires, so a request
    costs O(log n) however many clients are counted, and expired clients leave no trace.
    """

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, str]] = []

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if self.expirations.get(key, math.inf) <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        self._expire(now)
        await self.get(key)
        self.storage[key] += amount
        if self.storage[key] == amount:
            self.expirations[key] = now + expiry
            heapq.heappush(self._heap, (now + expiry, key))
        return self.storage.get(key, amount)

    async def decr(self, key: str, amount: int = 1) -> int:
        await self.get(key)
        if key in self.storage:
            self.storage[key] = max(self.storage[key] - amount, 0)
        return self.storage.get(key, 0)

    async def reset(self) -> int | None:
        self._heap.clear()
        return await super().reset()

    def counters(self) -> int:
        """Counters currently held (for tests and metrics)."""
        return len(self.storage)


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, storage: Any, *, key_prefix: str = "ame"):
        self.settings = settings
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._prefix = key_prefix
        self._items: dict[str, RateLimitItem] = {
            "burst": RateLimitItemPerSecond(settings.burst, namespace=f"{key_prefix}-burst"),
            "ip": RateLimitItemPerMinute(settings.per_ip_per_minute, namespace=f"{key_prefix}-ip"),
            "key": RateLimitItemPerHour(settings.per_key_per_hour, namespace=f"{key_prefix}-key"),
        }

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> RateLimiter:
        if settings.redis_url:
            uri = "async+" + settings.redis_url.get_secret_value()
            storage = storage_from_string(uri, implementation="redispy", key_prefix=settings.redis_key_prefix)
        else:
            storage = BoundedMemoryStorage()
        return cls(settings, storage, key_prefix=settings.redis_key_prefix)

    async def hit(self, ip: str, key_id: int | None) -> Decision:
        """Count one request if every applicable window has room; otherwise count nothing.

        The decision reports the tightest window (the fewest requests left)."""
        if not self.settings.enabled:
            return ALLOW
        checks = [("burst", ip), ("ip", ip)]
        if key_id is not None:
            checks.append(("key", str(key_id)))
        return await self.hit_all(checks)

    async def hit_all(self, checks: list[tuple[str, str]]) -> Decision:
        """``checks``: (scope, identifier) pairs, scopes among those this limiter was built with."""
        for scope, ident in checks:
            item = self._items[scope]
            if not await self._strategy.test(item, ident):
                stats = await self._strategy.get_window_stats(item, ident)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Decision(False, retry_after=wait, scope=scope, limit=item.amount, remaining=0,
                                reset_after=wait)
        tightest: Decision | None = None
        for scope, ident in checks:
            item = self._items[scope]
            await self._strategy.hit(item, ident)
            if scope == "burst":
                continue  # the per-second cap is a guard, not the policy the headers describe
            stats = await self._strategy.get_window_stats(item, ident)
            reset = max(0, math.ceil(stats.reset_time - time.time()))
            candidate = Decision(True, scope=scope, limit=item.amount, remaining=stats.remaining, reset_after=reset)
            if tightest is None or candidate.remaining < tightest.remaining:
                tightest = candidate
        return tightest or ALLOW

    def add_scope(self, scope: str, item: RateLimitItem) -> None:
        """Another shared limit (a per-key job quota, say) that ``hit_all`` can then check."""
        self._items[scope] = item

    async def reset(self) -> None:
        """Forget every counter (tests, or an operator lifting a lock-out)."""
        await self._storage.reset()

    async def close(self) -> None:
        close = getattr(self._storage, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
