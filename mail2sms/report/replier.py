"""The replier (issue 17): mail each stored SMS reply to where the spool decided it goes, exactly once.

Replies are claimed from the spool like reports (owner and lease), composed by `report.reply_mail` and delivered
in groups by the reporter's own `ReportSender` (smarthost or maildir, null envelope sender, never to one of this
gateway's SMS routes via the smarthost). Each delivery is keyed `reply-<id>`: a reply delivered to the maildir
just before a crash is found in the maildir index and not written again, and a smarthost copy carries the fixed
Message-ID `<id.reply@hostname>`. Temporary trouble tries again with backoff; a permanent refusal (or too many
tries) drops the reply with a log line saying why.

It must never mail a reply it does not hold, never choose a recipient itself (the spool's storing transaction
applied the backscatter rules and `replies.unmatched_to`), and never log a reply's text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from mail2sms import metrics
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.model import ReplyState
from mail2sms.observability import get_logger
from mail2sms.report.reply_mail import AddressRoute, compose_reply
from mail2sms.report.send import DeliveryOutcome, Outgoing, ReportSender
from mail2sms.report.ticker import Ticker
from mail2sms.spool.base import DueReply

log = get_logger("mail2sms.report")

GROUP = 20  # replies per delivery group (one smarthost connection, one fsync of the maildir's directories)
# Seconds a claimed reply is ours; a group is delivered in well under that. A killed holder's claims on this host
# are freed at once by the reporter's dead-owner sweep (spool.release_dead_receipts).
LEASE = 60.0


class ReplyMailbox(Protocol):
    """What the replier needs of the spool (`dispatch.reply_store.ReplyStore`, read by shape: the report stage
    imports no stage before it)."""

    async def claim_replies(self, owner: str, now: float, limit: int, lease: float) -> list[DueReply]: ...

    async def reply_done(self, reply_id: str, owner: str, state: ReplyState, next_at: float, why: str = "") -> bool: ...


def key(reply_id: str) -> str:
    """The reply's delivery key: its maildir index entry (never the same as a submission's)."""
    return f"reply-{reply_id}"


class Replier(Ticker):
    """Claims due replies and mails them. `routes` is read at every composition, so a reload's routes count."""

    def __init__(
        self,
        store: ReplyMailbox,
        sender: ReportSender,
        *,
        from_addr: str,
        hostname: str,
        routes: Callable[[], Sequence[AddressRoute]],
        outcome_message_id: Callable[[str], str],
        owner: str = "replier",
        poll_interval: float = 2.0,
        lease: float = LEASE,
    ) -> None:
        super().__init__(poll_interval, "reply mail")
        self.store = store
        self.sender = sender
        self.from_addr = from_addr
        self.hostname = hostname
        self.routes = routes
        self.outcome_message_id = outcome_message_id
        self.owner = owner
        self.lease = lease
        self.retry = RetryPolicy(base=30.0, cap=3600.0, max_attempts=30)

    async def tick(self) -> int:
        """Claim up to one group of due replies and deliver it; how many were claimed."""
        due = await self.store.claim_replies(self.owner, time.time(), GROUP, self.lease)
        if not due:
            return 0
        ready: list[tuple[DueReply, Outgoing]] = []
        for reply in due:
            try:
                message = compose_reply(
                    reply,
                    from_addr=self.from_addr,
                    hostname=self.hostname,
                    routes=self.routes(),
                    outcome_message_id=self._outcome_of(reply),
                )
            except Exception:
                # Not handed straight back: a reply that cannot be composed would be claimed again at once.
                log.exception("reply mail could not be composed; kept for a later try", reply=reply.id)
                await self._done(
                    reply,
                    ReplyState.PENDING,
                    time.time() + self.retry.delay(reply.attempts + 1),
                    "the mail could not be composed",
                )
                continue
            ready.append((reply, Outgoing(message, reply.mail_to, key=key(reply.id))))
        if ready:
            outcomes = await self.sender.deliver_many([outgoing for _, outgoing in ready])
            for (reply, _), outcome in zip(ready, outcomes, strict=True):
                await self._settle(reply, outcome)
        return len(due)

    def _outcome_of(self, reply: DueReply) -> str:
        sub = reply.submission
        return self.outcome_message_id(sub.id) if sub is not None else ""

    async def _settle(self, reply: DueReply, outcome: DeliveryOutcome) -> None:
        if outcome is DeliveryOutcome.DELIVERED:
            if await self._done(reply, ReplyState.MAILED, 0.0):
                metrics.REPLIES.labels(reply.provider, ReplyState.MAILED.value).inc()
                await self.sender.forget([key(reply.id)])
            log.info("reply mailed", reply=reply.id, provider=reply.provider, match=str(reply.match))
        elif outcome is DeliveryOutcome.RETRY and reply.attempts + 1 < self.retry.max_attempts:
            delay = self.retry.delay(reply.attempts + 1)
            log.warning("reply mail deferred", reply=reply.id, retry_in=round(delay, 1))
            await self._done(reply, ReplyState.PENDING, time.time() + delay, "mail delivery deferred")
        else:
            why = (
                "the mail was refused for good"
                if outcome is DeliveryOutcome.DROP
                else f"the mail could not be delivered in {reply.attempts + 1} tries"
            )
            log.error("reply mail failed permanently; dropped", reply=reply.id, why=why)
            if await self._done(reply, ReplyState.DROPPED, 0.0, why):
                metrics.REPLIES.labels(reply.provider, ReplyState.DROPPED.value).inc()

    async def _done(self, reply: DueReply, state: ReplyState, next_at: float, why: str = "") -> bool:
        held = await self.store.reply_done(reply.id, self.owner, state, next_at, why)
        if not held:
            # Our lease ran out and another process took it: its delivery counts (the maildir index and the
            # fixed Message-ID keep the copies one).
            log.warning("reply lease lost; another process settles it", reply=reply.id)
        return held
