"""Two-way replies above the spool (issue 17): the storage the reply poller, the push door and the reply mailer
need, as a `ReplyStore` protocol the spool implements (`spool.core`, both backends, migration 10).

A reply is stored exactly once per (provider, provider_ref): fetched twice (a crash between commit and the
provider's "mark read", two nodes, a push and a poll), it is one row and one mail. The transaction that stores it
also decides where it goes (`ReplyRules`): tied to an SMS mail2sms sent (`ReplyMatch`), it goes to that
submission's `report_to` (the backscatter rules already said who may be mailed); tied to nothing, or to a sender
who may not be mailed, to `replies.unmatched_to`, else it is DROPPED; over the per-number rate it is THROTTLED.

The provider's cursor and the right to poll a provider's replies are held here too (`claim_reply_poll`), so that
nodes and workers take turns and a cursor only moves forward in the same transaction that stored what it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mail2sms.model import InboundSms, ReplyState
from mail2sms.spool.base import DueReply, ReplyRules, StoredReplies

__all__ = ["DueReply", "ReplyRules", "ReplyStore", "StoredReplies"]


class ReplyStore(Protocol):
    """What two-way replies need from the spool. Every method is one transaction."""

    async def claim_reply_poll(self, provider: str, owner: str, now: float, lease: float) -> tuple[bool, str | None]:
        """(True, cursor) when `owner` may poll `provider`'s replies now (its turn is due and nobody else holds a
        live claim), claimed for `lease` seconds; (False, None) otherwise."""
        ...

    async def store_replies(
        self,
        provider: str,
        found: Sequence[InboundSms],
        rules: ReplyRules,
        now: float,
        *,
        cursor: str | None = None,
        owner: str | None = None,
        next_poll_at: float | None = None,
    ) -> StoredReplies:
        """Store the replies not stored yet and decide each one's way; with `owner`, also save `cursor` (when not
        None), set the next poll turn to `next_poll_at` and release the claim — all in one transaction. A push
        passes no owner."""
        ...

    async def release_reply_poll(self, provider: str, owner: str, next_poll_at: float) -> None:
        """Give up a poll claim without storing (the provider could not be read): the cursor stays."""
        ...

    async def claim_replies(self, owner: str, now: float, limit: int, lease: float) -> list[DueReply]:
        """Up to `limit` PENDING replies due now, oldest first, each claimed for `lease` seconds."""
        ...

    async def reply_done(self, reply_id: str, owner: str, state: ReplyState, next_at: float, why: str = "") -> bool:
        """Record a mailing attempt: MAILED or DROPPED end it; PENDING tries again at `next_at` (attempts + 1).
        False when `owner` no longer holds the claim (nothing written)."""
        ...

    async def reply_counts(self) -> dict[str, int]:
        """Stored replies per state, for metrics and `queue`."""
        ...
