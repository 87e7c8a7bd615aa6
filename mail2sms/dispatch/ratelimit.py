"""Per-provider request rate: a token bucket that makes callers wait instead of failing.

Process-local; a provider's `rate` is shared between processes by dividing it (see app.py), and the PostgreSQL
spool will hold it globally.
"""

from __future__ import annotations

import asyncio
import time


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
