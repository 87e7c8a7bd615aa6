"""Per-provider request rates: callers wait for their turn instead of failing.

`RateLimiter` is what the dispatcher uses. `LocalRateLimiter` holds the rate in this process only: with
`server.workers = N` on one SQLite spool each process gets `rate / N` (see app.py). A PostgreSQL spool supplies
a limiter held in the database for every process on every node (`spool.postgres.PostgresRateLimiter`).
A limiter never sends anything and never fails a job; it only delays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable


class RateLimiter(Protocol):
    async def acquire(self, provider: str) -> None:
        """Return when one request to `provider` may go."""
        ...


@runtime_checkable
class SharesRateLimits(Protocol):
    """A spool that can hold provider rates for every process using it."""

    def rate_limiter(self, rates: Mapping[str, float]) -> RateLimiter: ...


class TokenBucket:
    """`rate` requests per second with bursts of up to `burst` requests."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


class LocalRateLimiter:
    """One token bucket per provider in this process; `share` processes split each rate evenly."""

    def __init__(self, rates: Mapping[str, float], share: int = 1) -> None:
        self._buckets = {name: TokenBucket(rate / max(1, share), burst=1.0) for name, rate in rates.items() if rate}

    async def acquire(self, provider: str) -> None:
        bucket = self._buckets.get(provider)
        if bucket is not None:
            await bucket.acquire()
