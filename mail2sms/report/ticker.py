"""The claim loop the reporter and the replier share: tick (claim a group of due work and deliver it) while work is
found; when a tick finds none, wait for `wake()` or `poll_interval`; `stop()` lets the tick in flight finish.

The wake flag is cleared before each tick, not after it: work stored while a tick runs (a submission turning final,
a reply pushed) then wakes the next wait at once instead of waiting out a poll interval.

It must never end its loop for a failed tick (the spool in trouble: logged, tried again after the wait), and never
cancel a tick in flight at stop (its deliveries are recorded, or their claims lapse and are taken again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from mail2sms.observability import get_logger

log = get_logger("mail2sms.report")


class Ticker:
    """Runs `tick()` as described above; subclasses supply `tick()`."""

    def __init__(self, poll_interval: float, what: str) -> None:
        self.poll_interval = poll_interval
        self._what = what  # named in the log line of a failed tick
        self._wake = asyncio.Event()
        self._stopping = False
        self._ticking: asyncio.Task[int] | None = None

    async def tick(self) -> int:
        """Claim and deliver one round of due work; how much was claimed (0: nothing was due)."""
        raise NotImplementedError

    def wake(self, _ids: Sequence[str] | None = None) -> None:
        """Something became due: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._ticking = asyncio.create_task(self.tick())
            try:
                claimed = await asyncio.shield(self._ticking)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(f"{self._what} tick failed")
                claimed = 0
            if not claimed and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop claiming; let the tick in flight finish within `deadline`."""
        self._stopping = True
        self._wake.set()
        if self._ticking is not None and not self._ticking.done():
            await asyncio.wait([self._ticking], timeout=deadline)
