"""Delivery receipts, provider side (issue 15): every adapter polls the stateful fake of its provider over real HTTP
on 127.0.0.1 after a real send through it, and the push parsers read callbacks that really arrived over HTTP (Kapow's
fake calls the `dlr` URL it was given; Cellcast's and BulkSMS's bodies are posted as those providers post them)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.model import Batch, DeliveryState, Job, Receipt, ReceiptQuery, Sent, SmsOptions
from mail2sms.providers.receipts import PushReceiver, ReceiptSource, push_receiver, receipt_source
from mail2sms.providers.registry import build_provider
from tests.fakes.bulksms import FakeBulkSms, FakeBulkSmsJson
from tests.fakes.cellcast import FakeCellcast
from tests.fakes.kapow import FakeKapow
from tests.fakes.kobomobile import FakeKoboMobile, Shape
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.receiver import ReceiptReceiver
from tests.fakes.server import FakeProvider, RecordedRequest

D, U, P = DeliveryState.DELIVERED, DeliveryState.UNDELIVERED, DeliveryState.PENDING
PASSWORD = "pa55-w0rd"


def adapter(kind: str, fake: FakeProvider, client: httpx.AsyncClient, **config: Any) -> Any:
    settings = {"type": kind, "url": fake.url, "username": "user", "password": PASSWORD, "sender": "Shop", **config}
    return build_provider(kind, ProviderConfig.model_validate(settings), client)


async def send(provider: Any, *numbers: str) -> list[ReceiptQuery]:
    """Send one SMS to `numbers` through the adapter; one query per number from the ids it reports."""
    jobs = tuple(Job(number=n, text="Server room door open", provider=provider.name, idempotency_key=f"k-{n}")
                 for n in numbers)
    results = await provider.send(Batch(provider.name, None, None, "Server room door open", SmsOptions(), jobs))
    assert all(isinstance(r, Sent) and r.provider_id for r in results), results
    return [ReceiptQuery(str(r.provider_id), n) for r, n in zip(results, numbers, strict=True) if isinstance(r, Sent)]


async def poll(provider: Any, items: list[ReceiptQuery]) -> list[Receipt]:
    source = receipt_source(provider)
    assert isinstance(source, ReceiptSource)
    found = await source.poll_receipts(items)
    assert [(r.provider_id, r.number) for r in found] == [(i.provider_id, i.number) for i in items]
    return found


def pushed(provider: Any, request: RecordedRequest) -> list[Receipt]:
    parser = push_receiver(provider)
    assert isinstance(parser, PushReceiver)
    return parser.parse_receipt_push(request.method, request.query, request.body, request.headers.get("content-type",
                                                                                                      ""))


# == Kapow ==========================================================================================================
async def test_kapow_poll_delivered_failed_pending_and_unknown(client: httpx.AsyncClient) -> None:
    """chk_status.php per returnid: one delivered, one failed at the handset, one still sent; a foreign id waits."""
    with FakeKapow(accounts={"user": (PASSWORD, 100)}) as fake:
        provider = adapter("kapow", fake, client)
        items = await send(provider, "447700900001", "447700900002", "447700900003")
        fake.deliver(items[0].provider_id, "D")
        fake.deliver(items[1].provider_id, "X")
        found = await poll(provider, [*items, ReceiptQuery("99999999999999999", "447700900009")])
        assert [(r.state, r.code) for r in found] == [(D, "D"), (U, "X"), (P, "S"), (P, "ERROR")]
        assert all("password" not in r.params for r in fake.requests if r.path.endswith("chk_status.php"))
        assert fake.errors == []


async def test_kapow_calls_the_dlr_url_and_the_push_parser_reads_it(
    client: httpx.AsyncClient, receiver: ReceiptReceiver
) -> None:
    """The send carries dlr=<receipt URL without http://>; Kapow's fake calls it per final report; the parser reads
    the calls that arrived: one delivered, one failed, with the numbers and the token path intact."""
    with FakeKapow(accounts={"user": (PASSWORD, 100)}) as fake:
        url = f"{receiver.url}kapow/t0k3n"
        provider = adapter("kapow", fake, client, options={"receipt_url": url})
        items = await send(provider, "447700900001", "447700900002")
        assert fake.requests[0].param("dlr") == url.removeprefix("http://") + "?"
        fake.deliver(items[0].provider_id, "D")
        fake.deliver(items[1].provider_id, "X")
        assert [status for _, status in fake.wait_callbacks(2)] == [200, 200]
        calls = receiver.wait_for(2)
        assert {c.path for c in calls} == {"/receipts/kapow/t0k3n"}
        found = sorted((r for c in calls for r in pushed(provider, c)), key=lambda r: r.provider_id)
        expected = sorted([(items[0].provider_id, "447700900001", D), (items[1].provider_id, "447700900002", U)])
        assert [(r.provider_id, r.number, r.state) for r in found] == expected
        assert all(r.at is not None for r in found)
        assert fake.errors == []


async def test_kapow_auto_report_calls_back_at_once(client: httpx.AsyncClient, receiver: ReceiptReceiver) -> None:
    """With auto_report the fake reports every SMS sent with dlr straight away; polling agrees with the push."""
    with FakeKapow(accounts={"user": (PASSWORD, 100)}, auto_report="D") as fake:
        provider = adapter("kapow", fake, client, options={"receipt_url": f"{receiver.url}kapow/t"})
        [item] = await send(provider, "447700900001")
        fake.wait_callbacks(1)
        [call] = receiver.wait_for(1)
        assert [(r.provider_id, r.state) for r in pushed(provider, call)] == [(item.provider_id, D)]
        assert [r.state for r in await poll(provider, [item])] == [D]


# == KwtSMS =========================================================================================================
@pytest.mark.parametrize(("api", "paths"), [("json", ("status/", "dlr/")), ("text", ("status/", "dlr/")),
                                            ("json", ("report/",)), ("text", ("dlr/",))])
async def test_kwtsms_poll(client: httpx.AsyncClient, api: str, paths: tuple[str, ...]) -> None:
    """status/ (or whichever of status/, dlr/, report/ the server has) per msg-id, JSON and text: delivered, failed,
    not ready yet (ERR021), and a msg-id KwtSMS does not know (ERR020)."""
    with FakeKwtSms(accounts={"user": (PASSWORD, 100)}, senders=["Shop"], report_paths=paths) as fake:
        provider = adapter("kwtsms", fake, client, options={"api": api})
        items = [*(await send(provider, "96550000001")), *(await send(provider, "96550000002")),
                 *(await send(provider, "96550000003"))]
        fake.set_report(items[0].provider_id, "DELIVERED")
        fake.set_report(items[1].provider_id, "FAILED")
        found = await poll(provider, [*items, ReceiptQuery("f" * 32, "96550000009")])
        assert [(r.state, r.code) for r in found] == [(D, "DELIVERED"), (U, "FAILED"), (P, "ERR021"), (P, "ERR020")]
        assert fake.errors == []


async def test_kwtsms_per_number_reports_of_one_msg_id(client: httpx.AsyncClient) -> None:
    """One request to two numbers shares a msg-id: per-number words decide each, one shared word decides none."""
    with FakeKwtSms(accounts={"user": (PASSWORD, 100)}, senders=["Shop"]) as fake:
        provider = adapter("kwtsms", fake, client)
        items = await send(provider, "96550000001", "96550000002")
        fake.set_report(items[0].provider_id, "DELIVERED")
        assert [r.code for r in await poll(provider, items)] == ["SHARED", "SHARED"]
        fake.set_report(items[0].provider_id, "DELIVERED", "96550000001")
        fake.set_report(items[0].provider_id, "Not delivered", "96550000002")
        assert [r.state for r in await poll(provider, items)] == [D, U]


# == BulkSMS ========================================================================================================
async def test_bulksms_eapi_get_report(client: httpx.AsyncClient) -> None:
    """get_report for the batch: 11 delivered, 51 failed, 10 (delivered upstream) still pending."""
    with FakeBulkSms(accounts={"user": (PASSWORD, 100)}) as fake:
        provider = adapter("bulksms", fake, client, options={"api": "eapi"})
        items = await send(provider, "447700900001", "447700900002", "447700900003")
        batch_id = items[0].provider_id
        fake.set_report(batch_id, "447700900001", 11)
        fake.set_report(batch_id, "447700900002", 51)
        found = await poll(provider, items)
        assert [(r.state, r.code) for r in found] == [(D, "11"), (U, "51"), (P, "10")]
        assert [r.path for r in fake.requests].count("/eapi/status_reports/get_report/2/2.0") == 1


async def test_bulksms_json_poll_and_webhook(client: httpx.AsyncClient, receiver: ReceiptReceiver) -> None:
    """GET messages/{id}: DELIVERED and FAILED.EXPIRED; the webhook body BulkSMS posts gives the same receipts."""
    with FakeBulkSmsJson(accounts={"user": (PASSWORD, 100)}) as fake:
        provider = adapter("bulksms", fake, client)
        items = await send(provider, "447700900001", "447700900002", "447700900003")
        fake.set_status(items[0].provider_id, "DELIVERED")
        fake.set_status(items[1].provider_id, "FAILED", "EXPIRED")
        found = await poll(provider, items)
        assert [(r.state, r.code) for r in found] == [(D, "DELIVERED"), (U, "FAILED.EXPIRED"), (P, "ACCEPTED")]
        body = fake.webhook_body([i.provider_id for i in items[:2]])
        httpx.post(f"{receiver.url}bulk/tok", content=body, headers={"Content-Type": "application/json"})
        [call] = receiver.wait_for(1)
        assert [(r.provider_id, r.number, r.state) for r in pushed(provider, call)] == [
            (items[0].provider_id, "447700900001", D), (items[1].provider_id, "447700900002", U)]


# == KoboMobile =====================================================================================================
@pytest.mark.parametrize("shape", ["string", "object", "nested"])
async def test_kobomobile_report(client: httpx.AsyncClient, shape: Shape) -> None:
    """report/ per message id in each tolerated shape: delivered, failed, and still pending."""
    with FakeKoboMobile(accounts={"user": (PASSWORD, 100)}, shape=shape) as fake:
        provider = adapter("kobomobile", fake, client)
        items = await send(provider, "2348030000001", "2348030000002", "2348030000003")
        fake.set_report(items[0].provider_id, "DELIVERED")
        fake.set_report(items[1].provider_id, "FAILED")
        found = await poll(provider, [*items, ReceiptQuery("no-such-id", "2348030000009")])
        assert [(r.state, r.code) for r in found] == [(D, "DELIVERED"), (U, "FAILED"), (P, "PENDING"),
                                                      (P, "error_param")]
        assert fake.errors == []


# == Cellcast =======================================================================================================
async def test_cellcast_get_sms_and_dlr_callback(client: httpx.AsyncClient, receiver: ReceiptReceiver) -> None:
    """get-sms per message id: Delivered, Failed, Queued; the DLR callback body Cellcast posts gives the same."""
    with FakeCellcast(keys={PASSWORD: 100}) as fake:
        provider = adapter("cellcast", fake, client, key=PASSWORD)
        items = await send(provider, "61400000001", "61400000002", "61400000003")
        fake.set_status(items[0].provider_id, "Delivered")
        fake.set_status(items[1].provider_id, "Failed")
        found = await poll(provider, items)
        assert [(r.state, r.code) for r in found] == [(D, "Delivered"), (U, "Failed"), (P, "Queued")]
        httpx.post(f"{receiver.url}cellcast/tok", content=fake.dlr_body([items[0].provider_id, items[1].provider_id]),
                   headers={"Content-Type": "application/json"})
        [call] = receiver.wait_for(1)
        assert [(r.provider_id, r.number, r.state) for r in pushed(provider, call)] == [
            (items[0].provider_id, "61400000001", D), (items[1].provider_id, "61400000002", U)]


async def test_a_provider_that_is_down_leaves_receipts_pending(client: httpx.AsyncClient) -> None:
    """Connection refused while polling is PENDING with the transport's name for every id, never an exception."""
    with FakeCellcast(keys={PASSWORD: 100}) as fake:
        provider = adapter("cellcast", fake, client, key=PASSWORD)
        items = await send(provider, "61400000001")
        fake.refuse()
        assert [(r.state, r.code) for r in await poll(provider, items)] == [(P, "ConnectError")]
