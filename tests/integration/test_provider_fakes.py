"""The KwtSMS and Kapow adapters against stateful fake providers over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.model import Account, Batch, Job, Rejected, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.explain import explain
from mail2sms.providers.kapow import KapowProvider
from mail2sms.providers.kwtsms import KwtSmsProvider
from tests.fakes.kapow import FakeKapow
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import FakeProvider

KWT_PASSWORD = "kwt-pass"
KAPOW_PASSWORD = "kapow-pass"


def make_batch(
    numbers: tuple[str, ...],
    text: str = "hello",
    sender: str | None = None,
    account: Account | None = None,
    **options: Any,
) -> Batch:
    jobs = tuple(Job(number=n, text=text, provider="p") for n in numbers)
    return Batch(
        provider="p", account=account, sender=sender, text=text, options=SmsOptions(**options), jobs=jobs
    )


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    fake = FakeKwtSms(
        accounts={"user": (KWT_PASSWORD, 100), "broke": ("pw", 0)}, senders=["KWT-MESSAGE", "Shop"]
    )
    with fake:
        yield fake
    assert fake.errors == []


@pytest.fixture
def kapow() -> Iterator[FakeKapow]:
    fake = FakeKapow(accounts={"user": (KAPOW_PASSWORD, 100), "poor": ("pw", 1)}, from_ids=["Alarm"])
    with fake:
        yield fake
    assert fake.errors == []


def kwt_provider(fake: FakeKwtSms, client: httpx.AsyncClient, **config: Any) -> KwtSmsProvider:
    settings = {
        "type": "kwtsms",
        "url": fake.url,
        "username": "user",
        "password": KWT_PASSWORD,
        "sender": "KWT-MESSAGE",
        **config,
    }
    return KwtSmsProvider("kwt", ProviderConfig.model_validate(settings), client)


def kapow_provider(fake: FakeKapow, client: httpx.AsyncClient, **config: Any) -> KapowProvider:
    settings = {"type": "kapow", "url": fake.url, "username": "user", "password": KAPOW_PASSWORD, **config}
    return KapowProvider("kapow", ProviderConfig.model_validate(settings), client)


# == KwtSMS ======================================================================================
async def test_kwtsms_success_sends_the_documented_parameters(
    kwt: FakeKwtSms, client: httpx.AsyncClient
) -> None:
    """A batch is one POST to /API/send/ with digit-only numbers, sender and lang 1; every number is Sent."""
    results = await kwt_provider(kwt, client).send(
        make_batch(("96550000001", "+96550000002"), "Meet me at 5")
    )
    [request] = kwt.requests
    assert (request.method, request.path) == ("POST", "/API/send/")
    assert request.param("mobile") == "96550000001,96550000002"
    assert (request.param("sender"), request.param("lang"), request.param("message")) == (
        "KWT-MESSAGE",
        "1",
        "Meet me at 5",
    )
    msg_id = kwt.sent[0].msg_id
    assert len(msg_id) == 32
    assert [r.provider_id for r in results if isinstance(r, Sent)] == [msg_id, msg_id]
    assert [s.number for s in kwt.sent] == ["96550000001", "96550000002"]
    assert kwt.balance_of("user") == 98


async def test_kwtsms_arabic_defaults_to_lang_3_utf8(kwt: FakeKwtSms, client: httpx.AsyncClient) -> None:
    """Arabic text without a lang goes as lang 3 and arrives intact as UTF-8."""
    await kwt_provider(kwt, client).send(make_batch(("96550000001",), "مرحبا بكم"))
    assert (kwt.sent[0].lang, kwt.sent[0].text) == (3, "مرحبا بكم")
    assert kwt.requests[0].charset == "utf-8"


async def test_kwtsms_lang_2_travels_as_windows_1256(kwt: FakeKwtSms, client: httpx.AsyncClient) -> None:
    """With lang 2 the wire carries Windows-1256 bytes and KwtSMS reads the Arabic text back from them."""
    await kwt_provider(kwt, client, options={"api": "text"}).send(make_batch(("96550000001",), "عربي تجربة", lang=2))
    request = kwt.requests[0]
    assert request.charset == "cp1256"
    assert b"message=%DA%D1%C8%ED+%CA%CC%D1%C8%C9" in request.body
    assert (kwt.sent[0].lang, kwt.sent[0].text) == (2, "عربي تجربة")


async def test_kwtsms_mail_body_account_and_sender_win(kwt: FakeKwtSms, client: httpx.AsyncClient) -> None:
    """Credentials and sender from the mail replace the configured ones (the KwtSMS model)."""
    kwt.accounts["mailuser"] = type(kwt.accounts["user"])("mailpw", 10, 10)
    provider = kwt_provider(kwt, client, username="", password="")
    [result] = await provider.send(
        make_batch(("96550000001",), sender="Shop", account=Account(username="mailuser", password="mailpw"))
    )
    assert isinstance(result, Sent)
    assert (kwt.sent[0].username, kwt.sent[0].sender) == ("mailuser", "Shop")


@pytest.mark.parametrize("style", ["text", "bare", "json"])
@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("bad login", "ERR003"),
        ("unknown sender", "ERR008"),
        ("zero balance", "ERR010"),
        ("bad lang", "ERR031"),
        ("too many numbers", "ERR007"),
        ("html", "ERR027"),
        ("seven pages", "ERR012"),
    ],
)
async def test_kwtsms_refusals_are_rejected_in_every_error_style(
    kwt: FakeKwtSms, client: httpx.AsyncClient, style: str, case: str, code: str
) -> None:
    """Each refusal KwtSMS gives is Rejected with its code, whichever error-line style the provider uses."""
    kwt.style = style  # type: ignore[assignment]
    config: dict[str, Any] = {"options": {"api": "text"}}  # the error-line styles are the text API's
    numbers, text, sender, options = ("96550000001",), "hello", None, {}
    if case == "bad login":
        config["password"] = "wrong"
    elif case == "unknown sender":
        sender = "kwt-message"  # sender ids are case-sensitive
    elif case == "zero balance":
        config.update(username="broke", password="pw")
    elif case == "bad lang":
        options["lang"] = 9
    elif case == "too many numbers":
        numbers = tuple(f"9655{i:07d}" for i in range(201))
    elif case == "html":
        text = "<b>bold</b> offer"
    elif case == "seven pages":
        text = "x" * (153 * 6 + 1)
    results = await kwt_provider(kwt, client, **config).send(make_batch(numbers, text, sender, **options))
    assert results == [Rejected(code=code, why=explain("kwtsms", code))] * len(numbers)
    assert kwt.sent == []
    assert KWT_PASSWORD not in repr(results)


async def test_kwtsms_same_number_within_15_s_is_retry(kwt: FakeKwtSms, client: httpx.AsyncClient) -> None:
    """A second SMS to a number within 15 s gets ERR028, which is Retry after 15 s (nothing was sent)."""
    provider = kwt_provider(kwt, client)
    first = await provider.send(make_batch(("96550000001",)))
    second = await provider.send(make_batch(("96550000001",), "again"))
    assert isinstance(first[0], Sent)
    assert second == [Retry(code="ERR028", why=explain("kwtsms", "ERR028"), after=15.0)]
    assert len(kwt.sent) == 1


@pytest.mark.parametrize("style", ["text", "bare", "json"])
async def test_kwtsms_queue_full_is_retry(kwt: FakeKwtSms, client: httpx.AsyncClient, style: str) -> None:
    """ERR013 (send queue full) is Retry after 30 s on a first attempt: KwtSMS did not take the message."""
    kwt.style = style  # type: ignore[assignment]
    kwt.force_error("ERR013")
    assert await kwt_provider(kwt, client, options={"api": "text"}).send(make_batch(("96550000001",))) == [
        Retry(code="ERR013", why=explain("kwtsms", "ERR013"), after=30.0)
    ]


@pytest.mark.parametrize(
    ("style", "decimals", "detail"),
    [
        ("text", False, "available 97 of 100 purchased"),
        ("text", True, "available 97 of 100 purchased"),
        ("json", False, "available 97 of 100 purchased"),
    ],
)
async def test_kwtsms_balance(
    kwt: FakeKwtSms, client: httpx.AsyncClient, style: str, decimals: bool, detail: str
) -> None:
    """balance() reads balance/ in every reply shape, after the fake charged for 3 numbers."""
    provider = kwt_provider(kwt, client, options={"api": "text"})
    await provider.send(make_batch(("96550000001", "96550000002", "96550000003")))
    kwt.style, kwt.balance_decimals = style, decimals  # type: ignore[assignment]
    balance = await provider.balance()
    assert (balance.credit, balance.detail) == (97.0, f"{detail}; sender IDs: KWT-MESSAGE, Shop")


async def test_kwtsms_fake_is_strict_about_numbers_and_parameters(
    kwt: FakeKwtSms, client: httpx.AsyncClient
) -> None:
    """The fake refuses what KwtSMS refuses: + or 00 numbers, no valid number, a missing parameter, GET."""
    base = {
        "username": "user",
        "password": KWT_PASSWORD,
        "sender": "KWT-MESSAGE",
        "lang": "1",
        "message": "x",
    }
    url = kwt.url + "send/"
    answers = [
        (await client.post(url, data={**base, "mobile": "96550000001,+96550000002"})).text,
        (await client.post(url, data={**base, "mobile": "0096550000001"})).text,
        (await client.post(url, data={**base, "mobile": "abc"})).text,
        (
            await client.post(
                url, data={k: v for k, v in base.items() if k != "lang"} | {"mobile": "96550000001"}
            )
        ).text,
    ]
    assert answers == ["ERROR:ERR025", "ERROR:ERR006", "ERROR:ERR006", "ERROR:ERR002"]
    assert (await client.get(url, params={**base, "mobile": "96550000001"})).status_code == 405
    assert (
        await client.post(kwt.url + "senderid/", data={"username": "user", "password": KWT_PASSWORD})
    ).text == "KWT-MESSAGE\nShop"
    assert kwt.sent == []


# == Kapow =======================================================================================
async def test_kapow_success_gives_each_number_its_returnid(
    kapow: FakeKapow, client: httpx.AsyncClient
) -> None:
    """One POST to sendsms.php with returnid=TRUE; the ids come back in the order of the numbers."""
    results = await kapow_provider(kapow, client).send(make_batch(("447700900001", "+447700900002")))
    [request] = kapow.requests
    assert (request.method, request.path) == ("POST", "/scripts/sendsms.php")
    assert (request.param("mobile"), request.param("returnid")) == ("447700900001,447700900002", "TRUE")
    assert request.param("from_id") is None
    assert [r.provider_id for r in results if isinstance(r, Sent)] == [s.returnid for s in kapow.sent]
    assert [s.number for s in kapow.sent] == ["447700900001", "447700900002"]
    assert kapow.credits_of("user") == 98


async def test_kapow_comma_separated_ids_are_understood(kapow: FakeKapow, client: httpx.AsyncClient) -> None:
    """If Kapow separated several ids with commas, the adapter still assigns them in order."""
    kapow.id_separator = ","
    results = await kapow_provider(kapow, client).send(
        make_batch(("447700900001", "447700900002", "447700900003"))
    )
    assert [r.provider_id for r in results if isinstance(r, Sent)] == [s.returnid for s in kapow.sent]


async def test_kapow_sender_flash_and_schedule(kapow: FakeKapow, client: httpx.AsyncClient) -> None:
    """from_id, the FLASH marker and a sendtime in Kapow's format are all accepted by the fake."""
    when = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    [result] = await kapow_provider(kapow, client).send(
        make_batch(("447700900001",), "wake up", sender="Alarm", flash=True, sendtime=when.isoformat())
    )
    assert isinstance(result, Sent)
    [sent] = kapow.sent
    assert (sent.from_id, sent.flash, sent.text) == ("Alarm", True, "wake up")
    assert sent.sendtime == when.astimezone(ZoneInfo("Europe/London"))


@pytest.mark.parametrize(
    ("case", "word"), [("bad login", "USERPASS"), ("no credit", "NOCREDIT"), ("sender not enabled", "ERROR")]
)
async def test_kapow_refusals_are_rejected(
    kapow: FakeKapow, client: httpx.AsyncClient, case: str, word: str
) -> None:
    """USERPASS, NOCREDIT and ERROR from Kapow become Rejected with their explanation."""
    config: dict[str, Any] = {}
    sender = None
    if case == "bad login":
        config["password"] = "wrong"
    elif case == "no credit":
        config.update(username="poor", password="pw")
    else:
        sender = "NotEnabled"
    results = await kapow_provider(kapow, client, **config).send(
        make_batch(("447700900001", "447700900002"), sender=sender)
    )
    assert results == [Rejected(code=word, why=explain("kapow", word))] * 2
    assert kapow.sent == []
    assert KAPOW_PASSWORD not in repr(results)


async def test_kapow_balance(kapow: FakeKapow, client: httpx.AsyncClient) -> None:
    """balance() reads chk_credit.php's bare integer."""
    provider = kapow_provider(kapow, client)
    await provider.send(make_batch(("447700900001",)))
    assert (await provider.balance()).credit == 99.0


async def test_kapow_fake_answers_get_status_and_bad_sendtimes(
    kapow: FakeKapow, client: httpx.AsyncClient
) -> None:
    """The fake serves GET too, answers chk_status.php, and refuses sendtimes Kapow refuses."""
    base = {"username": "user", "password": KAPOW_PASSWORD, "mobile": "447700900001", "sms": "x"}
    url = kapow.url + "sendsms.php"
    ok = (await client.get(url, params={**base, "returnid": "TRUE"})).text
    assert ok.startswith("OK 99 ")
    assert not ok.endswith("\n")
    returnid = ok.split()[2]
    status_url = kapow.url + "chk_status.php"
    assert (await client.get(status_url, params={"username": "user", "returnid": returnid})).text == "S"
    kapow.set_status(returnid, "D")
    assert (await client.get(status_url, params={"username": "user", "returnid": returnid})).text == "D"
    assert (await client.get(status_url, params={"username": "user", "returnid": "1"})).text == "ERROR"
    soon = datetime.now(ZoneInfo("Europe/London")) + timedelta(days=1)
    good = [soon.strftime("%d-%m-%y %H:%M"), f"{soon.day}-{soon:%m-%Y %H:%M}"]
    bad = [
        soon.strftime("%d/%m/%y %H:%M"),
        "01-01-20 10:00",
        (soon + timedelta(days=400)).strftime("%d-%m-%y %H:%M"),
    ]
    for value in good:
        assert (await client.post(url, data={**base, "sendtime": value})).text.startswith("OK ")
    for value in bad:
        assert (await client.post(url, data={**base, "sendtime": value})).text == "ERROR"
    assert (await client.post(url, data={**base, "mobile": ""})).text == "ERROR"
    assert (
        await client.post(kapow.url + "chk_credit.php", data={"username": "user", "password": "x"})
    ).text == "USERPASS"


# == Faults, for both providers ==================================================================
@pytest.fixture(params=["kwtsms", "kapow"])
def setup(request: pytest.FixtureRequest, kwt: FakeKwtSms, kapow: FakeKapow) -> tuple[str, FakeProvider]:
    return (request.param, kwt if request.param == "kwtsms" else kapow)


def provider_for(kind: str, fake: FakeProvider, client: httpx.AsyncClient, **config: Any) -> Any:
    if kind == "kwtsms":
        assert isinstance(fake, FakeKwtSms)
        return kwt_provider(fake, client, **config)
    assert isinstance(fake, FakeKapow)
    return kapow_provider(fake, client, **config)


def sent_count(fake: FakeProvider) -> int:
    assert isinstance(fake, FakeKwtSms | FakeKapow)
    return len(fake.sent)


NUMBER = {"kwtsms": "96550000001", "kapow": "447700900001"}


async def test_429_with_retry_after_seconds(
    setup: tuple[str, FakeProvider], client: httpx.AsyncClient
) -> None:
    """HTTP 429 with Retry-After in seconds is Retry after that many seconds."""
    kind, fake = setup
    fake.fail_next(429, "Too Many Requests", {"Retry-After": "12"})
    [result] = await provider_for(kind, fake, client).send(make_batch((NUMBER[kind],)))
    assert result == Retry(code="HTTP429", why=explain(kind, "HTTP429"), after=12.0)
    assert sent_count(fake) == 0


async def test_429_with_retry_after_http_date(
    setup: tuple[str, FakeProvider], client: httpx.AsyncClient
) -> None:
    """HTTP 429 with Retry-After as an HTTP date is Retry after the seconds until that date."""
    kind, fake = setup
    fake.fail_next(
        429, "", {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)}
    )
    [result] = await provider_for(kind, fake, client).send(make_batch((NUMBER[kind],)))
    assert isinstance(result, Retry)
    assert result.after is not None
    assert 80 < result.after <= 90


@pytest.mark.parametrize(("status", "kind_of_result"), [(500, Unknown), (503, Retry)])
async def test_server_errors(
    setup: tuple[str, FakeProvider], client: httpx.AsyncClient, status: int, kind_of_result: type
) -> None:
    """500 may have sent the SMS (Unknown); 503 means the provider is unavailable (Retry)."""
    kind, fake = setup
    fake.fail_next(status, "oops")
    [result] = await provider_for(kind, fake, client).send(make_batch((NUMBER[kind],)))
    assert isinstance(result, kind_of_result)
    assert result.code == f"HTTP{status}"
    assert result.why == explain(kind, f"HTTP{status}")


async def test_read_timeout_after_the_request_was_sent_is_unknown(
    setup: tuple[str, FakeProvider], client: httpx.AsyncClient
) -> None:
    """A provider that takes the request but answers too late gives Unknown, and it did send the SMS."""
    kind, fake = setup
    # The answer comes 3 s after the request (the fake changes its state then), ten times the 0.3 s timeout: the
    # client gives up first even on a busy machine. That the SMS is not yet counted when the result is back proves
    # the client did not wait for the answer (no wall-clock measure needed).
    fake.delay_next(3.0)
    [result] = await provider_for(kind, fake, client, timeout=0.3).send(make_batch((NUMBER[kind],)))
    assert sent_count(fake) == 0
    assert isinstance(result, Unknown)
    assert result.code == "ReadTimeout"
    fake.wait_until(lambda: sent_count(fake) == 1, timeout=60)  # why Unknown is right: it was sent


async def test_reset_after_read_is_unknown(
    setup: tuple[str, FakeProvider], client: httpx.AsyncClient
) -> None:
    """A connection reset after the provider read the request gives Unknown."""
    kind, fake = setup
    fake.reset_next()
    [result] = await provider_for(kind, fake, client).send(make_batch((NUMBER[kind],)))
    assert isinstance(result, Unknown)
    assert result.code in ("ReadError", "RemoteProtocolError")
    assert len(fake.requests) == 1


async def test_connection_refused_is_retry(
    setup: tuple[str, FakeProvider], client: httpx.AsyncClient
) -> None:
    """With nothing listening the request surely did not arrive: Retry; after a restart the send works."""
    kind, fake = setup
    provider = provider_for(kind, fake, client)
    fake.refuse()
    [result] = await provider.send(make_batch((NUMBER[kind],)))
    assert result == Retry(code="ConnectError", why=explain(kind, "ConnectError"))
    fake.start()
    [result] = await provider.send(make_batch((NUMBER[kind],)))
    assert isinstance(result, Sent)


async def test_faults_apply_to_the_next_requests_in_order(kwt: FakeKwtSms, client: httpx.AsyncClient) -> None:
    """Injected faults are used one per request, oldest first, then the fake answers normally again."""
    provider = kwt_provider(kwt, client)
    kwt.inject(("status", 503, "busy", {}), ("status", 429, "", {"Retry-After": "1"}))
    codes = [(await provider.send(make_batch((f"9655000000{i}",))))[0] for i in range(3)]
    assert [type(r).__name__ for r in codes] == ["Retry", "Retry", "Sent"]
    assert len(kwt.wait_for(3, timeout=120)) == 3
