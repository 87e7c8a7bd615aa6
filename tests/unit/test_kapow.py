"""Unit tests of the Kapow adapter: wire parameters and reply mapping, with httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import Account, Batch, Job, Rejected, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.explain import explain
from mail2sms.providers.kapow import EXPLAIN as KAPOW
from mail2sms.providers.kapow import KapowProvider, format_sendtime, reply_result

PASSWORD = "k4pow-pw"
LONDON = ZoneInfo("Europe/London")


def make_batch(
    text: str = "hello",
    numbers: tuple[str, ...] = ("447700900001",),
    sender: str | None = None,
    account: Account | None = None,
    **options: object,
) -> Batch:
    jobs = tuple(Job(number=n, text=text, provider="kapow") for n in numbers)
    return Batch(provider="kapow", account=account, sender=sender, text=text, options=SmsOptions(**options), jobs=jobs)  # type: ignore[arg-type]


def make_provider(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> KapowProvider:
    settings: dict[str, object] = {
        "type": "kapow",
        "url": "https://kapow.test/scripts/",
        "username": "user",
        "password": PASSWORD,
    }
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return KapowProvider("kapow", ProviderConfig.model_validate(settings), client)


def replying(
    body: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
    seen: list[httpx.Request] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, text=body, headers=headers)

    return handler


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode("ascii"), keep_blank_values=True).items()}


# -- reply parsing -------------------------------------------------------------------------------
def test_ok_with_one_id() -> None:
    """`OK <credits> <id>` is Sent with that id."""
    assert reply_result("OK 148 11472734895956042", 1) == [
        Sent(provider_id="11472734895956042", detail="Kapow credits left: 148")
    ]


@pytest.mark.parametrize(
    "body", ["OK 146 111 222 333", "OK 146 111,222,333", "OK 146 111, 222, 333\n", "OK\t146\t111\n222\n333"]
)
def test_several_ids_are_given_in_order_whatever_the_separator(body: str) -> None:
    """Ids are tokens 2.. of the reply split on whitespace (or commas), assigned to the numbers in order."""
    results = reply_result(body, 3)
    assert [r.provider_id for r in results if isinstance(r, Sent)] == ["111", "222", "333"]


@pytest.mark.parametrize(("body", "ids"), [("OK 10 111", 1), ("OK 148", 0), ("OK 10 111 222 333 444", 4)])
def test_not_one_id_per_number_is_unknown(body: str, ids: int) -> None:
    """With fewer (or more) ids than numbers nobody can tell which numbers Kapow took: every number is Unknown."""
    why = explain("kapow", "IDS") + f' ({ids} message ids for 3 numbers). Kapow\'s own words: "{body}"'
    assert reply_result(body, 3) == [Unknown(code="IDS", why=why)] * 3


@pytest.mark.parametrize("body", ["OK", "OK but the message was queued for review", "OK 12 1!1"])
def test_an_ok_that_is_not_kapows_answer_is_unknown(body: str) -> None:
    """`OK` without a credit figure, or with ids that are not ids, is not Kapow's success answer: Unknown."""
    [result] = reply_result(body, 1)
    assert (type(result), result.code) in ((Unknown, "UNEXPECTED"), (Unknown, "IDS"))


def test_an_empty_reply_is_unknown() -> None:
    """An empty body may hide a sent SMS and says nothing: Unknown with its own explanation."""
    assert reply_result("  ", 2) == [Unknown(code="EMPTY", why=KAPOW["EMPTY"])] * 2


@pytest.mark.parametrize("word", ["USERPASS", "NOCREDIT", "ERROR"])
def test_failure_words_are_rejected_with_explanation(word: str) -> None:
    """USERPASS, NOCREDIT and ERROR are refusals, explained in plain words."""
    assert reply_result(word, 2) == [Rejected(code=word, why=explain("kapow", word))] * 2


def test_explanations_read_as_documented() -> None:
    """USERPASS and NOCREDIT read as the design says; ERROR names the likely causes."""
    assert KAPOW["USERPASS"].startswith("the username or password was not accepted by Kapow")
    assert KAPOW["NOCREDIT"] == "the Kapow account has no credit left: top up, then resend"
    for cause in ("number", "scheduled time", "sender"):
        assert cause in KAPOW["ERROR"]


@pytest.mark.parametrize("body", ["Internal error", "<html>502 Bad Gateway</html>", "OKAY", "ERROR 12", "ok 5 1"])
def test_anything_else_is_unknown(body: str) -> None:
    """A reply that is none of Kapow's documented answers may hide a sent SMS: Unknown, quoting Kapow's words."""
    words = f'. Kapow\'s own words: "{body}"'
    assert reply_result(body, 1) == [Unknown(code="UNEXPECTED", why=explain("kapow", "UNEXPECTED") + words)]


# -- sendtime ------------------------------------------------------------------------------------
def test_sendtime_is_formatted_in_uk_time() -> None:
    """An ISO UTC time becomes `DD-MM-YY HH:MM` in UK time (a space, which the form turns into `+`)."""
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert format_sendtime("2026-07-01T15:30:00Z", LONDON, now) == "01-07-26 16:30"  # BST
    assert format_sendtime("2026-12-01T15:30:00+00:00", LONDON, now) == "01-12-26 15:30"  # GMT
    assert format_sendtime("2026-07-01T15:30:00", LONDON, now) == "01-07-26 16:30"  # naive = UTC


def test_sendtime_in_the_past_means_send_now() -> None:
    """A time already past (or within a minute) is dropped: the SMS goes at once."""
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert format_sendtime("2026-05-01T00:00:00Z", LONDON, now) is None
    assert format_sendtime("2026-06-01T12:00:30Z", LONDON, now) is None


def test_sendtime_too_far_or_unreadable_raises() -> None:
    """More than 365 days ahead, or not ISO 8601, cannot be used."""
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="365"):
        format_sendtime("2027-06-03T00:00:00Z", LONDON, now)
    with pytest.raises(ValueError, match="Invalid isoformat"):
        format_sendtime("01/07/26 10:00", LONDON, now)


# -- the request ---------------------------------------------------------------------------------
async def test_send_posts_the_documented_form() -> None:
    """send() POSTs username, password, comma-joined digit numbers, sms and returnid=TRUE to sendsms.php."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK 98 111 222", seen=seen))
    results = await provider.send(make_batch("hi there", ("+447700900001", "00447700900002")))
    assert [r.provider_id for r in results if isinstance(r, Sent)] == ["111", "222"]
    [request] = seen
    assert (request.method, str(request.url)) == ("POST", "https://kapow.test/scripts/sendsms.php")
    assert form(request) == {
        "username": "user",
        "password": PASSWORD,
        "mobile": "447700900001,447700900002",
        "sms": "hi there",
        "returnid": "TRUE",
    }


async def test_optional_parameters() -> None:
    """Sender, flash, sendtime and configured route/dlr go as from_id, FLASH prefix, sendtime, route, dlr."""
    seen: list[httpx.Request] = []
    provider = make_provider(
        replying("OK 98 111", seen=seen),
        sender="CONFIGURED",
        options={"route": "66100", "dlr": "example.org/dlr.php"},
    )
    when = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    await provider.send(make_batch("wake up", sender="Alarm", flash=True, sendtime=when.isoformat()))
    sent = form(seen[0])
    assert sent["from_id"] == "Alarm"
    assert sent["sms"] == "FLASHwake up"
    assert sent["sendtime"] == when.astimezone(LONDON).strftime("%d-%m-%y %H:%M")
    assert b"sendtime=" + when.astimezone(LONDON).strftime("%d-%m-%y+%H%%3A%M").encode() in seen[0].content
    assert (sent["route"], sent["dlr"]) == ("66100", "example.org/dlr.php")


async def test_configured_sender_and_mail_body_credentials() -> None:
    """Without a batch sender the configured one is used; mail-body credentials replace configured ones."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK 98 111", seen=seen), sender="CONFIGURED")
    await provider.send(make_batch(account=Account(username="mailuser", password="mailpw")))
    sent = form(seen[0])
    assert (sent["from_id"], sent["username"], sent["password"]) == ("CONFIGURED", "mailuser", "mailpw")


async def test_sendtime_too_far_is_rejected_unsent() -> None:
    """A schedule more than 365 days ahead is Rejected (SENDTIME) without calling Kapow."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK 98 111", seen=seen))
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    assert await provider.send(make_batch(sendtime=far)) == [
        Rejected(code="SENDTIME", why=explain("kapow", "SENDTIME"))
    ]
    assert seen == []


async def test_invalid_number_rejected_locally_others_sent_in_order() -> None:
    """A number that is not digits is Rejected locally, the others keep their ids in job order."""
    seen: list[httpx.Request] = []
    provider = make_provider(replying("OK 98 111 222", seen=seen))
    results = await provider.send(make_batch(numbers=("447700900001", "not-a-number", "447700900002")))
    assert isinstance(results[1], Rejected)
    assert [r.provider_id for r in results if isinstance(r, Sent)] == ["111", "222"]
    assert form(seen[0])["mobile"] == "447700900001,447700900002"


async def test_userpass_never_carries_the_password() -> None:
    """A USERPASS reply is Rejected, and nothing in the Results repeats the password."""
    provider = make_provider(replying("USERPASS"))
    results = await provider.send(make_batch())
    assert results == [Rejected(code="USERPASS", why=explain("kapow", "USERPASS"))]
    assert PASSWORD not in repr(results)


# -- HTTP statuses and transport failures --------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "headers", "kind", "after"),
    [
        (429, {"Retry-After": "30"}, Retry, 30.0),
        (503, {}, Retry, None),
        (500, {}, Unknown, None),
        (404, {}, Rejected, None),
    ],
)
async def test_http_statuses(status: int, headers: dict[str, str], kind: type, after: float | None) -> None:
    """Kapow answers 200; other statuses follow shared rules (429/503 Retry, 500 Unknown, 404 Rejected)."""
    provider = make_provider(replying("x", status, headers))
    [result] = await provider.send(make_batch())
    assert isinstance(result, kind)
    assert result.code == f"HTTP{status}"
    if isinstance(result, Retry):
        assert result.after == after


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused"), Retry),
        (httpx.ReadTimeout("slow"), Unknown),
        (httpx.RemoteProtocolError("closed"), Unknown),
    ],
)
async def test_transport_failures(exc: Exception, kind: type) -> None:
    """Connect failures are Retry; failures after the request left are Unknown."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    [result] = await make_provider(handler).send(make_batch())
    assert isinstance(result, kind)
    assert result.why == explain("kapow", type(exc).__name__)


# -- limits and balance --------------------------------------------------------------------------
def test_limits_defaults_and_overrides() -> None:
    """Defaults are 50 numbers and 5 requests/s, not idempotent; config overrides both."""
    provider = make_provider(replying(""))
    assert (provider.limits.max_recipients, provider.limits.rate, provider.limits.idempotent) == (
        50,
        5.0,
        False,
    )
    tuned = make_provider(replying(""), max_recipients=500, rate=2)
    assert (tuned.limits.max_recipients, tuned.limits.rate) == (500, 2.0)


async def test_balance_reads_a_bare_integer() -> None:
    """chk_credit.php answers a bare integer: that is the credit."""
    seen: list[httpx.Request] = []
    balance = await make_provider(replying("148", seen=seen)).balance()
    assert (balance.provider, balance.credit) == ("kapow", 148.0)
    assert str(seen[0].url) == "https://kapow.test/scripts/chk_credit.php"
    assert form(seen[0]) == {"username": "user", "password": PASSWORD}


@pytest.mark.parametrize(("body", "code"), [("USERPASS", "USERPASS"), ("garbage", "UNEXPECTED")])
async def test_balance_failure_raises_plain_words(body: str, code: str) -> None:
    """A refused or unreadable credit check raises ProviderError in plain words, without the password."""
    with pytest.raises(ProviderError) as info:
        await make_provider(replying(body)).balance()
    assert str(info.value) == explain("kapow", code)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (403, "USERPASS", Rejected, "USERPASS"),
        (500, "NOCREDIT", Rejected, "NOCREDIT"),
        (404, "OK 98 111", Unknown, "HTTP404"),
        (502, "<html>Bad Gateway</html>", Retry, "HTTP502"),
    ],
)
async def test_a_non_200_body_is_read_first(status: int, body: str, kind: type, code: str) -> None:
    """One of Kapow's words decides even with a non-200 status; an OK with an error status is Unknown."""
    [result] = await make_provider(replying(body, status)).send(make_batch())
    assert (type(result), result.code) == (kind, code)


async def test_kapows_words_never_carry_the_password() -> None:
    """An unexpected answer is quoted, but the password the request carried is blanked."""
    [result] = await make_provider(replying(f"Bad login {PASSWORD}")).send(make_batch())
    assert result == Unknown(code="UNEXPECTED", why=KAPOW["UNEXPECTED"] + '. Kapow\'s own words: "Bad login ***"')
