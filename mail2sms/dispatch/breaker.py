"""Circuit breaker: a provider that keeps failing is paused while the other providers carry on.

"Failing" means a whole request ended in Retry or Unknown (no answer, 5xx, 429, timeouts); a provider that
answers — even with refusals — is healthy. While paused, the dispatcher does not claim that provider's jobs, so
they wait in the spool instead of burning attempts; the pause doubles while failures go on. Batches already
claimed when it opens are handed back to the spool with the pause as their next attempt, not sent.

Times are monotonic (`time.monotonic()`): a wall-clock step (NTP, a VM resumed) must neither end a pause early nor
stretch it for hours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Breaker:
    threshold: int = 5
    pause: float = 30.0
    cap: float = 600.0
    failures: int = 0
    open_until: float = 0.0
    trips: int = 0

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    def record(self, failed: bool, now: float) -> bool:
        """Count one request's outcome; True when this failure trips (or re-trips) the breaker."""
        if not failed:
            self.failures = 0
            self.trips = 0
            return False
        self.failures += 1
        if self.failures < self.threshold:
            return False
        self.open_until = now + min(self.cap, self.pause * (2**self.trips))
        self.trips += 1
        self.failures = 0
        return True
