"""The receipt poller: asks providers about accepted SMS that are due and records what they say in the store.

Each round claims the due SMS (`ReceiptStore.claim_due`, so several processes or nodes never ask twice), groups
them into status requests (`receipt_schedule.batches`), and runs the requests of each provider in turn, one
limiter turn per request (`SendingFirst.polling`: inside the provider's rate, after its sends), providers side
by side. A clear "delivered" or "failed" settles the SMS; anything else asks again later by the schedule, and a
pending answer once the receipts window has closed settles it as "no receipt".

It must never settle an SMS on a pending, unreadable or missing answer, never stop for one provider's trouble
(adapters return PENDING receipts instead of raising; a bug that raises anyway only postpones that request),
and never log a number, a message id with its account, or a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from mail2sms import metrics
from mail2sms.dispatch import receipt_schedule as schedule
from mail2sms.dispatch.ratelimit import RateLimiter
from mail2sms.dispatch.receipt_store import Awaiting, ReceiptState, ReceiptStore, Settled, final_state, settled
from mail2sms.model import Receipt
from mail2sms.observability import get_logger
from mail2sms.providers.receipts import ReceiptSource, receipt_source

log = get_logger("mail2sms.receipts")

CLAIM = 500  # SMS claimed per round: bounded memory, and a lease that covers the round's requests
LEASE = 600.0  # a claim lapses after this; a crashed poller's SMS are asked about again then
IDLE = 5.0  # seconds between rounds when nothing was due


def no_receipt_words(provider: str, window: float) -> str:
    hours = window / 3600
    span = f"{hours:g} hours" if hours >= 1 else f"{window / 60:g} minutes"
    return f"no delivery receipt came from {provider} within {span}; the SMS may or may not have reached the phone"


class SourcesOf(Mapping[str, ReceiptSource]):
    """The receipt sources among `providers`, read at each look: a reload that replaces an adapter in that dict
    (same name, new settings) is used by the next status request."""

    def __init__(self, providers: Mapping[str, object]) -> None:
        self.providers = providers

    def __getitem__(self, name: str) -> ReceiptSource:
        source = receipt_source(self.providers[name])
        if source is None:
            raise KeyError(name)
        return source

    def __iter__(self) -> Iterator[str]:
        return (name for name, p in list(self.providers.items()) if receipt_source(p) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def idle_for(window: float) -> float:
    """Seconds between rounds when nothing is due: IDLE, shorter for a short receipts window (a test's)."""
    return min(IDLE, max(0.05, window / 20))


class ReceiptPoller:
    """Polls due receipts from `sources` (by configured provider name) into `store`."""

    def __init__(
        self,
        store: ReceiptStore,
        sources: Mapping[str, ReceiptSource],
        limiter: RateLimiter,
        *,
        window: float = schedule.WINDOW,
        claim: int = CLAIM,
        lease: float = LEASE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sources = sources
        self.limiter = limiter
        self.window = window
        self.claim = claim
        self.lease = lease
        self.clock = clock

    async def run_once(self) -> int:
        """One round: ask about every SMS due now (up to `claim`); the number of SMS asked about or closed."""
        due = await self.store.claim_due(self.clock(), self.claim, self.lease)
        if not due:
            return 0
        plan = schedule.batches(due, self._max_ids)
        await asyncio.gather(*(self._provider(name, requests) for name, requests in plan.items()))
        return len(due)

    async def run(self, stop: asyncio.Event, idle: float = IDLE) -> None:
        """Rounds until `stop` is set; a round that found nothing due waits `idle` seconds (or for `stop`)."""
        while not stop.is_set():
            try:
                found = await self.run_once()
            except Exception:  # the store in trouble: try again next round, never end the loop
                log.exception("receipt poll round failed")
                found = 0
            if not found:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle)

    def _max_ids(self, provider: str) -> int:
        source = self.sources.get(provider)
        return source.receipts.max_ids if source is not None else 1

    async def _provider(self, name: str, requests: list[list[Awaiting]]) -> None:
        source = self.sources.get(name)
        for items in requests:
            if source is None:  # no longer configured, or it stopped offering receipts: the window decides
                await self._record(items, [], name)
                continue
            await self.limiter.acquire(name)
            try:
                found = await source.poll_receipts([item.query() for item in items])
            except Exception:  # an adapter bug: postpone this request, keep polling the rest
                log.exception("receipt poll failed", provider=name)
                found = []
            await self._record(items, found, name)

    async def _record(self, items: Sequence[Awaiting], found: Sequence[Receipt], provider: str) -> None:
        now = self.clock()
        for i, item in enumerate(items):
            receipt = found[i] if i < len(found) and found[i].provider_id == item.provider_id else None
            state = final_state(receipt) if receipt is not None else None
            if receipt is not None and state is not None:
                if await self.store.settle(item.job_id, settled(receipt, state, now, "poll")):
                    metrics.SMS.labels(provider, state.value).inc()
            elif schedule.window_over(item.accepted_at, now, self.window):
                why = no_receipt_words(provider, self.window)
                if await self.store.settle(item.job_id, Settled(ReceiptState.NO_RECEIPT, None, why, now, "window")):
                    metrics.SMS.labels(provider, ReceiptState.NO_RECEIPT.value).inc()
            else:
                polls = item.polls + 1
                await self.store.poll_later(
                    item.job_id, polls, schedule.next_poll_at(item.accepted_at, polls, now, self.window)
                )
