"""Unit tests of the KwtSMS adapter: wire parameters and reply mapping, with httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import Account, Batch, Job, Rejected, Result, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.explain import explain
from mail2sms.providers.kwtsms import (
    KwtSmsProvider,
    choose_lang,
    is_gsm7,
    reply_results,
    wire_number,
)
from mail2sms.providers.kwtsms_reply import EXPLAIN as KWTSMS
from mail2sms.providers.kwtsms_reply import delivery_status

PASSWORD = "s3cret-pw"
ALL_CODES = [
    "ERR001",
    "ERR002",
    "ERR003",
    "ERR004",
    "ERR005",
    "ERR006",
    "ERR007",
    "ERR008",
    "ERR009",
    "ERR010",
    "ERR011",
    "ERR012",
    "ERR013",
    "ERR024",
    "ERR025",
    "ERR026",
    "ERR027",
    "ERR028",
    "ERR031",
    "ERR032",
    "ERR033",
]
RETRY_CODES = {"ERR013": 30.0, "ERR028": 15.0}


def reply_result(body: str, count: int) -> list[Result]:
    """The Results of a recognised `send/` answer (a test helper: None would be a bug here)."""
    results = reply_results(body, count)
    assert results is not None
    return results


def make_batch(
    text: str = "hello",
    numbers: tuple[str, ...] = ("96550000001",),
    sender: str | None = None,
    account: Account | None = None,
    **options: object,
) -> Batch:
    jobs = tuple(Job(number=n, text=text, provider="kwt") for n in numbers)
    return Batch(provider="kwt", account=account, sender=sender, text=text, options=SmsOptions(**options), jobs=jobs)  # type: ignore[arg-type]


def make_provider(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> KwtSmsProvider:
    settings: dict[str, object] = {
        "type": "kwtsms",
        "url": "https://kwt.test/API/",
        "username": "user",
        "password": PASSWORD,
        "sender": "KWT-MESSAGE",
        "options": {"api": "text"},  # the legacy text API: its form is easy to read back; JSON tests say "json"
    }
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return KwtSmsProvider("kwt", ProviderConfig.model_validate(settings), client)


def replying(
    body: str | bytes,
    status: int = 200,
    headers: dict[str, str] | None = None,
    seen: list[httpx.Request] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body, headers=headers)

    return handler


def form(request: httpx.Request, charset: str = "utf-8") -> dict[str, str]:
    parsed = parse_qs(request.content.decode("ascii"), keep_blank_values=True, encoding=charset)
    return {k: v[0] for k, v in parsed.items()}


def assert_no_secret(results: list[Result]) -> None:
    assert PASSWORD not in repr(results)


# -- reply parsing -------------------------------------------------------------------------------
def test_ok_reply_gives_sent_with_message_id_for_every_number() -> None:
    """An `OK:` line marks every number Sent with the reply's message id and the charge as detail."""
    results = reply_result("OK:f4c841adee210f31307633ceaebff2ec:2:2:180:1242667894", 2)
    assert [r.provider_id for r in results if isinstance(r, Sent)] == ["f4c841adee210f31307633ceaebff2ec"] * 2
    assert isinstance(results[0], Sent)
    assert "balance after 180" in (results[0].detail or "")


def test_json_ok_reply_is_accepted() -> None:
    """The JSON API's `{"result":"OK", ...}` is read like the text API's OK line."""
    body = '{"result":"OK","msg-id":"abc123","numbers":1,"points-charged":1,"balance-after":99,"unix-timestamp":1}'
    assert reply_result(body, 1) == [
        Sent(provider_id="abc123", detail="KwtSMS took 1 of 1 number, charged 1 point; balance after 99")
    ]


@pytest.mark.parametrize("code", ALL_CODES)
@pytest.mark.parametrize("style", ["ERROR:{code}", "{code}", '{{"result":"ERROR","code":"{code}","description":"x"}}'])
def test_every_documented_code_maps_to_its_result(code: str, style: str) -> None:
    """Each documented ERR code, in every error-line style, becomes Retry (not processed) or Rejected."""
    results = reply_result(style.format(code=code), 3)
    assert len(results) == 3
    result = results[0]
    if code in RETRY_CODES:
        assert result == Retry(code=code, why=explain("kwtsms", code), after=RETRY_CODES[code])
    else:
        assert result == Rejected(code=code, why=explain("kwtsms", code))


def test_every_documented_code_has_its_own_explanation() -> None:
    """The explanation table covers every code providers.md lists, and ERR003 reads as the brief says."""
    assert set(ALL_CODES) <= set(KWTSMS)
    assert explain("kwtsms", "ERR003") == (
        "the username or password was not accepted by KwtSMS: check the account's API username and password"
    )


@pytest.mark.parametrize("body", ["ERROR", "error: bad request", '{"result":"ERROR"}'])
def test_error_without_code_is_rejected_as_error(body: str) -> None:
    """An answer that says ERROR but carries no ERR code is a refusal: Rejected with code ERROR."""
    assert reply_result(body, 1) == [Rejected(code="ERROR", why=explain("kwtsms", "ERROR"))]


@pytest.mark.parametrize("body", ["Sorry, something went wrong", "<html>maintenance</html>", "", "{oops"])
async def test_text_api_unreadable_answer_is_unknown(body: str) -> None:
    """A 200 answer that is neither OK nor an error cannot tell whether the SMS went: Unknown, not refused."""
    assert reply_results(body, 1) is None
    [result] = await make_provider(replying(body)).send(make_batch())
    assert result == Unknown(code="UNEXPECTED", why=explain("kwtsms", "UNEXPECTED"))


def test_unknown_error_code_is_rejected_with_generic_words() -> None:
    """An ERR code missing from the table is still Rejected, and the explanation names the code."""
    [result] = reply_result("ERROR:ERR099", 1)
    assert isinstance(result, Rejected)
    assert result.code == "ERR099"
    assert "ERR099" in result.why


# -- helpers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "wire"),
    [
        ("96550000000", "96550000000"),
        ("+96550000000", "96550000000"),
        ("0096550000000", "96550000000"),
        ("965 5000 0000", "96550000000"),
        ("abc", None),
        ("123", None),
        ("+", None),
    ],
)
def test_wire_number_is_international_digits_only(given: str, wire: str | None) -> None:
    """Numbers go as digits only, without + or 00; anything else cannot be sent."""
    assert wire_number(given) == wire


def test_gsm7_check() -> None:
    """Plain English and GSM-7 accents count as GSM-7; Arabic and emoji do not."""
    assert is_gsm7("Meet me at 5, OK? €10 [x]")
    assert is_gsm7("Café Ünal")
    assert not is_gsm7("عربي")
    assert not is_gsm7("hi 🙂")


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("hello", None, 1),
        ("عربي", None, 3),
        ("hello", 2, 2),
        ("عربي", 4, 4),
    ],
)
def test_lang_choice(text: str, lang: int | None, expected: int) -> None:
    """The mail's lang wins; otherwise GSM-7 text goes as 1 (English) and other text as 3 (Arabic UTF-8)."""
    assert choose_lang(make_batch(text, lang=lang)) == expected


# -- the request ---------------------------------------------------------------------------------
async def test_send_posts_the_documented_form() -> None:
    """send() POSTs username, password, sender, comma-joined digit numbers, lang and message to send/."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK:abc:2:2:98:1", seen=seen))
    results = await provider.send(make_batch("hi there", ("+96550000001", "0096550000002")))
    assert (
        results
        == [Sent(provider_id="abc", detail="KwtSMS took 2 of 2 numbers, charged 2 points; balance after 98")] * 2
    )
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://kwt.test/API/send/"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "username": "user",
        "password": PASSWORD,
        "sender": "KWT-MESSAGE",
        "mobile": "96550000001,96550000002",
        "lang": "1",
        "message": "hi there",
    }
    assert b"message=hi+there" in request.content


async def test_batch_sender_and_mail_body_credentials_win() -> None:
    """The batch's sender and the mail body's account replace the configured ones."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK:abc:1:1:98:1", seen=seen))
    await provider.send(make_batch(sender="MY SHOP", account=Account(username="other", password="pw2")))
    sent = form(seen[0])
    assert (sent["username"], sent["password"], sent["sender"]) == ("other", "pw2", "MY SHOP")


async def test_lang_2_sends_windows_1256_bytes() -> None:
    """With lang 2 the message is percent-encoded Windows-1256 bytes, not UTF-8."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK:abc:1:1:98:1", seen=seen))
    await provider.send(make_batch("عربي تجربة", lang=2))
    assert form(seen[0], "cp1256")["message"] == "عربي تجربة"
    assert b"%DA%D1%C8%ED" in seen[0].content  # "عربي" in Windows-1256


async def test_lang_2_with_characters_cp1256_lacks_is_rejected_unsent() -> None:
    """Text Windows-1256 cannot carry is Rejected (CP1256) and no request is made."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK:abc:1:1:98:1", seen=seen))
    results = await provider.send(make_batch("hi 🙂", lang=2))
    assert results == [Rejected(code="CP1256", why=explain("kwtsms", "CP1256"))]
    assert seen == []


async def test_arabic_text_defaults_to_lang_3_utf8() -> None:
    """Arabic text without a lang goes as lang 3 in UTF-8."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK:abc:1:1:98:1", seen=seen))
    await provider.send(make_batch("مرحبا"))
    assert form(seen[0])["lang"] == "3"
    assert form(seen[0])["message"] == "مرحبا"


async def test_invalid_numbers_are_rejected_locally_and_left_out() -> None:
    """A number that is not digits is Rejected locally; the others are sent, results stay in job order."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK:abc:1:1:98:1", seen=seen))
    results = await provider.send(make_batch(numbers=("bogus", "96550000001")))
    assert isinstance(results[0], Rejected)
    assert results[0].code == "NUMBER"
    assert isinstance(results[1], Sent)
    assert form(seen[0])["mobile"] == "96550000001"


async def test_error_reply_maps_and_never_carries_the_password() -> None:
    """A provider error becomes Rejected with plain words, and no Result repeats the password."""
    provider = make_provider(replying("ERROR:ERR003"))
    results = await provider.send(make_batch(numbers=("96550000001", "96550000002")))
    assert results == [Rejected(code="ERR003", why=explain("kwtsms", "ERR003"))] * 2
    assert_no_secret(results)


# -- HTTP statuses and transport failures --------------------------------------------------------
async def test_429_with_retry_after_seconds_is_retry() -> None:
    """HTTP 429 is Retry, waiting as long as Retry-After says."""
    provider = make_provider(replying("slow down", 429, {"Retry-After": "7"}))
    [result] = await provider.send(make_batch())
    assert isinstance(result, Retry)
    assert (result.code, result.after) == ("HTTP429", 7.0)
    assert result.why == explain("kwtsms", "HTTP429")


async def test_429_with_retry_after_http_date_is_retry() -> None:
    """A Retry-After given as an HTTP date becomes the seconds until that date."""
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    provider = make_provider(replying("slow down", 429, {"Retry-After": when}))
    [result] = await provider.send(make_batch())
    assert isinstance(result, Retry)
    assert result.after is not None
    assert 100 < result.after <= 120


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, Unknown), (503, Retry), (502, Retry), (404, Rejected), (401, Rejected), (302, Rejected)],
)
async def test_http_statuses(status: int, kind: type) -> None:
    """500 may have sent (Unknown), 502/503 did not (Retry), 4xx and redirects are refusals (Rejected)."""
    provider = make_provider(replying("x", status))
    [result] = await provider.send(make_batch())
    assert isinstance(result, kind)
    assert result.code == f"HTTP{status}"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), Retry),
        (httpx.ConnectTimeout("slow"), Retry),
        (httpx.ReadTimeout("slow"), Unknown),
        (httpx.RemoteProtocolError("closed"), Unknown),
        (httpx.ReadError("reset"), Unknown),
    ],
)
async def test_transport_failures(exc: Exception, kind: type) -> None:
    """Failures before the request left are Retry; after it may have arrived they are Unknown."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    provider = make_provider(handler)
    [result] = await provider.send(make_batch())
    assert isinstance(result, kind)
    assert result.code == type(exc).__name__
    assert result.why == explain("kwtsms", type(exc).__name__)


async def test_unusable_url_is_rejected_not_raised() -> None:
    """A url with an unsupported scheme is Rejected (URL) instead of raising."""
    provider = KwtSmsProvider(
        "kwt", ProviderConfig(type="kwtsms", url="ftp://kwt.test/API/", sender="KWT-SMS"), httpx.AsyncClient()
    )
    [result] = await provider.send(make_batch())
    assert isinstance(result, Rejected)
    assert result.code == "URL"


# -- limits and balance --------------------------------------------------------------------------
def test_limits_defaults_and_overrides() -> None:
    """Defaults are 200 numbers, 2 requests/s, 6 parts, not idempotent; config may lower them."""
    provider = make_provider(replying(""))
    assert (provider.limits.max_recipients, provider.limits.rate, provider.limits.max_parts) == (200, 2.0, 6)
    assert provider.limits.idempotent is False
    tuned = make_provider(replying(""), max_recipients=500, rate=1)
    assert (tuned.limits.max_recipients, tuned.limits.rate) == (200, 1.0)
    assert make_provider(replying(""), max_recipients=50).limits.max_recipients == 50


@pytest.mark.parametrize(
    ("body", "credit", "detail"),
    [
        ("181/377", 181.0, "available 181 of 377 purchased"),
        ("181.00/1000.00", 181.0, "available 181 of 1000 purchased"),
        ('{"result":"OK","available":12.5,"purchased":50}', 12.5, "available 12.5 of 50 purchased"),
    ],
)
async def test_balance_parses_available_and_purchased(body: str, credit: float, detail: str) -> None:
    """balance/ answers available/purchased; the credit is the available part."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=body if request.url.path.endswith("/balance/") else "KWT-MESSAGE\n")

    balance = await make_provider(handler).balance()
    assert (balance.provider, balance.credit) == ("kwt", credit)
    assert balance.detail == f"{detail}; sender IDs: KWT-MESSAGE"
    assert str(seen[1].url) == "https://kwt.test/API/senderid/"
    assert str(seen[0].url) == "https://kwt.test/API/balance/"
    assert form(seen[0]) == {"username": "user", "password": PASSWORD}


async def test_balance_error_raises_plain_words_without_secret() -> None:
    """A refused balance request raises ProviderError explaining the code, never showing the password."""
    provider = make_provider(replying("ERROR:ERR003"))
    with pytest.raises(ProviderError) as info:
        await provider.balance()
    assert str(info.value) == explain("kwtsms", "ERR003")
    assert PASSWORD not in str(info.value)


# -- the JSON API (the default) ------------------------------------------------------------------
def json_provider(handler: Callable[[httpx.Request], httpx.Response], **options: object) -> KwtSmsProvider:
    return make_provider(handler, options={"api": "json", **options})


def jobs_with_attempts(attempts: int, numbers: tuple[str, ...] = ("96550000001",)) -> Batch:
    batch = make_batch(numbers=numbers)
    for job in batch.jobs:
        job.attempts = attempts
    return batch


async def test_json_api_is_the_default_and_posts_a_json_object() -> None:
    """Without options.api the adapter POSTs a JSON object with KwtSMS's field names to send/."""
    seen: list[httpx.Request] = []
    ok = '{"result":"OK","msg-id":"m1","numbers":2,"points-charged":2,"balance-after":98,"unix-timestamp":1}'
    provider = make_provider(replying(ok, seen=seen), options={})
    results = await provider.send(make_batch("hi there", ("+96550000001", "0096550000002")))
    assert (
        results == [Sent(provider_id="m1", detail="KwtSMS took 2 of 2 numbers, charged 2 points; balance after 98")] * 2
    )
    [request] = seen
    assert str(request.url) == "https://kwt.test/API/send/"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "username": "user",
        "password": PASSWORD,
        "sender": "KWT-MESSAGE",
        "mobile": "96550000001,96550000002",
        "lang": "1",
        "message": "hi there",
    }


async def test_json_error_with_http_403_is_read_before_the_status() -> None:
    """ERR024 arriving with HTTP 403 is KwtSMS's refusal ERR024 (IP not allowed), not a generic HTTP403."""
    body = '{"result":"ERROR","code":"ERR024","description":"IP address is not whitelisted"}'
    provider = json_provider(replying(body, 403))
    [result] = await provider.send(make_batch())
    assert result == Rejected(code="ERR024", why=explain("kwtsms", "ERR024"))
    assert "IP address is not on the account's allowed list" in result.why


async def test_json_unknown_code_keeps_code_and_sanitised_description() -> None:
    """An ERR code mail2sms does not know keeps KwtSMS's code and its description: one line, bounded, no secret."""
    words = f"Queue\\nstuck {PASSWORD} " + "x" * 400
    body = json.dumps({"result": "ERROR", "code": "ERR077", "description": words.replace("\\n", "\n")})
    provider = json_provider(replying(body, 400))
    [result] = await provider.send(make_batch())
    assert isinstance(result, Rejected)
    assert result.code == "ERR077"
    assert 'KwtSMS refused the request with ERR077: "Queue stuck *** xxx' in result.why
    assert PASSWORD not in result.why
    assert "\n" not in result.why
    assert len(result.why) < 400


@pytest.mark.parametrize("code", ["ERR019", "ERR020", "ERR021", "ERR022", "ERR023", "ERR029", "ERR030"])
def test_newer_codes_have_explanations(code: str) -> None:
    """The codes the JSON API added (reports, queue) are in the table and refuse with their own words."""
    [result] = reply_result(json.dumps({"result": "ERROR", "code": code, "description": "d"}), 1)
    assert result == Rejected(code=code, why=KWTSMS[code])


@pytest.mark.parametrize(("attempts", "wait"), [(0, 30.0), (1, 60.0), (2, 120.0), (3, 240.0)])
async def test_queue_full_backs_off_30_s_doubling_per_attempt(attempts: int, wait: float) -> None:
    """ERR013 (queue full) is Retry after 30 s on the first try, then 60, 120, 240 … by the jobs' attempts."""
    provider = json_provider(replying('{"result":"ERROR","code":"ERR013","description":"queue full"}'))
    [result] = await provider.send(jobs_with_attempts(attempts))
    assert result == Retry(code="ERR013", why=explain("kwtsms", "ERR013"), after=wait)


async def test_same_number_within_15_s_still_waits_15_s() -> None:
    """ERR028 stays a Retry after 15 s, whatever the attempt."""
    provider = json_provider(replying('{"result":"ERROR","code":"ERR028","description":"wait"}'))
    [result] = await provider.send(jobs_with_attempts(4))
    assert result == Retry(code="ERR028", why=explain("kwtsms", "ERR028"), after=15.0)


@pytest.mark.parametrize("api", ["json", "text"])
async def test_fewer_numbers_taken_makes_every_number_unknown(api: str) -> None:
    """`numbers` 2 for 3 numbers sent: none is Sent; all are Unknown, and the why says 2 of 3 and no which."""
    body = (
        '{"result":"OK","msg-id":"m9","numbers":2,"points-charged":2,"balance-after":5,"unix-timestamp":1}'
        if api == "json"
        else "OK:m9:2:2:5:1"
    )
    provider = make_provider(replying(body), options={"api": api})
    results = await provider.send(make_batch(numbers=("96550000001", "96550000002", "96550000003")))
    assert {type(r) for r in results} == {Unknown}
    assert {r.code for r in results if isinstance(r, Unknown)} == {"PARTIAL"}
    why = results[0].why if isinstance(results[0], Unknown) else ""
    assert why.startswith("KwtSMS took 2 of 3 numbers and did not say which, charged 2 points; balance after 5")
    assert "(msg-id m9)" in why


def test_ok_with_no_number_taken_is_a_refusal() -> None:
    """`numbers` 0 means KwtSMS took none: every number is refused (NONE_TAKEN), none is Sent."""
    results = reply_result('{"result":"OK","msg-id":"m","numbers":0,"points-charged":0}', 2)
    assert results == [Rejected(code="NONE_TAKEN", why=explain("kwtsms", "NONE_TAKEN"))] * 2


def test_ok_with_a_count_that_is_not_a_number_is_unknown() -> None:
    """An OK whose `numbers` is not a count does not add up: Unknown, never Sent."""
    [result] = reply_result('{"result":"OK","msg-id":"m","numbers":"many"}', 1)
    assert isinstance(result, Unknown)
    assert result.code == "PARTIAL"


async def test_test_mode_sends_test_1_and_is_never_sent() -> None:
    """options.test adds test=1; KwtSMS's OK then means validated only: Rejected TEST, never Sent."""
    seen: list[httpx.Request] = []
    ok = '{"result":"OK","msg-id":"t1","numbers":1,"points-charged":0,"balance-after":100,"unix-timestamp":1}'
    provider = json_provider(replying(ok, seen=seen), test=True)
    [result] = await provider.send(make_batch())
    assert json.loads(seen[0].content)["test"] == "1"
    assert isinstance(result, Rejected)
    assert result.code == "TEST"
    assert "sent nothing" in result.why


@pytest.mark.parametrize("body", ["<html>bad gateway</html>", "", '{"unexpected":true}', "Sorry, no"])
async def test_json_api_unreadable_2xx_is_unknown(body: str) -> None:
    """A 2xx answer that is no KwtSMS answer at all cannot tell whether the SMS went: Unknown (UNEXPECTED)."""
    provider = json_provider(replying(body))
    [result] = await provider.send(make_batch())
    assert result == Unknown(code="UNEXPECTED", why=explain("kwtsms", "UNEXPECTED"))


async def test_json_unreadable_error_status_falls_back_to_the_status() -> None:
    """A 503 page without a KwtSMS answer is mapped by its HTTP status (Retry)."""
    provider = json_provider(replying("<html>unavailable</html>", 503))
    [result] = await provider.send(make_batch())
    assert isinstance(result, Retry)
    assert result.code == "HTTP503"


async def test_json_balance_and_sender_ids() -> None:
    """balance() reads the JSON API's available/purchased and lists the account's sender IDs from senderid/."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/balance/"):
            return httpx.Response(200, json={"result": "OK", "available": 181, "purchased": 1000})
        return httpx.Response(200, json={"result": "OK", "senderid": ["KWT-MESSAGE", "MY-SHOP"]})

    balance = await json_provider(handler).balance()
    assert (balance.credit, balance.detail) == (
        181.0,
        "available 181 of 1000 purchased; sender IDs: KWT-MESSAGE, MY-SHOP",
    )
    assert [json.loads(r.content) for r in seen] == [{"username": "user", "password": PASSWORD}] * 2
    assert {r.headers["content-type"] for r in seen} == {"application/json"}


async def test_json_balance_error_with_4xx_names_the_code() -> None:
    """A balance refusal arriving with HTTP 403 raises the code's explanation, never the password."""
    body = '{"result":"ERROR","code":"ERR024","description":"IP"}'
    with pytest.raises(ProviderError) as info:
        await json_provider(replying(body, 403)).balance()
    assert str(info.value) == explain("kwtsms", "ERR024")


async def test_balance_says_when_sender_ids_cannot_be_read() -> None:
    """An unreadable senderid/ answer does not fail the balance; the detail says the IDs could not be read."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/balance/"):
            return httpx.Response(200, json={"result": "OK", "available": 5, "purchased": 10})
        return httpx.Response(500, text="<html>oops</html>")

    balance = await json_provider(handler).balance()
    assert balance.detail == "available 5 of 10 purchased; sender IDs could not be read"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"result":"OK","status":"Delivered to mobile"}', "Delivered to mobile"),
        ("abc,Delivered to mobile\nother,Failed", "Delivered to mobile"),
        ('{"result":"ERROR","code":"ERR021","description":"not ready"}', None),
        ("<html></html>", None),
    ],
)
def test_delivery_status_reads_status_and_dlr_shapes(body: str, status: str | None) -> None:
    """status/ (JSON) and dlr/ (`<msgid>,<text>` lines) answers give the status words, or None."""
    assert delivery_status(body, "abc") == status


# -- configuration -------------------------------------------------------------------------------
@pytest.mark.parametrize("sender", [None, "", "  "])
def test_sender_is_required_when_the_adapter_is_built(sender: str | None) -> None:
    """A kwtsms provider without a sender is a ConfigError naming providers.<name>.sender."""
    config = ProviderConfig.model_validate({"type": "kwtsms", "username": "u", "password": "p", "sender": sender})
    with pytest.raises(ConfigError, match=r"^providers\.kwt\.sender: KwtSMS needs a sender ID"):
        KwtSmsProvider("kwt", config, httpx.AsyncClient())


def test_api_option_is_checked() -> None:
    """options.api accepts only "json" or "text", and the error names the key and the choices."""
    with pytest.raises(ConfigError, match=r"providers\.kwt\.options\.api: must be one of 'json', 'text'"):
        make_provider(replying(""), options={"api": "soap"})


def test_test_mode_needs_the_json_api() -> None:
    """options.test with the text API is a ConfigError: the text API has no documented validate-only mode."""
    with pytest.raises(ConfigError, match=r"providers\.kwt\.options\.test: only the JSON API has a test mode"):
        make_provider(replying(""), options={"api": "text", "test": True})
