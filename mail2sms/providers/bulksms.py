"""The BulkSMS adapter: the legacy EAPI of the seed `bulksms-eapi-send_sms.txt` and `providers.md`.

One batch is one POST form, every value in ISO-8859-1, to `{base_url}submission/send_sms/2/2.0` with `username,
password, message, msisdn` (comma list of international digits) and the options below. The reply is one line
`status_code|status_description|batch_id` (or two fields on some errors); 0 (in progress) and 1 (scheduled) mean
every number was taken. 40 is retried, 26 and 28 are retried after a while, every other code is final; every HTTP
status other than 200 is temporary (the seed says so), 429 waits as long as `Retry-After` asks.

Idempotency: each request carries a `stop_dup_id` derived from the sorted idempotency keys of its jobs (see
`providers.idempotency`), so the same batch asked again is answered with the first reply and sent at most once.
Ambiguous failures (timeout, reset, unreadable reply) are therefore retried.

Text: GSM-7 text that ISO-8859-1 can carry goes as is (`dca` 7bit); any other text goes as `dca=16bit` with the
message as hex of its UTF-16BE bytes, at most 140 octets (BulkSMS does not join Unicode parts). Text longer than
one SMS needs `options.allow_concat_text_sms` (parts up to `concat_text_sms_max_parts`, default 2).
Flash SMS is `msg_class=0`. Scheduling: `send_time` (yyyy-mm-dd hh:mm:ss in the account's zone) when
`options.timezone` names that zone, otherwise `send_time_unixtime`, which needs no zone and so cannot be wrong
about one. A sender id goes with `repliable=0` unless `options.repliable` is set (the seed: sender and repliable
do not go together; with `repliable = true` the sender is left out).

Config `options`: routing_group (1-3), want_report, repliable, source_id, strip_dup_recipients,
allow_concat_text_sms, concat_text_sms_max_parts (1-127), test_always_succeed, test_always_fail, replace_msg_id
(1-7), protocol_id, scheduling_description, timezone.

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import Account, Balance, Batch, Rejected, Result, Retry, Sent, Unknown
from mail2sms.parse.text import is_gsm7
from mail2sms.providers import wire
from mail2sms.providers.base import Limits, account_for, retry_after
from mail2sms.providers.explain import GENERIC, explain
from mail2sms.providers.idempotency import stop_dup_id

TYPE = "bulksms"
SEND_PATH = "submission/send_sms/2/2.0"
CREDITS_PATH = "user/get_credits/1/1.1"
CHARSET = "iso-8859-1"
DEFAULT_MAX_RECIPIENTS = 100  # the EAPI's batch limit is not documented (code 201): configurable
DEFAULT_RATE = 5.0
SCHEDULE_DAYS = 730  # "Messages can be scheduled a maximum of two years in advance"
MAX_16BIT_OCTETS = 140
SCHEDULE_NOW = 60.0  # a send time this close is sent at once, as BulkSMS does with a past time

SENT_CODES = {"0": "BulkSMS: in progress", "1": "BulkSMS: scheduled"}
UPSTREAM_RETRY_AFTER = 300.0  # 26/28 "might have been resolved after several resend attempts"
RETRY_CODES: dict[str, float | None] = {"40": None, "26": UPSTREAM_RETRY_AFTER, "28": UPSTREAM_RETRY_AFTER}
FINAL_CODES = frozenset({"22", "23", "24", "25", "27", "201"})

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
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `send_sms` request for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(
            batch,
            TYPE,
            lambda jobs, numbers: self._send(batch, numbers, stop_dup_id([j.idempotency_key for j in jobs])),
        )

    def _params(self, batch: Batch, numbers: list[str], dup_id: int | None) -> list[tuple[str, str]] | Result:
        """The form, or the Result that makes sending pointless (text BulkSMS cannot carry)."""
        message, unicode = encode_message(batch.text)
        if unicode and len(message) // 2 > MAX_16BIT_OCTETS:
            return Rejected(code="UNICODE_LENGTH", why=explain(TYPE, "UNICODE_LENGTH"))
        account = account_for(self.config, batch.account)
        params = [
            ("username", account.username),
            ("password", account.password),
            ("message", message),
            ("msisdn", ",".join(numbers)),
        ]
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

    async def _send(self, batch: Batch, numbers: list[str], dup_id: int | None) -> list[Result]:
        count = len(numbers)
        keyed = dup_id is not None
        params = self._params(batch, numbers, dup_id)
        if not isinstance(params, list):
            return [params] * count
        try:
            body = wire.form_body(params, CHARSET)
        except UnicodeEncodeError:
            return [Rejected(code="CHARSET", why=explain(TYPE, "CHARSET"))] * count
        response = await wire.post(
            TYPE,
            keyed,
            self.client.post(
                f"{self.config.base_url}{SEND_PATH}",
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
        """Any status but 200 is temporary (the seed); 429 names itself, and Retry-After is honoured."""
        status = response.status_code
        code = f"HTTP{status}"
        if status == 429:
            return Retry(code=code, why=explain(TYPE, code), after=retry_after(response))
        if not keyed and status >= 500:
            return Unknown(code=code, why=explain(TYPE, code))
        return Retry(code=code, why=explain(TYPE, "HTTP"), after=retry_after(response))

    async def balance(self, account: Account | None = None) -> Balance:
        """Credits from `user/get_credits/1/1.1` (`0|2101.15`); ProviderError in plain words otherwise."""
        creds = account_for(self.config, account)
        try:
            body = wire.form_body([("username", creds.username), ("password", creds.password)], CHARSET)
        except UnicodeEncodeError:
            raise ProviderError(explain(TYPE, "CHARSET")) from None
        try:
            response = await self.client.post(
                f"{self.config.base_url}{CREDITS_PATH}",
                content=body,
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={CHARSET}"},
                timeout=self._timeout,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise ProviderError(explain(TYPE, "URL")) from None
        except httpx.HTTPError as exc:
            raise ProviderError(wire.balance_failure("BulkSMS", exc)) from None
        if response.status_code != 200:
            raise ProviderError(explain("", f"HTTP{response.status_code}"))
        credit = parse_credits(response.content.decode(CHARSET, "replace"))
        return Balance(provider=self.name, credit=credit, detail=f"{credit:g} BulkSMS credits")
