"""Unit tests of the Cellcast adapter: the JSON request, auth, and reply mapping, with httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import Account, Batch, Job, Rejected, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.cellcast import EXPLAIN as CELLCAST
from mail2sms.providers.cellcast import CellcastProvider, reply_result, status_word
from mail2sms.providers.explain import explain

KEY = "cellcast-app-key"
BASE = "https://cellcast.test/api/v3/"
N1, N2 = "61400000001", "61400000002"


def make_batch(
    text: str = "hello",
    numbers: tuple[str, ...] = (N1,),
    sender: str | None = None,
    account: Account | None = None,
    **options: object,
) -> Batch:
    jobs = tuple(Job(number=n, text=text, provider="cc") for n in numbers)
    return Batch(provider="cc", account=account, sender=sender, text=text, options=SmsOptions(**options), jobs=jobs)  # type: ignore[arg-type]


def make_provider(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> CellcastProvider:
    settings: dict[str, object] = {"type": "cellcast", "url": BASE, "key": KEY}
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return CellcastProvider("cc", ProviderConfig.model_validate(settings), client)


def replying(
    body: object, status: int = 200, headers: dict[str, str] | None = None, seen: list[httpx.Request] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        text = body if isinstance(body, str) else json.dumps(body)
        return httpx.Response(status, text=text, headers=headers)

    return handler


def success(*pairs: tuple[str, str], total: int | None = None) -> dict[str, Any]:
    messages = [
        {
            "message_id": mid,
            "from": "",
            "to": to,
            "body": "hello",
            "date": "2026-01-01 10:00:00",
            "custom_string": "",
            "direction": "out",
        }
        for to, mid in pairs
    ]
    count = len(pairs) if total is None else total
    return {
        "meta": {"code": 200, "status": "SUCCESS"},
        "msg": "Queued",
        "data": {
            "messages": messages,
            "total_numbers": count,
            "success_number": len(pairs),
            "credits_used": len(pairs),
        },
    }


def error(status: int, word: str, shape: str = "meta") -> str:
    if shape == "error":
        return json.dumps({"error": {"code": word, "description": "x"}})
    return json.dumps({"meta": {"code": status, "status": word}, "msg": "x", "data": []})


# -- reply parsing -------------------------------------------------------------------------------
def test_message_ids_are_matched_by_to() -> None:
    """Each number gets the message_id of the message whose `to` is that number, whatever the order."""
    body = json.dumps(success((f"+{N2}", "ID-2"), (f"+{N1}", "ID-1")))
    assert reply_result(200, body, [N1, N2]) == [Sent(provider_id="ID-1"), Sent(provider_id="ID-2")]


def test_a_national_to_still_matches() -> None:
    """A `to` written nationally (0400…) matches the international number by its last nine digits."""
    body = json.dumps(success(("0400000001", "ID-1")))
    assert reply_result(200, body, [N1]) == [Sent(provider_id="ID-1")]


QUEUED_WORDS = '. Cellcast\'s own words: "Queued"'


def test_a_number_cellcast_did_not_queue_is_rejected() -> None:
    """With success_number < total_numbers, a number missing from the messages is Rejected NOT_QUEUED."""
    body = json.dumps(success((f"+{N1}", "ID-1"), total=2))
    assert reply_result(200, body, [N1, N2]) == [
        Sent(provider_id="ID-1", detail="Cellcast queued 1 of the 2 numbers sent"),
        Rejected(code="NOT_QUEUED", why=CELLCAST["NOT_QUEUED"] + QUEUED_WORDS),
    ]


def test_success_with_no_messages_and_success_number_zero_sends_nothing() -> None:
    """`SUCCESS` with `messages: []` and `success_number: 0` refuses every number with Cellcast's words."""
    body = json.dumps(success(total=2))
    assert (
        reply_result(200, body, [N1, N2])
        == [Rejected(code="NOT_QUEUED", why=CELLCAST["NOT_QUEUED"] + QUEUED_WORDS)] * 2
    )


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"invalid_numbers": [{"number": "+12025550123", "reason": "Country not supported"}]}, "Country not supported"),
        ({"failed": ["+12025550123"]}, "failed"),
        ({"errors": {"+12025550123": "Not a mobile number"}}, "Not a mobile number"),
    ],
)
def test_a_per_number_reason_is_quoted(extra: dict[str, Any], reason: str) -> None:
    """A reason the answer gives for one number, in any of the tolerated shapes, is quoted for that number."""
    body = success((f"+{N1}", "ID-1"), total=2)
    body["data"].update(extra)
    sent, refused = reply_result(200, json.dumps(body), [N1, "12025550123"])
    assert sent == Sent(provider_id="ID-1", detail="Cellcast queued 1 of the 2 numbers sent")
    assert refused == Rejected(
        code="NOT_QUEUED", why=CELLCAST["NOT_QUEUED"] + QUEUED_WORDS + f'; for this number: "{reason}"'
    )


def counts_only(total: int, queued: int, messages: object = None) -> str:
    data: dict[str, Any] = {"total_numbers": total, "success_number": queued}
    if messages is not None:
        data["messages"] = messages
    return json.dumps({"meta": {"code": 200, "status": "SUCCESS"}, "msg": "Queued", "data": data})


def test_counts_without_messages() -> None:
    """Without `messages`, all queued is Sent, none queued is Rejected, some queued (which?) is Unknown."""
    assert reply_result(200, counts_only(2, 2), [N1, N2]) == [Sent(provider_id=None)] * 2
    assert {type(r) for r in reply_result(200, counts_only(2, 0), [N1, N2])} == {Rejected}
    assert (
        reply_result(200, counts_only(2, 1), [N1, N2])
        == [Unknown(code="PARTLY_QUEUED", why=CELLCAST["PARTLY_QUEUED"] + QUEUED_WORDS)] * 2
    )


def test_an_empty_message_list_never_counts_as_sent() -> None:
    """`messages: []` with counts that claim every number was queued contradicts itself: Unknown, not Sent."""
    assert reply_result(200, counts_only(1, 1, []), [N1]) == [
        Unknown(code="PARTLY_QUEUED", why=CELLCAST["PARTLY_QUEUED"] + QUEUED_WORDS)
    ]


def test_messages_without_to_are_read_by_position_only_when_complete() -> None:
    """Entries without `to` give ids by position when there is one per number; fewer entries are Unknown."""
    entries = [{"message_id": "ID-1"}, {"message_id": "ID-2"}]
    assert reply_result(200, counts_only(2, 2, entries), [N1, N2]) == [Sent("ID-1"), Sent("ID-2")]
    assert {r.code for r in reply_result(200, counts_only(2, 1, entries[:1]), [N1, N2])} == {"PARTLY_QUEUED"}


@pytest.mark.parametrize(
    ("word", "kind"), [("FAILED", Rejected), ("INSUFFICIENT_BALANCE", Rejected), ("QUEUED", Unknown)]
)
def test_a_2xx_without_success(word: str, kind: type) -> None:
    """A 2xx whose word is not SUCCESS is a refusal when the word says no, else Unknown, never Sent."""
    body = json.dumps({"meta": {"code": 200, "status": word}, "msg": "x", "data": {"messages": []}})
    [result] = reply_result(200, body, [N1])
    assert isinstance(result, kind)
    assert result.code == word


def test_the_key_echoed_in_an_error_is_blanked() -> None:
    """Cellcast's own words are quoted, but never the key the request carried."""
    body = json.dumps({"meta": {"code": 401, "status": "AUTH_FAILED"}, "msg": f"Invalid APPKEY {KEY}"})
    [result] = reply_result(401, body, [N1], secrets=[KEY])
    assert result == Rejected(
        code="AUTH_FAILED", why=CELLCAST["AUTH_FAILED"] + '. Cellcast\'s own words: "Invalid APPKEY ***"'
    )


@pytest.mark.parametrize(("status", "word"), [(401, "AUTH_FAILED"), (400, "FIELD_INVALID"), (200, "AUTH_FAILED")])
@pytest.mark.parametrize("shape", ["meta", "error"])
def test_documented_refusals_are_rejected_in_both_shapes(status: int, word: str, shape: str) -> None:
    """AUTH_FAILED and FIELD_INVALID are Rejected with their explanation, in meta.status or error.code."""
    assert reply_result(status, error(status, word, shape), [N1]) == [
        Rejected(code=word, why=CELLCAST[word] + '. Cellcast\'s own words: "x"')
    ]


@pytest.mark.parametrize("shape", ["meta", "error"])
def test_over_limit_is_retried_after_the_wait(shape: str) -> None:
    """429 OVER_LIMIT is Retry after the Retry-After the adapter read from the headers."""
    assert reply_result(429, error(429, "OVER_LIMIT", shape), [N1], 4.0) == [
        Retry(code="OVER_LIMIT", why=CELLCAST["OVER_LIMIT"], after=4.0)
    ]
    assert reply_result(429, "", [N1], None) == [Retry(code="HTTP429", why=explain("cellcast", "HTTP429"))]


def test_unknown_error_word_is_rejected_and_named() -> None:
    """A status word nobody documented (e.g. a credit problem) is a refusal naming the word."""
    [result] = reply_result(400, error(400, "INSUFFICIENT_BALANCE"), [N1])
    assert isinstance(result, Rejected)
    assert "INSUFFICIENT_BALANCE" in result.why


@pytest.mark.parametrize(
    ("body", "words"), [("", ""), ("<html>ok</html>", '. Cellcast\'s own words: "<html>ok</html>"'), ("{}", "")]
)
def test_unreadable_success_is_unknown(body: str, words: str) -> None:
    """A 2xx that cannot be read may have sent the SMS; Cellcast has no idempotency key: Unknown."""
    assert reply_result(200, body, [N1]) == [Unknown(code="UNEXPECTED", why=CELLCAST["UNEXPECTED"] + words)]


def test_status_word_places() -> None:
    """meta.status is read first, then error.code, status and code."""
    assert status_word({"meta": {"status": "SUCCESS"}, "error": {"code": "X_Y"}}) == "SUCCESS"
    assert status_word({"error": {"code": "field_invalid"}}) == "FIELD_INVALID"
    assert status_word({"code": 400}) is None
    assert status_word(None) is None


def test_every_documented_word_has_words() -> None:
    """The table explains AUTH_FAILED, FIELD_INVALID and OVER_LIMIT."""
    assert {"AUTH_FAILED", "FIELD_INVALID", "OVER_LIMIT"} <= set(CELLCAST)


# -- wire ----------------------------------------------------------------------------------------
async def test_wire_request_with_appkey() -> None:
    """POST send-sms with the APPKEY header and the documented JSON body; numbers as +<digits>."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying(success((f"+{N1}", "A"), (f"+{N2}", "B")), seen=seen), sender="Alarm")
    results = await provider.send(make_batch("Gate open ✓", (N1, f"00{N2}")))
    assert results == [Sent(provider_id="A"), Sent(provider_id="B")]
    [request] = seen
    assert (request.method, str(request.url)) == ("POST", BASE + "send-sms")
    assert request.headers["APPKEY"] == KEY
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"sms_text": "Gate open ✓", "numbers": [f"+{N1}", f"+{N2}"], "from": "Alarm"}


async def test_basic_auth_option() -> None:
    """With options.auth = "basic" the key goes as HTTP Basic credentials instead of the header."""
    seen: list[httpx.Request] = []
    await make_provider(replying(success((f"+{N1}", "A")), seen=seen), username="acct", options={"auth": "basic"}).send(
        make_batch()
    )
    request = seen[0]
    assert "appkey" not in request.headers
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"acct:{KEY}".encode()).decode()


async def test_schedule_time_is_in_the_configured_zone() -> None:
    """A future sendtime goes as schedule_time `Y-m-d H:i:s` in options.timezone (Australia/Sydney by default)."""
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    for options, zone in (({}, "Australia/Sydney"), ({"timezone": "Australia/Perth"}, "Australia/Perth")):
        seen: list[httpx.Request] = []
        await make_provider(replying(success((f"+{N1}", "A")), seen=seen), options=options).send(
            make_batch(sendtime=when.isoformat())
        )
        expected = when.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
        assert json.loads(seen[0].content)["schedule_time"] == expected


async def test_a_mail_body_password_is_the_key() -> None:
    """Credentials from a mail body (keyvalue password:) are used as the APPKEY."""
    seen: list[httpx.Request] = []
    await make_provider(replying(success((f"+{N1}", "A")), seen=seen)).send(
        make_batch(account=Account(username="", password="mail-key"))
    )
    assert seen[0].headers["APPKEY"] == "mail-key"


# -- HTTP and transport --------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "kind"), [(500, Unknown), (502, Retry), (503, Retry), (504, Retry)])
async def test_server_errors(status: int, kind: type) -> None:
    """A 500 may have sent the SMS (Unknown); 502-504 mean the request was not handled (Retry)."""
    [result] = await make_provider(replying("oops", status)).send(make_batch())
    assert isinstance(result, kind)


async def test_401_without_a_body_word_is_rejected() -> None:
    """A bare 401 is a refusal of the credentials."""
    [result] = await make_provider(replying("", 401)).send(make_batch())
    assert result == Rejected(code="HTTP401", why=explain("cellcast", "HTTP401"))


async def test_read_timeout_is_unknown() -> None:
    """A timeout after the request left may have sent the SMS: Unknown, never retried."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    [result] = await make_provider(handler).send(make_batch())
    assert isinstance(result, Unknown)
    assert KEY not in repr(result)


# -- config, limits, balance ---------------------------------------------------------------------
def test_limits() -> None:
    """1000 numbers, 15 requests/s, not idempotent, schedules a year ahead, no flash; rate and recipients tunable."""
    limits = make_provider(replying("")).limits
    assert (limits.max_recipients, limits.rate, limits.idempotent, limits.schedule_days, limits.flash) == (
        1000,
        15.0,
        False,
        365,
        False,
    )
    tuned = make_provider(replying(""), max_recipients=100, rate=40).limits
    assert (tuned.max_recipients, tuned.rate) == (100, 40.0)


def test_bad_options_are_config_errors() -> None:
    """auth must be appkey or basic; custom_string only letters, digits and dashes."""
    with pytest.raises(ConfigError) as info:
        make_provider(replying(""), options={"auth": "token", "custom_string": "a b"})
    assert info.value.problems == [
        "providers.cc.options.auth: must be one of 'appkey', 'basic'",
        "providers.cc.options.custom_string: may only use letters, digits and dashes",
    ]


async def test_balance_reads_sms_balance() -> None:
    """GET account → data.sms_balance, with the APPKEY header."""
    seen: list[httpx.Request] = []
    body = {"meta": {"code": 200, "status": "SUCCESS"}, "msg": "ok", "data": {"sms_balance": "250.5"}}
    balance = await make_provider(replying(body, seen=seen)).balance()
    assert (balance.credit, seen[0].method, str(seen[0].url), seen[0].headers["APPKEY"]) == (
        250.5,
        "GET",
        BASE + "account",
        KEY,
    )


async def test_balance_refused_key_is_plain_words() -> None:
    """AUTH_FAILED on account becomes the plain-words explanation, without the key."""
    with pytest.raises(ProviderError) as info:
        await make_provider(replying(error(401, "AUTH_FAILED"), 401)).balance()
    assert str(info.value) == CELLCAST["AUTH_FAILED"]
    assert KEY not in str(info.value)
