"""Delivery receipts above the spool (issue 15): the storage the receipt poller and the push endpoint need, as a
`ReceiptStore` protocol the spool implements (`spool.core`, both backends, migration 9), and the rule that matches
a receipt to the SMS it is about.

An accepted SMS (job state `sent`, with the provider's message id) awaits a receipt until it is *settled* once:
`delivered`, `undelivered` (with the provider's reason) or `no_receipt` (none came within `receipts.window`).
Push and poll may both answer for one SMS; `settle` records only the first, so a submission never gets two
follow-up mails. When the last accepted SMS of a submission is settled, the store makes its follow-up due (the
reporter composes it with `report.followup`). Only SMS whose provider can be polled
(`providers.receipts.receipt_source(adapter)` is not None; not the outbox) await one (`Spool.track_receipts`), and
not those sent with an account from the mail or a user (it is deleted when the submission is final); the others
stay `accepted` in the follow-up.

This module does no I/O and must never settle an SMS on a receipt that does not clearly name it: a pushed receipt
without a number matches only when exactly one SMS awaits that message id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from mail2sms import metrics

# The stored types live in model.py (the spool builds them); named here too, where the poller and door look.
from mail2sms.model import Awaiting, DeliveryState, Receipt, ReceiptState, Settled

__all__ = [
    "Awaiting",
    "PushSink",
    "ReceiptState",
    "ReceiptStore",
    "Settled",
    "StoreSink",
    "final_state",
    "matching",
    "settled",
]


class ReceiptStore(Protocol):
    """What the receipt poller and the push endpoint need from the spool. Every method is one transaction."""

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Awaiting]:
        """Up to `limit` awaiting SMS whose `next_poll_at <= now`, earliest first, each claimed for `lease` seconds
        so that no other poller (process or node) asks about it meanwhile; a claim that lapses is due again."""
        ...

    async def poll_later(self, job_id: str, polls: int, next_poll_at: float) -> None:
        """Still pending after `polls` answers: release the claim and ask again at `next_poll_at`."""
        ...

    async def awaiting(self, provider: str, provider_id: str) -> list[Awaiting]:
        """The SMS of `provider` still awaiting a receipt under `provider_id` (a push names only the id)."""
        ...

    async def settle(self, job_id: str, final: Settled) -> bool:
        """Record the SMS's final state once; True when this call settled it, False when it was already final
        or is unknown (a second answer from push or poll changes nothing and makes no second follow-up)."""
        ...


# The push endpoint hands every pushed receipt here with the provider's name; it answers how many SMS were
# settled. Unknown message ids are its concern and never an error to the provider.
PushSink = Callable[[str, Sequence[Receipt]], Awaitable[int]]


def final_state(receipt: Receipt) -> ReceiptState | None:
    """The settled state a receipt gives, or None while it is pending (only clear words settle an SMS)."""
    if receipt.state is DeliveryState.DELIVERED:
        return ReceiptState.DELIVERED
    if receipt.state is DeliveryState.UNDELIVERED:
        return ReceiptState.UNDELIVERED
    return None


def matching(candidates: Sequence[Awaiting], receipt: Receipt) -> list[Awaiting]:
    """The SMS a receipt is about among those awaiting its message id: the one with its number, or the only one
    when it names no number; [] when it names a number none has, or none and several share the id."""
    same_id = [a for a in candidates if a.provider_id == receipt.provider_id]
    if receipt.number is not None:
        return [a for a in same_id if a.number == receipt.number]
    return same_id if len(same_id) == 1 else []


def settled(receipt: Receipt, state: ReceiptState, now: float, via: str) -> Settled:
    return Settled(state=state, code=receipt.code, why=receipt.why, at=receipt.at or now, via=via)


class StoreSink:
    """The push endpoint's sink over a ReceiptStore: settles each final receipt's SMS, ignores the rest."""

    def __init__(self, store: ReceiptStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    async def __call__(self, provider: str, found: Sequence[Receipt]) -> int:
        count = 0
        for receipt in found:
            state = final_state(receipt)
            if state is None:
                continue  # "not yet" from a push changes nothing: the poller's schedule stands
            for item in matching(await self.store.awaiting(provider, receipt.provider_id), receipt):
                if await self.store.settle(item.job_id, settled(receipt, state, self.clock(), "push")):
                    metrics.SMS.labels(provider, state.value).inc()
                    count += 1
        return count
