"""Receipts above the spool (issue 15), over real HTTP on 127.0.0.1: the poller asks the providers' fakes about
SMS really sent through them and settles them in a ReceiptStore (the in-memory one the spool will replace), and
the `[http]` endpoint takes Kapow's dlr callbacks at `/receipts/<name>/<token>`, refusing forged tokens."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from mail2sms import config as configuration
from mail2sms import metrics
from mail2sms.config import ProviderConfig
from mail2sms.dispatch import receipt_schedule as schedule
from mail2sms.dispatch.priority import SendingFirst
from mail2sms.dispatch.ratelimit import LocalRateLimiter
from mail2sms.dispatch.receipt_poller import ReceiptPoller
from mail2sms.dispatch.receipt_push import ReceiptDoor
from mail2sms.dispatch.receipt_store import Awaiting, ReceiptState, StoreSink
from mail2sms.model import Batch, DeliveryState, Job, Receipt, Sent, SmsOptions
from mail2sms.providers.http import build_client
from mail2sms.providers.receipts import push_receiver, receipt_source
from mail2sms.providers.registry import build_provider
from mail2sms.spool import open_spool
from mail2sms.web import WebServer
from tests.fakes.kapow import FakeKapow
from tests.fakes.kwtsms import FakeKwtSms
from tests.receipts_memory import MemoryReceiptStore

PASSWORD = "pa55-w0rd-kapow"
TOKEN = "t0k3n-receipts-4711"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingLimiter:
    """The poller's side of a shared provider rate, counting the turns it took."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.shared = SendingFirst(LocalRateLimiter(rates))
        self.turns: dict[str, int] = {}

    async def acquire(self, provider: str) -> None:
        await self.shared.polling.acquire(provider)
        self.turns[provider] = self.turns.get(provider, 0) + 1


def adapter(name: str, settings: dict[str, Any], client: httpx.AsyncClient) -> Any:
    return build_provider(name, ProviderConfig.model_validate(settings), client)


async def send(provider: Any, *numbers: str) -> list[Awaiting]:
    """Send one SMS to `numbers` through the adapter; what the store holds for each accepted number."""
    jobs = tuple(
        Job(number=n, text="Server room door open", provider=provider.name, idempotency_key=f"k-{n}") for n in numbers
    )
    results = await provider.send(Batch(provider.name, None, None, "Server room door open", SmsOptions(), jobs))
    assert all(isinstance(r, Sent) and r.provider_id for r in results), results
    return [
        Awaiting(f"job-{n}", "sub-1", provider.name, str(r.provider_id), n, T0, 0, schedule.first_poll_at(T0))
        for r, n in zip(results, numbers, strict=True)
        if isinstance(r, Sent)
    ]


def status_requests(fake: Any, path: str) -> int:
    return sum(1 for r in fake.requests if r.path.endswith(path))


async def test_poller_settles_delivered_failed_and_closes_the_window() -> None:
    """Kapow: nothing is asked before the first minute; then D and X settle two SMS, the third (still `S`) is asked
    again by the back-off and becomes "no receipt" at the window's end; one limiter turn per status request."""
    async with build_client(timeout=10.0) as client:
        with FakeKapow(accounts={"user": (PASSWORD, 100)}) as fake:
            provider = adapter(
                "kapow1", {"type": "kapow", "url": fake.url, "username": "user", "password": PASSWORD}, client
            )
            store = MemoryReceiptStore()
            items = await send(provider, "447700900001", "447700900002", "447700900003")
            for item in items:
                store.add(item)
            clock = Clock(T0 + 30)
            limiter = CountingLimiter({"kapow1": 1000.0})
            source = receipt_source(provider)
            assert source is not None
            poller = ReceiptPoller(store, {"kapow1": source}, limiter, clock=clock)

            assert await poller.run_once() == 0
            assert status_requests(fake, "chk_status.php") == 0

            fake.deliver(items[0].provider_id, "D")
            fake.deliver(items[1].provider_id, "X")
            clock.now = T0 + 60
            assert await poller.run_once() == 3
            assert store.final["job-447700900001"].state is ReceiptState.DELIVERED
            assert store.final["job-447700900002"].state is ReceiptState.UNDELIVERED
            assert (
                store.final["job-447700900002"].why
                == "Kapow reports the SMS failed: the number may be wrong or unreachable"
            )
            [left] = store.pending.values()
            assert (left.polls, left.next_poll_at) == (1, T0 + 60 + 120)

            clock.now = T0 + 100  # not due yet
            assert await poller.run_once() == 0

            clock.now = T0 + schedule.WINDOW
            assert await poller.run_once() == 1
            final = store.final["job-447700900003"]
            assert (final.state, final.via) == (ReceiptState.NO_RECEIPT, "window")
            assert "within 48 hours" in final.why
            assert limiter.turns["kapow1"] == status_requests(fake, "chk_status.php") == 4
            assert fake.errors == []


async def test_numbers_sent_under_one_id_cost_one_status_request(client: httpx.AsyncClient) -> None:
    """KwtSMS answers per msg-id: two numbers sent in one request are asked about in one status request, and its
    per-number words settle each."""
    with FakeKwtSms(accounts={"user": (PASSWORD, 100)}, senders=["Shop"]) as fake:
        provider = adapter(
            "kwt",
            {"type": "kwtsms", "url": fake.url, "username": "user", "password": PASSWORD, "sender": "Shop"},
            client,
        )
        store = MemoryReceiptStore()
        items = await send(provider, "96550000001", "96550000002")
        assert items[0].provider_id == items[1].provider_id
        for item in items:
            store.add(item)
        fake.set_report(items[0].provider_id, "DELIVERED", "96550000001")
        fake.set_report(items[0].provider_id, "Not delivered", "96550000002")
        source = receipt_source(provider)
        assert source is not None
        poller = ReceiptPoller(store, {"kwt": source}, CountingLimiter({"kwt": 1000.0}), clock=Clock(T0 + 60))
        before = len(fake.requests)
        assert await poller.run_once() == 2
        assert len(fake.requests) - before == 1
        assert store.final["job-96550000001"].state is ReceiptState.DELIVERED
        assert store.final["job-96550000002"].state is ReceiptState.UNDELIVERED
        assert fake.errors == []


async def test_run_loop_polls_until_stopped(client: httpx.AsyncClient) -> None:
    """`run()` keeps polling in rounds until its stop event is set, and then returns."""
    with FakeKapow(accounts={"user": (PASSWORD, 100)}) as fake:
        provider = adapter(
            "kapow1", {"type": "kapow", "url": fake.url, "username": "user", "password": PASSWORD}, client
        )
        store = MemoryReceiptStore()
        [item] = await send(provider, "447700900001")
        store.add(item)
        fake.deliver(item.provider_id, "D")
        source = receipt_source(provider)
        assert source is not None
        poller = ReceiptPoller(store, {"kapow1": source}, CountingLimiter({}), clock=Clock(T0 + 61))
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop, idle=0.05))
        for _ in range(2000):  # a generous bound on a condition, never a timing assertion
            if store.final:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 30)
        assert store.final[item.job_id].state is ReceiptState.DELIVERED


# == push ===========================================================================================================
class Pushed:
    """A real WebServer with the receipt door for one Kapow account configured from TOML."""

    def __init__(self, web: WebServer, store: MemoryReceiptStore, provider: Any, fake: FakeKapow) -> None:
        self.web, self.store, self.provider, self.fake = web, store, provider, fake

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web.port}{path}"


@pytest.fixture
async def pushed(tmp_path: Any, client: httpx.AsyncClient) -> AsyncIterator[Pushed]:
    spool = open_spool(f"sqlite:///{tmp_path}/spool.db")
    await spool.open()
    web = WebServer("127.0.0.1:0", spool)
    await web.start()
    with FakeKapow(accounts={"user": (PASSWORD, 100)}) as fake:
        conf = configuration.parse(f"""
[receipts]
public_url = "http://127.0.0.1:{web.port}/"
token = "{TOKEN}"
[providers.kapow1]
type = "kapow"
url = "{fake.url}"
username = "user"
password = "{PASSWORD}"
""")
        provider = build_provider("kapow1", conf.providers["kapow1"], client)
        receiver = push_receiver(provider)
        assert receiver is not None
        store = MemoryReceiptStore()
        web.receipts = ReceiptDoor(
            {"kapow1": receiver}, {"kapow1": conf.receipt_token("kapow1")}, StoreSink(store, lambda: T0)
        )
        try:
            yield Pushed(web, store, provider, fake)
        finally:
            await web.close()
            await spool.close()
    assert fake.errors == []


def refused(provider: str) -> float:
    return metrics.REGISTRY.get_sample_value("mail2sms_receipt_push_refused_total", {"provider": provider}) or 0.0


async def test_kapow_calls_back_and_the_push_settles(pushed: Pushed) -> None:
    """receipts.public_url gives Kapow the dlr address; its callbacks settle one SMS delivered, one not delivered."""
    items = await send(pushed.provider, "447700900001", "447700900002")
    dlr = pushed.fake.requests[0].param("dlr")
    assert dlr == f"127.0.0.1:{pushed.web.port}/receipts/kapow1/{TOKEN}?"
    for item in items:
        pushed.store.add(item)
    with capture_logs() as logs:
        pushed.fake.deliver(items[0].provider_id, "D")
        pushed.fake.deliver(items[1].provider_id, "X")
        calls = await asyncio.to_thread(pushed.fake.wait_callbacks, 2)
    assert [status for _, status in calls] == [200, 200]
    assert pushed.store.final[items[0].job_id].state is ReceiptState.DELIVERED
    assert pushed.store.final[items[1].job_id].state is ReceiptState.UNDELIVERED
    assert {f.via for f in pushed.store.final.values()} == {"push"}
    assert TOKEN not in repr(logs)


async def test_a_forged_token_gets_404_and_is_counted(pushed: Pushed, client: httpx.AsyncClient) -> None:
    """A wrong token, a missing one, or an unknown provider: 404, counted, nothing settled, the token never logged."""
    [item] = await send(pushed.provider, "447700900001")
    pushed.store.add(item)
    query = {"returnid": item.provider_id, "mobile": "447700900001", "status": "D"}
    before, before_unknown = refused("kapow1"), refused("")
    with capture_logs() as logs:
        forged = await client.get(pushed.url("/receipts/kapow1/not-the-token"), params=query)
        missing = await client.get(pushed.url("/receipts/kapow1/"), params=query)
        stranger = await client.get(pushed.url(f"/receipts/nobody/{TOKEN}"), params=query)
    assert [forged.status_code, missing.status_code, stranger.status_code] == [404, 404, 404]
    assert refused("kapow1") == before + 1
    assert refused("") == before_unknown + 2
    assert pushed.store.final == {}
    assert TOKEN not in repr(logs)
    assert "not-the-token" not in repr(logs)


async def test_unknown_ids_are_ignored_without_error(pushed: Pushed, client: httpx.AsyncClient) -> None:
    """A receipt for a message id nobody awaits is answered 200 (so the provider does not retry) and settles nothing;
    a form POST works as a GET does."""
    answer = await client.get(
        pushed.url(f"/receipts/kapow1/{TOKEN}"),
        params={"returnid": "123456789", "mobile": "447700900009", "status": "D"},
    )
    assert answer.status_code == 200
    [item] = await send(pushed.provider, "447700900001")
    pushed.store.add(item)
    posted = await client.post(
        pushed.url(f"/receipts/kapow1/{TOKEN}"),
        data={"returnid": item.provider_id, "mobile": "447700900001", "status": "X"},
    )
    assert posted.status_code == 200
    assert pushed.store.final[item.job_id].state is ReceiptState.UNDELIVERED


def raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head)
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_body_over_the_limit_gets_413(pushed: Pushed) -> None:
    """A push whose Content-Length is over the limit is answered 413 before its body is read; a chunked one 411."""
    big = (
        f"POST /receipts/kapow1/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 300000\r\n\r\n"
    ).encode()
    chunked = (f"POST /receipts/kapow1/{TOKEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    answers: list[Callable[[], bytes]] = [
        lambda: raw_request(pushed.web.port, big),
        lambda: raw_request(pushed.web.port, chunked),
    ]
    replies = [await asyncio.to_thread(answer) for answer in answers]
    assert replies[0].startswith(b"HTTP/1.1 413 ")
    assert replies[1].startswith(b"HTTP/1.1 411 ")


async def test_a_forged_token_is_refused_before_the_size_is_looked_at(pushed: Pushed) -> None:
    """A big body with a wrong token is a 404, not a 413: the endpoint tells a stranger nothing."""
    head = b"POST /receipts/kapow1/wrong HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n"
    reply = await asyncio.to_thread(raw_request, pushed.web.port, head)
    assert reply.startswith(b"HTTP/1.1 404 ")


class PushDuringPoll(MemoryReceiptStore):
    """A store where a push settles the claimed SMS while the poller's request is on its way."""

    sink: StoreSink | None = None

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Awaiting]:
        due = await super().claim_due(now, limit, lease)
        assert self.sink is not None
        for item in due:
            receipt = Receipt(item.provider_id, item.number, DeliveryState.DELIVERED, "D", "Kapow reports delivered")
            await self.sink(item.provider, [receipt])
        return due


async def test_push_and_poll_for_one_sms_settle_it_once(client: httpx.AsyncClient) -> None:
    """A push that settles an SMS while its poll is in flight wins; the poll's later answer changes nothing."""
    with FakeKapow(accounts={"user": (PASSWORD, 100)}) as fake:
        provider = adapter(
            "kapow1", {"type": "kapow", "url": fake.url, "username": "user", "password": PASSWORD}, client
        )
        store = PushDuringPoll()
        store.sink = StoreSink(store, lambda: T0 + 61)
        [item] = await send(provider, "447700900001")
        store.add(item)
        fake.deliver(item.provider_id, "X")  # the poll will hear "failed"; the push already said delivered
        source = receipt_source(provider)
        assert source is not None
        poller = ReceiptPoller(store, {"kapow1": source}, CountingLimiter({}), clock=Clock(T0 + 61))
        assert await poller.run_once() == 1
        final = store.final[item.job_id]
        assert (final.state, final.via) == (ReceiptState.DELIVERED, "push")
        assert store.settle_calls == 2  # the poll's settle was refused: no second follow-up
        assert status_requests(fake, "chk_status.php") == 1
