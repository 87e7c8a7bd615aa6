"""The Cellcast adapter (Australia): API v3 `send-sms` and `account`, per `providers.md` and the seed.

One batch is one JSON `POST {base_url}send-sms` with `{"sms_text", "numbers": [≤1000 × "+<digits>"], "from"?,
"schedule_time"?}` and the key in the `APPKEY` header (what every client sends), or as HTTP Basic auth when
`options.auth = "basic"` (what the seed page says; user = the configured username, or the key when there is none).
Success is a 2xx whose `meta.status` is `SUCCESS`; each number's `message_id` is found in `data.messages` by its
`to`. Errors are 4xx with a status word (`AUTH_FAILED`, `FIELD_INVALID`, `OVER_LIMIT` with HTTP 429 above 15
calls/s); the error body's shape is unconfirmed, so the word is looked for in `meta.status`, `error.code`,
`status` and `code`. Cellcast honours no idempotency key: after the request may have arrived, trouble is Unknown.

`schedule_time` is `YYYY-MM-DD HH:MM:SS`; the page does not name its zone, so it is written in `options.timezone`
(default Australia/Sydney, Cellcast's home; unconfirmed).

Config `options`: auth ("appkey" | "basic"), timezone, source, custom_string.

This module must never log, and never put the key or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import Account, Balance, Batch, Rejected, Result, Retry, Sent, Unknown
from mail2sms.providers import wire
from mail2sms.providers.base import Limits, account_for, http_status_result, retry_after
from mail2sms.providers.explain import explain, explained

TYPE = "cellcast"
MAX_RECIPIENTS = 1000
DEFAULT_RATE = 15.0  # "15 calls per sec" per account
SCHEDULE_DAYS = 365  # the page gives no horizon; a year is what the other providers allow (unconfirmed)
DEFAULT_TIMEZONE = "Australia/Sydney"
SCHEDULE_NOW = 60.0
SUCCESS = "SUCCESS"
OVER_LIMIT = "OVER_LIMIT"
ERROR_WORDS = frozenset({"AUTH_FAILED", "FIELD_INVALID", OVER_LIMIT})  # the documented ones
_WORD = re.compile(r"^[A-Z][A-Z_]{2,40}$")
_DIGITS = re.compile(r"\D")

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


def success_results(data: Any, numbers: list[str]) -> list[Result]:
    """Sent per number, with the `message_id` of the message whose `to` is that number."""
    messages = _get(data, "data", "messages")
    messages = [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else []
    by_number: dict[str, str | None] = {}
    for m in messages:
        to = _digits(m.get("to"))
        if to:
            by_number.setdefault(to, str(m["message_id"]) if m.get("message_id") else None)
    positional = not by_number and len(messages) == len(numbers)
    total, queued = _get(data, "data", "total_numbers"), _get(data, "data", "success_number")
    all_queued = not messages or (isinstance(total, int) and total == queued) or positional
    results: list[Result] = []
    for i, number in enumerate(numbers):
        found = _match(number, by_number)
        if found is not None:
            results.append(Sent(provider_id=found[1]))
        elif positional:
            pid = messages[i].get("message_id")
            results.append(Sent(provider_id=str(pid) if pid else None))
        elif all_queued:
            results.append(Sent(provider_id=None))
        else:
            results.append(Rejected(code="NOT_QUEUED", why=explain(TYPE, "NOT_QUEUED")))
    return results


def _match(number: str, by_number: dict[str, str | None]) -> tuple[str, str | None] | None:
    """The entry for `number`: same digits, else the one entry whose last 9 digits are the same."""
    if number in by_number:
        return number, by_number[number]
    tail = [(to, pid) for to, pid in by_number.items() if len(to) >= 9 and to[-9:] == number[-9:]]
    return tail[0] if len(tail) == 1 else None


def reply_result(status: int, body: str, numbers: list[str], retry_wait: float | None = None) -> list[Result]:
    """One Result per number from a reply that is not a plain transport or 5xx failure."""
    count = len(numbers)
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    word = status_word(data)
    if status == 429 or word == OVER_LIMIT:
        code = OVER_LIMIT if word == OVER_LIMIT else "HTTP429"
        return [Retry(code=code, why=explain(TYPE, code), after=retry_wait)] * count
    if 200 <= status < 300:
        listed = isinstance(_get(data, "data", "messages"), list)
        if word == SUCCESS or (listed and word not in ERROR_WORDS):
            return success_results(data, numbers)
        if word is not None:
            return [Rejected(code=word, why=explain(TYPE, word))] * count
        return [Unknown(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED"))] * count
    code = word or f"HTTP{status}"
    return [Rejected(code=code, why=explain(TYPE, code))] * count


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
        headers, auth = self._auth(account_for(self.config, batch.account))
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
        return reply_result(response.status_code, body, numbers, retry_after(response))

    async def balance(self, account: Account | None = None) -> Balance:
        """`data.sms_balance` from `GET account`; ProviderError in plain words when it cannot be read."""
        headers, auth = self._auth(account_for(self.config, account))
        try:
            response = await self.client.get(
                f"{self.config.base_url}account",
                headers={**headers, "Accept": "application/json"},
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                timeout=self._timeout,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise ProviderError(explain(TYPE, "URL")) from None
        except httpx.HTTPError as exc:
            raise ProviderError(wire.balance_failure("Cellcast", exc)) from None
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
