"""The KwtSMS adapter (Kuwait): its JSON API v4.1 (default) or its legacy HTTP text API, per `providers.md`.

One batch is one POST to `{base_url}send/` with `username, password, sender, mobile, lang, message` (plus
`test=1` when `options.test` is on): a JSON body with `Content-Type: application/json` (`options.api = "json"`),
or the seed's form (`options.api = "text"`). The answer is read by `kwtsms_reply` body first, whatever the HTTP
status (KwtSMS sends ERR024 with a 403), and only an unreadable body falls back to the status. KwtSMS honours
no idempotency key, so only the codes that say the request was not processed are retried: ERR013 (queue full)
after 30 s, doubling per attempt, and ERR028 (same number within 15 s). KwtSMS cannot schedule or send flash
SMS: mail2sms holds scheduled jobs itself.

KwtSMS takes emoji and invisible characters, charges for them and never delivers the SMS, so `fit_text` (the
text-fit hook its `Limits` carry to `parse/fit.py` at DATA) refuses them, or removes them when the route says
`strip_unsupported = true`; it also refuses a `lang` that cannot carry the text.

Delivery receipts (providers/receipts.py) are polled, one request per msg-id, at `options.receipt_path` (`status/`
by default; sources name `status/`, `dlr/` and `report/`, so a 404 tries the others and the one that answers is
kept) with `username, password, msgid`. Only a status word that says delivered (to the phone) is DELIVERED, only one
that says failed/not delivered is UNDELIVERED; ERR021/ERR022 (not ready) and every other answer are PENDING. A
msg-id covers every number of its request: an answer naming numbers is read per number; one word for a msg-id is
applied only when one number is asked about, else it stays PENDING (nobody can tell which number it means).

Config: `sender` is required (KwtSMS answers ERR002 without one). `options`: api ("json" | "text"), test (true:
KwtSMS validates every request and sends nothing; never reported as sent), max_parts (a page limit below 6),
receipt_path ("status/" | "dlr/" | "report/").

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ContentError, ProviderError
from mail2sms.model import Account, Balance, Batch, Receipt, ReceiptQuery, Rejected, Result, Unknown
from mail2sms.parse.text import is_gsm7
from mail2sms.providers import kwtsms_reply as replies
from mail2sms.providers import receipts, textfit, wire
from mail2sms.providers.base import Limits, account_for
from mail2sms.providers.explain import explain
from mail2sms.providers.registry import ProviderSpec, register
from mail2sms.providers.wire import Check, flag, integer, one_of, read_options

TYPE = "kwtsms"
MAX_RECIPIENTS = 200
DEFAULT_RATE = 2.0  # KwtSMS blocks an IP above 5 requests/s and recommends 2
MAX_PARTS = 6
OPTIONS: dict[str, Check] = {
    "api": one_of("json", "text"),
    "test": flag,
    "max_parts": integer(1, MAX_PARTS),  # a stricter page limit, if wanted
    "receipt_path": one_of(*replies.RECEIPT_PATHS),
}
RECEIPTS = receipts.ReceiptSupport(poll=True, push=False, max_ids=1)  # one msgid per request (it may cover 200)

LANG_ENGLISH, LANG_ARABIC_CP1256, LANG_ARABIC_UTF8, LANG_UNICODE = 1, 2, 3, 4

wire_number = wire.international_digits  # the number as the provider wants it: international digits only


def choose_lang(batch: Batch) -> int:
    """The mail's lang when it named one, else 1 (English) for GSM-7 text and 3 (Arabic, UTF-8) otherwise."""
    if batch.options.lang is not None:
        return batch.options.lang
    return LANG_ENGLISH if is_gsm7(batch.text) else LANG_ARABIC_UTF8


def lang_problem(lang: int | None, text: str) -> str | None:
    """Why a `lang` the mail named cannot carry `text` (checked before the 250), or None when it can."""
    if lang == LANG_ENGLISH and not is_gsm7(text):
        ch = next(c for c in text if not is_gsm7(c))
        return (
            f"lang:1 (English) cannot carry {_name(ch)}: leave lang out and mail2sms chooses, or write lang:3 "
            "(Arabic and other Unicode text, UTF-8)"
        )
    if lang == LANG_ARABIC_CP1256:
        for ch in text:
            try:
                ch.encode("cp1256")
            except UnicodeEncodeError:
                return (
                    f"lang:2 sends Windows-1256 bytes, which have no {_name(ch)}: write lang:3 (UTF-8) or "
                    "leave lang out"
                )
    return None


def fit_text(text: str, *, lang: int | None, strip: bool) -> textfit.TextFix:
    """KwtSMS's text rules at DATA (the `textfit.TextHook` of this adapter): emoji and invisible characters are
    refused naming the first one and where it is, or removed when `strip`; then the mail's lang must fit."""
    notes: tuple[str, ...] = ()
    found = textfit.find(text)
    if found:
        if not strip:
            raise ContentError(textfit.refusal(found, "KwtSMS"))
        fixed = textfit.strip(text, found, "KwtSMS")
        if not fixed.text.strip():
            raise ContentError(f"nothing is left of the text once {fixed.notes[0].removeprefix('removed ')}")
        text, notes = fixed.text, fixed.notes
    problem = lang_problem(lang, text)
    if problem is not None:
        raise ContentError(problem)
    return textfit.TextFix(text, notes)


def _name(ch: str) -> str:
    return f"'{ch}' (U+{ord(ch):04X})"


def form_body(params: list[tuple[str, str]], lang: int) -> bytes:
    """URL-encode the form; lang 2 sends the message as Windows-1256 bytes (UnicodeEncodeError if it can't).

    Only the message is re-encoded for lang 2: the other fields are ASCII in practice and stay UTF-8.
    """
    parts = []
    for key, value in params:
        encoding = "cp1256" if key == "message" and lang == LANG_ARABIC_CP1256 else "utf-8"
        parts.append(urlencode([(key, value)], encoding=encoding, errors="strict"))
    return "&".join(parts).encode("ascii")


def reply_results(
    body: str, count: int, attempts: int = 0, test: bool = False, secrets: tuple[str, ...] = ()
) -> list[Result] | None:
    """One Result per number from a `send/` answer body, or None when the body is no KwtSMS answer at all."""
    reply = replies.read(body)
    if reply is None:
        return None
    return replies.send_results(reply, count, attempts, test, secrets)


def _fmt(value: float) -> str:
    """181, 12.5, 1000000: plain digits, never an exponent."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _sender_problem(name: str, config: ProviderConfig) -> str | None:
    if config.sender is None or not config.sender.strip():
        return (
            f"providers.{name}.sender: KwtSMS needs a sender ID on every request (it answers ERR002 without "
            'one): set it to one of the account\'s sender IDs exactly as registered, e.g. "KWT-SMS"'
        )
    return None


class KwtSmsProvider:
    """KwtSMS over its JSON API (default) or its HTTP text API (POST form)."""

    fit_text = staticmethod(fit_text)  # the text-fit hook its Limits carry to parse/fit.py

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        problems: list[str] = []
        try:
            self.options = read_options(name, config.options, OPTIONS)
        except ConfigError as exc:
            problems += exc.problems
        sender = _sender_problem(name, config)
        if sender is not None:
            problems.append(sender)
        self.api: str = self.options.get("api", "json") if not problems else "json"
        self.test: bool = bool(self.options.get("test", False)) if not problems else False
        if self.test and self.api != "json":
            # The legacy text API documents no test mode: an OK there may be a real send, never "validated only".
            problems.append(
                f"providers.{name}.options.test: only the JSON API has a test mode: remove "
                'options.api = "text" or options.test'
            )
        if problems:
            raise ConfigError(problems)
        self.limits = Limits(
            max_recipients=min(MAX_RECIPIENTS, config.max_recipients or MAX_RECIPIENTS),
            max_parts=int(self.options.get("max_parts", MAX_PARTS)),
            rate=config.rate or DEFAULT_RATE,
            idempotent=False,
            fit_text=fit_text,
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        self.receipts = RECEIPTS
        self._receipt_path: str = self.options.get("receipt_path", replies.RECEIPT_PATHS[0])

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `send/` request for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(batch, TYPE, lambda _jobs, numbers: self._send(batch, numbers))

    def _request(self, path: str, params: list[tuple[str, str]], lang: int = LANG_ENGLISH) -> httpx.Request:
        """The POST for `path`: a JSON object (JSON API) or the form (text API; UnicodeEncodeError for lang 2)."""
        url = f"{self.config.base_url}{path}"
        if self.api == "json":
            body = json.dumps(dict(params), ensure_ascii=False).encode("utf-8")
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
        else:
            body = form_body(params, lang)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.client.build_request("POST", url, content=body, headers=headers, timeout=self._timeout)

    async def _send(self, batch: Batch, numbers: list[str]) -> list[Result]:
        account = account_for(self.config, batch.account)
        lang = choose_lang(batch)
        sender = batch.sender or self.config.sender or ""
        params = [
            ("username", account.username),
            ("password", account.password),
            ("sender", sender),
            ("mobile", ",".join(numbers)),
            ("lang", str(lang)),
            ("message", batch.text),
        ]
        if self.test:
            params.append(("test", "1"))
        try:
            request = self._request("send/", params, lang)
        except UnicodeEncodeError:
            return [Rejected(code="CP1256", why=explain(TYPE, "CP1256"))] * len(numbers)
        response = await wire.post(TYPE, False, self.client.send(request))
        if not isinstance(response, httpx.Response):
            return [response] * len(numbers)
        attempts = max(job.attempts for job in batch.jobs)
        body = response.content.decode("utf-8", "replace")
        results = reply_results(body, len(numbers), attempts, self.test, tuple(account.secrets()))
        if results is not None:
            return results  # KwtSMS's own answer wins over the HTTP status (ERR024 comes with a 403)
        status = wire.status_problem(TYPE, response, idempotent=False)
        if status is not None:
            return [status] * len(numbers)
        return [Unknown(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED"))] * len(numbers)

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """One status request per msg-id; one Receipt per item, in order. Never raises for KwtSMS trouble."""
        groups: dict[tuple[str, Account | None], list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault((item.provider_id, item.account), []).append(i)
        out: list[Receipt | None] = [None] * len(items)
        for (msg_id, account), members in groups.items():
            asked = [items[i] for i in members]
            for i, receipt in zip(members, await self._report(msg_id, account, asked), strict=True):
                out[i] = receipt
        return [r for r in out if r is not None]

    async def _report(self, msg_id: str, account: Account | None, items: list[ReceiptQuery]) -> list[Receipt]:
        creds = account_for(self.config, account)
        params = [("username", creds.username), ("password", creds.password), ("msgid", msg_id)]
        paths = [self._receipt_path] + [p for p in replies.RECEIPT_PATHS if p != self._receipt_path]
        for path in paths:
            response = await receipts.fetch("KwtSMS", self.client.send(self._request(path, params)))
            if not isinstance(response, httpx.Response):
                return receipts.for_all(items, *response)
            if response.status_code != 404:
                self._receipt_path = path  # this path answers: keep asking it
                break
        else:
            return receipts.for_all(items, "HTTP404", "KwtSMS has no delivery status address at status/, dlr/ or "
                                    "report/ of the provider's url: check the url")
        body = response.content.decode("utf-8", "replace")
        report = replies.delivery_report(body, msg_id)
        if report.error is not None and not response.is_success and replies.read(body) is None:
            return receipts.for_all(items, *receipts.status_words("KwtSMS", response))
        return receipts.masked(replies.receipts_for(report, items), creds.secrets())

    async def balance(self, account: Account | None = None) -> Balance:
        """Available credit from `balance/`, and the account's sender IDs from `senderid/` in the detail;
        raises ProviderError (in plain words) when the credit cannot be read."""
        creds = account_for(self.config, account)
        login = [("username", creds.username), ("password", creds.password)]
        text = await self._post_text("balance/", login)
        amounts = replies.balance(text)
        if amounts is None:
            reply = replies.read(text)
            code = reply.code if reply is not None and not reply.ok else None
            raise ProviderError(explain(TYPE, code or "UNEXPECTED"))
        available, purchased = amounts
        detail = f"available {_fmt(available)}"
        if purchased is not None:
            detail += f" of {_fmt(purchased)} purchased"
        return Balance(provider=self.name, credit=available, detail=detail + await self._sender_ids(login))

    async def _sender_ids(self, login: list[tuple[str, str]]) -> str:
        """`; sender IDs: A, B` for the balance line (an unreadable list is said, never fatal)."""
        try:
            ids = replies.sender_ids(await self._post_text("senderid/", login))
        except ProviderError:
            ids = None
        if ids is None:
            return "; sender IDs could not be read"
        return "; sender IDs: " + (", ".join(ids) if ids else "none")

    async def _post_text(self, path: str, params: list[tuple[str, str]]) -> str:
        response = await wire.balance_request(TYPE, self.client.send(self._request(path, params)))
        text = response.content.decode("utf-8", "replace")
        if not response.is_success and replies.read(text) is None:
            raise ProviderError(explain(TYPE, f"HTTP{response.status_code}"))
        return text


# What the config and the reports need to know about this provider type (providers/registry.py).
SPEC = register(
    ProviderSpec(
        type=TYPE,
        label="KwtSMS",
        build=KwtSmsProvider,
        urls={"": "https://www.kwtsms.com/API/"},
        explain=replies.EXPLAIN,
        receipts=RECEIPTS,
    )
)
