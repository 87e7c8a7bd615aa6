"""Replies over real HTTP on 127.0.0.1 (issue 17): Cellcast's fake holds a reply to an SMS the adapter really
sent through it; the reply poller fetches it into a real SQLite spool and marks it read only afterwards, and the
`[http]` door takes Cellcast's inbound webhook at `/receipts/<name>/<token>` into the same spool — once, whatever
pushed or polled it — while delivery-receipt pushes on that URL keep working as before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from mail2sms import config as configuration
from mail2sms.dispatch import receipt_schedule as schedule
from mail2sms.dispatch.priority import SendingFirst
from mail2sms.dispatch.ratelimit import LocalRateLimiter
from mail2sms.dispatch.receipt_push import ReceiptDoor
from mail2sms.dispatch.receipt_store import Awaiting, ReceiptState, StoreSink
from mail2sms.dispatch.reply_poller import ReplyPoller, ReplyPushSink, ReplySourcesOf, reply_rules
from mail2sms.model import Batch, Job, JobState, ReplyMatch, Sent, SmsOptions, Submission
from mail2sms.providers.receipts import push_receiver
from mail2sms.providers.registry import build_provider
from mail2sms.providers.replies import reply_push_receiver
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate, Spool
from mail2sms.web import WebServer
from tests.fakes.cellcast import FakeCellcast
from tests.receipts_memory import MemoryReceiptStore

KEY = "cellcast-app-key-9931"
TOKEN = "t0k3n-replies-5521"
NUMBER = "61400000001"
TEXT = "ACK from the on-call phone"


class Wired:
    """A running door and poller over one spool, the Cellcast fake, and the SMS mail2sms sent through it."""

    def __init__(
        self,
        spool: Spool,
        web: WebServer,
        fake: FakeCellcast,
        provider: Any,
        poller: ReplyPoller,
        receipts: MemoryReceiptStore,
        sms: Awaiting,
        stored: asyncio.Event,
    ) -> None:
        self.spool, self.web, self.fake, self.provider, self.poller = spool, web, fake, provider, poller
        self.receipts, self.sms, self.stored = receipts, sms, stored

    def url(self, token: str = TOKEN, name: str = "cc") -> str:
        return f"http://127.0.0.1:{self.web.port}/receipts/{name}/{token}"


async def sent_through(spool: Spool, provider: Any) -> Awaiting:
    """Commit a submission from alice to NUMBER, send it through the adapter, and record the acceptance."""
    job = Job(number=NUMBER, text="Server room door open", provider="cc", sender="ALARM")
    sub = Submission(
        envelope_from="alice@example.org",
        recipients=[f"{NUMBER}@sms.test"],
        jobs=[job],
        route="r",
        message_id="<door@panel>",
        subject="Door",
        report_to="alice@example.org",
        received_at=time.time(),
    )
    assert not (await spool.commit(sub, ["k"], 86400.0)).duplicate
    [result] = await provider.send(Batch("cc", None, "ALARM", job.text, SmsOptions(), (job,)))
    assert isinstance(result, Sent)
    assert result.provider_id
    await spool.record([JobUpdate(job.id, JobState.SENT, 1, 0.0, result.provider_id)], time.time())
    return Awaiting(job.id, sub.id, "cc", result.provider_id, NUMBER, time.time(), 0, schedule.first_poll_at(0.0))


@pytest.fixture
async def wired(tmp_path: Path, client: httpx.AsyncClient) -> AsyncIterator[Wired]:
    """Cellcast's fake, an adapter for it named "cc", a SQLite spool, the door on a WebServer and a reply poller."""
    spool = open_spool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    web = WebServer("127.0.0.1:0", spool)
    await web.start()
    with FakeCellcast(keys={KEY: 100.0}) as fake:
        conf = configuration.parse(f"""
[receipts]
token = "{TOKEN}"
[replies]
poll_interval = 60
[providers.cc]
type = "cellcast"
url = "{fake.url}"
key = "{KEY}"
""")
        provider = build_provider("cc", conf.providers["cc"], client)
        receipt_receiver, reply_receiver = push_receiver(provider), reply_push_receiver(provider)
        assert receipt_receiver is not None
        assert reply_receiver is not None
        receipts, stored = MemoryReceiptStore(), asyncio.Event()
        rules = reply_rules(conf.replies)
        web.receipts = ReceiptDoor(
            {"cc": receipt_receiver},
            {"cc": conf.receipt_token("cc")},
            StoreSink(receipts, time.time),
            reply_receivers={"cc": reply_receiver},
            reply_sink=ReplyPushSink(spool, rules, on_new=stored.set),
        )
        limiter = SendingFirst(LocalRateLimiter({"cc": 10.0})).polling
        poller = ReplyPoller(
            spool,
            ReplySourcesOf({"cc": provider}),
            limiter,
            rules,
            interval=conf.replies.poll_interval,
            owner="node-1",
            on_new=stored.set,
        )
        try:
            yield Wired(spool, web, fake, provider, poller, receipts, await sent_through(spool, provider), stored)
        finally:
            await web.close()
            await spool.close()
    assert fake.errors == []


async def test_a_polled_reply_is_stored_linked_then_marked_read(wired: Wired) -> None:
    """The poller fetches Cellcast's reply to the SMS, stores it linked to alice's submission, wakes the mailer,
    and only then marks it read at Cellcast; the next poll finds nothing new."""
    ref = wired.fake.add_reply(wired.sms.provider_id, TEXT)
    with capture_logs() as logs:
        assert await wired.poller.run_once() == 1
    assert wired.stored.is_set()
    assert wired.fake.is_read(ref)
    [due] = await wired.spool.claim_replies("mailer", time.time(), 10, 60.0)
    assert (due.match, due.mail_to, due.text, due.number) == (ReplyMatch.LINKED, "alice@example.org", TEXT, NUMBER)
    assert due.job is not None
    assert due.job.id == wired.sms.job_id
    assert NUMBER not in repr(logs)
    assert TEXT not in repr(logs)
    assert KEY not in repr(logs)


async def test_a_pushed_reply_is_stored_once_and_a_later_poll_keeps_it_once(
    wired: Wired, client: httpx.AsyncClient
) -> None:
    """Cellcast's inbound webhook on the door gets 200 and stores the reply linked to alice's SMS; pushed again
    (a provider retry) and then polled, it is still one reply."""
    ref = wired.fake.add_reply(wired.sms.provider_id, TEXT)
    body = wired.fake.inbound_body(ref)
    headers = {"Content-Type": "application/json"}
    with capture_logs() as logs:
        first = await client.post(wired.url(), content=body, headers=headers)
        again = await client.post(wired.url(), content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert wired.stored.is_set()
    assert [e["new"] for e in logs if e["event"] == "reply push"] == [1, 0]
    assert TOKEN not in repr(logs)
    assert TEXT not in repr(logs)
    assert await wired.poller.run_once() == 0
    assert wired.fake.is_read(ref)
    [due] = await wired.spool.claim_replies("mailer", time.time(), 10, 60.0)
    assert (due.match, due.mail_to) == (ReplyMatch.LINKED, "alice@example.org")
    assert await wired.spool.reply_counts() == {"pending": 1}


async def test_receipt_pushes_on_the_same_door_still_settle(wired: Wired, client: httpx.AsyncClient) -> None:
    """A Cellcast DLR callback on the door settles the SMS's receipt as before and stores no reply; a body with
    neither is answered 200 and changes nothing."""
    wired.receipts.add(wired.sms)
    wired.fake.set_status(wired.sms.provider_id, "Delivered")
    answer = await client.post(
        wired.url(), content=wired.fake.dlr_body([wired.sms.provider_id]), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200
    assert wired.receipts.final[wired.sms.job_id].state is ReceiptState.DELIVERED
    with capture_logs() as logs:
        empty = await client.post(wired.url(), content=b"{}", headers={"Content-Type": "application/json"})
    assert empty.status_code == 200
    assert any(e["event"] == "push carried no receipt or reply mail2sms could read" for e in logs)
    assert await wired.spool.reply_counts() == {}


async def test_a_reply_push_with_a_wrong_token_is_refused_and_stores_nothing(
    wired: Wired, client: httpx.AsyncClient
) -> None:
    """A forged token or an unknown provider name gets 404 for a reply push too; nothing is stored."""
    ref = wired.fake.add_reply(wired.sms.provider_id, TEXT)
    body = wired.fake.inbound_body(ref)
    forged = await client.post(wired.url("not-the-token"), content=body)
    stranger = await client.post(wired.url(name="nobody"), content=body)
    assert (forged.status_code, stranger.status_code) == (404, 404)
    assert await wired.spool.reply_counts() == {}


async def test_a_door_for_replies_only_admits_its_provider(wired: Wired, client: httpx.AsyncClient) -> None:
    """A provider that pushes replies but no receipts still has its token admitted and its replies stored; a reply
    sink in trouble answers 503 so the provider retries, and logs neither the number nor the text."""
    reply_receiver = reply_push_receiver(wired.provider)
    assert reply_receiver is not None
    failing = Failing()
    wired.web.receipts = ReceiptDoor(
        {},
        {"cc": TOKEN, "other": "x"},
        StoreSink(wired.receipts, time.time),
        reply_receivers={"cc": reply_receiver},
        reply_sink=failing,
    )
    assert wired.web.receipts.tokens == {"cc": TOKEN}
    ref = wired.fake.add_reply(wired.sms.provider_id, TEXT)
    with capture_logs() as logs:
        busy = await client.post(wired.url(), content=wired.fake.inbound_body(ref))
    assert busy.status_code == 503
    assert any(e["event"] == "reply push could not be stored" for e in logs)
    assert NUMBER not in repr(logs)
    assert TEXT not in repr(logs)
    failing.broken = False
    assert (await client.post(wired.url(), content=wired.fake.inbound_body(ref))).status_code == 200
    assert failing.taken == [(ref, NUMBER, TEXT)]


class Failing:
    """A reply sink that fails (with the row in its message, as a database error might) until repaired."""

    def __init__(self) -> None:
        self.broken = True
        self.taken: list[tuple[str, str, str]] = []

    async def __call__(self, provider: str, found: Any) -> int:
        if self.broken:
            raise RuntimeError(f"could not insert {[(r.number, r.text) for r in found]}")
        self.taken.extend((r.provider_ref, r.number, r.text) for r in found)
        return len(found)
