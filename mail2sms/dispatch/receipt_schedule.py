"""When to ask a provider again about an accepted SMS, and which status requests to make: pure rules, no I/O.

Receipts usually come within minutes, sometimes hours (a phone switched off), so the poller asks often at first
and less as the SMS ages: 1 min after acceptance, then 2, 5, 15, 30 and 60 minutes between asks, 60 from then
on, never past the receipts window (`receipts.window`, 48 h by default), whose end gets one last ask. That is
about 50 requests per SMS over 48 hours instead of 2,880 at one a minute.

Batching: one status request carries the SMS of one provider and one account, and at most the provider's
`max_ids` distinct message ids (every number sent under one id rides along: KwtSMS answers per id).

These rules must never schedule an ask after the window's end, nor put two accounts' SMS in one request (a status
request is made with the login that sent the SMS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mail2sms.dispatch.receipt_store import Awaiting
from mail2sms.model import Account

DELAYS = (60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0)  # between asks; the last repeats
WINDOW = 48 * 3600.0


def delay(polls: int) -> float:
    """Seconds to wait after the `polls`-th answer (0: after acceptance) before asking again."""
    return DELAYS[min(max(polls, 0), len(DELAYS) - 1)]


def first_poll_at(accepted_at: float, window: float = WINDOW) -> float:
    """When to ask first about an SMS accepted at `accepted_at`."""
    return min(accepted_at + delay(0), accepted_at + window)


def next_poll_at(accepted_at: float, polls: int, now: float, window: float = WINDOW) -> float:
    """When to ask again after `polls` answers, the last at `now`; never after the window ends."""
    return min(now + delay(polls), accepted_at + window)


def window_over(accepted_at: float, now: float, window: float = WINDOW) -> bool:
    """The window has closed: a pending answer now means "no receipt"."""
    return now >= accepted_at + window


def batches(due: Iterable[Awaiting], max_ids: Callable[[str], int]) -> dict[str, list[list[Awaiting]]]:
    """The status requests to make, by provider: each a list of SMS of one account and at most `max_ids(provider)`
    distinct message ids, in the order the SMS came due."""
    groups: dict[tuple[str, Account | None], list[list[Awaiting]]] = {}
    chunk_of: dict[tuple[str, Account | None, str], list[Awaiting]] = {}  # a message id's request
    ids_in: dict[int, int] = {}  # distinct ids per request, by id() of its list
    for item in due:
        key = (item.provider, item.account)
        known = chunk_of.get((*key, item.provider_id))
        if known is not None:
            known.append(item)
            continue
        chunks = groups.setdefault(key, [])
        if not chunks or ids_in[id(chunks[-1])] >= max(1, max_ids(item.provider)):
            chunks.append([])
            ids_in[id(chunks[-1])] = 0
        chunks[-1].append(item)
        ids_in[id(chunks[-1])] += 1
        chunk_of[(*key, item.provider_id)] = chunks[-1]
    out: dict[str, list[list[Awaiting]]] = {}
    for (provider, _account), chunks in groups.items():
        out.setdefault(provider, []).extend(chunks)
    return out
