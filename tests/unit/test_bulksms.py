"""Unit tests of the BulkSMS EAPI adapter: wire parameters, reply mapping, send_batch and the stop_dup_id window,
with httpx.MockTransport."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import Account, Batch, Job, Rejected, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.bulksms import (
    BATCH_PATH,
    CREDITS_PATH,
    SEND_PATH,
    UPSTREAM_RETRY_AFTER,
    BulkSmsProvider,
    encode_message,
    parse_credits,
    reply_result,
)
from mail2sms.providers.bulksms import EXPLAIN as BULKSMS
from mail2sms.providers.explain import explain
from mail2sms.providers.idempotency import STOP_DUP_ID_MAX, stop_dup_id

PASSWORD = "bulk-pw-ü"
BASE = "https://bulksms.test/eapi/"


def make_batch(
    text: str = "hello",
    numbers: tuple[str, ...] = ("447700900001",),
    sender: str | None = None,
    account: Account | None = None,
    keys: tuple[str, ...] | None = None,
    **options: object,
) -> Batch:
    keys = keys or tuple(f"key-{n}" for n in numbers)
    jobs = tuple(Job(number=n, text=text, provider="bulk", idempotency_key=k) for n, k in zip(numbers, keys,
                                                                                                 strict=True))
    return Batch(provider="bulk", account=account, sender=sender, text=text,
                 options=SmsOptions(**options), jobs=jobs)  # type: ignore[arg-type]


def make_provider(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> BulkSmsProvider:
    settings: dict[str, object] = {"type": "bulksms", "url": BASE, "username": "user", "password": PASSWORD}
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return BulkSmsProvider("bulk", ProviderConfig.model_validate(settings), client)


def replying(body: str, status: int = 200, headers: dict[str, str] | None = None,
             seen: list[httpx.Request] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body.encode("latin-1"), headers=headers)

    return handler


def form(request: httpx.Request) -> dict[str, str]:
    parsed = parse_qs(request.content.decode("ascii"), keep_blank_values=True, encoding="iso-8859-1")
    return {k: v[0] for k, v in parsed.items()}


# -- reply parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "detail"), [("0|IN_PROGRESS|71070172", "BulkSMS: in progress"),
                                              ("1|SCHEDULED|71070172\n", "BulkSMS: scheduled")])
def test_in_progress_and_scheduled_are_sent_with_the_batch_id(body: str, detail: str) -> None:
    """Status 0 and 1 mean every number was taken; the batch id is the provider id."""
    assert reply_result(body, 2) == [Sent(provider_id="71070172", detail=detail)] * 2


@pytest.mark.parametrize("code", ["22", "23", "24", "25", "27", "201"])
@pytest.mark.parametrize("fields", [2, 3])
def test_fatal_codes_are_rejected_with_two_or_three_fields(code: str, fields: int) -> None:
    """Every documented fatal code is Rejected with its explanation, whether a batch id follows or not."""
    body = f"{code}|some description" + ("|12345" if fields == 3 else "")
    assert reply_result(body, 1) == [Rejected(code=code, why=explain("bulksms", code))]


@pytest.mark.parametrize(("code", "after"), [("40", None), ("26", UPSTREAM_RETRY_AFTER),
                                             ("28", UPSTREAM_RETRY_AFTER)])
def test_temporary_codes_are_retried(code: str, after: float | None) -> None:
    """40 is retried at once (by the policy); 26 and 28 only after a while, as the seed advises."""
    assert reply_result(f"{code}|TEMPORARILY_UNAVAILABLE", 1) == [Retry(code=code, why=BULKSMS[code], after=after)]


def test_an_undocumented_code_is_final() -> None:
    """A code the seed does not list is fatal ("All other errors should be considered fatal")."""
    [result] = reply_result("99|NEW_ERROR", 1)
    assert isinstance(result, Rejected)
    assert result.code == "99"


@pytest.mark.parametrize("body", ["", "<html>busy</html>", "OK", "|x|y"])
def test_unreadable_reply_is_retried_with_the_same_key(body: str) -> None:
    """A reply that cannot be read is retried: the stop_dup_id makes asking again safe."""
    assert reply_result(body, 1) == [Retry(code="UNEXPECTED", why=BULKSMS["UNEXPECTED"])]
    [unkeyed] = reply_result(body, 1, keyed=False)
    assert isinstance(unkeyed, Unknown)


def test_every_documented_code_has_words() -> None:
    """The explanation table covers every status code of the seed, and 25 says to top up."""
    for code in ("0", "1", "22", "23", "24", "25", "26", "27", "28", "40", "201"):
        assert code in BULKSMS
    assert BULKSMS["25"] == "the account has no credit left: top up, then resend"


# -- encoding ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "unicode"),
    [
        ("Hi Mom & Dad", False),
        ("Café à 5 £, {braces}", False),
        ("Price 5€", True),  # € is in GSM-7 but not in ISO-8859-1
        ("مرحبا", True),
        ("naïve", True),  # ï is in ISO-8859-1 but not in GSM-7: it would not arrive as written
    ],
)
def test_text_goes_as_latin1_or_16bit_hex(text: str, unicode: bool) -> None:
    """GSM text that ISO-8859-1 carries goes as is; anything else as hex of UTF-16BE."""
    got, is_unicode = encode_message(text)
    assert is_unicode is unicode
    if unicode:
        assert got == text.encode("utf-16-be").hex()
        assert bytes.fromhex(got).decode("utf-16-be") == text
    else:
        assert got == text


async def test_wire_parameters_of_a_plain_send() -> None:
    """username, password, message (ISO-8859-1), msisdn list, sender with repliable=0, stop_dup_id: one POST."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("0|IN_PROGRESS|5", seen=seen), sender="Alarm")
    results = await provider.send(make_batch("Café open", ("+447700900001", "00447700900002")))
    assert results == [Sent(provider_id="5", detail="BulkSMS: in progress")] * 2
    [request] = seen
    assert str(request.url) == BASE + SEND_PATH
    assert request.method == "POST"
    assert b"message=Caf%E9+open" in request.content  # é as the ISO-8859-1 byte E9
    sent = form(request)
    assert sent["username"] == "user"
    assert sent["password"] == PASSWORD
    assert sent["msisdn"] == "447700900001,447700900002"
    assert (sent["sender"], sent["repliable"]) == ("Alarm", "0")
    assert sent["stop_dup_id"] == str(stop_dup_id(["key-+447700900001", "key-00447700900002"]))
    assert "dca" not in sent
    assert "msg_class" not in sent


async def test_unicode_flash_and_options_are_on_the_wire() -> None:
    """16bit text is dca=16bit hex; flash is msg_class=0; configured options go as documented."""
    seen: list[httpx.Request] = []
    provider = make_provider(
        replying("0|IN_PROGRESS|6", seen=seen),
        options={"routing_group": 3, "want_report": False, "source_id": "acct-7", "test_always_succeed": True},
    )
    await provider.send(make_batch("مرحبا", flash=True))
    sent = form(seen[0])
    assert (sent["dca"], sent["message"]) == ("16bit", "مرحبا".encode("utf-16-be").hex())
    assert sent["msg_class"] == "0"
    assert (sent["routing_group"], sent["want_report"], sent["source_id"]) == ("3", "0", "acct-7")
    assert sent["test_always_succeed"] == "1"


async def test_concatenation_is_asked_for_only_when_configured() -> None:
    """allow_concat_text_sms and concat_text_sms_max_parts go with the request, and set the limits."""
    seen: list[httpx.Request] = []
    plain = make_provider(replying("0|IN_PROGRESS|7"))
    assert plain.limits.max_parts == 1
    provider = make_provider(replying("0|IN_PROGRESS|7", seen=seen),
                             options={"allow_concat_text_sms": True, "concat_text_sms_max_parts": 4})
    assert provider.limits.max_parts == 4
    await provider.send(make_batch("x" * 400))
    sent = form(seen[0])
    assert (sent["allow_concat_text_sms"], sent["concat_text_sms_max_parts"]) == ("1", "4")


async def test_long_unicode_is_refused_before_sending() -> None:
    """More than 140 octets of 16-bit text cannot go (no Unicode concatenation): Rejected, no request."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("0|IN_PROGRESS|8", seen=seen))
    assert await provider.send(make_batch("ж" * 71)) == [
        Rejected(code="UNICODE_LENGTH", why=explain("bulksms", "UNICODE_LENGTH"))
    ]
    assert seen == []


async def test_repliable_leaves_the_sender_out() -> None:
    """With repliable = true the sender is not sent (the seed: the two do not go together)."""
    seen: list[httpx.Request] = []
    await make_provider(replying("0|IN_PROGRESS|9", seen=seen), sender="Alarm",
                        options={"repliable": True}).send(make_batch())
    sent = form(seen[0])
    assert sent["repliable"] == "1"
    assert "sender" not in sent


# -- scheduling ----------------------------------------------------------------------------------
async def test_schedule_without_a_zone_uses_unixtime() -> None:
    """A future sendtime goes as send_time_unixtime when no account zone is configured."""
    seen: list[httpx.Request] = []
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    await make_provider(replying("1|SCHEDULED|10", seen=seen)).send(make_batch(sendtime=when.isoformat()))
    sent = form(seen[0])
    assert sent["send_time_unixtime"] == str(int(when.timestamp()))
    assert "send_time" not in sent


async def test_schedule_in_the_account_zone_uses_send_time() -> None:
    """With options.timezone the time goes as send_time in that zone, with the scheduling description."""
    seen: list[httpx.Request] = []
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    provider = make_provider(replying("1|SCHEDULED|11", seen=seen),
                             options={"timezone": "Africa/Johannesburg", "scheduling_description": "alarm"})
    await provider.send(make_batch(sendtime=when.isoformat()))
    sent = form(seen[0])
    assert sent["send_time"] == when.astimezone(ZoneInfo("Africa/Johannesburg")).strftime("%Y-%m-%d %H:%M:%S")
    assert sent["scheduling_description"] == "alarm"


async def test_a_past_sendtime_sends_at_once() -> None:
    """A time that has come by the time the job is sent is left out: BulkSMS sends at once."""
    seen: list[httpx.Request] = []
    past = datetime.fromtimestamp(time.time() - 30, UTC).isoformat()
    await make_provider(replying("0|IN_PROGRESS|12", seen=seen)).send(make_batch(sendtime=past))
    assert not {"send_time", "send_time_unixtime"} & set(form(seen[0]))


# -- idempotency ---------------------------------------------------------------------------------
def test_stop_dup_id_names_the_exact_set_of_jobs() -> None:
    """The same keys in any order give the same id in range; another set gives another id; no key, no id."""
    first = stop_dup_id(["b", "a", "c"])
    assert first is not None
    assert 1 <= first <= STOP_DUP_ID_MAX
    assert stop_dup_id(["c", "a", "b"]) == first
    assert stop_dup_id(["a", "b"]) != first
    assert stop_dup_id(["a", ""]) is None
    assert stop_dup_id([]) is None


async def test_the_same_batch_gets_the_same_stop_dup_id_on_every_attempt() -> None:
    """Two attempts of one batch carry the same stop_dup_id."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("40|TEMPORARILY_UNAVAILABLE", seen=seen))
    batch = make_batch(numbers=("447700900001", "447700900002"), keys=("K1", "K2"))
    await provider.send(batch)
    await provider.send(batch)
    assert form(seen[0])["stop_dup_id"] == form(seen[1])["stop_dup_id"] == str(stop_dup_id(["K1", "K2"]))


# -- HTTP and transport --------------------------------------------------------------------------
@pytest.mark.parametrize("status", [400, 403, 500, 502, 503])
async def test_other_non_200_statuses_are_retried(status: int) -> None:
    """The seed: an HTTP status other than 200 is transient (3xx, 401, 404 aside); Retry-After is honoured."""
    [result] = await make_provider(replying("nope", status, {"Retry-After": "7"})).send(make_batch())
    assert result == Retry(code=f"HTTP{status}", why=BULKSMS["HTTP"], after=7.0)


@pytest.mark.parametrize("status", [301, 302, 307, 308, 401, 404])
async def test_redirects_401_and_404_are_configuration_errors(status: int) -> None:
    """3xx, 401 and 404 mean a wrong host or a removed version: one Rejected naming the likely cause, no retry."""
    seen: list[httpx.Request] = []
    headers = {"Location": "https://elsewhere.test/eapi/"} if status < 400 else {}
    [result] = await make_provider(replying("moved", status, headers, seen=seen)).send(make_batch())
    assert result == Rejected(code=f"HTTP{status}", why=BULKSMS[f"HTTP{status}"])
    assert "url" in result.why
    assert "nothing was sent" in result.why
    assert len(seen) == 1


# -- the stop_dup_id window ----------------------------------------------------------------------
def aged(job: Job, hours: float, code: str | None) -> Job:
    job.first_attempt_at = time.time() - hours * 3600
    job.code = code
    job.attempts = 1
    return job


async def test_an_ambiguous_job_past_two_hours_is_unknown_and_not_asked_again() -> None:
    """A job first tried 3 h ago whose last answer was a timeout ends Unknown; its batch-mates still go, keyed alone."""
    seen: list[httpx.Request] = []
    batch = make_batch(numbers=("447700900001", "447700900002"), keys=("K1", "K2"))
    aged(batch.jobs[0], 3, "ReadTimeout")
    results = await make_provider(replying("0|IN_PROGRESS|77", seen=seen)).send(batch)
    assert results[0] == Unknown(code="KEY_EXPIRED", why=BULKSMS["KEY_EXPIRED"])
    assert "may have been sent" in results[0].why
    assert results[1] == Sent(provider_id="77", detail="BulkSMS: in progress")
    assert len(seen) == 1
    assert form(seen[0])["msisdn"] == "447700900002"
    assert form(seen[0])["stop_dup_id"] == str(stop_dup_id(["K2"]))


@pytest.mark.parametrize(("hours", "code"), [(1.5, "ReadTimeout"), (3, "40"), (3, "ConnectError"), (30, "26")])
async def test_a_job_whose_key_is_still_safe_is_sent(hours: float, code: str) -> None:
    """Within 2 h, or when every earlier answer said "not processed", the same stop_dup_id is still safe."""
    seen: list[httpx.Request] = []
    batch = make_batch()
    aged(batch.jobs[0], hours, code)
    [result] = await make_provider(replying("0|IN_PROGRESS|78", seen=seen)).send(batch)
    assert isinstance(result, Sent)
    assert len(seen) == 1


# -- personalised batches: send_batch ------------------------------------------------------------
def personalised(*rows: tuple[str, str]) -> Batch:
    jobs = tuple(Job(number=n, text=t, provider="bulk", idempotency_key=f"key-{n}") for n, t in rows)
    return Batch(provider="bulk", account=None, sender="Shop", text=jobs[0].text, options=SmsOptions(), jobs=jobs)


def batch_rows(request: httpx.Request) -> list[list[str]]:
    return list(csv.reader(io.StringIO(form(request)["batch_data"])))


async def test_different_texts_go_in_one_send_batch_request() -> None:
    """Rows with their own texts (commas and quotes kept by CSV quoting) go as one send_batch with a header row."""
    seen: list[httpx.Request] = []
    batch = personalised(("447700900001", "Hi Ann, your code is 1"), ("447700900002", 'Hi "Bo", code 2'),
                         ("447700900003", "Café at 5"))
    assert batch.personalised
    results = await make_provider(replying("0|IN_PROGRESS|90", seen=seen)).send(batch)
    assert results == [Sent(provider_id="90", detail="BulkSMS: in progress")] * 3
    [request] = seen
    assert str(request.url) == BASE + BATCH_PATH
    assert batch_rows(request) == [["msisdn", "message"], ["447700900001", "Hi Ann, your code is 1"],
                                   ["447700900002", 'Hi "Bo", code 2'], ["447700900003", "Café at 5"]]
    fields = form(request)
    assert fields["sender"] == "Shop"
    assert fields["repliable"] == "0"
    assert fields["stop_dup_id"] == str(stop_dup_id([j.idempotency_key for j in batch.jobs]))
    assert "dca" not in fields
    assert "message" not in fields
    assert "msisdn" not in fields


async def test_unicode_rows_go_in_their_own_16bit_request() -> None:
    """dca is per request: 7-bit rows and 16-bit rows go in two requests, each keyed (one row alone: send_sms)."""
    seen: list[httpx.Request] = []
    batch = personalised(("447700900001", "plain one"), ("447700900002", "مرحبا"), ("447700900003", "plain two"))
    results = await make_provider(replying("0|IN_PROGRESS|91", seen=seen)).send(batch)
    assert all(isinstance(r, Sent) for r in results)
    plain, wide = seen
    assert batch_rows(plain)[1:] == [["447700900001", "plain one"], ["447700900003", "plain two"]]
    assert form(wide)["dca"] == "16bit"
    assert str(wide.url) == BASE + SEND_PATH
    assert (form(wide)["msisdn"], form(wide)["message"]) == ("447700900002", "مرحبا".encode("utf-16-be").hex())
    assert form(plain)["stop_dup_id"] == str(stop_dup_id(["key-447700900001", "key-447700900003"]))
    assert form(wide)["stop_dup_id"] == str(stop_dup_id(["key-447700900002"]))


async def test_one_text_to_more_numbers_than_send_sms_takes_uses_send_batch() -> None:
    """A uniform batch above max_recipients (a chunk of a personalised group) goes as send_batch, not refused."""
    seen: list[httpx.Request] = []
    numbers = tuple(f"4477009000{i:02d}" for i in range(5))
    results = await make_provider(replying("0|IN_PROGRESS|92", seen=seen), max_recipients=2).send(
        make_batch(numbers=numbers))
    assert len(results) == 5
    assert all(isinstance(r, Sent) for r in results)
    assert [str(r.url) for r in seen] == [BASE + BATCH_PATH]


async def test_a_send_batch_error_line_refuses_every_row() -> None:
    """The one reply line covers every row: 25 (no credits) refuses them all with BulkSMS's words."""
    batch = personalised(("447700900001", "a"), ("447700900002", "b"))
    results = await make_provider(replying("25|NO_CREDITS")).send(batch)
    assert results == [Rejected(code="25", why=BULKSMS["25"])] * 2


def test_send_batch_size_is_the_personalised_limit() -> None:
    """max_messages is 4,000 rows per send_batch by default, options.send_batch_size when set."""
    assert make_provider(replying("")).limits.max_messages == 4000
    assert make_provider(replying(""), options={"send_batch_size": 500}).limits.max_messages == 500


async def test_429_says_slow_down_and_waits() -> None:
    """HTTP 429 is Retry after the Retry-After seconds."""
    [result] = await make_provider(replying("", 429, {"Retry-After": "12"})).send(make_batch())
    assert result == Retry(code="HTTP429", why=explain("bulksms", "HTTP429"), after=12.0)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("t"), httpx.RemoteProtocolError("r"), httpx.ReadError("e")])
async def test_ambiguous_transport_failures_are_retried(exc: Exception) -> None:
    """After the request may have arrived, BulkSMS is asked again: the stop_dup_id keeps it at most once."""
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    [result] = await make_provider(handler).send(make_batch())
    assert isinstance(result, Retry)
    assert "at most once" in result.why


async def test_connection_refused_is_retry() -> None:
    """A refused connection sent nothing: Retry."""
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    [result] = await make_provider(handler).send(make_batch())
    assert result == Retry(code="ConnectError", why=explain("bulksms", "ConnectError"))


async def test_bad_number_is_rejected_and_not_sent() -> None:
    """A number that is not international digits is Rejected alone; the others go."""
    seen: list[httpx.Request] = []
    results = await make_provider(replying("0|IN_PROGRESS|13", seen=seen)).send(
        make_batch(numbers=("447700900001", "12ab"))
    )
    assert results[1] == Rejected(code="NUMBER", why=explain("bulksms", "NUMBER"))
    assert form(seen[0])["msisdn"] == "447700900001"


# -- config, limits, balance ---------------------------------------------------------------------
def test_limits_defaults_and_overrides() -> None:
    """100 numbers and 5 requests/s by default (configurable), idempotent, flash, two years of scheduling."""
    provider = make_provider(replying(""))
    limits = provider.limits
    assert (limits.max_recipients, limits.rate, limits.idempotent, limits.flash, limits.schedule_days) == (
        100, 5.0, True, True, 730)
    tuned = make_provider(replying(""), max_recipients=400, rate=1)
    assert (tuned.limits.max_recipients, tuned.limits.rate) == (400, 1.0)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"routing_grup": 1}, "providers.bulk.options.routing_grup: unknown option"),
        ({"routing_group": 5}, "providers.bulk.options.routing_group: must be a whole number from 1 to 3"),
        ({"concat_text_sms_max_parts": 200}, "providers.bulk.options.concat_text_sms_max_parts: must be"),
        ({"timezone": "Mars/Base"}, "providers.bulk.options.timezone: 'Mars/Base' is not a time zone"),
        ({"want_report": "yes"}, "providers.bulk.options.want_report: must be true or false"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(options: dict[str, object], problem: str) -> None:
    """A misspelt or out-of-range option stops the start with the key path, not a refusal at BulkSMS."""
    with pytest.raises(ConfigError) as info:
        make_provider(replying(""), options=options)
    assert info.value.problems[0].startswith(problem)


async def test_balance_reads_get_credits() -> None:
    """`0|2101.15` from get_credits is the credit."""
    seen: list[httpx.Request] = []
    balance = await make_provider(replying("0|2101.15", seen=seen)).balance()
    assert (balance.provider, balance.credit) == ("bulk", 2101.15)
    assert str(seen[0].url) == BASE + CREDITS_PATH
    assert form(seen[0]) == {"username": "user", "password": PASSWORD}


@pytest.mark.parametrize(("body", "words"), [("23|invalid credentials", BULKSMS["23"]),
                                             ("garbage", "the provider's reply was not one")])
def test_balance_failures_are_plain_words(body: str, words: str) -> None:
    """An error line or an unreadable reply raises ProviderError in words, without the password."""
    with pytest.raises(ProviderError) as info:
        parse_credits(body)
    assert str(info.value).startswith(words)
    assert PASSWORD not in str(info.value)
