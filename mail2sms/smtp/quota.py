"""Per-route SMS quotas: how many SMS one user (or sender) sent on a route in the last hour and the last day.

The counts live in memory, in this process: they start from zero at every restart, and with `workers = N`
each process counts on its own. That is enough to stop a runaway alarm panel or a stolen password from
spending the whole account in minutes; a quota that must hold across restarts and hosts needs a shared store
(the PostgreSQL spool), which implements the same two methods.

Windows slide: "the last hour" is the 3600 seconds before `now`, not the clock hour. Memory is bounded: only
charged SMS are remembered, and only for a day. Thread-safe, because DATA checks may run on a parse thread.
This module must never block the event loop or store anything but counts and times.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

HOUR = 3600.0
DAY = 86400.0


class QuotaStore(Protocol):
    def used(self, key: str, since: float) -> int:
        """SMS charged to `key` after `since`."""
        ...

    def charge(self, key: str, count: int, now: float) -> None:
        """Record `count` SMS for `key` at `now`."""
        ...


class MemoryQuotaStore:
    """`QuotaStore` in this process's memory; entries older than a day are dropped."""

    def __init__(self, horizon: float = DAY) -> None:
        self.horizon = horizon
        self._charges: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self._last_sweep = float("-inf")

    def used(self, key: str, since: float) -> int:
        with self._lock:
            return sum(count for at, count in self._charges.get(key, ()) if at > since)

    def charge(self, key: str, count: int, now: float) -> None:
        if count <= 0:
            return
        with self._lock:
            if now - self._last_sweep >= self.horizon / 24:
                self._sweep(now - self.horizon)
                self._last_sweep = now
            self._charges.setdefault(key, deque()).append((now, count))

    def _sweep(self, horizon: float) -> None:
        for key in list(self._charges):
            times = self._charges[key]
            while times and times[0][0] <= horizon:
                times.popleft()
            if not times:
                del self._charges[key]

    def __len__(self) -> int:
        """How many keys are remembered (for tests)."""
        return len(self._charges)
