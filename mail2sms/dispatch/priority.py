"""One provider rate shared by sending and receipt polling, sending first.

`SendingFirst` wraps the dispatcher's `RateLimiter` (local or PostgreSQL-held): `acquire` is the sending side and
behaves as the wrapped limiter; `polling.acquire` takes a turn only while no send to that provider is waiting in
this process. Both draw from the same limiter, so sending and polling together never exceed the provider's
rate; a send that arrives while a poll already waits for its turn waits at most that one turn.

Across processes and nodes (a PostgreSQL limiter) the rate stays shared, but "sending first" holds only among the
callers of one process: a poll in one node may take a turn a send in another node wanted. A limiter never sends
anything and never fails a job; it only delays.
"""

from __future__ import annotations

import asyncio

from mail2sms.dispatch.ratelimit import RateLimiter


class SendingFirst:
    """The sending side of a shared provider rate; `polling` is the side that yields to it."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self._sending: dict[str, int] = {}  # sends waiting for a turn, by provider
        self._clear: dict[str, asyncio.Event] = {}  # set while no send to the provider waits
        self.polling = _Polling(self)

    def _event(self, provider: str) -> asyncio.Event:
        event = self._clear.get(provider)
        if event is None:
            event = self._clear[provider] = asyncio.Event()
            event.set()
        return event

    def waiting(self, provider: str) -> int:
        """Sends to `provider` waiting for a turn now."""
        return self._sending.get(provider, 0)

    async def acquire(self, provider: str) -> None:
        """Return when one send to `provider` may go (the dispatcher's RateLimiter)."""
        self._sending[provider] = self._sending.get(provider, 0) + 1
        self._event(provider).clear()
        try:
            await self.inner.acquire(provider)
        finally:
            self._sending[provider] -= 1
            if not self._sending[provider]:
                self._event(provider).set()

    async def acquire_for_poll(self, provider: str) -> None:
        """Return when one status request to `provider` may go: after every send waiting now."""
        # Event.wait() returns once the event was set, even if a send cleared it again before this task ran (a
        # sender that asks for its next turn at once): look again, so a steady stream of sends keeps priority.
        while self._sending.get(provider, 0):
            await self._event(provider).wait()
        await self.inner.acquire(provider)


class _Polling:
    """`SendingFirst` seen as a RateLimiter for the receipt poller."""

    def __init__(self, shared: SendingFirst) -> None:
        self._shared = shared

    async def acquire(self, provider: str) -> None:
        await self._shared.acquire_for_poll(provider)
