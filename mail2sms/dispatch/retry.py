"""Retry policy: full-jitter exponential backoff, the provider's Retry-After, and the job's lifetime.

Full jitter (a random delay between 0 and the exponential bound) spreads retries of many jobs that failed together,
so a recovering provider is not hit by a synchronized wave.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0
    cap: float = 600.0
    max_attempts: int = 50

    def delay(self, attempts: int, after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt `attempts + 1`; never less than the provider's Retry-After."""
        bound = min(self.cap, self.base * (2 ** max(0, attempts - 1)))
        jitter = (rng or random).uniform(0, bound)
        return max(jitter, after or 0.0)
