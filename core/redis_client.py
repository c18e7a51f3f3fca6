"""Redis clients that ride out a Redis restart.

``Redis.from_url`` gives connections no retry at all: after a restart, the first command on
each pooled connection fails with "Connection closed by server" although Redis is back. Every
client of ours retries a failed command on a fresh connection a few times with a short backoff,
so a restarted Redis costs a moment, not a failed deploy; longer outages still fail and are
left to the callers (Dramatiq's consumers reconnect, the recovery tick re-sends lost work).
A retried command may run twice when only its reply was lost; everything we send through
Redis tolerates that (at-least-once jobs, idempotent nudges).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

# 5 retries at 50 ms doubling up to 1 s: about 1.5 s of waiting before a command gives up.
RETRIES = 5
BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=BACKOFF_BASE, cap=BACKOFF_CAP)


def async_redis(url: str, **options: Any) -> AsyncRedis:
    """An asyncio client for ``url`` whose commands (and pub/sub reads) reconnect and retry."""
    client: AsyncRedis = AsyncRedis.from_url(url, retry=AsyncRetry(_backoff(), RETRIES), **options)
    return client


def connection_pool(url: str, **options: Any) -> redis.ConnectionPool:
    """A blocking connection pool for ``url`` whose commands reconnect and retry."""
    return redis.ConnectionPool.from_url(url, retry=Retry(_backoff(), RETRIES), **options)
