"""Unit tests of the KoboMobile adapter: wire parameters and tolerant reply mapping, with httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import Batch, Job, Rejected, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.explain import explain
from mail2sms.providers.idempotency import message_uuid
from mail2sms.providers.kobomobile import EXPLAIN as KOBOMOBILE
from mail2sms.providers.kobomobile import KoboMobileProvider, parse_credit, read_reply, reply_result

PASSWORD = "kobo-pw"
BASE = "https://kobo.test/api/"
N1, N2 = "2348030000000", "2348030000011"
ID1, ID2 = "42138969-09f9-434d-a3c6-db5733fba736", "974790b3-e598-41a8-939b-772d16860fb4"


def make_batch(
    text: str = "hello", numbers: tuple[str, ...] = (N1,), sender: str | None = "Shop", **options: object
) -> Batch:
    jobs = tuple(Job(number=n, text=text, provider="kobo", idempotency_key=f"key-{n}") for n in numbers)
    return Batch(provider="kobo", account=None, sender=sender, text=text, options=SmsOptions(**options), jobs=jobs)  # type: ignore[arg-type]


def make_provider(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> KoboMobileProvider:
    settings: dict[str, object] = {
        "type": "kobomobile",
        "url": BASE,
        "username": "user",
        "password": PASSWORD,
        "sender": "Shop",
    }
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return KoboMobileProvider("kobo", ProviderConfig.model_validate(settings), client)


def replying(
    body: object, status: int = 200, headers: dict[str, str] | None = None, seen: list[httpx.Request] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        text = body if isinstance(body, str) else json.dumps(body)
        return httpx.Response(status, text=text, headers=headers)

    return handler


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode("ascii"), keep_blank_values=True).items()}


PAIRS = f"{N1},{ID1}~{N2},{ID2}"


# -- reply parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        json.dumps(PAIRS),
        json.dumps({"status": "sent", "msg_id": PAIRS}),
        json.dumps({"response": {"code": "sent", "data": {"message_ids": PAIRS}}}),
        json.dumps({"message": "Message(s) have been sent successfully", "data": PAIRS.split("~")}),
        PAIRS,  # not even JSON
    ],
)
def test_ids_are_matched_to_numbers_in_every_shape(body: str) -> None:
    """The number,id pairs (joined by ~) are found wherever the reply keeps them, and matched by number."""
    assert reply_result(body, [N2, N1]) == [Sent(provider_id=ID2), Sent(provider_id=ID1)]


@pytest.mark.parametrize("body", [json.dumps("sent"), json.dumps({"status": "sent"}), "sent"])
def test_sent_without_ids(body: str) -> None:
    """`sent` without message ids is Sent for every number."""
    assert reply_result(body, [N1, N2]) == [Sent(provider_id=None)] * 2


@pytest.mark.parametrize("word", ["error_param", "error_credit", "error_user", "error_limit"])
@pytest.mark.parametrize("shape", ["string", "object", "nested", "text"])
def test_final_words_are_rejected(word: str, shape: str) -> None:
    """Each documented refusal is Rejected with its explanation, whatever the reply's shape."""
    body = {
        "string": json.dumps(word),
        "object": json.dumps({"status": word, "message": "not sent"}),
        "nested": json.dumps({"response": {"code": word}}),
        "text": word,
    }[shape]
    [result] = reply_result(body, [N1])
    assert isinstance(result, Rejected)
    assert result.code == word
    assert result.why == KOBOMOBILE[word] + ('. KoboMobile\'s own words: "not sent"' if shape == "object" else "")


@pytest.mark.parametrize("word", ["error_billing", "error_gw"])
def test_temporary_words_are_retried(word: str) -> None:
    """error_billing and error_gw are temporary: Retry (safe with the message_uuid)."""
    assert reply_result(json.dumps({"status": word}), [N1]) == [Retry(code=word, why=KOBOMOBILE[word])]


def test_an_error_word_wins_over_a_sent_inside_a_text() -> None:
    """`{"msg": "Message not sent", "status": "error_credit"}` is the refusal, not a success."""
    assert read_reply(json.dumps({"msg": "Message not sent", "status": "error_credit"})).word == "error_credit"


def test_an_undocumented_error_word_is_rejected_and_named() -> None:
    """An error_… word nobody documented is a refusal that names the word."""
    [result] = reply_result(json.dumps("error_sender"), [N1])
    assert isinstance(result, Rejected)
    assert result.code == "error_sender"
    assert "error_sender" in result.why


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("", ""),
        ("{}", ""),
        (json.dumps({"status": "ok"}), '. KoboMobile\'s own words: "ok"'),
        ("<html>oops</html>", '. KoboMobile\'s own words: "<html>oops</html>"'),
        (json.dumps({"message": "Your message was sent"}), '. KoboMobile\'s own words: "Your message was sent"'),
    ],
)
def test_an_unrecognised_reply_is_unknown_never_sent(body: str, words: str) -> None:
    """A reply without `sent`, ids or a word that says no is Unknown ("may have been sent"), never Sent."""
    assert reply_result(body, [N1]) == [Unknown(code="UNEXPECTED", why=KOBOMOBILE["UNEXPECTED"] + words)]


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (json.dumps({"status": "error", "message": "Message not sent"}), "error", '"Message not sent"'),
        (json.dumps({"message": "Message not sent"}), "REFUSED", '"Message not sent"'),
        (json.dumps("failed"), "failed", ""),
        (json.dumps({"result": {"status": "Failed", "reason": "Invalid sender"}}), "failed", '"Invalid sender"'),
    ],
)
def test_prose_that_says_no_is_a_refusal(body: str, code: str, words: str) -> None:
    """`{"status":"error","message":"Message not sent"}` and the like are refusals quoting KoboMobile's words."""
    quoted = f". KoboMobile's own words: {words}" if words else ""
    assert reply_result(body, [N1, N2]) == [Rejected(code=code, why=KOBOMOBILE["REFUSED"] + quoted)] * 2


def test_a_number_without_its_pair_is_unknown() -> None:
    """When the reply carries ids, a number it has no id for is Unknown, not Sent."""
    assert reply_result(json.dumps(f"{N1},{ID1}"), [N1, N2]) == [
        Sent(provider_id=ID1),
        Unknown(code="NO_ID", why=KOBOMOBILE["NO_ID"]),
    ]


def test_success_and_failure_in_one_reply_is_unknown() -> None:
    """Ids next to a status that says error contradict each other: Unknown."""
    [result] = reply_result(json.dumps({"status": "error", "msg_id": PAIRS}), [N1])
    assert (type(result), result.code) == (Unknown, "CONFLICT")


def test_a_secret_in_kobomobiles_words_is_blanked() -> None:
    """KoboMobile's words are quoted, but never the password the request carried."""
    [result] = reply_result(json.dumps({"status": "error", "message": f"bad pass {PASSWORD}"}), [N1], [PASSWORD])
    assert isinstance(result, Rejected)
    assert PASSWORD not in result.why
    assert '"bad pass ***"' in result.why


def test_every_status_word_has_words() -> None:
    """The explanation table covers every status word of the seed."""
    for word in ("sent", "error_param", "error_credit", "error_billing", "error_gw", "error_user", "error_limit"):
        assert word in KOBOMOBILE


# -- wire ----------------------------------------------------------------------------------------
async def test_wire_parameters() -> None:
    """user, pass, from, to (no +), msg, type 0, enable_msg_id=1 and the message_uuid, in one POST to send/."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying(PAIRS, seen=seen))
    results = await provider.send(make_batch("Meeting at 5", (f"+{N1}", f"00{N2}")))
    assert results == [Sent(provider_id=ID1), Sent(provider_id=ID2)]
    [request] = seen
    assert (request.method, str(request.url)) == ("POST", BASE + "send/")
    assert form(request) == {
        "user": "user",
        "pass": PASSWORD,
        "from": "Shop",
        "to": f"{N1},{N2}",
        "msg": "Meeting at 5",
        "type": "0",
        "enable_msg_id": "1",
        "message_uuid": message_uuid([f"key-+{N1}", f"key-00{N2}"]),
    }
    assert len(form(request)["message_uuid"]) <= 64


@pytest.mark.parametrize(("text", "flash", "kind"), [("hi", True, "1"), ("مرحبا", False, "2"), ("hi", False, "0")])
async def test_type_is_flash_unicode_or_normal(text: str, flash: bool, kind: str) -> None:
    """type 1 for flash, 2 for text that needs Unicode, 0 otherwise; Unicode text arrives as UTF-8."""
    seen: list[httpx.Request] = []
    await make_provider(replying("sent", seen=seen)).send(make_batch(text, flash=flash))
    assert (form(seen[0])["type"], form(seen[0])["msg"]) == (kind, text)


async def test_flash_unicode_is_refused_before_sending() -> None:
    """type is one value: a flash SMS cannot also be Unicode, so it is Rejected without a request."""
    seen: list[httpx.Request] = []
    assert await make_provider(replying("sent", seen=seen)).send(make_batch("مرحبا", flash=True)) == [
        Rejected(code="FLASH_UNICODE", why=KOBOMOBILE["FLASH_UNICODE"])
    ]
    assert seen == []


async def test_the_same_batch_gets_the_same_uuid_on_every_attempt() -> None:
    """Two attempts of one batch carry the same message_uuid."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("error_gw", seen=seen))
    batch = make_batch(numbers=(N1, N2))
    await provider.send(batch)
    await provider.send(batch)
    assert form(seen[0])["message_uuid"] == form(seen[1])["message_uuid"]


# -- HTTP and transport --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, "error_credit", Rejected, "error_credit"),
        (403, {"status": "error_user"}, Rejected, "error_user"),
        (503, "error_gw", Retry, "error_gw"),
        (500, {"status": "error", "message": "Internal error"}, Retry, "HTTP500"),
        (403, "sent", Unknown, "CONFLICT"),
        (400, {"status": "error", "message": "Message not sent"}, Rejected, "HTTP400"),
    ],
)
async def test_a_non_200_body_is_read_first(status: int, body: object, kind: type, code: str) -> None:
    """KoboMobile's status words decide even with a non-200 status; without a word the HTTP status decides."""
    [result] = await make_provider(replying(body, status)).send(make_batch())
    assert (type(result), result.code) == (kind, code)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, Rejected, "HTTP400"),
        (401, Rejected, "HTTP401"),
        (429, Retry, "HTTP429"),
        (500, Retry, "HTTP500"),
        (503, Retry, "HTTP503"),
    ],
)
async def test_http_statuses(status: int, kind: type, code: str) -> None:
    """400/401 are refusals; 429 and every 5xx are retried (the message_uuid makes a 500 safe to repeat)."""
    [result] = await make_provider(replying("x", status, {"Retry-After": "3"})).send(make_batch())
    assert isinstance(result, kind)
    assert result.code == code
    if isinstance(result, Retry) and status in (429, 503):
        assert result.after == 3.0


async def test_read_timeout_is_retried_with_the_same_uuid() -> None:
    """A timeout after the request left is retried: KoboMobile sends a repeated message_uuid at most once."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    [result] = await make_provider(handler).send(make_batch())
    assert result == Retry(code="ReadTimeout", why=KOBOMOBILE["ReadTimeout"])


# -- config, limits, balance ---------------------------------------------------------------------
def test_limits() -> None:
    """500 numbers (lower in config only), 905 characters (option), idempotent, flash, no scheduling."""
    limits = make_provider(replying("")).limits
    assert (limits.max_recipients, limits.max_chars, limits.idempotent, limits.flash, limits.schedule_days) == (
        500,
        905,
        True,
        True,
        None,
    )
    tuned = make_provider(replying(""), max_recipients=900, rate=2, options={"max_chars": 480}).limits
    assert (tuned.max_recipients, tuned.rate, tuned.max_chars) == (500, 2.0, 480)
    assert make_provider(replying(""), max_recipients=50).limits.max_recipients == 50


@pytest.mark.parametrize("sender", [None, ""])
def test_sender_is_required(sender: str | None) -> None:
    """A KoboMobile provider without a sender is a ConfigError naming providers.<name>.sender when it is built."""
    with pytest.raises(ConfigError, match=r"providers\.kobo\.sender: KoboMobile requires a sender ID"):
        make_provider(replying(""), sender=sender)


def test_unknown_option_is_a_config_error() -> None:
    """An option KoboMobile's adapter does not know is named at start."""
    with pytest.raises(ConfigError, match=r"providers\.kobo\.options\.flash: unknown option"):
        make_provider(replying(""), options={"flash": True})


@pytest.mark.parametrize(
    "body",
    [
        '"1500.00"',
        "1500",
        '{"credit": 1500}',
        '{"status": "ok", "balance": "1,500.00"}',
        '{"response": {"data": {"balance": "1500.00"}}}',
        "NGN 1500.00",
    ],
)
def test_credit_in_every_shape(body: str) -> None:
    """The credit is read from a bare number or string, or a credit-like key anywhere."""
    assert parse_credit(body) == 1500.0


async def test_balance_request_and_refusal() -> None:
    """balance() posts user and pass to credit/; error_user becomes plain words without the password."""
    seen: list[httpx.Request] = []
    balance = await make_provider(replying({"credit": 12.5}, seen=seen)).balance()
    assert (balance.credit, str(seen[0].url), form(seen[0])) == (
        12.5,
        BASE + "credit/",
        {"user": "user", "pass": PASSWORD},
    )
    with pytest.raises(ProviderError) as info:
        await make_provider(replying("error_user")).balance()
    assert str(info.value) == explain("kobomobile", "error_user")
    assert PASSWORD not in str(info.value)
