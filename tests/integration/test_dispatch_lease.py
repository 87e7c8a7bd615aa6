"""A dispatcher never sends jobs whose lease it lost while they waited: the other owner sends them, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mail2sms.dispatch.dispatcher import Dispatcher
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.model import Balance, Batch, Job, Result, Sent, Submission
from mail2sms.providers.base import Limits
from mail2sms.providers.http import request_leaving
from mail2sms.spool import open_spool


class GatedProvider:
    """Waits for the test's go-ahead before its request "leaves"; counts the requests that did."""

    name = "gated"
    limits = Limits(max_recipients=1, rate=1000.0)

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.waiting = asyncio.Event()
        self.sent: list[str] = []

    async def send(self, batch: Batch) -> list[Result]:
        self.waiting.set()
        await self.go.wait()
        await request_leaving()  # raises LeaseLost if the jobs are no longer ours
        self.sent.extend(batch.numbers)
        return [Sent("id") for _ in batch.jobs]

    async def balance(self) -> Balance:
        return Balance(self.name, None)


async def test_lost_lease_stops_the_send(tmp_path: Path) -> None:
    """The lease runs out while a batch waits, another owner claims the job: the first owner's request never leaves."""
    spool = open_spool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    provider = GatedProvider()
    dispatcher = Dispatcher(spool, {"gated": provider}, RetryPolicy(base=0.1, cap=0.1), lease=60.0,
                            poll_interval=0.05)
    try:
        now = time.time()
        sub = Submission("a@b.c", ["x"], [Job(number="96550000001", text="hi", provider="gated")], "r",
                         received_at=now)
        await spool.commit(sub, ["k"], 86400)
        run = asyncio.create_task(dispatcher.run())
        await asyncio.wait_for(provider.waiting.wait(), 10)
        stolen = await spool.claim("other-node:1:1", now + 120, 10, 60.0)  # as another node sees it, later
        assert [j.number for j in stolen] == ["96550000001"]
        provider.go.set()
        await dispatcher.stop(5.0)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        assert provider.sent == []
        assert await spool.counts() == {"queued": 1}  # still the other owner's, to send once
    finally:
        await spool.close()
