"""An in-memory ReceiptStore (dispatch/receipt_store.py) for the receipt poller's and push endpoint's unit-sized
tests: the contract the spool implements (tests/integration/test_receipt_spool.py checks the spool's), kept as
small as the protocol allows. One process, no persistence."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mail2sms.dispatch.receipt_store import Awaiting, Settled


@dataclass
class MemoryReceiptStore:
    """Awaiting SMS by job id, their claims, and what settled them (first answer wins)."""

    pending: dict[str, Awaiting] = field(default_factory=dict)
    claimed_until: dict[str, float] = field(default_factory=dict)
    final: dict[str, Settled] = field(default_factory=dict)
    settle_calls: int = 0

    def add(self, item: Awaiting) -> None:
        self.pending[item.job_id] = item

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Awaiting]:
        due = sorted(
            (a for a in self.pending.values() if a.next_poll_at <= now and self.claimed_until.get(a.job_id, 0) <= now),
            key=lambda a: a.next_poll_at,
        )[:limit]
        for item in due:
            self.claimed_until[item.job_id] = now + lease
        return due

    async def poll_later(self, job_id: str, polls: int, next_poll_at: float) -> None:
        if job_id in self.pending:
            self.pending[job_id] = replace(self.pending[job_id], polls=polls, next_poll_at=next_poll_at)
            self.claimed_until.pop(job_id, None)

    async def awaiting(self, provider: str, provider_id: str) -> list[Awaiting]:
        return [a for a in self.pending.values() if a.provider == provider and a.provider_id == provider_id]

    async def settle(self, job_id: str, final: Settled) -> bool:
        self.settle_calls += 1
        if job_id not in self.pending:
            return False
        del self.pending[job_id]
        self.claimed_until.pop(job_id, None)
        self.final[job_id] = final
        return True
