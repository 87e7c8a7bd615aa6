"""The BulkSMS adapter for the JSON REST API v1 (`https://api.bulksms.com/v1/`), the default for `type = "bulksms"`.

`build_bulksms()` picks the API from `options.api`: `"json"` (default, this module) or `"eapi"` (the legacy
`providers.bulksms` adapter, which BulkSMS calls deprecated).

One batch is one `POST messages` with a JSON array of message objects, one per job, each with the job's own text:
`{"to", "body", "encoding": "TEXT"|"UNICODE", "longMessageMaxParts", "from"?, "messageClass"?, "routingGroup"?,
"deliveryReports"?}`. The array is what makes personalised batches possible (CSV rows with different texts go in
one request, `Limits.max_messages`); BulkSMS takes up to 30,000 and advises 4,000 per request (the default).
Authentication is HTTP Basic with `username` and `password`: an account's username and password, or (BulkSMS's
advice) an API token's id and secret in the same two fields.

Truth of the answer: a number counts as sent only when a message object for it comes back in the `201` array with
an accepted-like `status.type` (ACCEPTED, SCHEDULED, SENT, DELIVERED). FAILED is a refusal carrying BulkSMS's
subtype (`FAILED.BLOCKED`, ...); UNKNOWN, any other type, and a number with no message in the answer are `Unknown`
("may have been sent"). Errors are problem JSON (`type`, `title`, `status`, `detail`): 400 and 403 (insufficient
credit) are refusals naming BulkSMS's words, 401/404/3xx are configuration errors (one clear refusal, not 50
retries), 429 waits as asked, 5xx and unreadable answers are retried with the same `deduplication-id`.

Idempotency: `deduplication-id` (a query parameter) is derived from the sorted idempotency keys of the batch's jobs
(`providers.idempotency.stop_dup_id`, an int32). BulkSMS remembers it "about 12 hours"; mail2sms leans on it for
`KEY_WINDOW` = 6 h after a job's first attempt — half the documented time, because "about" is not a promise and
the two clocks and the dispatcher's backoff add slack. Later, a job whose last answer was ambiguous is `Unknown`
instead of asked again.

Scheduling: the API takes `schedule-date` (ISO 8601 with an offset, up to two years ahead; a past date sends at
once) and `schedule-description`; mail2sms sends scheduled jobs with it, in UTC, instead of holding them.

Delivery receipts (providers/receipts.py): `GET messages/{id}` per message (status.type DELIVERED is delivered,
FAILED with its subtype is not, ACCEPTED/SCHEDULED/SENT/UNKNOWN and anything else are not final), and BulkSMS's
webhooks post a JSON array of the same message objects (`parse_receipt_push`).

SMS replies (issue 17, `bulksms_replies.py` says what is confirmed and what is assumed): `GET messages` filtered to
RECEIVED messages newer than the cursor (the largest id seen), oldest first; `relatedSentMessageId` names the SMS
a reply answers, which BulkSMS fills in only for SMS sent with `options.repliable = true` (`from: {"type":
"REPLIABLE"}`). The received-messages webhook posts the same objects (`parse_reply_push`). A sender ID with
`repliable` is a config error (`sender_conflict`, reported by check-config).

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import (
    Account,
    Balance,
    Batch,
    DeliveryState,
    InboundSms,
    Job,
    Receipt,
    ReceiptQuery,
    Rejected,
    Result,
    Retry,
    Sent,
    Unknown,
)
from mail2sms.parse.text import is_gsm7
from mail2sms.providers import bulksms_replies, inbound, receipts, wire
from mail2sms.providers.base import Limits, Provider, account_for, retry_after
from mail2sms.providers.bulksms import EXPLAIN as BULKSMS_EXPLAIN
from mail2sms.providers.bulksms import SCHEDULE_DAYS, SCHEDULE_NOW, TYPE, BulkSmsProvider
from mail2sms.providers.explain import explain
from mail2sms.providers.idempotency import key_expired, stop_dup_id
from mail2sms.providers.receipts import ReceiptSupport
from mail2sms.providers.registry import ProviderSpec, register
from mail2sms.providers.replies import ReplyPage, ReplySupport

SEND_PATH = "messages"
PROFILE_PATH = "profile"
DEFAULT_RATE = 5.0
DEFAULT_MAX_MESSAGES = 4000  # "it is recommended that you use a smaller number, like 4000 per submission"
MAX_MESSAGES = 30_000  # "You can post up to 30 000 messages in a batch"
DEFAULT_MAX_PARTS = 3  # BulkSMS's own default for longMessageMaxParts
KEY_WINDOW = 6 * 3600.0  # deduplication-id "expires after about 12 hours": lean on half of it
WORDS_MAX = 200  # characters of BulkSMS's own error words kept in a Result

ACCEPTED = {"ACCEPTED": "accepted", "SCHEDULED": "scheduled", "SENT": "sent on", "DELIVERED": "delivered"}
# Problem types (the fragment of the `type` URL) that name a refusal mail2sms can explain.
PROBLEM_CODES = {
    "insufficient-credits": "INSUFFICIENT_CREDITS",
    "bad-request": "BAD_REQUEST",
    "not-found": "NOT_FOUND",
    "unauthorized": "UNAUTHORIZED",
    "forbidden": "FORBIDDEN",
}
CONFIG_STATUSES = {401: "UNAUTHORIZED", 404: "NOT_FOUND"}  # the account or the url is wrong: no retry helps

RECEIPTS = ReceiptSupport(poll=True, push=True, max_ids=1)  # GET messages/{id}; webhooks post message arrays
REPLIES = ReplySupport(poll=True, push=True)  # GET messages?filter=type=RECEIVED…; the RECEIVED webhook
PENDING_TYPES = {"ACCEPTED": "accepted", "SCHEDULED": "scheduled", "SENT": "sent on to the network",
                 "UNKNOWN": "in an unknown state"}

OPTIONS: dict[str, wire.Check] = {
    "api": wire.one_of("json", "eapi"),
    "long_message_max_parts": wire.integer(1, 99),
    "auto_unicode": wire.flag,
    "routing_group": wire.one_of("ECONOMY", "STANDARD", "PREMIUM"),
    "delivery_reports": wire.one_of("ALL", "ERRORS", "NONE"),
    "repliable": wire.flag,
    "protocol_id": wire.integer(0, 255),
    "schedule_description": wire.text(256),
}


def sender_conflict(options: Mapping[str, object]) -> str | None:
    """Why a sender ID cannot go with these options: a repliable SMS comes from BulkSMS's own number (both APIs)."""
    if options.get("repliable") is True or options.get("repliable") == 1:
        return ("options.repliable = true sends from BulkSMS's own repliable number so that replies come back; a "
                "sender ID cannot go with it (BulkSMS refuses the pair): remove the sender, or set repliable = "
                "false")
    return None


def build_bulksms(name: str, config: ProviderConfig, client: httpx.AsyncClient) -> Provider:
    """The BulkSMS adapter `options.api` asks for: the JSON API (default) or the legacy EAPI.

    A `url` that names the other API is a ConfigError at start: a configuration written for the EAPI before the JSON
    API became the default would otherwise have every SMS refused with a 404."""
    api = config.options.get("api", "json")
    path = urlsplit(config.url).path.lower()
    if api != "eapi" and "/eapi" in path:
        raise ConfigError([f'providers.{name}.url: this is an EAPI url, but options.api is "json" (the default for '
                           'type "bulksms"): set options.api = "eapi", or use https://api.bulksms.com/v1/'])
    if api == "eapi" and path.rstrip("/").endswith("/v1"):
        raise ConfigError([f'providers.{name}.url: this is a JSON API url, but options.api is "eapi": leave '
                           "options.api out to use the JSON API, or give the EAPI's url"])
    if api == "eapi":
        return BulkSmsProvider(name, config, client)
    return BulkSmsJsonProvider(name, config, client)


def _words(problem: dict[str, Any]) -> str:
    """BulkSMS's own words from a problem document, on one bounded line."""
    parts = [str(problem[k]) for k in ("title", "detail") if isinstance(problem.get(k), str | int) and problem[k]]
    text = " ".join(": ".join(parts).split())
    return text if len(text) <= WORDS_MAX else text[: WORDS_MAX - 1] + "…"


def _with_words(code: str, words: str) -> str:
    why = explain(TYPE, code)
    return f"{why} (BulkSMS said: {words})" if words else why


def problem_result(response: httpx.Response, keyed: bool) -> Result:
    """The Result one non-2xx answer means for every job of the request (problem JSON read before the status)."""
    status = response.status_code
    try:
        problem = json.loads(response.content)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    words = _words(problem)
    kind = str(problem.get("type") or "").rpartition("#")[2].rpartition("/")[2].lower()
    if 300 <= status < 400:
        return Rejected(code=f"HTTP{status}", why=_with_words("JSON_REDIRECT", words))
    if status == 429:
        return Retry(code="HTTP429", why=_with_words("HTTP429", words), after=retry_after(response))
    if status >= 500:
        code = f"HTTP{status}"
        if keyed:
            return Retry(code=code, why=_with_words("JSON_5XX", words), after=retry_after(response))
        return Unknown(code=code, why=_with_words(code, words))
    code = PROBLEM_CODES.get(kind) or CONFIG_STATUSES.get(status) or f"HTTP{status}"
    if status == 403 and code == "HTTP403":
        code = "FORBIDDEN"
    return Rejected(code=code, why=_with_words(code, words))


def message_results(data: Any, numbers: list[str]) -> list[Result]:
    """One Result per number from the `201` array of message objects; a number without one is not sent."""
    by_number: dict[str, dict[str, Any]] = {}
    if isinstance(data, dict):
        data = [data]  # tolerate one object for a one-message request
    for message in data if isinstance(data, list) else []:
        if isinstance(message, dict) and isinstance(message.get("to"), str):
            digits = wire.international_digits(message["to"])
            if digits is not None:
                by_number.setdefault(digits, message)
    results: list[Result] = []
    for number in numbers:
        message = by_number.get(number)
        if message is None:
            results.append(Unknown(code="MISSING", why=explain(TYPE, "MISSING")))
            continue
        raw_status = message.get("status")
        status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
        kind = str(status.get("type") or "").upper()
        subtype = status.get("subtype")
        message_id = message.get("id")
        pid = str(message_id) if isinstance(message_id, str | int) and not isinstance(message_id, bool) else None
        if kind in ACCEPTED:
            results.append(Sent(provider_id=pid, code=kind, detail=f"BulkSMS: {ACCEPTED[kind]}"))
        elif kind == "FAILED":
            code = f"FAILED.{subtype}" if isinstance(subtype, str) and subtype else "FAILED"
            results.append(Rejected(code=code, why=explain(TYPE, code)))
        else:
            code = f"STATUS_{kind}" if kind else "UNEXPECTED"
            results.append(Unknown(code=code, why=explain(TYPE, "STATUS_UNKNOWN")))
    return results


def message_receipt(message: Any, number: str | None = None) -> Receipt | None:
    """The Receipt one message object says (`id`, `to`, `status.type`/`subtype`); None without a usable id."""
    if not isinstance(message, dict):
        return None
    pid = receipts.text_id(message.get("id"))
    if pid is None:
        return None
    raw_status = message.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    kind = str(status.get("type") or "").upper()[:20]
    subtype = status.get("subtype")
    to = receipts.digits(message.get("to")) or number
    if kind == "DELIVERED":
        return Receipt(pid, to, DeliveryState.DELIVERED, kind, "BulkSMS reports the SMS delivered to the phone")
    if kind == "FAILED":
        code = f"FAILED.{subtype}" if isinstance(subtype, str) and subtype.isidentifier() else "FAILED"
        why = explain(TYPE, code) if code != "FAILED" else "BulkSMS reports the SMS failed"
        return Receipt(pid, to, DeliveryState.UNDELIVERED, code[:40], why)
    words = PENDING_TYPES.get(kind, "in a state mail2sms does not know")
    return Receipt(pid, to, DeliveryState.PENDING, kind or "UNEXPECTED", f"BulkSMS reports the SMS {words}")


def receipt_push(method: str, query: str, body: bytes, content_type: str) -> list[Receipt]:
    """The receipts in one webhook call: a JSON array of message objects (or one); [] when unreadable or too big.

    RECEIVED messages are replies (`parse_reply_push`), not receipts: skipped."""
    entries = [e for e in receipts.push_json(body) or [] if str(e.get("type") or "").upper() != "RECEIVED"]
    found = [message_receipt(dict(entry)) for entry in entries]
    return [r for r in found if r is not None]


class BulkSmsJsonProvider:
    """BulkSMS over the JSON REST API v1 (HTTP Basic, JSON arrays of messages)."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.options = wire.read_options(name, config.options, OPTIONS)
        self._max_parts = int(self.options.get("long_message_max_parts", DEFAULT_MAX_PARTS))
        per_request = min(config.max_recipients or DEFAULT_MAX_MESSAGES, MAX_MESSAGES)
        self.limits = Limits(
            max_recipients=per_request,
            max_messages=per_request,
            max_parts=self._max_parts,
            rate=config.rate or DEFAULT_RATE,
            idempotent=True,
            schedule_days=SCHEDULE_DAYS,
            flash=True,
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        self.receipts = RECEIPTS
        self.replies = REPLIES

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `messages` array for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(batch, TYPE, lambda jobs, numbers: self._send_fresh(batch, jobs, numbers))

    async def _send_fresh(self, batch: Batch, jobs: list[Job], numbers: list[str]) -> list[Result]:
        """Jobs whose deduplication-id BulkSMS may have forgotten end Unknown; the others go in one request."""
        now = time.time()
        results: list[Result | None] = [None] * len(jobs)
        fresh = []
        for i, job in enumerate(jobs):
            if key_expired(job, now, KEY_WINDOW):
                results[i] = Unknown(code="KEY_EXPIRED", why=explain(TYPE, "JSON_KEY_EXPIRED"))
            else:
                fresh.append(i)
        if fresh:
            answers = await self._post(batch, [jobs[i] for i in fresh], [numbers[i] for i in fresh])
            for i, answer in zip(fresh, answers, strict=True):
                results[i] = answer
        return [r for r in results if r is not None]

    def _message(self, batch: Batch, job: Job, number: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "to": f"+{number}",
            "body": job.text,
            "encoding": "TEXT" if is_gsm7(job.text) else "UNICODE",
            "longMessageMaxParts": self._max_parts,
        }
        sender = batch.sender or self.config.sender
        if self.options.get("repliable"):
            message["from"] = {"type": "REPLIABLE"}  # a sender id is never repliable: leave it out
        elif sender:
            message["from"] = sender
        if batch.options.flash:
            message["messageClass"] = "FLASH_SMS"
        for option, key in (
            ("routing_group", "routingGroup"),
            ("delivery_reports", "deliveryReports"),
            ("protocol_id", "protocolId"),
        ):
            if option in self.options:
                message[key] = self.options[option]
        return message

    def _query(self, batch: Batch, dup_id: int | None) -> dict[str, str]:
        query: dict[str, str] = {}
        if dup_id is not None:
            query["deduplication-id"] = str(dup_id)
        if self.options.get("auto_unicode"):
            query["auto-unicode"] = "true"
        if batch.options.sendtime:
            when = datetime.fromisoformat(batch.options.sendtime)
            when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
            if when.timestamp() > time.time() + SCHEDULE_NOW:
                query["schedule-date"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if "schedule_description" in self.options:
                    query["schedule-description"] = str(self.options["schedule_description"])
        return query

    async def _post(self, batch: Batch, jobs: list[Job], numbers: list[str]) -> list[Result]:
        count = len(numbers)
        dup_id = stop_dup_id([j.idempotency_key for j in jobs])
        keyed = dup_id is not None
        account = account_for(self.config, batch.account)
        body = json.dumps(
            [self._message(batch, j, n) for j, n in zip(jobs, numbers, strict=True)], ensure_ascii=False
        ).encode("utf-8")
        response = await wire.post(
            TYPE,
            keyed,
            self.client.post(
                f"{self.config.base_url}{SEND_PATH}",
                params=self._query(batch, dup_id),
                content=body,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                auth=httpx.BasicAuth(account.username, account.password),
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return [response] * count
        if not response.is_success:
            return [problem_result(response, keyed)] * count
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, list | dict):
            if keyed:  # the same deduplication-id gets BulkSMS's first answer again
                return [Retry(code="UNEXPECTED", why=explain(TYPE, "JSON_UNEXPECTED"))] * count
            return [Unknown(code="UNEXPECTED", why=explain("", "UNEXPECTED"))] * count
        return message_results(data, numbers)

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """`GET messages/{id}` per item; one Receipt per item, in order. Never raises for BulkSMS trouble."""
        found = [await self._receipt(item) for item in items]
        return receipts.masked(found, [s for i in items for s in account_for(self.config, i.account).secrets()])

    async def _receipt(self, item: ReceiptQuery) -> Receipt:
        creds = account_for(self.config, item.account)
        response = await receipts.fetch(
            "BulkSMS",
            self.client.get(
                f"{self.config.base_url}{SEND_PATH}/{quote(item.provider_id, safe='')}",
                headers={"Accept": "application/json"},
                auth=httpx.BasicAuth(creds.username, creds.password),
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return receipts.pending(item, *response)
        if response.status_code == 404:
            return receipts.pending(item, "NOT_FOUND", "BulkSMS does not know this message id (yet); mail2sms asks "
                                    "again later")
        if not response.is_success:
            return receipts.pending(item, *receipts.status_words("BulkSMS", response))
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        receipt = message_receipt(data, item.number)
        if receipt is None or receipt.provider_id != item.provider_id:
            return receipts.pending(item, "UNEXPECTED", "BulkSMS's answer to the status request named no message "
                                    "mail2sms asked about; it asks again later")
        return Receipt(item.provider_id, item.number, receipt.state, receipt.code, receipt.why, receipt.at)

    def parse_receipt_push(self, method: str, query: str, body: bytes, content_type: str) -> list[Receipt]:
        """The receipts in one webhook call (see `receipt_push`)."""
        return receipt_push(method, query, body, content_type)

    # -- replies (issue 17; bulksms_replies.py says what is confirmed and what is assumed) -------------------------
    async def fetch_replies(self, cursor: str | None) -> ReplyPage:
        """`GET messages?filter=type=RECEIVED&id>{cursor}`, oldest first: the replies after the cursor (the largest
        message id seen), polled whether or not `repliable` is set (an account may make it its default). Without
        a cursor BulkSMS lists what it still keeps (its recent days). The provider's own login only."""
        creds = account_for(self.config, None)
        response = await inbound.fetch(
            "BulkSMS",
            self.client.get(
                f"{self.config.base_url}{SEND_PATH}",
                params={"filter": bulksms_replies.json_filter(cursor), "sortOrder": "ASCENDING",
                        "limit": str(bulksms_replies.JSON_LIMIT)},
                headers={"Accept": "application/json"},
                auth=httpx.BasicAuth(creds.username, creds.password),
                timeout=self._timeout,
            ),
        )
        found, last, more = bulksms_replies.json_page(response.status_code, response.content, cursor,
                                                      creds.secrets())
        return ReplyPage(replies=found, cursor=last, more=more)

    async def acknowledge_replies(self, refs: list[str]) -> None:
        """Nothing to do: BulkSMS has no "mark read"; the cursor (and the spool's unique key) keep each reply once."""

    def parse_reply_push(self, method: str, query: str, body: bytes, content_type: str) -> list[InboundSms]:
        """The replies in one webhook call: its RECEIVED messages (see `bulksms_replies.json_push`)."""
        return bulksms_replies.json_push(body)

    async def balance(self, account: Account | None = None) -> Balance:
        """Credits from `GET profile` (`credits.balance`); ProviderError in plain words otherwise."""
        creds = account_for(self.config, account)
        response = await wire.balance_request(
            TYPE,
            self.client.get(
                f"{self.config.base_url}{PROFILE_PATH}",
                headers={"Accept": "application/json"},
                auth=httpx.BasicAuth(creds.username, creds.password),
                timeout=self._timeout,
            ),
        )
        if not response.is_success:
            problem = problem_result(response, True)
            raise ProviderError(problem.why if not isinstance(problem, Sent) else explain("", "UNEXPECTED"))
        try:
            data = json.loads(response.content)
            credit = float(data["credits"]["balance"])
        except (ValueError, TypeError, KeyError):
            raise ProviderError(explain("", "UNEXPECTED")) from None
        return Balance(provider=self.name, credit=credit, detail=f"{credit:g} BulkSMS credits")


# What the config and the reports need to know about this provider type (providers/registry.py).
SPEC = register(
    ProviderSpec(
        type=TYPE,
        label="BulkSMS",
        build=build_bulksms,
        urls={"": "https://api.bulksms.com/v1/", "eapi": "https://bulksms.vsms.net/eapi/"},
        explain=BULKSMS_EXPLAIN,
        receipts=RECEIPTS,
        replies=REPLIES,  # the EAPI (options.api = "eapi") polls only: its adapter says replies = poll
        sender_conflict=sender_conflict,
    )
)
