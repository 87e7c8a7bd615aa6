"""Unit tests of the provider side of delivery receipts (issue 15): each adapter's status request and its reading,
and the push parsers, with httpx.MockTransport; no outcome better than the provider's words."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError
from mail2sms.model import Account, Batch, DeliveryState, Job, Receipt, ReceiptQuery, SmsOptions
from mail2sms.providers import bulksms, bulksms_json, cellcast, kapow, kobomobile, kwtsms_reply, receipts
from mail2sms.providers.bulksms import BulkSmsProvider
from mail2sms.providers.bulksms_json import BulkSmsJsonProvider
from mail2sms.providers.cellcast import CellcastProvider
from mail2sms.providers.kapow import KapowProvider
from mail2sms.providers.kobomobile import KoboMobileProvider
from mail2sms.providers.kwtsms import KwtSmsProvider
from mail2sms.providers.outbox import OutboxProvider
from mail2sms.providers.registry import build_provider, spec_for

PASSWORD = "s3cret-pw"
D, U, P = DeliveryState.DELIVERED, DeliveryState.UNDELIVERED, DeliveryState.PENDING
Handler = Callable[[httpx.Request], httpx.Response]


def q(pid: str = "id-1", number: str = "447700900001") -> ReceiptQuery:
    return ReceiptQuery(provider_id=pid, number=number)


def build(kind: str, handler: Handler, **config: object) -> object:
    settings: dict[str, object] = {"type": kind, "url": "https://provider.test/api/", "username": "user",
                                   "password": PASSWORD, "key": PASSWORD, "sender": "Shop", **config}
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return build_provider(kind, ProviderConfig.model_validate(settings), client)


def answering(body: str | bytes, status: int = 200, seen: list[httpx.Request] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body.encode() if isinstance(body, str) else body)

    return handler


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def states(found: list[Receipt]) -> list[DeliveryState]:
    return [r.state for r in found]


# -- the vocabulary and the shared reading ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("DELIVERED", D), ("Delivered to mobile", D), ("DELIVRD", D), ("delivered_to_handset", D),
        ("Not delivered", U), ("UNDELIV", U), ("FAILED", U), ("Expired", U), ("DELIVERY_FAILED", U),
        ("Rejected", U), ("SENT", P), ("Queued", P), ("Delivered to network", P), ("error", P), ("invalid", P),
        ("", P), ("ACCEPTD", P),
    ],
)
def test_free_text_statuses_are_read_no_better_than_they_say(word: str, state: DeliveryState) -> None:
    """Only a word that says delivered to the phone is DELIVERED, only a failure word UNDELIVERED; the rest wait."""
    assert receipts.classify(word) is state


def test_every_provider_but_the_outbox_registers_its_receipts() -> None:
    """The registry says how each provider type tells delivery; the outbox never reaches a phone and has none."""
    for kind, push in (("kapow", True), ("kwtsms", False), ("bulksms", True), ("kobomobile", False),
                       ("cellcast", True)):
        spec = spec_for(kind)
        assert spec is not None
        assert spec.receipts is not None
        assert (spec.receipts.poll, spec.receipts.push) == (True, push)
    outbox_spec = spec_for("outbox")
    assert outbox_spec is not None
    assert outbox_spec.receipts is None
    outbox = OutboxProvider("o", ProviderConfig.model_validate({"type": "outbox", "path": "/tmp/x.jsonl"}))
    assert receipts.receipt_source(outbox) is None
    assert receipts.push_receiver(outbox) is None


def test_receipt_source_and_push_receiver_find_the_capabilities() -> None:
    """The poller and the web layer find a provider's receipt side by protocol, without casts."""
    kap = build("kapow", answering("D"))
    kwt = build("kwtsms", answering("{}"))
    eapi = build("bulksms", answering(""), options={"api": "eapi"}, url="https://bulksms.test/eapi/")
    assert receipts.receipt_source(kap) is kap
    assert receipts.push_receiver(kap) is not None
    assert receipts.receipt_source(kwt) is kwt
    assert receipts.push_receiver(kwt) is None
    assert receipts.receipt_source(eapi) is eapi
    assert receipts.push_receiver(eapi) is None


# -- Kapow --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "state", "code"),
    [("D", D, "D"), ("X", U, "X"), ("S", P, "S"), ("B", P, "B"), ("N", P, "N"), ("R", P, "R"),
     ("ERROR", P, "ERROR"), ("", P, "UNEXPECTED"), ("<html>oops</html>", P, "UNEXPECTED")],
)
async def test_kapow_status_letters(body: str, state: DeliveryState, code: str) -> None:
    """chk_status.php's letter decides: D delivered, X failed, B/S/N/R and ERROR or anything else not final."""
    seen: list[httpx.Request] = []
    provider = build("kapow", answering(body, seen=seen))
    assert isinstance(provider, KapowProvider)
    [receipt] = await provider.poll_receipts([q("11472734895956042")])
    assert (receipt.state, receipt.code, receipt.provider_id, receipt.number) == (
        state, code, "11472734895956042", "447700900001")
    [request] = seen
    assert request.url.path.endswith("/chk_status.php")
    assert parse_qs(request.content.decode()) == {"username": ["user"], "returnid": ["11472734895956042"]}


@pytest.mark.parametrize(("handler", "code"), [(refused, "ConnectError"), (timed_out, "ReadTimeout"),
                                               (answering("", status=503), "HTTP503")])
async def test_kapow_trouble_is_pending_never_raised(handler: Handler, code: str) -> None:
    """A status request that fails in transport or with an HTTP error is PENDING with a code, never an exception."""
    provider = build("kapow", handler)
    assert isinstance(provider, KapowProvider)
    found = await provider.poll_receipts([q("1"), q("2")])
    assert [(r.provider_id, r.state, r.code) for r in found] == [("1", P, code), ("2", P, code)]


async def test_kapow_receipts_use_the_mail_body_account() -> None:
    """A message sent with credentials from the mail body is asked about with that account's username."""
    seen: list[httpx.Request] = []
    provider = build("kapow", answering("D", seen=seen))
    assert isinstance(provider, KapowProvider)
    await provider.poll_receipts([ReceiptQuery("7", "447700900001", Account("other", "pw"))])
    assert parse_qs(seen[0].content.decode())["username"] == ["other"]


async def test_kapow_send_carries_the_receipt_url_without_its_scheme() -> None:
    """With options.receipt_url every sendsms.php request carries dlr=<host/path without http://>."""
    seen: list[httpx.Request] = []
    provider = build("kapow", answering("OK 99 123456", seen=seen),
                     options={"receipt_url": "https://sms.example.org/receipts/kapow/t0k3n"})
    assert isinstance(provider, KapowProvider)
    job = Job(number="447700900001", text="hi", provider="kapow")
    await provider.send(Batch("kapow", None, None, "hi", SmsOptions(), (job,)))
    assert parse_qs(seen[0].content.decode())["dlr"] == ["sms.example.org/receipts/kapow/t0k3n?"]


def test_kapow_dlr_and_receipt_url_together_are_a_config_error() -> None:
    """Two addresses for Kapow's delivery reports are refused at start, naming both."""
    with pytest.raises(ConfigError, match="dlr and receipt_url"):
        build("kapow", answering(""), options={"dlr": "a@example.org", "receipt_url": "https://x.test/r/k/t"})


@pytest.mark.parametrize(
    ("query", "body", "content_type", "expected"),
    [
        ("returnid=11472734895956042&mobile=447700900123&status=D&timesent=2026-12-01+18:00:00", b"", "",
         [("11472734895956042", "447700900123", D, "D")]),
        ("", b"returnid=42&mobile=447700900123&status=X&timesent=2026-12-01+18:00:00",
         "application/x-www-form-urlencoded", [("42", "447700900123", U, "X")]),
        ("returnid=42&mobile=447700900123&status=3", b"", "", [("42", "447700900123", P, "3")]),
        ("mobile=447700900123&status=D", b"", "", []),
        ("returnid=a%20b&status=D", b"", "", []),
    ],
)
def test_kapow_push(query: str, body: bytes, content_type: str, expected: list[tuple[object, ...]]) -> None:
    """The dlr call (query or form) gives D delivered, X failed, a parts count not final; no returnid, nothing."""
    found = kapow.receipt_push("GET", query, body, content_type)
    assert [(r.provider_id, r.number, r.state, r.code) for r in found] == expected


def test_kapow_push_reads_timesent_in_the_account_zone() -> None:
    """timesent is Kapow's local time: 18:00 in London in December is 18:00 UTC."""
    [receipt] = kapow.receipt_push("GET", "returnid=1&status=D&timesent=2026-12-01+18:00:00", b"", "")
    assert receipt.at == 1796148000.0


def test_a_push_body_over_the_bound_yields_nothing() -> None:
    """A callback bigger than MAX_PUSH_BYTES is not read at all, whatever it carries."""
    big = b"returnid=1&status=D&pad=" + b"x" * receipts.MAX_PUSH_BYTES
    assert kapow.receipt_push("POST", "", big, "application/x-www-form-urlencoded") == []
    assert cellcast.receipt_push("POST", "", b"[" + b" " * receipts.MAX_PUSH_BYTES + b"]", "application/json") == []


# -- KwtSMS -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "state", "code"),
    [
        ('{"result":"OK","msg-id":"abc","status":"DELIVERED","delivered-at":1700000000}', D, "DELIVERED"),
        ('{"result":"OK","msg-id":"abc","status":"FAILED"}', U, "FAILED"),
        ('{"result":"OK","msg-id":"abc","status":"SENT"}', P, "SENT"),
        ('{"result":"ERROR","code":"ERR021","description":"not ready"}', P, "ERR021"),
        ('{"result":"ERROR","code":"ERR020","description":"no such id"}', P, "ERR020"),
        ("abc,Delivered to mobile", D, "Delivered to mobile"),
        ("abc,Not delivered", U, "Not delivered"),
        ("ERR021", P, "ERR021"),
        ("<html>maintenance</html>", P, "UNEXPECTED"),
        ('{"result":"OK"}', P, "UNEXPECTED"),
    ],
)
def test_kwtsms_reports_in_both_shapes(body: str, state: DeliveryState, code: str) -> None:
    """status/ (JSON) and dlr/ (`<msgid>,<text>`) answers: delivered, failed, not ready, unreadable."""
    [receipt] = kwtsms_reply.receipts_for(kwtsms_reply.delivery_report(body, "abc"), [q("abc", "96550000001")])
    assert (receipt.state, receipt.code) == (state, code)
    if state is D and body.startswith("{"):
        assert receipt.at == 1700000000.0


def test_kwtsms_one_word_for_a_shared_msg_id_says_nothing_per_number() -> None:
    """A msg-id covering two numbers with one status word leaves both PENDING; per-number lines are read."""
    items = [q("abc", "96550000001"), q("abc", "96550000002")]
    shared = kwtsms_reply.receipts_for(kwtsms_reply.delivery_report("abc,DELIVERED", "abc"), items)
    assert [(r.state, r.code) for r in shared] == [(P, "SHARED"), (P, "SHARED")]
    lines = "96550000001,DELIVERED\n96550000002,FAILED"
    per_number = kwtsms_reply.receipts_for(kwtsms_reply.delivery_report(lines, "abc"), items)
    assert states(per_number) == [D, U]
    body = json.dumps({"result": "OK", "report": [{"mobile": "96550000002", "status": "DELIVERED"}]})
    assert states(kwtsms_reply.receipts_for(kwtsms_reply.delivery_report(body, "abc"), items)) == [P, D]


async def test_kwtsms_falls_back_from_a_404_path_and_keeps_the_one_that_answers() -> None:
    """status/ answering 404 makes the adapter try dlr/ and then ask dlr/ first; one request per msg-id."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/dlr/"):
            return httpx.Response(200, json={"result": "OK", "status": "DELIVERED"})
        return httpx.Response(404, text="Not Found")

    provider = build("kwtsms", handler)
    assert isinstance(provider, KwtSmsProvider)
    first = await provider.poll_receipts([q("m1", "96550000001")])
    second = await provider.poll_receipts([q("m2", "96550000002")])
    assert states(first + second) == [D, D]
    assert [r.url.path.rsplit("/", 2)[1] for r in seen] == ["status", "dlr", "dlr"]
    assert json.loads(seen[0].content) == {"username": "user", "password": PASSWORD, "msgid": "m1"}


async def test_kwtsms_no_path_answering_is_pending() -> None:
    """When status/, dlr/ and report/ all answer 404 every item is PENDING naming the url."""
    provider = build("kwtsms", answering("Not Found", status=404))
    assert isinstance(provider, KwtSmsProvider)
    [receipt] = await provider.poll_receipts([q("m1", "96550000001")])
    assert (receipt.state, receipt.code) == (P, "HTTP404")


# -- BulkSMS ------------------------------------------------------------------------------------------------
REPORT = "0|Returns to follow\n\n447700900001|11\n447700900002|51\n447700900003|10\n447700900005|99\n"


def test_bulksms_eapi_report_codes() -> None:
    """get_report rows: 11 delivered, 51 failed, 10 and unknown codes not final, a missing row not final."""
    items = [q("700", f"44770090000{i}") for i in range(1, 6)]
    found = bulksms.report_receipts(REPORT, items)
    assert [(r.state, r.code) for r in found] == [(D, "11"), (U, "51"), (P, "10"), (P, "NO_ROW"), (P, "99")]
    assert "delivery to the phone failed" in found[1].why


def test_bulksms_eapi_error_line_leaves_every_number_pending() -> None:
    """An error line (`24|…`) or an unreadable answer says nothing about delivery."""
    assert [(r.state, r.code) for r in bulksms.report_receipts("24|unknown batch_id", [q("7")])] == [(P, "24")]
    assert [(r.state, r.code) for r in bulksms.report_receipts("<html/>", [q("7")])] == [(P, "UNEXPECTED")]


async def test_bulksms_eapi_one_request_per_batch() -> None:
    """Numbers of one batch are asked about with one get_report request carrying batch_id."""
    seen: list[httpx.Request] = []
    provider = build("bulksms", answering(REPORT, seen=seen), options={"api": "eapi"},
                     url="https://bulksms.test/eapi/")
    assert isinstance(provider, BulkSmsProvider)
    found = await provider.poll_receipts([q("700", "447700900001"), q("700", "447700900002")])
    assert states(found) == [D, U]
    [request] = seen
    assert request.url.path.endswith("/status_reports/get_report/2/2.0")
    assert parse_qs(request.content.decode())["batch_id"] == ["700"]


def message(pid: str, kind: str, subtype: str | None = None, to: str = "+447700900001") -> dict[str, object]:
    status = {"id": f"{kind}.{subtype}", "type": kind, "subtype": subtype}
    status = {"id": f"{kind}.{subtype}", "type": kind, "subtype": subtype}
    return {"id": pid, "type": "SENT", "to": to, "status": status}


@pytest.mark.parametrize(
    ("status", "body", "state", "code"),
    [
        (200, json.dumps(message("9", "DELIVERED")), D, "DELIVERED"),
        (200, json.dumps(message("9", "FAILED", "EXPIRED")), U, "FAILED.EXPIRED"),
        (200, json.dumps(message("9", "SENT")), P, "SENT"),
        (200, json.dumps(message("9", "UNKNOWN")), P, "UNKNOWN"),
        (200, json.dumps(message("8", "DELIVERED")), P, "UNEXPECTED"),
        (200, "not json", P, "UNEXPECTED"),
        (404, '{"title":"Not Found"}', P, "NOT_FOUND"),
        (401, '{"title":"Unauthorized"}', P, "HTTP401"),
    ],
)
async def test_bulksms_json_message_status(status: int, body: str, state: DeliveryState, code: str) -> None:
    """GET messages/{id}: DELIVERED delivered, FAILED with its subtype failed, anything else (or another id) waits."""
    seen: list[httpx.Request] = []
    provider = build("bulksms", answering(body, status, seen), url="https://bulksms.test/v1/")
    assert isinstance(provider, BulkSmsJsonProvider)
    [receipt] = await provider.poll_receipts([q("9")])
    assert (receipt.state, receipt.code, receipt.provider_id) == (state, code, "9")
    assert seen[0].method == "GET"
    assert seen[0].url.path == "/v1/messages/9"


def test_bulksms_webhook_bodies() -> None:
    """A webhook's JSON array of message objects gives one receipt per message; junk entries are skipped."""
    body = json.dumps([message("1", "DELIVERED"), message("2", "FAILED", "BLOCKED", "+447700900002"), 7,
                       {"no": "id"}]).encode()
    found = bulksms_json.receipt_push("POST", "", body, "application/json")
    assert [(r.provider_id, r.number, r.state, r.code) for r in found] == [
        ("1", "447700900001", D, "DELIVERED"), ("2", "447700900002", U, "FAILED.BLOCKED")]
    assert bulksms_json.receipt_push("POST", "", b"<html>", "text/html") == []


# -- KoboMobile ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "state", "code"),
    [
        ('"DELIVERED"', D, "DELIVERED"),
        ('{"status": "FAILED", "msgid": "id-1"}', U, "FAILED"),
        ('{"response": {"code": "ok", "data": {"status": "DELIVRD", "msgid": "id-1"}}}', D, "DELIVRD"),
        ('"PENDING"', P, "PENDING"),
        ('"error_user"', P, "error_user"),
        ('{"status": "error", "message": "invalid msgid"}', P, "error"),
        ('{"a": "DELIVERED", "b": "FAILED"}', P, "CONFLICT"),
        ("{}", P, "UNEXPECTED"),
    ],
)
def test_kobomobile_report_shapes(body: str, state: DeliveryState, code: str) -> None:
    """report/ in any shape: a clear delivery or failure word decides; error words, both, or nothing wait."""
    receipt = kobomobile.report_receipt(body, q())
    assert (receipt.state, receipt.code) == (state, code)


def test_kobomobile_quotes_never_carry_the_password() -> None:
    """KoboMobile's own words quoted in a receipt have the account's password blanked."""
    receipt = kobomobile.report_receipt(json.dumps({"x": f"unknown login user:{PASSWORD}"}), q(), [PASSWORD])
    assert PASSWORD not in receipt.why


async def test_kobomobile_asks_report_with_msgid_and_sends_with_enable_msg_id() -> None:
    """Receipts need ids: send/ carries enable_msg_id=1, report/ carries user, pass and msgid."""
    seen: list[httpx.Request] = []
    provider = build("kobomobile", answering('"2348030000000,abc-1"', seen=seen))
    assert isinstance(provider, KoboMobileProvider)
    job = Job(number="2348030000000", text="hi", provider="kobo")
    await provider.send(Batch("kobo", None, None, "hi", SmsOptions(), (job,)))
    await provider.poll_receipts([q("abc-1", "2348030000000")])
    sent, asked = (parse_qs(r.content.decode()) for r in seen)
    assert sent["enable_msg_id"] == ["1"]
    assert seen[1].url.path.endswith("/report/")
    assert asked == {"user": ["user"], "pass": [PASSWORD], "msgid": ["abc-1"]}


def test_kobomobile_without_msg_ids_has_no_receipts() -> None:
    """options.enable_msg_id = false means no ids come back, so the adapter offers no polling."""
    provider = build("kobomobile", answering(""), options={"enable_msg_id": False})
    assert receipts.receipt_source(provider) is None


# -- Cellcast -----------------------------------------------------------------------------------------------
def get_sms(status: str, message_id: str = "ID-1") -> str:
    return json.dumps({"meta": {"code": 200, "status": "SUCCESS"}, "msg": "Record founded",
                       "data": [{"to": "+61400000001", "message_id": message_id, "status": status}]})


@pytest.mark.parametrize(
    ("status", "body", "state", "code"),
    [
        (200, get_sms("Delivered"), D, "Delivered"), (200, get_sms("Failed"), U, "Failed"),
        (200, get_sms("Expired"), U, "Expired"), (200, get_sms("Rejected"), U, "Rejected"),
        (200, get_sms("Aborted"), U, "Aborted"), (200, get_sms("Queued"), P, "Queued"),
        (200, get_sms("Dispatched"), P, "Dispatched"), (200, get_sms("Unknown"), P, "Unknown"),
        (200, get_sms("Teleported"), P, "Teleported"), (200, get_sms("Delivered", "ID-2"), P, "UNEXPECTED"),
        (400, json.dumps({"meta": {"code": 400, "status": "FIELD_INVALID"}, "msg": "not found"}), P, "FIELD_INVALID"),
        (429, json.dumps({"meta": {"code": 429, "status": "OVER_LIMIT"}}), P, "OVER_LIMIT"),
    ],
)
async def test_cellcast_get_sms(status: int, body: str, state: DeliveryState, code: str) -> None:
    """get-sms: Delivered delivered; Failed/Expired/Rejected/Aborted failed; the rest (and errors) wait."""
    seen: list[httpx.Request] = []
    provider = build("cellcast", answering(body, status, seen))
    assert isinstance(provider, CellcastProvider)
    [receipt] = await provider.poll_receipts([q("ID-1", "61400000001")])
    assert (receipt.state, receipt.code) == (state, code)
    assert seen[0].url.params["message_id"] == "ID-1"
    assert seen[0].headers["APPKEY"] == PASSWORD


def test_cellcast_dlr_callback_bodies() -> None:
    """The DLR callback's array gives one receipt per entry, with the recipient's digits."""
    body = json.dumps([{"message_id": "A", "status": "Delivered", "recipient": "61400000001", "custom_string": ""},
                       {"message_id": "B", "status": "Failed", "recipient": "61400000002"},
                       {"status": "Delivered"}]).encode()
    found = cellcast.receipt_push("POST", "", body, "application/json")
    assert [(r.provider_id, r.number, r.state) for r in found] == [("A", "61400000001", D), ("B", "61400000002", U)]
