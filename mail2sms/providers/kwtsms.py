"""The KwtSMS adapter (Kuwait): the HTTP text API of `providers.md` and the seed `kwtsms-http-smtp-api.txt`.

One batch is one POST to `{base_url}send/` with `username, password, sender, mobile, lang, message`; the
reply `OK:<msg-id>:<numbers>:<points>:<balance>:<unix-time>` means every number was taken, anything else is a
failure whose `ERR\\d{3}` code (text or JSON API shape) says which. KwtSMS honours no idempotency key, so only
the codes that say the request was not processed (ERR013 queue full, ERR028 same number within 15 s) are
retried. KwtSMS cannot schedule or send flash SMS: mail2sms holds scheduled jobs itself.

Config `options`: max_parts (a page limit below KwtSMS's 6).

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import Account, Balance, Batch, Rejected, Result, Retry, Sent
from mail2sms.parse.text import is_gsm7
from mail2sms.providers import wire
from mail2sms.providers.base import Limits, account_for
from mail2sms.providers.explain import explain
from mail2sms.providers.wire import Check, integer, read_options

TYPE = "kwtsms"
MAX_RECIPIENTS = 200
DEFAULT_RATE = 2.0  # KwtSMS blocks an IP above 5 requests/s and recommends 2
MAX_PARTS = 6
OPTIONS: dict[str, Check] = {"max_parts": integer(1, MAX_PARTS)}  # a stricter page limit, if wanted

LANG_ENGLISH, LANG_ARABIC_CP1256, LANG_ARABIC_UTF8, LANG_UNICODE = 1, 2, 3, 4

# Codes that mean KwtSMS did not process the request, so repeating it cannot send twice.
RETRY_AFTER: dict[str, float | None] = {"ERR013": None, "ERR028": 15.0}

_CODE = re.compile(r"ERR\d{3}")
_BALANCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")


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


def reply_result(body: str, count: int) -> list[Result]:
    """One Result per number from a 2xx reply body of `send/` (text API, or the JSON API tolerated)."""
    text = body.strip()
    fields: list[str] | None = None
    code: str | None = None
    if text.startswith("{"):
        fields, code = _json_reply(text)
    elif text.upper().startswith("OK:") or text.upper() == "OK":
        fields = text.split(":")
    else:
        m = _CODE.search(text)
        code = m.group(0) if m else None
    if fields is not None:
        msg_id = fields[1].strip() if len(fields) > 1 and fields[1].strip() else None
        return [Sent(provider_id=msg_id, detail=_sent_detail(fields, count))] * count
    return [_failure(code)] * count


def _json_reply(text: str) -> tuple[list[str] | None, str | None]:
    """The JSON API's `{"result": "OK", ...}` as text-API fields, or its error code."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and str(data.get("result", "")).upper() == "OK":
        keys = ("msg-id", "numbers", "points-charged", "balance-after", "unix-timestamp")
        return ["OK", *(str(data.get(k, "")) for k in keys)], None
    source = str(data.get("code", "")) if isinstance(data, dict) else ""
    m = _CODE.search(source) or _CODE.search(text)
    return None, m.group(0) if m else None


def _sent_detail(fields: list[str], count: int) -> str | None:
    if len(fields) < 5:
        return None
    numbers, points, balance = fields[2].strip(), fields[3].strip(), fields[4].strip()
    return f"KwtSMS took {numbers} of {count} number(s), charged {points} point(s); balance after {balance}"


def _failure(code: str | None) -> Result:
    if code is None:
        return Rejected(code="ERROR", why=explain(TYPE, "ERROR"))
    if code in RETRY_AFTER:
        return Retry(code=code, why=explain(TYPE, code), after=RETRY_AFTER[code])
    return Rejected(code=code, why=explain(TYPE, code))


def _fmt(value: float) -> str:
    return f"{value:g}"


class KwtSmsProvider:
    """KwtSMS over its HTTP text API (POST form)."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.options = read_options(name, config.options, OPTIONS)
        self.limits = Limits(
            max_recipients=min(MAX_RECIPIENTS, config.max_recipients or MAX_RECIPIENTS),
            max_parts=int(self.options.get("max_parts", MAX_PARTS)),
            rate=config.rate or DEFAULT_RATE,
            idempotent=False,
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `send/` request for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(batch, TYPE, lambda _jobs, numbers: self._send(batch, numbers))

    async def _send(self, batch: Batch, numbers: list[str]) -> list[Result]:
        account = account_for(self.config, batch.account)
        lang = choose_lang(batch)
        params = [("username", account.username), ("password", account.password)]
        sender = batch.sender or self.config.sender
        if sender:
            params.append(("sender", sender))
        params += [("mobile", ",".join(numbers)), ("lang", str(lang)), ("message", batch.text)]
        try:
            body = form_body(params, lang)
        except UnicodeEncodeError:
            return [Rejected(code="CP1256", why=explain(TYPE, "CP1256"))] * len(numbers)
        response = await wire.post(
            TYPE,
            False,
            self.client.post(
                f"{self.config.base_url}send/",
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return [response] * len(numbers)
        status = wire.status_problem(TYPE, response, idempotent=False)
        if status is not None:
            return [status] * len(numbers)
        return reply_result(response.content.decode("utf-8", "replace"), len(numbers))

    async def balance(self, account: Account | None = None) -> Balance:
        """Available credit from `balance/`; raises ProviderError (in plain words) when it cannot be read."""
        creds = account_for(self.config, account)
        text = await self._post_text("balance/", [("username", creds.username), ("password", creds.password)])
        available, purchased = _parse_balance(text)
        detail = f"available {_fmt(available)}"
        if purchased is not None:
            detail += f" of {_fmt(purchased)} purchased"
        return Balance(provider=self.name, credit=available, detail=detail)

    async def _post_text(self, path: str, params: list[tuple[str, str]]) -> str:
        try:
            response = await self.client.post(
                f"{self.config.base_url}{path}",
                content=form_body(params, LANG_ENGLISH),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self._timeout,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise ProviderError(explain(TYPE, "URL")) from None
        except httpx.HTTPError as exc:
            raise ProviderError(explain(TYPE, type(exc).__name__)) from None
        if not response.is_success:
            raise ProviderError(explain(TYPE, f"HTTP{response.status_code}"))
        return response.content.decode("utf-8", "replace")


def _parse_balance(text: str) -> tuple[float, float | None]:
    """`181/377`, `181.00/1000.00`, or the JSON API's `{"result":"OK","available":..,"purchased":..}`."""
    m = _BALANCE.match(text)
    if m:
        return float(m.group(1)), float(m.group(2))
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data: Any = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict) and str(data.get("result", "")).upper() == "OK":
            try:
                available = float(data["available"])
                purchased = float(data["purchased"]) if "purchased" in data else None
            except (KeyError, TypeError, ValueError):
                pass
            else:
                return available, purchased
    code = _CODE.search(stripped)
    raise ProviderError(explain(TYPE, code.group(0) if code else "UNEXPECTED"))
