"""The Cellcast adapter (Australia): API v3 `send-sms` and `account`, per `providers.md` and the seed.

One batch is one JSON `POST {base_url}send-sms` with `{"sms_text", "numbers": [≤1000 × "+<digits>"], "from"?,
"schedule_time"?}` and the key in the `APPKEY` header (what every client sends), or as HTTP Basic auth when
`options.auth = "basic"` (what the seed page says; user = the configured username, or the key when there is none).
Success is a 2xx whose `meta.status` is `SUCCESS`, and it is success only for the numbers it shows as queued: a
number is Sent when it appears in `data.messages` (matched by `to`; its `message_id` is the provider id), or, when
the reply has no `messages` at all, when `success_number == total_numbers`. Cellcast answers `SUCCESS` with
`messages: []` and `success_number: 0` for numbers it will not send to (e.g. outside Australia): those numbers are
Rejected (`NOT_QUEUED`) with Cellcast's own words (`msg`, and any per-number reason the reply carries); counts that
do not say which numbers were queued make every number Unknown. Errors are 4xx with a status word (`AUTH_FAILED`,
`FIELD_INVALID`, `OVER_LIMIT` with HTTP 429 above 15 calls/s), read from the body before the HTTP status; the
error body's shape is unconfirmed, so the word is looked for in `meta.status`, `error.code`, `status` and `code`.
Cellcast honours no idempotency key: after the request may have arrived, trouble is Unknown.

`schedule_time` is `YYYY-MM-DD HH:MM:SS`; the page does not name its zone, so it is written in `options.timezone`
(default Australia/Sydney, Cellcast's home; unconfirmed).

Delivery receipts (providers/receipts.py): `GET get-sms?message_id=` per message (`data: [{…, "status"}]`), and the
DLR callback's JSON array `[{message_id, status, recipient, custom_string}]`. Cellcast's statuses: `Delivered` is
delivered; `Aborted`, `Rejected`, `Failed` and `Expired` are final failures; `Queued` and `Dispatched` are not final;
`Unknown` ("no DLR received") and any other word stay PENDING, so the receipts window decides.

SMS replies (issue 17, `cellcast_replies.py` says what is confirmed and what is assumed): `GET get-responses`
(page 1, `type=sms`; each reply's `original_message_id` is the provider id of the SMS it answers), marked read
with `inbound-read-bulk` after the spool kept them, and the inbound webhook (`parse_reply_push`) on the same
`/receipts/<name>/<token>` URL as the DLR callback.

Config `options`: auth ("appkey" | "basic"), timezone, source, custom_string.

This module must never log, and never put the key or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import (
    Account,
    Balance,
    Batch,
    DeliveryState,
    InboundSms,
    Receipt,
    ReceiptQuery,
    Rejected,
    Result,
    Retry,
    Sent,
    Unknown,
)
from mail2sms.providers import cellcast_replies, inbound, receipts, wire
from mail2sms.providers.base import Limits, account_for, http_status_result, retry_after
from mail2sms.providers.explain import explain, explained
from mail2sms.providers.quote import quote
from mail2sms.providers.quote import said as quote_said
from mail2sms.providers.registry import ProviderSpec, register
from mail2sms.providers.replies import ReplyPage, ReplySupport

TYPE = "cellcast"

# Its codes in plain words (explain.py falls back to its generic table): mailed to the sender, so written for a
# person who has never read the API document, and never carrying a secret.
EXPLAIN: Mapping[str, str] = {
    "SUCCESS": "Cellcast queued the SMS for sending",
    "AUTH_FAILED": "Cellcast did not accept the API key (APPKEY): check the key in the provider settings",
    "FIELD_INVALID": "Cellcast refused a field of the request as invalid (a number, the sender ID, the text or the "
    "scheduled time): check them, then resend",
    "OVER_LIMIT": "more than the allowed requests per second reached Cellcast (15 per second), so it did not take "
    "the message: mail2sms tries again after the wait Cellcast asks for",
    "NOT_QUEUED": "Cellcast answered the request but did not queue a message for this number, so it was not "
    "sent (Cellcast sends to Australian mobile numbers, +61 4…): check the number",
    "PARTLY_QUEUED": "Cellcast said it queued only some of the request's numbers without saying which, so "
    "mail2sms cannot tell whether this number's SMS was sent: check the Cellcast account's message log before "
    "resending",
    "UNEXPECTED": "Cellcast's reply was not one mail2sms understands, so it cannot tell whether the SMS was sent: "
    "check the Cellcast account's message log before resending",
    "NUMBER": "the number cannot be sent through Cellcast: write it in international form (e.g. +61400000000)",
}
MAX_RECIPIENTS = 1000
DEFAULT_RATE = 15.0  # "15 calls per sec" per account
SCHEDULE_DAYS = 365  # the page gives no horizon; a year is what the other providers allow (unconfirmed)
DEFAULT_TIMEZONE = "Australia/Sydney"
SCHEDULE_NOW = 60.0
SUCCESS = "SUCCESS"
OVER_LIMIT = "OVER_LIMIT"
ERROR_WORDS = frozenset({"AUTH_FAILED", "FIELD_INVALID", OVER_LIMIT})  # the documented ones
NOT_QUEUED = "NOT_QUEUED"
PARTLY_QUEUED = "PARTLY_QUEUED"
_WORD = re.compile(r"^[A-Z][A-Z_]{2,40}$")
_REFUSAL = re.compile(r"FAIL|ERROR|INVALID|INSUFFICIENT|DENIED|REJECT|FORBIDDEN|UNAUTHORI[SZ]ED|BLOCKED|LIMIT")
_NUMBER_KEYS = ("number", "to", "recipient", "mobile", "phone", "msisdn")
_REASON_KEYS = ("reason", "error", "message", "msg", "description", "status")
_DIGITS = re.compile(r"\D")

RECEIPTS = receipts.ReceiptSupport(poll=True, push=True, max_ids=1)  # get-sms takes one message_id
REPLIES = ReplySupport(poll=True, push=True)  # get-responses (paged) and the inbound webhook
SEEN_MAX = 10_000  # reply ids remembered by one adapter, to tell a list that keeps read replies from a new page
# Cellcast's delivery statuses (its DLR documentation), lower-cased, with what each means for the sender.
DLR_STATES: Mapping[str, tuple[DeliveryState, str]] = {
    "delivered": (DeliveryState.DELIVERED, "Cellcast reports the SMS delivered to the phone"),
    "queued": (DeliveryState.PENDING, "Cellcast has the SMS queued, not yet sent to the network"),
    "dispatched": (DeliveryState.PENDING, "Cellcast handed the SMS to the network; no delivery report yet"),
    "aborted": (DeliveryState.UNDELIVERED, "Cellcast aborted the SMS before it reached the network"),
    "rejected": (DeliveryState.UNDELIVERED, "the network rejected the SMS"),
    "failed": (DeliveryState.UNDELIVERED, "Cellcast reports the SMS failed: the number may be wrong or unreachable"),
    "expired": (DeliveryState.UNDELIVERED, "the SMS expired before it could be delivered (the phone may be off)"),
    "unknown": (DeliveryState.PENDING, "Cellcast has no delivery report for the SMS (none came from the network)"),
}

OPTIONS: dict[str, wire.Check] = {
    "auth": wire.one_of("appkey", "basic"),
    "timezone": wire.timezone_name,
    "source": wire.text(50, r"[A-Za-z0-9-]+", "letters, digits and dashes"),
    "custom_string": wire.text(100, r"[A-Za-z0-9-]+", "letters, digits and dashes"),
}


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def status_word(data: Any) -> str | None:
    """The status word of a reply, wherever this reply keeps it (`meta.status` is the confirmed place)."""
    for path in (("meta", "status"), ("error", "code"), ("error", "status"), ("status",), ("code",), ("meta", "code")):
        value = _get(data, *path)
        if isinstance(value, str) and _WORD.match(value.strip().upper()):
            return value.strip().upper()
    return None


def _digits(value: Any) -> str:
    return _DIGITS.sub("", str(value or ""))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def per_number_reasons(data: Any) -> dict[str, str]:
    """Reasons Cellcast gives for single numbers, by digits, wherever `data` lists them (shape unconfirmed).

    Looks at every list in `data` other than `messages` (entries such as `{"number": …, "reason": …}`, or bare
    numbers, whose reason is then the list's name) and every mapping of numbers to texts.
    """
    block = _get(data, "data")
    found: dict[str, str] = {}
    if not isinstance(block, Mapping):
        return found
    for name, value in block.items():
        if name == "messages":
            continue
        entries = value if isinstance(value, list) else [value] if isinstance(value, Mapping) else []
        for entry in entries:
            if isinstance(entry, Mapping):
                number = next((_digits(entry[k]) for k in _NUMBER_KEYS if entry.get(k)), "")
                reason = next((str(entry[k]) for k in _REASON_KEYS if isinstance(entry.get(k), str)), str(name))
                if len(number) >= 7:
                    found[number] = reason
                else:  # {"+61400000000": "Invalid number"}
                    found.update(
                        {_digits(k): v for k, v in entry.items() if isinstance(v, str) and len(_digits(k)) >= 7}
                    )
            elif isinstance(entry, str | int) and not isinstance(entry, bool) and len(_digits(entry)) >= 7:
                found[_digits(entry)] = str(name)
    return found


def _match(number: str, by_number: Mapping[str, Any]) -> str | None:
    """The key of `by_number` for `number`: same digits, else the one key whose last 9 digits are the same."""
    if number in by_number:
        return number
    tail = [to for to in by_number if len(to) >= 9 and to[-9:] == number[-9:]]
    return tail[0] if len(tail) == 1 else None


def success_results(data: Any, numbers: list[str], said: str = "") -> list[Result]:
    """One Result per number from a `SUCCESS` reply: Sent only for what the reply shows as queued.

    A number is accepted when it appears in `data.messages` (matched by `to`), or, when the reply carries no
    messages at all, when `success_number == total_numbers`. Cellcast answers `SUCCESS` with `messages: []` and
    `success_number: 0` for numbers it will not send to (providers.md): those are refused, never sent.
    """
    messages = _get(data, "data", "messages")
    listed = [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else None
    total, queued = _int(_get(data, "data", "total_numbers")), _int(_get(data, "data", "success_number"))
    reasons = per_number_reasons(data)

    def refused(number: str) -> Rejected:
        key = _match(number, reasons)
        words = said + (f'; for this number: "{quote(reasons[key])}"' if key is not None else "")
        return Rejected(code=NOT_QUEUED, why=explain(TYPE, NOT_QUEUED) + words)

    if listed:
        by_number = {_digits(m.get("to")): m.get("message_id") for m in listed if _digits(m.get("to"))}
        if not by_number:  # entries without `to`: only a full, one-to-one list can be read by position
            if len(listed) == len(numbers) and queued in (None, len(numbers)):
                return [Sent(provider_id=_id(m.get("message_id"))) for m in listed]
            return [Unknown(code=PARTLY_QUEUED, why=explain(TYPE, PARTLY_QUEUED) + said)] * len(numbers)
        matched = [_match(n, by_number) for n in numbers]
        taken = sum(m is not None for m in matched)
        detail = None if taken == len(numbers) else f"Cellcast queued {taken} of the {len(numbers)} numbers sent"
        return [
            Sent(provider_id=_id(by_number[m]), detail=detail) if m is not None else refused(n)
            for n, m in zip(numbers, matched, strict=True)
        ]
    if queued == 0 or (listed == [] and queued is None):
        return [refused(n) for n in numbers]
    if listed is None and queued is not None and queued == total:
        return [Sent(provider_id=None)] * len(numbers)
    if queued is not None and total is not None:  # some queued, no telling which (or an empty list says none)
        return [Unknown(code=PARTLY_QUEUED, why=explain(TYPE, PARTLY_QUEUED) + said)] * len(numbers)
    return [Unknown(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED") + said)] * len(numbers)


def _id(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _words(data: Any) -> list[Any]:
    """What the reply says in words: `msg`, `message`, and the error block's description."""
    return [
        _get(data, *path)
        for path in (("msg",), ("message",), ("error", "description"), ("error", "message"), ("meta", "message"))
    ]


def reply_result(
    status: int, body: str, numbers: list[str], retry_wait: float | None = None, secrets: Iterable[str] = ()
) -> list[Result]:
    """One Result per number from a reply that is not a plain transport or 5xx failure.

    The body is read before the HTTP status: a 4xx names its reason in `meta.status` (or `error.code`).
    """
    count = len(numbers)
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    word = status_word(data)
    said = quote_said("Cellcast", *[w for w in _words(data) if isinstance(w, str)], secrets=secrets)
    if data is None and body.strip():
        said = quote_said("Cellcast", body, secrets=secrets)
    if status == 429 or word == OVER_LIMIT:
        code = OVER_LIMIT if word == OVER_LIMIT else "HTTP429"
        return [Retry(code=code, why=explain(TYPE, code), after=retry_wait)] * count
    if 200 <= status < 300:
        if word == SUCCESS or (word is None and isinstance(_get(data, "data", "messages"), list)):
            return success_results(data, numbers, said)
        if word is not None and (word in ERROR_WORDS or _REFUSAL.search(word)):
            return [Rejected(code=word, why=explain(TYPE, word) + said)] * count
        # A 2xx without SUCCESS and without a word that says no: nobody can tell what happened.
        return [Unknown(code=word or "UNEXPECTED", why=explain(TYPE, "UNEXPECTED") + said)] * count
    code = word if word is not None and word != SUCCESS else f"HTTP{status}"
    return [Rejected(code=code, why=explain(TYPE, code) + said)] * count


def dlr_receipt(entry: Any, provider_id: str | None = None, number: str | None = None) -> Receipt | None:
    """The Receipt one status object says (`message_id`, `status`, `recipient`/`to`); None without an id."""
    if not isinstance(entry, Mapping):
        return None
    pid = receipts.text_id(entry.get("message_id")) or provider_id
    if pid is None:
        return None
    word = str(entry.get("status") or "").strip()
    to = receipts.digits(entry.get("recipient")) or receipts.digits(entry.get("to")) or number
    state, why = DLR_STATES.get(word.lower(), (DeliveryState.PENDING, ""))
    if not why:
        why = "Cellcast's delivery status is not one it documents" + quote_said("Cellcast", word)
    return Receipt(pid, to, state, quote(word)[:40] or "EMPTY", why)


def receipt_push(method: str, query: str, body: bytes, content_type: str) -> list[Receipt]:
    """The receipts in one DLR callback (a JSON array of status objects, or one); [] when unreadable or too big.

    An inbound SMS posted to the same URL (`from` and `body`, no `status`) is a reply, not a receipt: skipped."""
    entries = [e for e in receipts.push_json(body) or [] if "status" in e or not ({"from", "body"} & set(e))]
    found = [dlr_receipt(entry) for entry in entries]
    return [r for r in found if r is not None]


def get_sms_receipt(data: Any, item: ReceiptQuery) -> Receipt:
    """The Receipt a `get-sms` answer (`data`: a list of records, or one) means for `item`."""
    records = _get(data, "data")
    entries = records if isinstance(records, list) else [records] if isinstance(records, Mapping) else []
    mine = [e for e in entries if isinstance(e, Mapping) and str(e.get("message_id") or item.provider_id).strip()
            == item.provider_id]
    receipt = dlr_receipt(mine[0], item.provider_id, item.number) if len(mine) == 1 else None
    if receipt is None:
        return receipts.pending(item, "UNEXPECTED", "Cellcast's answer to the status request carried no status for "
                                "this message; mail2sms asks again later")
    return Receipt(item.provider_id, item.number, receipt.state, receipt.code, receipt.why)


class CellcastProvider:
    """Cellcast over its REST API v3 (JSON)."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.options = wire.read_options(name, config.options, OPTIONS)
        self._zone: tzinfo = self.options.get("timezone") or wire.zone(DEFAULT_TIMEZONE)
        self.limits = Limits(
            max_recipients=min(MAX_RECIPIENTS, config.max_recipients or MAX_RECIPIENTS),
            rate=config.rate or DEFAULT_RATE,
            idempotent=False,
            schedule_days=SCHEDULE_DAYS,
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        self.receipts = RECEIPTS
        self.replies = REPLIES
        self._seen: dict[str, None] = {}  # reply ids already handed out, oldest first (an ordered, bounded set)

    def _auth(self, account: Account) -> tuple[dict[str, str], httpx.BasicAuth | None]:
        key = account.key or account.password  # a key given in a mail body arrives as its password
        if self.options.get("auth") == "basic":
            user = account.username or key
            return {}, httpx.BasicAuth(user, key if account.username else "")
        return {"APPKEY": key}, None

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `send-sms` request for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(batch, TYPE, lambda _jobs, numbers: self._send(batch, numbers))

    def payload(self, batch: Batch, numbers: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"sms_text": batch.text, "numbers": [f"+{n}" for n in numbers]}
        sender = batch.sender or self.config.sender
        if sender:
            body["from"] = sender
        for key in ("source", "custom_string"):
            if key in self.options:
                body[key] = self.options[key]
        if batch.options.sendtime:
            when = datetime.fromisoformat(batch.options.sendtime)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when.timestamp() > time.time() + SCHEDULE_NOW:
                body["schedule_time"] = when.astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S")
        return body

    async def _send(self, batch: Batch, numbers: list[str]) -> list[Result]:
        count = len(numbers)
        account = account_for(self.config, batch.account)
        headers, auth = self._auth(account)
        response = await wire.post(
            TYPE,
            False,
            self.client.post(
                f"{self.config.base_url}send-sms",
                content=json.dumps(self.payload(batch, numbers), ensure_ascii=False).encode("utf-8"),
                headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return [response] * count
        if response.status_code >= 500:
            status = http_status_result(response, idempotent=False) or Unknown(f"HTTP{response.status_code}", "")
            return [explained(TYPE, status)] * count
        body = response.content.decode("utf-8", "replace")
        secrets = account.secrets()
        return reply_result(response.status_code, body, numbers, retry_after(response), secrets)

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """`GET get-sms` per message id; one Receipt per item, in order. Never raises for Cellcast trouble."""
        found = [await self._status(item) for item in items]
        return receipts.masked(found, [s for i in items for s in account_for(self.config, i.account).secrets()])

    async def _status(self, item: ReceiptQuery) -> Receipt:
        headers, auth = self._auth(account_for(self.config, item.account))
        response = await receipts.fetch(
            "Cellcast",
            self.client.get(
                f"{self.config.base_url}get-sms",
                params={"message_id": item.provider_id},
                headers={**headers, "Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return receipts.pending(item, *response)
        try:
            data: Any = json.loads(response.content.decode("utf-8", "replace"))
        except ValueError:
            data = None
        word = status_word(data)
        if not response.is_success or (word is not None and word != SUCCESS):
            code = word if word is not None and word != SUCCESS else f"HTTP{response.status_code}"
            return receipts.pending(item, code, f"Cellcast refused the delivery status request ({code}); mail2sms "
                                    "asks again later")
        return get_sms_receipt(data, item)

    def parse_receipt_push(self, method: str, query: str, body: bytes, content_type: str) -> list[Receipt]:
        """The receipts in one DLR callback (see `receipt_push`)."""
        return receipt_push(method, query, body, content_type)

    # -- replies (issue 17; cellcast_replies.py says what is confirmed and what is assumed) ----------------------
    async def fetch_replies(self, cursor: str | None) -> ReplyPage:
        """Page 1 of `get-responses`: the replies not yet marked read, oldest first (assumed).

        The poller marks each page read (`acknowledge_replies`) after the spool kept it, so page 1 always holds the
        next replies and the cursor is not needed (it is handed back unchanged). `more` says that further pages
        exist and this page brought replies this adapter had not handed out before: a list that keeps read
        replies (the other reading of Cellcast's page) therefore ends the round instead of asking page 1 forever.
        Replies of the provider's own key only (per-user keys given in mail bodies are not polled)."""
        account = account_for(self.config, None)
        headers, auth = self._auth(account)
        response = await inbound.fetch(
            "Cellcast",
            self.client.get(
                f"{self.config.base_url}{cellcast_replies.RESPONSES_PATH}",
                params={"page": "1", "type": "sms"},
                headers={**headers, "Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            ),
        )
        found, number, count = cellcast_replies.responses_page(
            response.status_code, response.content.decode("utf-8", "replace"), self._zone, account.secrets()
        )
        new = [r.provider_ref for r in found if r.provider_ref not in self._seen]
        for ref in new:
            self._seen[ref] = None
        while len(self._seen) > SEEN_MAX:
            del self._seen[next(iter(self._seen))]
        more = bool(new) and number is not None and count is not None and count > number
        return ReplyPage(replies=found, cursor=cursor, more=more)

    async def acknowledge_replies(self, refs: list[str]) -> None:
        """Mark the replies read with `inbound-read-bulk`; one `inbound-read` per id where the bulk call is not
        there (HTTP 404). ReplyFetchError when Cellcast did not confirm: they are fetched again and kept once."""
        account = account_for(self.config, None)
        for start in range(0, len(refs), cellcast_replies.READ_CHUNK):
            chunk = refs[start : start + cellcast_replies.READ_CHUNK]
            status, body = await self._post_read(account, cellcast_replies.READ_BULK_PATH, {"message_id": chunk})
            if status == 404:
                for ref in chunk:
                    one_status, one_body = await self._post_read(
                        account, cellcast_replies.READ_ONE_PATH, {"message_id": ref}
                    )
                    cellcast_replies.read_answer(one_status, one_body, account.secrets())
                continue
            cellcast_replies.read_answer(status, body, account.secrets())

    async def _post_read(self, account: Account, path: str, payload: dict[str, Any]) -> tuple[int, str]:
        headers, auth = self._auth(account)
        response = await inbound.fetch(
            "Cellcast",
            self.client.post(
                f"{self.config.base_url}{path}",
                content=json.dumps(payload).encode("utf-8"),
                headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            ),
        )
        return response.status_code, response.content.decode("utf-8", "replace")

    def parse_reply_push(self, method: str, query: str, body: bytes, content_type: str) -> list[InboundSms]:
        """The replies in one inbound webhook call (see `cellcast_replies.reply_push`)."""
        return cellcast_replies.reply_push(body, self._zone)

    async def balance(self, account: Account | None = None) -> Balance:
        """`data.sms_balance` from `GET account`; ProviderError in plain words when it cannot be read."""
        headers, auth = self._auth(account_for(self.config, account))
        response = await wire.balance_request(
            TYPE,
            self.client.get(
                f"{self.config.base_url}account",
                headers={**headers, "Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            ),
        )
        try:
            data: Any = json.loads(response.content.decode("utf-8", "replace"))
        except ValueError:
            data = None
        word = status_word(data)
        if not response.is_success or (word is not None and word != SUCCESS):
            raise ProviderError(explain(TYPE, word or f"HTTP{response.status_code}"))
        value = _get(data, "data", "sms_balance")
        try:
            credit = float(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            credit = None
        if credit is None:
            raise ProviderError("Cellcast's account reply carried no readable data.sms_balance: check the url")
        return Balance(provider=self.name, credit=credit, detail=f"{credit:g} Cellcast SMS credits")


# What the config and the reports need to know about this provider type (providers/registry.py).
SPEC = register(
    ProviderSpec(
        type=TYPE,
        label="Cellcast",
        build=CellcastProvider,
        urls={"": "https://cellcast.com.au/api/v3/"},
        required={"key": "cellcast needs an API key (key, key_env or key_file)"},
        explain=EXPLAIN,
        receipts=RECEIPTS,
        replies=REPLIES,
    )
)
