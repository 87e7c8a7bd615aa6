"""The KoboMobile adapter (Nigeria): `send/` and `credit/` of the seed `kobomobile-http-api.txt` and `providers.md`.

One batch is one POST form (URL-encoded, UTF-8) to `{base_url}send/` with `user, pass, from, to` (comma list of
international digits without +, at most 500), `msg` (at most 905 characters), `type` (0 normal, 1 flash, 2
Unicode), `enable_msg_id=1` and `message_uuid`, KoboMobile's idempotency key: derived from the sorted
idempotency keys of the batch's jobs (see `providers.idempotency`), so the same batch asked again is not sent
twice and ambiguous failures are retried.

Replies are JSON whose exact shape nobody has published: a bare JSON string or an object (possibly nested).
The adapter looks through every string in it for a documented status word (`sent`, `error_param`,
`error_credit`, `error_billing`, `error_gw`, `error_user`, `error_limit`) and for `number,message_id` pairs
joined by `~`. Success comes only from a string that is exactly `sent`, or from pairs (a number without its pair
in a reply that has pairs is Unknown); a `sent` inside prose ("Message not sent") never counts. A generic failure
(`{"status": "error", "message": "Message not sent"}`) is a refusal with KoboMobile's own words; a reply that says
both, or nothing mail2sms recognises, is Unknown ("may have been sent"), never Sent. `error_billing` and
`error_gw` are temporary (retried). The status words may come with a non-200 HTTP status, so a non-2xx body is
read first; only when it carries no word does the HTTP status decide.

`sender` is required (KoboMobile answers `error_param` without `from`): building the adapter without one is a
ConfigError naming `providers.<name>.sender`, so `check-config` reports it.

Delivery receipts (providers/receipts.py): `report/` with `user, pass, msgid`, one id per request (sending carries
`enable_msg_id=1` so the ids come back). Its answer's shape is unconfirmed, so every string in it is read: a
KoboMobile `error_…` word is trouble with the request (PENDING); only a word that clearly says delivered (to the
phone) is DELIVERED and only one that says failed/undelivered/expired/rejected is UNDELIVERED; both at once, or
nothing recognisable, is PENDING. `options.enable_msg_id = false` leaves the ids out and so turns receipts off.

Config `options`: max_chars (KoboMobile's 905 by default), enable_msg_id (default true).

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import (
    Account,
    Balance,
    Batch,
    DeliveryState,
    Receipt,
    ReceiptQuery,
    Rejected,
    Result,
    Retry,
    Sent,
    Unknown,
)
from mail2sms.parse.text import is_gsm7
from mail2sms.providers import receipts, wire
from mail2sms.providers.base import Limits, account_for
from mail2sms.providers.explain import GENERIC, explain, same_key_words
from mail2sms.providers.idempotency import message_uuid
from mail2sms.providers.quote import quote, said
from mail2sms.providers.registry import ProviderSpec, register

TYPE = "kobomobile"

# Its codes in plain words (explain.py falls back to its generic table): mailed to the sender, so written for a
# person who has never read the API document, and never carrying a secret.
EXPLAIN: Mapping[str, str] = {
    "sent": "KoboMobile accepted the SMS for sending",
    "error_param": "KoboMobile says a parameter is missing or incomplete (user, pass, from, to or msg): check the "
    "sender ID, the numbers and the provider settings",
    "error_credit": "the KoboMobile account has not enough credit: top up, then resend",
    "error_billing": "KoboMobile could not debit the account, usually a temporary problem: mail2sms tries again "
    "later with the same message id",
    "error_gw": "KoboMobile's gateway was down, busy or not responding: mail2sms tries again later with the same "
    "message id",
    "error_user": "KoboMobile says the user is invalid or suspended: check the username and password, or contact "
    "KoboMobile",
    "error_limit": "KoboMobile accepts at most 500 numbers per request: lower max_recipients for this provider",
    "UNEXPECTED": "KoboMobile's reply was neither `sent`, nor its message ids, nor one of its error words, so "
    "mail2sms cannot tell whether the SMS was sent: check the KoboMobile account's message log before resending",
    "REFUSED": "KoboMobile answered that the SMS was not sent, without one of its documented error words: read "
    "its own words, correct what they name, then resend",
    "CONFLICT": "KoboMobile's reply says both that the SMS was sent and that it failed, so mail2sms cannot tell "
    "whether it was sent: check the KoboMobile account's message log before resending",
    "NO_ID": "KoboMobile answered with message ids but none for this number, so mail2sms cannot tell whether this "
    "number's SMS was sent: check the KoboMobile account's message log before resending",
    "FLASH_UNICODE": "KoboMobile sends flash SMS only in the plain GSM alphabet, and this text needs Unicode: "
    "leave out the special characters, or send it as a normal SMS",
    "NUMBER": "the number cannot be sent through KoboMobile: write it in international form, digits only "
    "(e.g. 2348030000000)",
    **same_key_words("KoboMobile", "message id"),
}
MAX_RECIPIENTS = 500
MAX_CHARS = 905
DEFAULT_RATE = 5.0
TYPE_NORMAL, TYPE_FLASH, TYPE_UNICODE = "0", "1", "2"

SENT = "sent"
RETRY_WORDS = frozenset({"error_billing", "error_gw"})  # "usually a temporary error", "gateway is down, busy"
FINAL_WORDS = frozenset({"error_param", "error_credit", "error_user", "error_limit"})
_WORD = re.compile(r"(?<![A-Za-z0-9_])(sent|error_[a-z]+)(?![A-Za-z0-9_])", re.IGNORECASE)
_FAILURE = re.compile(r"error|errors|fail|failed|failure|rejected|declined|invalid", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(not\s+sent|fail(?:ed|ure)?|error|invalid|insufficient|denied|rejected|unauthori[sz]ed|suspended|blocked)\b",
    re.IGNORECASE,
)
CONFLICT, NO_ID, REFUSED = "CONFLICT", "NO_ID", "REFUSED"
_PAIR = re.compile(r"^\s*\+?(\d{7,15})\s*,\s*([A-Za-z0-9][A-Za-z0-9-]*)\s*$")
_CREDIT_KEYS = ("credit", "credits", "balance", "sms_balance", "units")
_AMOUNT = re.compile(r"^\s*[^\d\-]{0,4}\s*(-?\d[\d,]*(?:\.\d+)?)\s*[A-Za-z]{0,8}\s*$")

RECEIPTS = receipts.ReceiptSupport(poll=True, push=False, max_ids=1)  # report/ takes one msgid (unconfirmed)
_STATUS_TEXT_MAX = 60  # longer strings are prose, not a status word
_ENVELOPE_WORDS = frozenset({"ok", "success", "successful", "true", "false", "null"})

OPTIONS: dict[str, wire.Check] = {
    "max_chars": wire.integer(1, 100_000),
    "enable_msg_id": wire.flag,
}


def _strings(data: Any) -> list[str]:
    """Every string (and number, as text) in a JSON value, in document order."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, bool) or data is None:
        return []
    if isinstance(data, int | float):
        return [str(data)]
    if isinstance(data, list):
        return [s for item in data for s in _strings(item)]
    if isinstance(data, dict):
        return [s for value in data.values() for s in _strings(value)]
    return []


def _pick(words: list[str]) -> str | None:
    """An error word wins over `sent` (an error reply may still say "sent" somewhere)."""
    errors = [w for w in words if w != SENT]
    return errors[0] if errors else (SENT if words else None)


@dataclass(frozen=True)
class Reading:
    """What a KoboMobile reply says, found wherever its (unconfirmed) JSON keeps it.

    `word`: the documented status word: a string that is exactly `sent` or `error_…`, else an `error_…` inside a
    longer text (never a `sent` inside one: "Message not sent" is not success). `ids`: `number → message id` from
    `number,id` pairs. `failure`: a string that is exactly a generic failure word (`error`, `failed`, …).
    `refusal`: some text says no ("not sent", "failed", "invalid", …). `texts`: every string, for quoting.
    """

    word: str | None
    ids: dict[str, str]
    failure: str | None
    refusal: bool
    texts: list[str]


def read_reply(body: str) -> Reading:
    """Read a reply body: JSON (a bare string, an object, nested) or, tolerantly, plain text."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = body  # not JSON at all: read the text itself, just as tolerantly
    whole: list[str] = []
    inside: list[str] = []
    ids: dict[str, str] = {}
    failure: str | None = None
    refusal = False
    texts = _strings(data)
    for text in texts:
        for piece in text.split("~"):
            m = _PAIR.match(piece)
            if m:
                ids.setdefault(m.group(1), m.group(2))
        stripped = text.strip()
        if _WORD.fullmatch(stripped):
            whole.append(stripped.lower())
        inside += [w.lower() for w in _WORD.findall(text) if w.lower() != SENT]
        if failure is None and _FAILURE.fullmatch(stripped):
            failure = stripped.lower()
        refusal = refusal or bool(_REFUSAL.search(text))
    return Reading(_pick(whole) or _pick(inside), ids, failure, refusal, texts)


def _quoted(reading: Reading, secrets: Iterable[str]) -> str:
    """KoboMobile's own words (its texts other than status words and ids), for the sender to read."""
    prose = [
        t
        for t in reading.texts
        if not _WORD.fullmatch(t.strip()) and not _FAILURE.fullmatch(t.strip()) and not _PAIR.match(t.split("~")[0])
    ]
    return said("KoboMobile", *prose[:3], secrets=secrets)


def reply_result(body: str, numbers: list[str], secrets: Iterable[str] = ()) -> list[Result]:
    """One Result per number from a 2xx `send/` reply; never Sent without `sent` or the number's id."""
    reading = read_reply(body)
    words = _quoted(reading, secrets)
    count = len(numbers)
    word = reading.word
    if word is not None and word != SENT:
        if word in RETRY_WORDS:
            return [Retry(code=word, why=explain(TYPE, word))] * count
        return [Rejected(code=word, why=explain(TYPE, word) + words)] * count  # documented and undocumented
    if word == SENT or reading.ids:
        if reading.failure is not None or reading.refusal:  # "sent" and "failed" in one reply: who knows
            return [Unknown(code=CONFLICT, why=explain(TYPE, CONFLICT) + words)] * count
        if not reading.ids:
            return [Sent(provider_id=None)] * count
        return [
            Sent(provider_id=reading.ids[n])
            if n in reading.ids
            else Unknown(code=NO_ID, why=explain(TYPE, NO_ID) + words)
            for n in numbers
        ]
    if reading.failure is not None or reading.refusal:
        return [Rejected(code=reading.failure or REFUSED, why=explain(TYPE, REFUSED) + words)] * count
    return [Unknown(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED") + words)] * count


def status_reply(body: str, numbers: list[str], status: int, secrets: Iterable[str] = ()) -> list[Result] | None:
    """Results from a non-2xx reply's body when it carries a status word (providers.md: the words may come with a
    non-200 status), else None and the HTTP status decides. `sent` with an error status contradicts itself."""
    reading = read_reply(body)
    if reading.word is not None and reading.word != SENT:
        return reply_result(body, numbers, secrets)
    if reading.word == SENT or reading.ids:
        why = explain(TYPE, CONFLICT) + f" (HTTP {status})" + _quoted(reading, secrets)
        return [Unknown(code=CONFLICT, why=why)] * len(numbers)
    return None


def report_receipt(body: str, item: ReceiptQuery, secrets: Iterable[str] = ()) -> Receipt:
    """The Receipt a `report/` answer means for `item` (any JSON shape, or plain text); PENDING unless a status
    word clearly says delivered or failed, and never when the answer says both."""
    reading = read_reply(body)
    hidden = [s for s in secrets if s]
    if reading.word is not None and reading.word != SENT:
        return receipts.pending(item, reading.word, f"KoboMobile refused the delivery status request: "
                                f"{explain(TYPE, reading.word)}")
    words = [quote(t, hidden) for t in reading.texts if 0 < len(t.strip()) <= _STATUS_TEXT_MAX]
    # The message's own id, numbers and generic envelope words ("ok") are not its status.
    words = [w for w in words if w != item.provider_id and not w.isdigit() and w.lower() not in _ENVELOPE_WORDS]
    states = {w: receipts.classify(w) for w in words}
    final = {s for s in states.values() if s is not DeliveryState.PENDING}
    if len(final) == 1:
        state = final.pop()
        word = next(w for w, s in states.items() if s is state)
        return Receipt(item.provider_id, item.number, state, word[:40], receipts.state_words("KoboMobile", state, word))
    if final:
        return receipts.pending(item, CONFLICT, "KoboMobile's delivery status says both delivered and failed"
                                + _quoted(reading, hidden))
    if words:
        return receipts.pending(item, words[0][:40], receipts.state_words("KoboMobile", DeliveryState.PENDING,
                                                                          words[0]))
    return receipts.pending(item, "UNEXPECTED", "KoboMobile's answer to the delivery status request had no status "
                            "mail2sms recognises; it asks again later" + _quoted(reading, hidden))


def _amount(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _AMOUNT.match(value)
        if m:
            return float(m.group(1).replace(",", ""))
    return None


def _find_credit(data: Any) -> float | None:
    """A credit figure: the value of a credit-like key anywhere, else a bare number or numeric string."""
    direct = _amount(data)
    if direct is not None:
        return direct
    if isinstance(data, dict):
        for key, value in data.items():
            if str(key).lower() in _CREDIT_KEYS:
                found = _find_credit(value)
                if found is not None:
                    return found
        for value in data.values():
            if isinstance(value, dict | list):
                found = _find_credit(value)
                if found is not None:
                    return found
    if isinstance(data, list):
        for item in data:
            found = _find_credit(item)
            if found is not None:
                return found
    return None


def parse_credit(body: str) -> float:
    """The credit in a `credit/` reply (any of the tolerated shapes); ProviderError in plain words otherwise."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = body.strip()
    word = read_reply(body).word
    if word is not None and word != SENT:
        raise ProviderError(explain(TYPE, word))
    credit = _find_credit(data)
    if credit is None:
        raise ProviderError(GENERIC["UNEXPECTED"])
    return credit


class KoboMobileProvider:
    """KoboMobile over its HTTP API (POST form)."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        if not config.sender:  # `from` is required (error_param without it): say so at start, not at send time
            raise ConfigError(
                [
                    f"providers.{name}.sender: KoboMobile requires a sender ID (its `from`): set sender "
                    "to one the KoboMobile account may use (at most 11 letters or 16 digits)"
                ]
            )
        self.options = wire.read_options(name, config.options, OPTIONS)
        self.limits = Limits(
            max_recipients=min(MAX_RECIPIENTS, config.max_recipients or MAX_RECIPIENTS),
            max_chars=int(self.options.get("max_chars", MAX_CHARS)),
            rate=config.rate or DEFAULT_RATE,
            idempotent=True,
            flash=True,
            flash_unicode=False,  # type is one value: 1 flash or 2 Unicode, never both
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        # Without enable_msg_id KoboMobile sends back no ids, and without ids there is nothing to ask about.
        self.receipts = RECEIPTS if self.options.get("enable_msg_id", True) else receipts.ReceiptSupport(poll=False)

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `send/` request for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(
            batch,
            TYPE,
            lambda jobs, numbers: self._send(batch, numbers, message_uuid(j.idempotency_key for j in jobs)),
        )

    def message_type(self, batch: Batch) -> str | None:
        """`type`: 1 flash, 2 Unicode, 0 normal; None when flash is asked for text that needs Unicode."""
        unicode = not is_gsm7(batch.text)
        if batch.options.flash:
            return None if unicode else TYPE_FLASH
        return TYPE_UNICODE if unicode else TYPE_NORMAL

    async def _send(self, batch: Batch, numbers: list[str], key: str | None) -> list[Result]:
        count = len(numbers)
        keyed = key is not None
        kind = self.message_type(batch)
        if kind is None:
            return [Rejected(code="FLASH_UNICODE", why=explain(TYPE, "FLASH_UNICODE"))] * count
        account = account_for(self.config, batch.account)
        secrets = account.secrets()
        params = [("user", account.username), ("pass", account.password)]
        sender = batch.sender or self.config.sender
        if sender:
            params.append(("from", sender))
        params += [("to", ",".join(numbers)), ("msg", batch.text), ("type", kind)]
        if self.options.get("enable_msg_id", True):
            params.append(("enable_msg_id", "1"))
        if key is not None:
            params.append(("message_uuid", key))
        response = await wire.post(
            TYPE,
            keyed,
            self.client.post(
                f"{self.config.base_url}send/",
                content=wire.form_body(params),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return [response] * count
        body = response.content.decode("utf-8", "replace")
        if not response.is_success:  # the body first: KoboMobile's words may come with a non-200 status
            from_body = status_reply(body, numbers, response.status_code, secrets)
            if from_body is not None:
                return from_body
        status = wire.status_problem(TYPE, response, idempotent=keyed)
        if status is not None:
            return [status] * count
        return reply_result(body, numbers, secrets)

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """One `report/` request per message id; one Receipt per item, in order. Never raises for KoboMobile
        trouble."""
        found = [await self._report(item) for item in items]
        return receipts.masked(found, [s for i in items for s in account_for(self.config, i.account).secrets()])

    async def _report(self, item: ReceiptQuery) -> Receipt:
        creds = account_for(self.config, item.account)
        params = [("user", creds.username), ("pass", creds.password), ("msgid", item.provider_id)]
        response = await receipts.fetch(
            "KoboMobile",
            self.client.post(
                f"{self.config.base_url}report/",
                content=wire.form_body(params),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return receipts.pending(item, *response)
        body = response.content.decode("utf-8", "replace")
        if not response.is_success and read_reply(body).word is None:  # the body first, as for send/
            return receipts.pending(item, *receipts.status_words("KoboMobile", response))
        return report_receipt(body, item, creds.secrets())

    async def balance(self, account: Account | None = None) -> Balance:
        """Credit from `credit/`; ProviderError in plain words when it cannot be read."""
        creds = account_for(self.config, account)
        response = await wire.balance_request(
            TYPE,
            self.client.post(
                f"{self.config.base_url}credit/",
                content=wire.form_body([("user", creds.username), ("pass", creds.password)]),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout,
            ),
        )
        if not response.is_success:
            raise ProviderError(explain("", f"HTTP{response.status_code}"))
        credit = parse_credit(response.content.decode("utf-8", "replace"))
        return Balance(provider=self.name, credit=credit, detail=f"{credit:g} KoboMobile credit")


# What the config and the reports need to know about this provider type (providers/registry.py).
SPEC = register(
    ProviderSpec(
        type=TYPE,
        label="KoboMobile",
        build=KoboMobileProvider,
        urls={"": "https://kobomobile.net/api/"},
        explain=EXPLAIN,
        receipts=RECEIPTS,
    )
)
