"""Unit tests of the BulkSMS JSON API v1 adapter: wire shape, answer mapping per number, problem JSON, the
deduplication-id window, scheduling and balance, with httpx.MockTransport."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import Account, Batch, Job, Rejected, Retry, Sent, SmsOptions, Unknown
from mail2sms.providers.bulksms import EXPLAIN as BULKSMS
from mail2sms.providers.bulksms import BulkSmsProvider
from mail2sms.providers.bulksms_json import KEY_WINDOW, BulkSmsJsonProvider, build_bulksms
from mail2sms.providers.explain import explain
from mail2sms.providers.idempotency import stop_dup_id
from mail2sms.providers.registry import build_provider

SECRET = "token-secret-ü"
BASE = "https://api.bulksms.test/v1/"


def job(number: str, text: str = "hello", key: str | None = None) -> Job:
    return Job(number=number, text=text, provider="bulk", idempotency_key=key or f"key-{number}")


def make_batch(*jobs: Job, sender: str | None = None, account: Account | None = None, **options: Any) -> Batch:
    jobs = jobs or (job("447700900001"),)
    return Batch(provider="bulk", account=account, sender=sender, text=jobs[0].text,
                 options=SmsOptions(**options), jobs=jobs)


def make_provider(handler: Callable[[httpx.Request], httpx.Response], **config: object) -> BulkSmsJsonProvider:
    settings: dict[str, object] = {"type": "bulksms", "url": BASE, "username": "TOKEN-ID", "password": SECRET}
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return BulkSmsJsonProvider("bulk", ProviderConfig.model_validate(settings), client)


def accepted(request: httpx.Request, kind: str = "ACCEPTED") -> httpx.Response:
    """A 201 with one message object per entry, as BulkSMS answers."""
    entries = json.loads(request.content)
    return httpx.Response(201, json=[
        {"id": f"m{i}", "type": "SENT", "to": e["to"], "body": e["body"], "encoding": e.get("encoding", "TEXT"),
         "status": {"id": f"{kind}.null", "type": kind, "subtype": None}} for i, e in enumerate(entries)])


def answering(reply: Callable[[httpx.Request], httpx.Response],
              seen: list[httpx.Request] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return reply(request)

    return handler


def problem(status: int, title: str, detail: str = "", kind: str = "bad-request",
            headers: dict[str, str] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    body = {"type": f"https://developer.bulksms.com/json/v1/errors#{kind}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return lambda request: httpx.Response(status, json=body, headers=headers)


# -- the request ---------------------------------------------------------------------------------
async def test_wire_shape_of_a_personalised_request() -> None:
    """One POST to messages: a JSON array with each job's own text, Basic auth, deduplication-id from the keys."""
    seen: list[httpx.Request] = []
    batch = make_batch(job("447700900001", "Hi Ann"), job("447700900002", "Привет Бо"), sender="Shop")
    assert batch.personalised
    results = await make_provider(answering(accepted, seen)).send(batch)
    assert [type(r) for r in results] == [Sent, Sent]
    [request] = seen
    assert request.url.path == "/v1/messages"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"TOKEN-ID:{SECRET}".encode()).decode()
    assert request.url.params["deduplication-id"] == str(stop_dup_id(["key-447700900001", "key-447700900002"]))
    assert json.loads(request.content) == [
        {"to": "+447700900001", "body": "Hi Ann", "encoding": "TEXT", "longMessageMaxParts": 3, "from": "Shop"},
        {"to": "+447700900002", "body": "Привет Бо", "encoding": "UNICODE", "longMessageMaxParts": 3, "from": "Shop"},
    ]


async def test_options_flash_repliable_and_routing_are_on_the_wire() -> None:
    """Flash is messageClass FLASH_SMS; repliable leaves the sender out; routing, reports and parts are passed."""
    seen: list[httpx.Request] = []
    provider = make_provider(answering(accepted, seen), sender="Shop", options={
        "repliable": True, "routing_group": "PREMIUM", "delivery_reports": "ERRORS", "long_message_max_parts": 5,
        "auto_unicode": True})
    await provider.send(make_batch(flash=True))
    [entry] = json.loads(seen[0].content)
    assert entry["from"] == {"type": "REPLIABLE"}
    assert (entry["messageClass"], entry["routingGroup"], entry["deliveryReports"], entry["longMessageMaxParts"]) == (
        "FLASH_SMS", "PREMIUM", "ERRORS", 5)
    assert seen[0].url.params["auto-unicode"] == "true"
    assert provider.limits.max_parts == 5


async def test_a_future_sendtime_goes_as_schedule_date_in_utc() -> None:
    """The JSON API schedules itself: schedule-date in ISO 8601 UTC, with the configured description."""
    seen: list[httpx.Request] = []
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    provider = make_provider(answering(lambda r: accepted(r, "SCHEDULED"), seen),
                             options={"schedule_description": "mail2sms"})
    [result] = await provider.send(make_batch(sendtime=when.isoformat()))
    assert result == Sent(provider_id="m0", code="SCHEDULED", detail="BulkSMS: scheduled")
    assert seen[0].url.params["schedule-date"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert seen[0].url.params["schedule-description"] == "mail2sms"
    assert provider.limits.schedule_days == 730


async def test_body_credentials_are_used_for_basic_auth() -> None:
    """Credentials that came in the mail body authenticate the request instead of the configured ones."""
    seen: list[httpx.Request] = []
    await make_provider(answering(accepted, seen)).send(make_batch(account=Account("body-user", "body-pw")))
    assert seen[0].headers["authorization"] == "Basic " + base64.b64encode(b"body-user:body-pw").decode()


# -- the answer, per number ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ACCEPTED", "SCHEDULED", "SENT", "DELIVERED"])
async def test_accepted_like_statuses_are_sent_with_the_message_id(kind: str) -> None:
    """A message object for the number with an accepted-like status.type is Sent, with BulkSMS's id and type."""
    [result] = await make_provider(answering(lambda r: accepted(r, kind))).send(make_batch())
    assert isinstance(result, Sent)
    assert (result.provider_id, result.code) == ("m0", kind)


@pytest.mark.parametrize("subtype", ["BLOCKED", "NOT_SENT", "EXPIRED", "HANDSET_ERROR", None])
async def test_failed_is_a_refusal_with_the_subtype(subtype: str | None) -> None:
    """FAILED (with its subtype) refuses that number only; the others of the request stay sent."""
    def reply(request: httpx.Request) -> httpx.Response:
        data = accepted(request).json()
        data[1]["status"] = {"id": f"FAILED.{subtype}", "type": "FAILED", "subtype": subtype}
        return httpx.Response(201, json=data)

    batch = make_batch(job("447700900001"), job("447700900002"))
    first, second = await make_provider(answering(reply)).send(batch)
    code = f"FAILED.{subtype}" if subtype else "FAILED"
    assert isinstance(first, Sent)
    assert second == Rejected(code=code, why=BULKSMS[code])


async def test_a_number_missing_from_the_answer_is_not_sent() -> None:
    """A 201 whose array lacks a number leaves that number Unknown ("may have been sent"), never Sent."""
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json=accepted(request).json()[:1])

    first, second = await make_provider(answering(reply)).send(make_batch(job("447700900001"), job("447700900002")))
    assert isinstance(first, Sent)
    assert second == Unknown(code="MISSING", why=BULKSMS["MISSING"])


@pytest.mark.parametrize("body", [b"[]", b"{}", b'[{"to": "+447700900001", "status": {"type": "UNKNOWN"}}]',
                                  b'[{"to": "+447700900001"}]'])
async def test_an_answer_without_a_clear_status_is_never_sent(body: bytes) -> None:
    """An empty array, an object without status, or status UNKNOWN give Unknown for the number."""
    [result] = await make_provider(answering(lambda r: httpx.Response(201, content=body))).send(make_batch())
    assert isinstance(result, Unknown)


async def test_an_unreadable_2xx_is_retried_with_the_same_key() -> None:
    """A 2xx that is not JSON is asked again: the deduplication-id makes the repeat harmless."""
    [result] = await make_provider(answering(lambda r: httpx.Response(201, text="<html>ok</html>"))).send(
        make_batch())
    assert result == Retry(code="UNEXPECTED", why=BULKSMS["JSON_UNEXPECTED"])


# -- problem JSON --------------------------------------------------------------------------------
async def test_insufficient_credit_is_refused_with_bulksms_words() -> None:
    """403 insufficient-credits refuses every number, naming BulkSMS's title and detail."""
    handler = problem(403, "Insufficient Credits", "You need 2 credits", kind="insufficient-credits")
    results = await make_provider(answering(handler)).send(make_batch(job("447700900001"), job("447700900002")))
    assert [r.code for r in results if isinstance(r, Rejected)] == ["INSUFFICIENT_CREDITS"] * 2
    words = " (BulkSMS said: Insufficient Credits: You need 2 credits)"
    assert results[0].why == BULKSMS["INSUFFICIENT_CREDITS"] + words


@pytest.mark.parametrize(("status", "kind", "code"), [(400, "bad-request", "BAD_REQUEST"),
                                                      (401, "unauthorized", "UNAUTHORIZED"),
                                                      (401, "", "UNAUTHORIZED"), (404, "", "NOT_FOUND"),
                                                      (403, "", "FORBIDDEN")])
async def test_client_errors_are_refusals_naming_the_cause(status: int, kind: str, code: str) -> None:
    """400/401/403/404 are one clear refusal each (configuration errors are not retried)."""
    [result] = await make_provider(answering(problem(status, "Nope", "bad thing", kind=kind))).send(make_batch())
    assert result == Rejected(code=code, why=BULKSMS[code] + " (BulkSMS said: Nope: bad thing)")


@pytest.mark.parametrize("status", [301, 302, 308])
async def test_a_redirect_is_a_configuration_error(status: int) -> None:
    """3xx (e.g. http moved to https) is refused once, naming the url as the likely cause."""
    reply = lambda r: httpx.Response(status, headers={"Location": "https://api.bulksms.com/v1/messages"})  # noqa: E731
    [result] = await make_provider(answering(reply)).send(make_batch())
    assert result == Rejected(code=f"HTTP{status}", why=BULKSMS["JSON_REDIRECT"])


async def test_429_waits_as_asked() -> None:
    """429 is Retry after the Retry-After seconds."""
    handler = problem(429, "Too Many Requests", kind="too-many-requests", headers={"Retry-After": "9"})
    [result] = await make_provider(answering(handler)).send(make_batch())
    assert isinstance(result, Retry)
    assert (result.code, result.after) == ("HTTP429", 9.0)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried_with_the_same_deduplication_id(status: int) -> None:
    """5xx is retried, and every attempt of one batch carries the same deduplication-id."""
    seen: list[httpx.Request] = []
    provider = make_provider(answering(problem(status, "Server Error"), seen))
    batch = make_batch()
    [first] = await provider.send(batch)
    await provider.send(batch)
    assert isinstance(first, Retry)
    assert first.code == f"HTTP{status}"
    assert seen[0].url.params["deduplication-id"] == seen[1].url.params["deduplication-id"]


async def test_ambiguous_transport_failure_is_retried() -> None:
    """A read timeout is asked again with the same deduplication-id."""
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    [result] = await make_provider(handler).send(make_batch())
    assert isinstance(result, Retry)
    assert "at most once" in result.why


async def test_an_ambiguous_job_past_the_window_is_unknown_without_a_request() -> None:
    """A job first tried longer ago than the window, last answer ambiguous, is Unknown; no request carries it."""
    seen: list[httpx.Request] = []
    old = job("447700900001")
    old.first_attempt_at, old.code, old.attempts = time.time() - KEY_WINDOW - 60, "HTTP503", 3
    fresh = job("447700900002")
    results = await make_provider(answering(accepted, seen)).send(make_batch(old, fresh))
    assert results[0] == Unknown(code="KEY_EXPIRED", why=BULKSMS["JSON_KEY_EXPIRED"])
    assert isinstance(results[1], Sent)
    assert [e["to"] for e in json.loads(seen[0].content)] == ["+447700900002"]
    assert 6 * 3600 <= KEY_WINDOW < 12 * 3600


# -- config, balance -----------------------------------------------------------------------------
def test_the_api_option_picks_the_adapter_and_its_default_url() -> None:
    """type bulksms is the JSON API at api.bulksms.com by default; options.api = "eapi" is the EAPI at its URL."""
    client = httpx.AsyncClient()
    default = build_provider("b", ProviderConfig.model_validate({"type": "bulksms"}), client)
    eapi = build_provider("b", ProviderConfig.model_validate({"type": "bulksms", "options": {"api": "eapi"}}),
                          client)
    assert isinstance(default, BulkSmsJsonProvider)
    assert default.config.base_url == "https://api.bulksms.com/v1/"
    assert isinstance(eapi, BulkSmsProvider)
    assert eapi.config.base_url == "https://bulksms.vsms.net/eapi/"
    assert isinstance(build_bulksms("b", ProviderConfig.model_validate({"type": "bulksms"}), client),
                      BulkSmsJsonProvider)


def test_limits_are_4000_messages_of_any_text_per_request() -> None:
    """4,000 messages per request by default (max_recipients up to 30,000), personalised, idempotent, flash."""
    limits = make_provider(accepted).limits
    assert (limits.max_recipients, limits.max_messages, limits.idempotent, limits.flash) == (4000, 4000, True, True)
    tuned = make_provider(accepted, max_recipients=50_000).limits
    assert (tuned.max_recipients, tuned.max_messages) == (30_000, 30_000)


@pytest.mark.parametrize(("options", "problem_text"), [
    ({"api": "rest"}, "providers.bulk.options.api: must be one of 'json', 'eapi'"),
    ({"routing_group": 2}, "providers.bulk.options.routing_group: must be one of"),
    ({"long_message_max_parts": 0}, "providers.bulk.options.long_message_max_parts: must be a whole number"),
    ({"stop_dup": 1}, "providers.bulk.options.stop_dup: unknown option"),
])
def test_bad_options_are_config_errors(options: dict[str, object], problem_text: str) -> None:
    """A wrong option stops the start naming its key path."""
    with pytest.raises(ConfigError) as info:
        make_provider(accepted, options=options)
    assert info.value.problems[0].startswith(problem_text)


async def test_balance_reads_the_profile_credits() -> None:
    """GET profile's credits.balance is the credit."""
    seen: list[httpx.Request] = []
    reply = lambda r: httpx.Response(200, json={"id": "1", "username": "u", "credits": {"balance": 42.5}})  # noqa: E731
    balance = await make_provider(answering(reply, seen)).balance()
    assert (balance.provider, balance.credit) == ("bulk", 42.5)
    assert str(seen[0].url) == BASE + "profile"
    assert seen[0].method == "GET"


async def test_balance_failure_is_plain_words_without_the_secret() -> None:
    """A 401 on profile raises ProviderError with the credentials advice, never the secret."""
    with pytest.raises(ProviderError) as info:
        await make_provider(answering(problem(401, "Unauthorized", kind="unauthorized"))).balance()
    assert str(info.value).startswith(explain("bulksms", "UNAUTHORIZED"))
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(("settings", "problem_text"), [
    ({"url": "https://bulksms.vsms.net/eapi/"}, 'providers.b.url: this is an EAPI url, but options.api is "json"'),
    ({"url": "https://api.bulksms.com/v1/", "options": {"api": "eapi"}},
     'providers.b.url: this is a JSON API url, but options.api is "eapi"'),
])
def test_a_url_of_the_other_api_is_a_config_error(settings: dict[str, object], problem_text: str) -> None:
    """An EAPI url left from an older configuration stops the start with advice instead of 404s at send time."""
    with pytest.raises(ConfigError) as info:
        build_bulksms("b", ProviderConfig.model_validate({"type": "bulksms", **settings}), httpx.AsyncClient())
    assert info.value.problems[0].startswith(problem_text)
