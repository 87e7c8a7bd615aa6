"""SMS replies, provider side (issue 17): the Cellcast and BulkSMS adapters fetch replies from the stateful fakes of
those providers over real HTTP on 127.0.0.1 after a real send through them — paging, cursors, marking read — and
their push parsers read webhook bodies that really arrived over HTTP, posted as those providers post them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.model import Batch, InboundSms, Job, Sent, SmsOptions
from mail2sms.providers.registry import build_provider
from mail2sms.providers.replies import (
    ReplyFetchError,
    ReplyPage,
    ReplyPushReceiver,
    ReplySource,
    reply_push_receiver,
    reply_source,
)
from tests.fakes.bulksms import FakeBulkSms, FakeBulkSmsJson
from tests.fakes.cellcast import FakeCellcast
from tests.fakes.receiver import ReceiptReceiver
from tests.fakes.server import FakeProvider, RecordedRequest
from tests.harness import ROOT

PASSWORD = "pa55-w0rd"
AU = "61412345678"


def adapter(kind: str, fake: FakeProvider, client: httpx.AsyncClient, **config: Any) -> Any:
    settings = {"type": kind, "url": fake.url, "username": "user", "password": PASSWORD, **config}
    return build_provider(kind, ProviderConfig.model_validate(settings), client)


def cellcast(fake: FakeCellcast, client: httpx.AsyncClient) -> Any:
    return build_provider("cellcast", ProviderConfig.model_validate({"type": "cellcast", "url": fake.url,
                                                                     "key": "key"}), client)


async def send(provider: Any, number: str) -> str:
    """Send one SMS through the adapter; the provider id it reports."""
    job = Job(number=number, text="Server room door open", provider=provider.name, idempotency_key=f"k-{number}")
    [result] = await provider.send(Batch(provider.name, None, None, job.text, SmsOptions(), (job,)))
    assert isinstance(result, Sent), result
    assert result.provider_id
    return result.provider_id


async def fetch(provider: Any, cursor: str | None) -> ReplyPage:
    source = reply_source(provider)
    assert isinstance(source, ReplySource)
    return await source.fetch_replies(cursor)


def pushed(provider: Any, request: RecordedRequest) -> list[InboundSms]:
    parser = reply_push_receiver(provider)
    assert isinstance(parser, ReplyPushReceiver)
    return parser.parse_reply_push(request.method, request.query, request.body,
                                   request.headers.get("content-type", ""))


def post(receiver: ReceiptReceiver, path: str, body: bytes) -> RecordedRequest:
    before = len(receiver.requests)
    httpx.post(f"{receiver.url}{path}", content=body, headers={"Content-Type": "application/json"})
    return receiver.wait_for(before + 1)[-1]


# == Cellcast =======================================================================================================
async def test_cellcast_reply_linked_marked_read_and_gone(client: httpx.AsyncClient) -> None:
    """A reply to an SMS sent through the adapter comes linked to its message id; marked read, it is not listed."""
    with FakeCellcast() as fake:
        provider = cellcast(fake, client)
        message_id = await send(provider, AU)
        ref = fake.add_reply(message_id, "ACK, on my way ")
        page = await fetch(provider, None)
        [reply] = page.replies
        assert (reply.provider_ref, reply.number, reply.text, reply.in_reply_to) == (
            ref, AU, "ACK, on my way ", message_id)
        assert reply.received_at is not None
        assert (page.cursor, page.more) == (None, False)
        await provider.acknowledge_replies([ref])
        assert fake.is_read(ref)
        assert await fetch(provider, None) == ReplyPage([], None, False)  # Cellcast's 400 NOT_FOUND: no reply
        [listing] = [r for r in fake.requests if r.path.endswith("get-responses")][:1]
        assert (listing.param("page"), listing.param("type"), listing.headers.get("appkey")) == ("1", "sms", "key")


async def test_cellcast_pages_through_thirty_replies(client: httpx.AsyncClient) -> None:
    """30 replies: a page of 25 that says more, marked read, then the last 5; each once, all read."""
    with FakeCellcast() as fake:
        provider = cellcast(fake, client)
        message_id = await send(provider, AU)
        refs = [fake.add_reply(message_id, f"reply {i}") for i in range(30)]
        first = await fetch(provider, None)
        assert ([r.provider_ref for r in first.replies], first.more) == (refs[:25], True)
        await provider.acknowledge_replies([r.provider_ref for r in first.replies])
        second = await fetch(provider, first.cursor)
        assert ([r.provider_ref for r in second.replies], second.more) == (refs[25:], False)
        await provider.acknowledge_replies([r.provider_ref for r in second.replies])
        assert all(fake.is_read(ref) for ref in refs)
        assert fake.read_calls == 2


async def test_cellcast_list_that_keeps_read_replies_ends_the_round(client: httpx.AsyncClient) -> None:
    """Where Cellcast kept listing read replies, page 1 brings nothing new a second time: `more` is False."""
    with FakeCellcast(list_read=True) as fake:
        provider = cellcast(fake, client)
        message_id = await send(provider, AU)
        for i in range(26):
            fake.add_reply(message_id, f"reply {i}")
        first = await fetch(provider, None)
        await provider.acknowledge_replies([r.provider_ref for r in first.replies])
        again = await fetch(provider, None)
        assert (len(again.replies), first.more, again.more) == (25, True, False)


async def test_cellcast_marks_read_one_by_one_without_the_bulk_call(client: httpx.AsyncClient) -> None:
    """An account without inbound-read-bulk (404) gets one inbound-read per reply."""
    with FakeCellcast(read_bulk=False) as fake:
        provider = cellcast(fake, client)
        message_id = await send(provider, AU)
        refs = [fake.add_reply(message_id, "yes"), fake.add_reply(None, "who is this?", number="61498765432")]
        page = await fetch(provider, None)
        assert [(r.provider_ref, r.in_reply_to) for r in page.replies] == [(refs[0], message_id), (refs[1], None)]
        await provider.acknowledge_replies(refs)
        assert [fake.is_read(ref) for ref in refs] == [True, True]
        paths = [r.path.rsplit("/", 1)[1] for r in fake.requests if r.method == "POST" and "inbound" in r.path]
        assert paths == ["inbound-read-bulk", "inbound-read", "inbound-read"]


async def test_cellcast_trouble_is_a_fetch_error_without_the_key(client: httpx.AsyncClient) -> None:
    """A wrong key, a 500 and a refused connection raise ReplyFetchError; the key never shows."""
    with FakeCellcast(keys={"right-key": 10.0}) as fake:
        wrong = build_provider("cellcast", ProviderConfig.model_validate(
            {"type": "cellcast", "url": fake.url, "key": "wrong-key-123"}), client)
        with pytest.raises(ReplyFetchError) as caught:
            await fetch(wrong, None)
        assert caught.value.code == "AUTH_FAILED"
        assert "wrong-key-123" not in caught.value.why
        fake.fail_next(500, "<html>boom</html>")
        with pytest.raises(ReplyFetchError) as caught:
            await fetch(wrong, None)
        assert caught.value.code == "HTTP500"
        fake.refuse()
        with pytest.raises(ReplyFetchError) as caught:
            await fetch(wrong, None)
        assert caught.value.code == "ConnectError"


async def test_cellcast_inbound_webhook_is_read_as_a_reply(client: httpx.AsyncClient,
                                                           receiver: ReceiptReceiver) -> None:
    """The inbound webhook body Cellcast posts is one linked reply; its DLR body on the same URL is none."""
    with FakeCellcast() as fake:
        provider = cellcast(fake, client)
        message_id = await send(provider, AU)
        ref = fake.add_reply(message_id, "ACK")
        [reply] = pushed(provider, post(receiver, "cell/t0k3n", fake.inbound_body(ref)))
        assert (reply.provider_ref, reply.number, reply.text, reply.in_reply_to) == (ref, AU, "ACK", message_id)
        assert pushed(provider, post(receiver, "cell/t0k3n", fake.dlr_body([message_id]))) == []


# == BulkSMS JSON ===================================================================================================
async def test_bulksms_json_repliable_reply_linked_and_cursor_moves(client: httpx.AsyncClient) -> None:
    """Sent repliable, a reply comes linked by relatedSentMessageId; the cursor then asks only newer ones."""
    with FakeBulkSmsJson(accounts={"user": (PASSWORD, 100.0)}) as fake:
        provider = adapter("bulksms", fake, client, options={"repliable": True})
        message_id = await send(provider, "27831234567")
        ref = fake.add_reply(message_id, "ACK")
        page = await fetch(provider, None)
        assert [(r.provider_ref, r.number, r.text, r.in_reply_to) for r in page.replies] == [
            (ref, "27831234567", "ACK", message_id)]
        assert (page.cursor, page.more) == (ref, False)
        later = fake.add_reply(None, "stop", number="27839999999")
        newer = await fetch(provider, page.cursor)
        assert [(r.provider_ref, r.in_reply_to) for r in newer.replies] == [(later, None)]
        assert await fetch(provider, newer.cursor) == ReplyPage([], later, False)
        listing = [r for r in fake.requests if r.method == "GET" and r.path.endswith("/messages")][1]
        assert (listing.param("filter"), listing.param("sortOrder")) == (f"type=RECEIVED&id>{ref}", "ASCENDING")
        await provider.acknowledge_replies([ref, later])  # nothing to mark at BulkSMS: no request, no error


async def test_bulksms_json_not_repliable_reply_is_not_linked(client: httpx.AsyncClient) -> None:
    """Sent from a sender ID, BulkSMS links no reply to the SMS: it is still polled, unlinked."""
    with FakeBulkSmsJson(accounts={"user": (PASSWORD, 100.0)}) as fake:
        provider = adapter("bulksms", fake, client, sender="Shop")
        message_id = await send(provider, "27831234567")
        fake.add_reply(message_id, "what?")
        [reply] = (await fetch(provider, None)).replies
        assert (reply.number, reply.in_reply_to) == ("27831234567", None)


async def test_bulksms_json_pages_by_the_limit(client: httpx.AsyncClient) -> None:
    """More replies than one request's limit: a full page says more, the next asks after its last id."""
    with FakeBulkSmsJson(accounts={"user": (PASSWORD, 100.0)}) as fake:
        provider = adapter("bulksms", fake, client)
        refs = [fake.add_reply(None, f"r{i}", number="27831234567") for i in range(501)]
        first = await fetch(provider, None)
        second = await fetch(provider, first.cursor)
        assert (len(first.replies), first.more, first.cursor) == (500, True, refs[499])
        assert ([r.provider_ref for r in second.replies], second.more) == ([refs[500]], False)


async def test_bulksms_json_wrong_login_is_a_fetch_error(client: httpx.AsyncClient) -> None:
    """BulkSMS's 401 problem JSON is a ReplyFetchError without the password."""
    with FakeBulkSmsJson(accounts={"user": ("other", 1.0)}) as fake:
        provider = adapter("bulksms", fake, client)
        with pytest.raises(ReplyFetchError) as caught:
            await fetch(provider, "5")
        assert caught.value.code == "HTTP401"
        assert PASSWORD not in caught.value.why


async def test_bulksms_json_webhook_replies_not_receipts(client: httpx.AsyncClient,
                                                         receiver: ReceiptReceiver) -> None:
    """The received-messages webhook body is replies; the sent-messages one carries none."""
    with FakeBulkSmsJson(accounts={"user": (PASSWORD, 100.0)}) as fake:
        provider = adapter("bulksms", fake, client, options={"repliable": True})
        message_id = await send(provider, "27831234567")
        refs = [fake.add_reply(message_id, "one"), fake.add_reply(message_id, "two")]
        replies = pushed(provider, post(receiver, "bulk/tok", fake.received_body(refs)))
        assert [(r.provider_ref, r.text, r.in_reply_to) for r in replies] == [
            (refs[0], "one", message_id), (refs[1], "two", message_id)]
        assert pushed(provider, post(receiver, "bulk/tok", fake.webhook_body([message_id]))) == []
        assert pushed(provider, post(receiver, "bulk/tok", b"[]")) == []


# == BulkSMS EAPI ===================================================================================================
async def test_eapi_inbox_linked_by_batch_id_and_cursor(client: httpx.AsyncClient) -> None:
    """Sent with repliable=1, replies carry the batch_id; 16-bit and multi-line text reads; the cursor moves on."""
    with FakeBulkSms(accounts={"user": (PASSWORD, 100.0)}) as fake:
        provider = adapter("bulksms", fake, client, options={"api": "eapi", "repliable": True})
        batch_id = await send(provider, "447700900123")
        refs = [fake.add_reply(batch_id, "Ça va\nACK"), fake.add_reply(batch_id, "Привет")]
        first = await fetch(provider, None)
        assert [(r.provider_ref, r.number, r.text, r.in_reply_to) for r in first.replies] == [
            (refs[0], "447700900123", "Ça va\nACK", batch_id), (refs[1], "447700900123", "Привет", batch_id)]
        assert (first.cursor, first.more) == (refs[1], False)
        later = fake.add_reply(None, "wrong number", number="447700900999")
        second = await fetch(provider, first.cursor)
        assert [(r.provider_ref, r.in_reply_to) for r in second.replies] == [(later, None)]
        assert await fetch(provider, second.cursor) == ReplyPage([], later, False)
        asked = [r.param("last_retrieved_id") for r in fake.requests if r.path.endswith("get_inbox/1/1.1")]
        assert asked == ["0", refs[1], later]


async def test_eapi_inbox_pages_by_a_thousand(client: httpx.AsyncClient) -> None:
    """1001 replies: get_inbox's 1000 say more; the next request after the last id brings the one left."""
    with FakeBulkSms(accounts={"user": (PASSWORD, 100.0)}) as fake:
        provider = adapter("bulksms", fake, client, options={"api": "eapi"})
        refs = [fake.add_reply(None, f"r{i}", number="447700900123") for i in range(1001)]
        first = await fetch(provider, None)
        second = await fetch(provider, first.cursor)
        assert (len(first.replies), first.more, first.cursor) == (1000, True, refs[999])
        assert ([r.provider_ref for r in second.replies], second.more) == ([refs[1000]], False)


async def test_eapi_wrong_password_is_a_fetch_error(client: httpx.AsyncClient) -> None:
    """`23|invalid credentials` is a ReplyFetchError naming 23, without the password."""
    with FakeBulkSms(accounts={"user": ("other", 1.0)}) as fake:
        provider = adapter("bulksms", fake, client, options={"api": "eapi"})
        with pytest.raises(ReplyFetchError) as caught:
            await fetch(provider, None)
        assert caught.value.code == "23"
        assert PASSWORD not in caught.value.why


async def test_wrong_host_answers_in_prose_are_fetch_errors(client: httpx.AsyncClient) -> None:
    """A host that is not the account's (the EAPI's 404 page in prose, the JSON API's 301) is a ReplyFetchError
    that says to check the url and login, never a page of replies."""
    with FakeBulkSms(accounts={"user": (PASSWORD, 1.0)}) as eapi, FakeBulkSmsJson() as bulk:
        eapi.misconfigured(404)
        bulk.misconfigured(301)
        for provider in (adapter("bulksms", eapi, client, options={"api": "eapi"}), adapter("bulksms", bulk, client)):
            with pytest.raises(ReplyFetchError) as caught:
                await fetch(provider, "7")
            assert caught.value.code in ("HTTP404", "HTTP301")
            assert "check the provider's url and login" in caught.value.why


async def test_which_adapters_poll_and_which_take_pushes(client: httpx.AsyncClient) -> None:
    """Cellcast and BulkSMS JSON poll and take pushes; the EAPI polls only; the others have no replies API."""
    with FakeCellcast() as cell, FakeBulkSmsJson() as bulk, FakeBulkSms() as eapi:
        found = {
            "cellcast": cellcast(cell, client),
            "bulksms": adapter("bulksms", bulk, client),
            "eapi": adapter("bulksms", eapi, client, options={"api": "eapi"}),
            "kapow": adapter("kapow", cell, client),
            "kwtsms": adapter("kwtsms", cell, client, sender="Shop"),
            "kobomobile": adapter("kobomobile", cell, client, sender="Shop"),
        }
        facts = {name: (reply_source(p) is not None, reply_push_receiver(p) is not None) for name, p in found.items()}
        assert facts == {"cellcast": (True, True), "bulksms": (True, True), "eapi": (True, False),
                         "kapow": (False, False), "kwtsms": (False, False), "kobomobile": (False, False)}


# == check-config ===================================================================================================
CONFIG = """
[spool]
url = "sqlite://{tmp}/spool.db"

[reports]
maildir = "{tmp}/reports"

[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[providers.cell]
type = "cellcast"
key = "cell-key-123"

[providers.bulk]
type = "bulksms"
username = "u"
password = "bulk-pass-456"
{bulk}

[providers.legacy]
type = "bulksms"
username = "u"
password = "bulk-pass-456"
replies = false
options = {{ api = "eapi" }}

[providers.kwt]
type = "kwtsms"
username = "u"
password = "kwt-pass-789"
sender = "KWT-SMS"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "bulk"
{route}
"""


def check_config(tmp: Path, bulk: str = "", route: str = "") -> subprocess.CompletedProcess[str]:
    path = tmp / "mail2sms.toml"
    path.write_text(CONFIG.format(tmp=tmp, bulk=bulk, route=route), encoding="utf-8")
    path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run([sys.executable, "-m", "mail2sms", "check-config", "--verbose", "--config", str(path)],
                          capture_output=True, text=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=60,
                          check=False)


def test_check_config_verbose_says_which_providers_mail_replies_back(tmp_path: Path) -> None:
    """`check-config --verbose` names, per provider, whether SMS replies come back, and shows no secret."""
    result = check_config(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split(" ", 1)[0]: line for line in result.stdout.splitlines() if line.startswith("providers.")}
    assert "SMS replies by polling and push, mailed back to the sender" in lines["providers.cell"]
    assert "SMS replies by polling and push, mailed back to the sender" in lines["providers.bulk"]
    assert "providers.legacy.replies = false: SMS replies are not mailed back" in lines["providers.legacy"]
    for name in ("providers.kwt", "providers.out"):
        assert lines[name].endswith("no replies API: SMS replies are not mailed back")
    for secret in ("cell-key-123", "bulk-pass-456", "kwt-pass-789"):
        assert secret not in result.stdout + result.stderr


def test_check_config_refuses_repliable_with_a_route_sender(tmp_path: Path) -> None:
    """`options.repliable = true` with a route's sender ID fails check-config naming routes[0].sender."""
    result = check_config(tmp_path, bulk="options = { repliable = true }", route='sender = "Alarm"')
    assert result.returncode == 1
    assert "routes[0].sender: options.repliable = true" in result.stdout + result.stderr
