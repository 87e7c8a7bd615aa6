"""How many jobs a dispatcher claims at once for each provider, so that workers and nodes share the work.

A claim is what the provider can send before the claim goes stale (half a lease, when the dispatcher hands an
unsent batch back): at most the provider's rate × half a lease in requests, and never more than a few rounds of
this process's requests in flight for it (its concurrency × `ROUNDS`), however fast or slow the provider is.
Those requests carry as many jobs as the queue lets one request carry (`fill`): 200 numbers of one broadcast,
but one job for a queue of single mails with texts of their own. `claim_limit` caps it all.

Why the concurrency cap (issue 14, item 3): rate × lease alone is 5,000 jobs for any provider with a generous rate,
so with a latency-bound provider one worker held every ready job while the others found nothing for half a lease.
With the cap, what one worker holds is what its own workers send in the next few rounds, and the rest stays in
the spool for the others; the dispatcher claims again as soon as half of it is sent, so none of them waits.

How full a request gets is measured, not assumed: the jobs claimed lately (about one full claim of them) are
counted by the request they would share (`batch_key`); jobs per distinct key is what one request carries. One
claim is too small a sample on its own: sixteen rows of a CSV with twenty texts are sixteen different texts,
yet a hundred rows of it fill twenty requests five deep; remembering the recent claims lets the estimate, and so
the claim, grow with what the queue shows, and shrink back within one claim when single mails follow. What a claim
itself shows counts at once (`more`): when its jobs share requests (a broadcast after single mails), or mostly
repeat the requests of the claims before (the CSV's second claim), the dispatcher claims more before it batches,
so the numbers go in full requests. Single mails show neither and are claimed a budget at a time.

Two workers may still each take part of one broadcast that became ready while both were idle: at most one partly
filled request more per worker, the price of neither holding the whole queue.

It only does arithmetic on what it is told: it never claims, sends or touches the spool.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mail2sms.limits import Limits
from mail2sms.model import Account, Batch, Job, SmsOptions

ROUNDS = 4  # rounds of a provider's requests in flight one claim may hold; it claims again at half of it
GROW = 4  # a claim whose jobs mostly repeat requests seen before asks at once for this many times more


class _Limited(Protocol):
    @property
    def limits(self) -> Limits: ...


BatchKey = tuple[Account | None, str | None, str | None, SmsOptions]


def batch_key(item: Batch | Job, personalised: bool) -> BatchKey:
    """What a batch's jobs have in common, as `batching.make_batches` groups them: the jobs of one provider that may
    share a request share it (without the text where the provider takes different texts in one request)."""
    return (item.account, item.sender, None if personalised else item.text, item.options)


@dataclass
class _Recent:
    """The jobs claimed lately for one provider, counted by batch key, one Counter per claim (oldest first)."""

    claims: deque[Counter[BatchKey]] = field(default_factory=deque)
    keys: Counter[BatchKey] = field(default_factory=Counter)
    jobs: int = 0

    def add(self, claim: Counter[BatchKey], window: int) -> None:
        self.claims.append(claim)
        self.keys.update(claim)
        self.jobs += claim.total()
        # Keep about one full claim of history: enough to see a broadcast's texts repeat, short enough that single
        # mails after a broadcast are seen for what they are after one claim.
        while len(self.claims) > 1 and self.jobs - self.claims[0].total() >= window:
            old = self.claims.popleft()
            self.keys.subtract(old)
            self.jobs -= old.total()
            self.keys = +self.keys  # drop the keys no longer seen

    def fill(self) -> float:
        """Jobs per request the recent claims would have made, were they one claim; 1.0 before any claim."""
        return self.jobs / len(self.keys) if self.keys else 1.0


class ClaimSizer:
    """The claim budget of each provider for one dispatcher (see the module docstring)."""

    def __init__(
        self,
        providers: Mapping[str, _Limited],
        concurrency: Mapping[str, int],
        *,
        lease: float,
        rate_share: int,
        claim_limit: int,
    ) -> None:
        self.providers = providers
        self.concurrency = concurrency
        self.lease = lease
        self.rate_share = max(1, rate_share)
        self.claim_limit = claim_limit
        self._recent: dict[str, _Recent] = {name: _Recent() for name in providers}

    def requests(self, provider: str) -> int:
        """Requests worth holding: what the rate sends in half a lease, at most `ROUNDS` rounds of the workers."""
        limits = self.providers[provider].limits
        rate = limits.rate / self.rate_share if limits.rate else math.inf
        rounds = self.concurrency[provider] * ROUNDS
        return max(1, int(min(rate * self.lease / 2, rounds)))

    def per_request(self, provider: str) -> int:
        """The most jobs one request to `provider` can carry (different texts too, where it takes them)."""
        limits = self.providers[provider].limits
        return max(1, limits.max_recipients, limits.max_messages or 0)

    def cap(self, provider: str) -> int:
        """The most jobs this dispatcher ever holds for `provider`: every request full, at most `claim_limit`."""
        return max(1, min(self.claim_limit, self.requests(provider) * self.per_request(provider)))

    def fill(self, provider: str) -> float:
        """Jobs one request is expected to carry, from the recent claims, between 1 and `per_request`."""
        return min(float(self.per_request(provider)), max(1.0, self._recent[provider].fill()))

    def budget(self, provider: str, fill: float = 1.0) -> int:
        """Jobs to hold for `provider` now: its requests times their expected fill (or `fill`, if more), at most
        `cap`."""
        expected = max(self.fill(provider), min(fill, float(self.per_request(provider))))
        return max(1, min(self.cap(provider), math.ceil(self.requests(provider) * expected)))

    def more(self, provider: str, claimed: Sequence[Job], last: int, held: int) -> int:
        """Jobs to claim at once beyond `claimed` (this tick's claims so far; the last `last` of them a full claim),
        with `held` jobs held before the tick; 0 for none. Claimed together, jobs are batched together.

        More is asked when the jobs share requests two or more deep themselves (a broadcast, even after single
        mails: up to `cap` at once), or when most of the last claim's jobs share a request with jobs seen before
        (the rows of a CSV whose texts take turns: `GROW` times what is claimed, so that the claims reach full
        requests within the tick instead of over a dozen claims). Single mails, each with its own text, show
        neither and ask for nothing more. Never beyond `cap`."""
        personalised = bool(self.providers[provider].limits.max_messages)
        keys = [batch_key(j, personalised) for j in claimed if j.provider == provider]
        if not keys:
            return 0
        if len(keys) >= 2 * len(set(keys)):
            # These jobs themselves share requests (a broadcast): the rest in one claim, the fewer claims the less
            # another worker's claim can come between them and split the broadcast into more requests.
            target = self.cap(provider)
        else:
            fresh = keys[max(0, len(keys) - last) :]
            earlier = set(keys[: len(keys) - len(fresh)]) | set(self._recent[provider].keys)
            repeats = len(fresh) - len(set(fresh) - earlier)  # jobs of the last claim whose request was seen before
            target = self.budget(provider, len(keys) / len(set(keys)))
            if fresh and repeats * 2 >= len(fresh):
                target = max(target, min(self.cap(provider), GROW * len(keys)))
        return max(0, target - held - len(keys))

    def observe(self, batches: Iterable[Batch]) -> None:
        """Learn from one claim's batches how many jobs the queue puts in one request, per provider."""
        claims: dict[str, Counter[BatchKey]] = {}
        for batch in batches:
            if batch.provider not in self._recent:
                continue  # a provider no longer configured: its jobs are refused, not sent
            personalised = bool(self.providers[batch.provider].limits.max_messages)
            claim = claims.setdefault(batch.provider, Counter())
            claim[batch_key(batch, personalised)] += len(batch.jobs)
        for provider, claim in claims.items():
            self._recent[provider].add(claim, self.cap(provider))
