"""The reply poller (issue 17): fetches the SMS phones sent back from every provider that keeps them, and stores
them in the spool, which decides where each one goes (`ReplyStore.store_replies`).

For each provider with a replies API and replies enabled, every `replies.poll_interval`: take the provider's poll
turn in the spool (`claim_reply_poll`, so workers and nodes take turns and one cursor is shared), fetch a page
after the saved cursor through the provider's rate limiter (`SendingFirst.polling`: inside its rate, after its
sends), store the page — committing it, with the new cursor and the end of the turn, in one transaction — and only
then tell the provider they are taken (`acknowledge_replies`), so a crash in between fetches them again and the
spool keeps them once. A page that says there is more is followed at once, a bounded number of pages per round.
A provider that cannot be read gives its turn back with its cursor unchanged and is asked again an interval later.
Pushed replies (the door, dispatch.receipt_push) are stored by `ReplyPushSink` under the same rules, counted and
logged the same way (`account`).

It must never stop for one provider's trouble, never move a cursor past a reply that is not stored, never
acknowledge before the store committed, and never log a phone number, a text or a secret: counts, provider
names, the provider's own reference and codes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from mail2sms import metrics
from mail2sms.config import RepliesConfig
from mail2sms.dispatch.ratelimit import RateLimiter
from mail2sms.dispatch.reply_store import ReplyRules, ReplyStore, StoredReplies
from mail2sms.model import InboundSms, ReplyState
from mail2sms.observability import get_logger
from mail2sms.providers.replies import ReplyFetchError, ReplyPage, ReplySource, reply_source

log = get_logger("mail2sms.replies")

LEASE = 300.0  # a poll turn lapses after this: a crashed poller's provider is polled again then
MAX_PAGES = 20  # pages of one provider per round: a provider that always says "more" cannot hold the poller
IDLE = 5.0  # seconds between rounds (each provider is polled only when its interval has passed)


def reply_rules(config: RepliesConfig) -> ReplyRules:
    """`[replies]` as the rules the spool decides by."""
    return ReplyRules(
        match_window=config.match_window,
        per_number_per_hour=config.per_number_per_hour,
        unmatched_to=config.unmatched_to or None,
    )


class ReplySourcesOf(Mapping[str, ReplySource]):
    """The reply sources among `providers` that `enabled(name)` allows, read at each look: a reload that replaces
    an adapter (same name, new settings) or turns a provider's replies off is seen by the next round."""

    def __init__(self, providers: Mapping[str, object], enabled: Callable[[str], bool] = lambda _: True) -> None:
        self.providers = providers
        self.enabled = enabled

    def __getitem__(self, name: str) -> ReplySource:
        source = reply_source(self.providers[name])
        if source is None or not self.enabled(name):
            raise KeyError(name)
        return source

    def __iter__(self) -> Iterator[str]:
        return (n for n, p in list(self.providers.items()) if reply_source(p) is not None and self.enabled(n))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ReplyPoller:
    """Polls `sources` (by configured provider name) for replies and stores them in `store` by `rules`."""

    def __init__(
        self,
        store: ReplyStore,
        sources: Mapping[str, ReplySource],
        limiter: RateLimiter,
        rules: ReplyRules,
        *,
        interval: float,
        owner: str,
        on_new: Callable[[], None] = lambda: None,
        lease: float = LEASE,
        max_pages: int = MAX_PAGES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sources = sources
        self.limiter = limiter
        self.rules = rules
        self.interval = interval
        self.owner = owner
        self.on_new = on_new
        self.lease = lease
        self.max_pages = max_pages
        self.clock = clock
        self._next: dict[str, float] = {}  # this process's next try per provider (the spool has the real turn)

    async def run_once(self) -> int:
        """One round: poll every provider whose interval has passed, side by side; the replies new to the spool."""
        now = self.clock()
        due = [name for name in self.sources if self._next.get(name, 0.0) <= now]
        found = await asyncio.gather(*(self._provider(name) for name in due))
        return sum(found)

    async def run(self, stop: asyncio.Event, idle: float = IDLE) -> None:
        """Rounds until `stop` is set, `idle` seconds apart (or until `stop`)."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # never end the loop; each provider's own trouble is handled in _provider
                log.exception("reply poll round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle)

    async def _provider(self, name: str) -> int:
        """Poll one provider's turn: pages until it has no more (bounded); the replies new to the spool."""
        new = 0
        self._next[name] = self.clock() + self.interval
        try:
            for _ in range(self.max_pages):
                more, stored = await self._page(name)
                new += stored
                if not more:
                    break
            else:
                self._next[name] = self.clock()  # more is waiting: the next round goes on at once
        except Exception as exc:  # the spool (or a source bug): this provider waits an interval, the rest go on
            log.warning("reply poll failed", provider=name, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await self.store.release_reply_poll(name, self.owner, self.clock() + self.interval)
        return new

    async def _page(self, name: str) -> tuple[bool, int]:
        """One turn: (whether the provider has more now, replies new to the spool)."""
        source = self.sources.get(name)
        if source is None:  # turned off or removed by a reload since the round began
            return False, 0
        ok, cursor = await self.store.claim_reply_poll(name, self.owner, self.clock(), self.lease)
        if not ok:  # another worker or node holds the turn, or it is not due yet
            return False, 0
        await self.limiter.acquire(name)
        try:
            page = await source.fetch_replies(cursor)
        except ReplyFetchError as exc:
            log.warning("replies could not be fetched", provider=name, code=exc.code)
            await self.store.release_reply_poll(name, self.owner, self.clock() + self.interval)
            return False, 0
        more = page.more and bool(page.replies)  # "more" with an empty page would only spin
        now = self.clock()
        stored = await self.store.store_replies(
            name,
            page.replies,
            self.rules,
            now,
            cursor=page.cursor,
            owner=self.owner,
            next_poll_at=now if more else now + self.interval,
        )  # committed: only now may the provider forget them
        self._account(name, page, stored)
        if page.replies:
            await self._acknowledge(name, source, page)
        return more, stored.new

    async def _acknowledge(self, name: str, source: ReplySource, page: ReplyPage) -> None:
        await self.limiter.acquire(name)
        try:
            await source.acknowledge_replies([r.provider_ref for r in page.replies])
        except ReplyFetchError as exc:  # fetched again next time; the spool keeps them once
            log.warning("replies could not be marked read", provider=name, code=exc.code)

    def _account(self, name: str, page: ReplyPage, stored: StoredReplies) -> None:
        if page.replies:
            log.info("replies fetched", provider=name, fetched=len(page.replies), new=stored.new)
        if account(name, stored):
            self.on_new()


def account(provider: str, stored: StoredReplies) -> bool:
    """Count what one store took, by state, and log each reply kept but never to be mailed once, with its reason
    (only replies new to the spool are in `stored`, so a reply fetched twice is not logged twice). True when
    something is to be mailed now."""
    for ref, state in stored.states.items():
        metrics.REPLIES.labels(provider, state.value).inc()
        if state in (ReplyState.THROTTLED, ReplyState.DROPPED):
            log.warning(
                "reply kept, not mailed",
                provider=provider,
                state=state.value,
                provider_ref=ref,
                why=stored.why.get(ref, ""),
            )
    return any(state is ReplyState.PENDING for state in stored.states.values())


class ReplyPushSink:
    """The push door's reply sink (dispatch.receipt_push): stores pushed replies without a poll turn, by the same
    rules, counts and logs them as a poll does, and wakes the reply mailer; returns how many were new."""

    def __init__(
        self,
        store: ReplyStore,
        rules: ReplyRules,
        *,
        on_new: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rules = rules
        self.on_new = on_new
        self.clock = clock

    async def __call__(self, provider: str, found: Sequence[InboundSms]) -> int:
        stored = await self.store.store_replies(provider, found, self.rules, self.clock())
        if account(provider, stored):
            self.on_new()
        return stored.new
