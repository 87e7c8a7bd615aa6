"""The BulkSMS adapter for the legacy EAPI (`options.api = "eapi"`): seed `bulksms-eapi-send_sms.txt`, `providers.md`.

BulkSMS calls the EAPI deprecated; the JSON API (`providers.bulksms_json`) is the default for `type = "bulksms"`.

A batch of one text is one POST form, every value in ISO-8859-1, to `{base_url}submission/send_sms/2/2.0` with
`username, password, message, msisdn` (comma list of international digits) and the options below. The reply is one line
`status_code|status_description|batch_id` (or two fields on some errors); 0 (in progress) and 1 (scheduled) mean
every number was taken. 40 is retried, 26 and 28 are retried after a while, every other code is final. HTTP 3xx,
401 and 404 are configuration errors (a regional host that is not the account's, a removed version: providers.md
"What the field adds"), refused once with the likely cause; every other status is temporary (the seed says so),
429 waits as long as `Retry-After` asks.

Personalised batches (`Limits.max_messages`): jobs with different texts, or more jobs than `max_recipients`, go
in one `submission/send_batch/1/1.0` request whose `batch_data` is CSV `msisdn,message` (header row first), up to
`options.send_batch_size` rows (default 4,000). `dca` is per request, so 16-bit (Unicode) rows and 7-bit rows go
in separate requests. The reply line is the same as `send_sms`'s and covers every row of the request.

Idempotency: each request carries a `stop_dup_id` derived from the sorted idempotency keys of its jobs (see
`providers.idempotency`), so the same batch asked again is answered with the first reply and sent at most once.
Ambiguous failures (timeout, reset, unreadable reply) are therefore retried, but only within `KEY_WINDOW` (2 h)
of a job's first attempt: BulkSMS remembers a `stop_dup_id` "a few hours", so later a job whose last answer was
ambiguous ends `Unknown` ("may have been sent") instead of being asked again.

Text: GSM-7 text that ISO-8859-1 can carry goes as is (`dca` 7bit); any other text goes as `dca=16bit` with the
message as hex of its UTF-16BE bytes, at most 140 octets (BulkSMS does not join Unicode parts). Text longer than
one SMS needs `options.allow_concat_text_sms` (parts up to `concat_text_sms_max_parts`, default 2).
Flash SMS is `msg_class=0`. Scheduling: `send_time` (yyyy-mm-dd hh:mm:ss in the account's zone) when
`options.timezone` names that zone, otherwise `send_time_unixtime`, which needs no zone and so cannot be wrong
about one. A sender id goes with `repliable=0` unless `options.repliable` is set (the seed: sender and repliable
do not go together; with `repliable = true` the sender is left out).

Delivery receipts (providers/receipts.py) are polled with `status_reports/get_report/2/2.0` (`batch_id`): one
request per batch answers `0|Results to follow` (or `Returns to follow`), a blank line, then `msisdn|status_code`
lines: 11 is delivered; 22-29, 31-33 and 50-57 failed; 0, 10, 12, 60-64, 70 and any other code are not final.
An error line (`24|…`) or an unreadable answer leaves every number PENDING. The EAPI has no push here.

SMS replies (issue 17, `bulksms_replies.py` says what is confirmed and what is assumed) are polled with
`reception/get_inbox/1/1.1` (`last_retrieved_id` cursor); `referring_batch_id` is the batch_id of the SMS a reply
answers (our stored provider id), filled in by BulkSMS for SMS sent with `repliable=1` (`options.repliable`).

Config `options`: api ("eapi"), routing_group (1-3), want_report, repliable, source_id, strip_dup_recipients,
allow_concat_text_sms, concat_text_sms_max_parts (1-127), test_always_succeed, test_always_fail, replace_msg_id
(1-7), protocol_id, scheduling_description, timezone, send_batch_size (1-30000).

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import (
    Account,
    Balance,
    Batch,
    DeliveryState,
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
from mail2sms.providers.base import Limits, account_for, retry_after
from mail2sms.providers.explain import GENERIC, explain, same_key_words
from mail2sms.providers.idempotency import key_expired, stop_dup_id
from mail2sms.providers.replies import ReplyFetchError, ReplyPage, ReplySupport

TYPE = "bulksms"

# Its codes in plain words (explain.py falls back to its generic table): mailed to the sender, so written for a
# person who has never read the API document, and never carrying a secret.
EXPLAIN: Mapping[str, str] = {
    "0": "BulkSMS accepted the SMS for sending (in progress)",
    "1": "BulkSMS accepted the SMS and scheduled it",
    "22": "BulkSMS had an internal fatal error and did not send the SMS: resend later; if it happens again, "
    "contact BulkSMS support",
    "23": "the username or password was not accepted by BulkSMS: check the account's username and password",
    "24": "BulkSMS refused the request as invalid (data validation failed): check the number, the sender ID "
    "and the provider options (routing_group, concatenation)",
    "25": "the account has no credit left: top up, then resend",
    "26": "BulkSMS's upstream credits were not available, so nothing was sent: mail2sms tries again later",
    "27": "the BulkSMS account's daily quota is used up: resend tomorrow, or ask BulkSMS to raise the quota",
    "28": "BulkSMS's upstream quota was exceeded, so nothing was sent: mail2sms tries again later",
    "40": "BulkSMS was temporarily unavailable: mail2sms tries again with the same duplicate-stop id, so the SMS "
    "is sent at most once",
    "201": "BulkSMS refused the request as too big (maximum batch size exceeded): lower max_recipients (or, for "
    "rows with different texts, options.send_batch_size) for this provider in the configuration",
    "HTTP": "BulkSMS answered with an HTTP error status, which its documentation calls temporary: mail2sms tries "
    "again with the same duplicate-stop id, so the SMS is sent at most once",
    "UNEXPECTED": "BulkSMS's reply was not one mail2sms understands: mail2sms tries again with the same "
    "duplicate-stop id, so the SMS is sent at most once; if this persists, check the provider's url",
    "UNICODE_LENGTH": "the text needs Unicode (16-bit) and is longer than the 70 characters one BulkSMS Unicode "
    "SMS holds (BulkSMS does not join Unicode parts): shorten it or leave out the special characters",
    "CHARSET": "a field of the request has characters that BulkSMS's ISO-8859-1 form cannot carry: use plain "
    "letters in the sender ID and the account name",
    "NUMBER": "the number cannot be sent through BulkSMS: write it in international form, digits only "
    "(e.g. 447700900123)",
    # EAPI statuses that mean the configuration is wrong (providers.md "What the field adds"): one clear refusal.
    **{f"HTTP{status}": f"BulkSMS redirected the request (HTTP {status}), so nothing was sent: the url is not the "
       "right one for this account (BulkSMS accounts live on regional hosts, and http is moved to https): fix the "
       "provider's url" for status in (301, 302, 303, 307, 308)},
    "HTTP401": "BulkSMS refused the request (HTTP 401), so nothing was sent: the account does not belong to this "
    "host (BulkSMS accounts live on regional hosts) or may not use the EAPI: check the provider's url and account, "
    "or use the JSON API (options.api = \"json\")",
    "HTTP404": "BulkSMS does not know this address (HTTP 404), so nothing was sent: the url is wrong or names an "
    "EAPI version BulkSMS removed: check the provider's url, or use the JSON API (options.api = \"json\")",
    "KEY_EXPIRED": "BulkSMS's answer to an attempt more than 2 hours ago was unclear, and BulkSMS remembers the "
    "duplicate-stop id only a few hours, so asking again could send the SMS twice: mail2sms stopped. The SMS may "
    "have been sent: check the BulkSMS message log before resending",
    # JSON API v1 (providers/bulksms_json.py)
    "JSON_KEY_EXPIRED": "BulkSMS's answer to an attempt more than 6 hours ago was unclear, and BulkSMS remembers "
    "the deduplication-id only about 12 hours, so asking again could send the SMS twice: mail2sms stopped. The SMS "
    "may have been sent: check the BulkSMS message log before resending",
    "JSON_REDIRECT": "BulkSMS redirected the request, so nothing was sent: the url is not the JSON API's "
    "(https://api.bulksms.com/v1/; http is moved to https): fix the provider's url",
    "UNAUTHORIZED": "BulkSMS did not accept the credentials (HTTP 401), so nothing was sent: check the username and "
    "password, or the API token id and secret, in the provider settings",
    "NOT_FOUND": "BulkSMS does not know this address (HTTP 404), so nothing was sent: check the provider's url (the "
    "JSON API is https://api.bulksms.com/v1/; an EAPI url needs options.api = \"eapi\")",
    "INSUFFICIENT_CREDITS": "the BulkSMS account has not enough credit for this request: top up, then resend",
    "FORBIDDEN": "BulkSMS refused the request (HTTP 403): the account may lack credit, or the right to use this "
    "sender or feature: see BulkSMS's words, fix it, then resend",
    "BAD_REQUEST": "BulkSMS refused the request as invalid (HTTP 400): check the number, the sender ID and the "
    "provider options against BulkSMS's words",
    "JSON_5XX": "BulkSMS had a server error: mail2sms tries again with the same deduplication-id, so the SMS is "
    "sent at most once",
    "JSON_UNEXPECTED": "BulkSMS's reply was not one mail2sms understands: mail2sms tries again with the same "
    "deduplication-id, so the SMS is sent at most once; if this persists, check the provider's url",
    "MISSING": "BulkSMS took the request, but its answer has no message for this number, so mail2sms cannot tell "
    "whether the SMS was sent: check the BulkSMS message log before resending",
    "STATUS_UNKNOWN": "BulkSMS answered with no clear status for this message, so mail2sms cannot tell whether the "
    "SMS was sent: check the BulkSMS message log before resending",
    "FAILED": "BulkSMS refused the SMS for this number (FAILED): check the number, then resend",
    "FAILED.EXPIRED": "BulkSMS reports the SMS failed: it expired before it could be delivered",
    "FAILED.HANDSET_ERROR": "BulkSMS reports the SMS failed because of a problem with the phone (e.g. its message "
    "storage is full)",
    "FAILED.BLOCKED": "BulkSMS refused the SMS: the account is blocked from sending to this number (e.g. the "
    "recipient replied STOP)",
    "FAILED.NOT_SENT": "BulkSMS did not try to send the SMS (e.g. it has no route to this number): check the number",
    **same_key_words("BulkSMS", "duplicate-stop id"),
}
# get_report's status codes in plain words (BulkSMS's EAPI status code table).
REPORT_WORDS: Mapping[int, str] = {
    0: "in progress at BulkSMS",
    10: "delivered to the network, not yet to the phone",
    11: "delivered to the phone",
    12: "delivered to the network, not acknowledged yet",
    22: "BulkSMS had an internal fatal error",
    23: "the login was refused",
    24: "the message failed validation",
    25: "the account had not enough credit",
    26: "upstream credits were not available",
    27: "the daily quota was exceeded",
    28: "the upstream quota was exceeded",
    29: "sending was cancelled",
    31: "the number cannot be routed",
    32: "the number is blocked (the recipient may have opted out)",
    33: "the message was censored",
    50: "delivery failed",
    51: "delivery to the phone failed",
    52: "delivery to the network failed",
    53: "the message expired before it could be delivered",
    54: "it failed on the remote network",
    55: "the remote network blocked it",
    56: "the remote network censored it",
    57: "it failed because of a fault on the phone",
    60: "a temporary upstream failure; BulkSMS retries",
    63: "queued for a retry after a temporary failure",
    64: "queued for a retry after a fault on the phone",
    70: "the upstream status is unknown",
}
REPORT_DELIVERED = frozenset({11})
REPORT_FAILED = frozenset({*range(22, 30), 31, 32, 33, *range(50, 58)})
REPORT_PATH = "status_reports/get_report/2/2.0"
RECEIPTS = receipts.ReceiptSupport(poll=True, push=False, max_ids=1)  # one batch_id per get_report request
REPLIES = ReplySupport(poll=True, push=False)  # reception/get_inbox; BulkSMS's HTTP relaying is not read here
SEND_PATH = "submission/send_sms/2/2.0"
BATCH_PATH = "submission/send_batch/1/1.0"
CREDITS_PATH = "user/get_credits/1/1.1"
CHARSET = "iso-8859-1"
DEFAULT_MAX_RECIPIENTS = 100  # the EAPI's batch limit is not documented (code 201): configurable
DEFAULT_RATE = 5.0
SCHEDULE_DAYS = 730  # "Messages can be scheduled a maximum of two years in advance"
MAX_16BIT_OCTETS = 140
SCHEDULE_NOW = 60.0  # a send time this close is sent at once, as BulkSMS does with a past time
DEFAULT_BATCH_SIZE = 4000  # send_batch rows per request; BulkSMS documents no limit (201 says when it is too big)
KEY_WINDOW = 2 * 3600.0  # stop_dup_id is remembered "within the past few hours": lean on it for 2 h only
CONFIG_STATUSES = frozenset({301, 302, 303, 307, 308, 401, 404})  # wrong host or removed version: no retry helps

SENT_CODES = {"0": "BulkSMS: in progress", "1": "BulkSMS: scheduled"}
UPSTREAM_RETRY_AFTER = 300.0  # 26/28 "might have been resolved after several resend attempts"
RETRY_CODES: dict[str, float | None] = {"40": None, "26": UPSTREAM_RETRY_AFTER, "28": UPSTREAM_RETRY_AFTER}
FINAL_CODES = frozenset({"22", "23", "24", "25", "27", "201"})
NOT_PROCESSED = frozenset(RETRY_CODES)  # BulkSMS said it did not take the request: the stop_dup_id is still unused

OPTIONS: dict[str, wire.Check] = {
    "routing_group": wire.integer(1, 3),
    "want_report": wire.flag,
    "repliable": wire.flag,
    "source_id": wire.text(20),
    "strip_dup_recipients": wire.flag,
    "allow_concat_text_sms": wire.flag,
    "concat_text_sms_max_parts": wire.integer(1, 127),
    "test_always_succeed": wire.flag,
    "test_always_fail": wire.flag,
    "replace_msg_id": wire.integer(1, 7),
    "protocol_id": wire.integer(0, 255),
    "scheduling_description": wire.text(100),
    "timezone": wire.timezone_name,
    "api": wire.one_of("eapi"),
    "send_batch_size": wire.integer(1, 30_000),
}
_PASSED_AS_IS = (
    "routing_group",
    "want_report",
    "source_id",
    "strip_dup_recipients",
    "test_always_succeed",
    "test_always_fail",
    "replace_msg_id",
    "protocol_id",
)


def encode_message(text: str) -> tuple[str, bool]:
    """The `message` value and whether it is `dca=16bit` (hex of UTF-16BE) rather than plain 7-bit text."""
    if is_gsm7(text):
        try:
            text.encode(CHARSET)
        except UnicodeEncodeError:
            pass  # GSM has it (€, Greek capitals) but ISO-8859-1 cannot carry it: Unicode
        else:
            return text, False
    return text.encode("utf-16-be").hex(), True


def reply_result(body: str, count: int, keyed: bool = True) -> list[Result]:
    """One Result per number from a `send_sms` reply with HTTP 200 (`code|description|batch_id`)."""
    lines = body.strip().splitlines()
    fields = [f.strip() for f in lines[0].split("|")] if lines else []
    code = fields[0] if fields else ""
    if len(fields) < 2 or not code.isdigit():
        if keyed:
            return [Retry(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED"))] * count
        return [Unknown(code="UNEXPECTED", why=GENERIC["UNEXPECTED"])] * count
    code = str(int(code))
    if code in SENT_CODES:
        batch_id = fields[2] if len(fields) > 2 and fields[2].isdigit() else None
        return [Sent(provider_id=batch_id, detail=SENT_CODES[code])] * count
    if code in RETRY_CODES:
        return [Retry(code=code, why=explain(TYPE, code), after=RETRY_CODES[code])] * count
    # "All other errors should be considered fatal" (seed), including codes it does not list.
    return [Rejected(code=code, why=explain(TYPE, code))] * count


def report_receipts(body: str, items: list[ReceiptQuery]) -> list[Receipt]:
    """One Receipt per item (all of one batch) from a `get_report` answer; PENDING when it says nothing sure."""
    lines = body.strip().splitlines()
    head = [f.strip() for f in lines[0].split("|")] if lines else []
    if len(head) < 2 or head[0] != "0":
        code = head[0] if head and head[0].isdigit() else "UNEXPECTED"
        words = f"BulkSMS answered the status report request with {code}" + (
            f" ({REPORT_WORDS[int(code)]})" if code.isdigit() and int(code) in REPORT_WORDS else "")
        return receipts.for_all(items, code, words + "; mail2sms asks again later")
    codes: dict[str, int] = {}
    for line in lines[1:]:
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            codes.setdefault(fields[0], int(fields[1]))
    out: list[Receipt] = []
    for item in items:
        status = codes.get(item.number)
        if status is None:
            out.append(receipts.pending(item, "NO_ROW", "BulkSMS's status report does not list this number yet"))
            continue
        words = REPORT_WORDS.get(status, f"BulkSMS status code {status}")
        if status in REPORT_DELIVERED:
            out.append(Receipt(item.provider_id, item.number, DeliveryState.DELIVERED, str(status),
                               f"BulkSMS reports the SMS {words}"))
        elif status in REPORT_FAILED:
            out.append(Receipt(item.provider_id, item.number, DeliveryState.UNDELIVERED, str(status),
                               f"BulkSMS reports the SMS was not delivered: {words}"))
        else:
            out.append(receipts.pending(item, str(status), f"BulkSMS reports the SMS not delivered yet: {words}"))
    return out


def parse_credits(body: str) -> float:
    """`0|2101.15` → 2101.15; ProviderError (plain words) for an error line or anything else."""
    lines = body.strip().splitlines()
    fields = [f.strip() for f in lines[0].split("|")] if lines else []
    if len(fields) >= 2 and fields[0] == "0":
        try:
            return float(fields[1])
        except ValueError:
            pass
    elif fields and fields[0].isdigit():
        raise ProviderError(explain(TYPE, str(int(fields[0]))))
    raise ProviderError(GENERIC["UNEXPECTED"])


class BulkSmsProvider:
    """BulkSMS over the legacy EAPI (POST form, ISO-8859-1)."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.options = wire.read_options(name, config.options, OPTIONS)
        self._concat = bool(self.options.get("allow_concat_text_sms", False))
        self._max_parts = int(self.options.get("concat_text_sms_max_parts", 2)) if self._concat else 1
        self._zone: tzinfo | None = self.options.get("timezone")
        self.limits = Limits(
            max_recipients=config.max_recipients or DEFAULT_MAX_RECIPIENTS,
            max_parts=self._max_parts,
            max_parts_ucs2=1,  # 16-bit text is never concatenated: one part of 70 characters (140 octets)
            rate=config.rate or DEFAULT_RATE,
            idempotent=True,
            schedule_days=SCHEDULE_DAYS,
            flash=True,
            max_messages=int(self.options.get("send_batch_size", DEFAULT_BATCH_SIZE)),
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        self.receipts = RECEIPTS
        self.replies = REPLIES

    async def send(self, batch: Batch) -> list[Result]:
        """POST the batch's valid numbers (`send_sms` for one text, else `send_batch`); one Result per job, in order."""
        return await wire.send_valid(batch, TYPE, lambda jobs, numbers: self._send_jobs(batch, jobs, numbers))

    async def _send_jobs(self, batch: Batch, jobs: list[Job], numbers: list[str]) -> list[Result]:
        """Jobs whose stop_dup_id BulkSMS may have forgotten end Unknown; the rest go 7-bit and 16-bit apart."""
        now = time.time()
        results: list[Result | None] = [None] * len(jobs)
        by_dca: dict[bool, list[int]] = {}
        for i, job in enumerate(jobs):
            if key_expired(job, now, KEY_WINDOW, NOT_PROCESSED):
                results[i] = Unknown(code="KEY_EXPIRED", why=explain(TYPE, "KEY_EXPIRED"))
            else:
                by_dca.setdefault(encode_message(job.text)[1], []).append(i)
        for members in by_dca.values():
            part = [jobs[i] for i in members]
            part_numbers = [numbers[i] for i in members]
            dup_id = stop_dup_id([j.idempotency_key for j in part])
            if all(j.text == part[0].text for j in part) and len(part) <= self.limits.max_recipients:
                answers = await self._send(batch, part[0].text, part_numbers, dup_id)
            else:
                answers = await self._send_batch(batch, part, part_numbers, dup_id)
            for i, answer in zip(members, answers, strict=True):
                results[i] = answer
        return [r for r in results if r is not None]

    def _params(
        self, batch: Batch, text: str, numbers: list[str], dup_id: int | None
    ) -> list[tuple[str, str]] | Result:
        """The `send_sms` form, or the Result that makes sending pointless (text BulkSMS cannot carry)."""
        message, unicode = encode_message(text)
        if unicode and len(message) // 2 > MAX_16BIT_OCTETS:
            return Rejected(code="UNICODE_LENGTH", why=explain(TYPE, "UNICODE_LENGTH"))
        account = account_for(self.config, batch.account)
        params = [
            ("username", account.username),
            ("password", account.password),
            ("message", message),
            ("msisdn", ",".join(numbers)),
        ]
        return params + self._options(batch, unicode, dup_id)

    def _options(self, batch: Batch, unicode: bool, dup_id: int | None) -> list[tuple[str, str]]:
        """The parameters `send_sms` and `send_batch` share: coding, class, sender, stop_dup_id, schedule, options."""
        params: list[tuple[str, str]] = []
        if unicode:
            params.append(("dca", "16bit"))
        elif self._concat:
            params += [("allow_concat_text_sms", "1"), ("concat_text_sms_max_parts", str(self._max_parts))]
        if batch.options.flash:
            params.append(("msg_class", "0"))
        repliable = self.options.get("repliable")
        sender = batch.sender or self.config.sender
        if repliable is not None:
            params.append(("repliable", "1" if repliable else "0"))
        if sender and not repliable:
            params.append(("sender", sender))
            if repliable is None:
                params.append(("repliable", "0"))  # the seed: "If specifying sender, set repliable=0 to be safe"
        if dup_id is not None:
            params.append(("stop_dup_id", str(dup_id)))
        params += self._schedule(batch)
        for key in _PASSED_AS_IS:
            if key in self.options:
                value = self.options[key]
                params.append((key, ("1" if value else "0") if isinstance(value, bool) else str(value)))
        return params

    def _schedule(self, batch: Batch) -> list[tuple[str, str]]:
        if not batch.options.sendtime:
            return []
        when = datetime.fromisoformat(batch.options.sendtime)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when.timestamp() <= time.time() + SCHEDULE_NOW:
            return []
        if self._zone is not None:
            params = [("send_time", when.astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S"))]
        else:
            params = [("send_time_unixtime", str(int(when.timestamp())))]
        if "scheduling_description" in self.options:
            params.append(("scheduling_description", str(self.options["scheduling_description"])))
        return params

    async def _send(self, batch: Batch, text: str, numbers: list[str], dup_id: int | None) -> list[Result]:
        params = self._params(batch, text, numbers, dup_id)
        if not isinstance(params, list):
            return [params] * len(numbers)
        return await self._post(SEND_PATH, params, len(numbers), dup_id is not None)

    async def _send_batch(self, batch: Batch, jobs: list[Job], numbers: list[str], dup_id: int | None) -> list[Result]:
        """One `send_batch` request: `batch_data` CSV rows `msisdn,message`, each job with its own text."""
        results: list[Result | None] = [None] * len(jobs)
        rows: list[tuple[int, str, str]] = []
        unicode = False
        for i, (job, number) in enumerate(zip(jobs, numbers, strict=True)):
            message, unicode = encode_message(job.text)
            if unicode and len(message) // 2 > MAX_16BIT_OCTETS:
                results[i] = Rejected(code="UNICODE_LENGTH", why=explain(TYPE, "UNICODE_LENGTH"))
            else:
                rows.append((i, number, message))
        if rows:
            if len(rows) < len(jobs):  # the request carries fewer jobs: its key must name exactly those
                dup_id = stop_dup_id([jobs[i].idempotency_key for i, _, _ in rows])
            data = io.StringIO()
            writer = csv.writer(data, lineterminator="\n")
            writer.writerow(("msisdn", "message"))
            writer.writerows((number, message) for _, number, message in rows)
            account = account_for(self.config, batch.account)
            params = [("username", account.username), ("password", account.password), ("batch_data", data.getvalue())]
            answers = await self._post(
                BATCH_PATH, params + self._options(batch, unicode, dup_id), len(rows), dup_id is not None
            )
            for (i, _, _), answer in zip(rows, answers, strict=True):
                results[i] = answer
        return [r for r in results if r is not None]

    async def _post(self, path: str, params: list[tuple[str, str]], count: int, keyed: bool) -> list[Result]:
        """POST one form in ISO-8859-1; `count` Results from its one-line reply."""
        try:
            body = wire.form_body(params, CHARSET)
        except UnicodeEncodeError:
            return [Rejected(code="CHARSET", why=explain(TYPE, "CHARSET"))] * count
        response = await wire.post(
            TYPE,
            keyed,
            self.client.post(
                f"{self.config.base_url}{path}",
                content=body,
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={CHARSET}"},
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return [response] * count
        if response.status_code != 200:
            return [self._http_status(response, keyed)] * count
        return reply_result(response.content.decode(CHARSET, "replace"), count, keyed)

    @staticmethod
    def _http_status(response: httpx.Response, keyed: bool) -> Result:
        """3xx, 401 and 404 are configuration errors; any other status but 200 is temporary (the seed); 429 names
        itself, and Retry-After is honoured."""
        status = response.status_code
        code = f"HTTP{status}"
        if status in CONFIG_STATUSES:
            return Rejected(code=code, why=explain(TYPE, code))
        if status == 429:
            return Retry(code=code, why=explain(TYPE, code), after=retry_after(response))
        if not keyed and status >= 500:
            return Unknown(code=code, why=explain(TYPE, code))
        return Retry(code=code, why=explain(TYPE, "HTTP"), after=retry_after(response))

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """One `get_report` request per batch_id; one Receipt per item, in order. Never raises for BulkSMS trouble."""
        groups: dict[tuple[str, Account | None], list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault((item.provider_id, item.account), []).append(i)
        out: list[Receipt | None] = [None] * len(items)
        for (batch_id, account), members in groups.items():
            for i, receipt in zip(members, await self._report(batch_id, account, [items[i] for i in members]),
                                  strict=True):
                out[i] = receipt
        return [r for r in out if r is not None]

    async def _report(self, batch_id: str, account: Account | None, items: list[ReceiptQuery]) -> list[Receipt]:
        creds = account_for(self.config, account)
        try:
            body = wire.form_body(
                [("username", creds.username), ("password", creds.password), ("batch_id", batch_id)], CHARSET
            )
        except UnicodeEncodeError:
            return receipts.for_all(items, "CHARSET", explain(TYPE, "CHARSET"))
        response = await receipts.fetch(
            "BulkSMS",
            self.client.post(
                f"{self.config.base_url}{REPORT_PATH}",
                content=body,
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={CHARSET}"},
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return receipts.for_all(items, *response)
        if response.status_code != 200:
            return receipts.for_all(items, *receipts.status_words("BulkSMS", response))
        return report_receipts(response.content.decode(CHARSET, "replace"), items)

    async def fetch_replies(self, cursor: str | None) -> ReplyPage:
        """`reception/get_inbox/1/1.1` with `last_retrieved_id` = the cursor (0 the first time: everything BulkSMS
        keeps); the next cursor is the largest msg_id in the answer. Polled whether or not `repliable` is set.
        The provider's own login only (bulksms_replies.py says what is confirmed and what is assumed)."""
        creds = account_for(self.config, None)
        last = cursor if cursor and cursor.isdigit() else "0"
        try:
            body = wire.form_body(
                [("username", creds.username), ("password", creds.password), ("last_retrieved_id", last)], CHARSET
            )
        except UnicodeEncodeError:
            raise ReplyFetchError("CHARSET", explain(TYPE, "CHARSET")) from None
        response = await inbound.fetch(
            "BulkSMS",
            self.client.post(
                f"{self.config.base_url}{bulksms_replies.INBOX_PATH}",
                content=body,
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={CHARSET}"},
                timeout=self._timeout,
            ),
        )
        found, cursor_next, more = bulksms_replies.inbox_page(
            response.status_code, response.content.decode(CHARSET, "replace"), cursor, self._zone or UTC,
            creds.secrets(),
        )
        return ReplyPage(replies=found, cursor=cursor_next, more=more)

    async def acknowledge_replies(self, refs: list[str]) -> None:
        """Nothing to do: the EAPI has no "mark read"; `last_retrieved_id` (and the spool's unique key) keep each
        reply once."""

    async def balance(self, account: Account | None = None) -> Balance:
        """Credits from `user/get_credits/1/1.1` (`0|2101.15`); ProviderError in plain words otherwise."""
        creds = account_for(self.config, account)
        try:
            body = wire.form_body([("username", creds.username), ("password", creds.password)], CHARSET)
        except UnicodeEncodeError:
            raise ProviderError(explain(TYPE, "CHARSET")) from None
        response = await wire.balance_request(
            TYPE,
            self.client.post(
                f"{self.config.base_url}{CREDITS_PATH}",
                content=body,
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={CHARSET}"},
                timeout=self._timeout,
            ),
        )
        if response.status_code != 200:
            raise ProviderError(explain("", f"HTTP{response.status_code}"))
        credit = parse_credits(response.content.decode(CHARSET, "replace"))
        return Balance(provider=self.name, credit=credit, detail=f"{credit:g} BulkSMS credits")
