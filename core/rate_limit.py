"""Fixed-window request counters per client: Redis when configured, memory when embedded."""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis


class RateLimiter(Protocol):
    """Counts hits per key; ``hit`` returns seconds to wait, or 0 when allowed."""

    async def hit(self, key: str) -> int:
        """Count one request for ``key``."""


class MemoryRateLimiter:
    """In-process counters for the single-process embedded master."""

    def __init__(self, limit: int, window: int) -> None:
        self.limit, self.window = limit, window
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key: str) -> int:
        now = int(time.time())
        slot = now // self.window
        if len(self._counts) > 10_000:  # drop old windows so memory stays bounded
            self._counts = {k: v for k, v in self._counts.items() if k[1] == slot}
        count = self._counts.get((key, slot), 0) + 1
        self._counts[(key, slot)] = count
        return 0 if count <= self.limit else (slot + 1) * self.window - now


class RedisRateLimiter:
    """Counters shared by every API replica."""

    def __init__(self, redis: Redis, limit: int, window: int) -> None:
        self.redis, self.limit, self.window = redis, limit, window

    async def hit(self, key: str) -> int:
        now = int(time.time())
        slot = now // self.window
        name = f"kontena:ratelimit:{key}:{slot}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, self.window + 1)
            count, _ = await pipe.execute()
        return 0 if int(count) <= self.limit else (slot + 1) * self.window - now
