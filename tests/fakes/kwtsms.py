"""A stateful fake of KwtSMS's HTTP API (`send/`, `balance/`, `senderid/`), as `docs/providers.md` has it.

It keeps accounts (password, balance, purchased), the account's sender IDs, and every SMS it "sent"; it checks
each request the way KwtSMS does and answers with the documented codes, so an adapter that sends the wrong
thing gets the error KwtSMS would give. The exact text of an error line is unconfirmed, so `style` picks one:
`"text"` → `ERROR:ERR003` (default), `"bare"` → `ERR003`, `"json"` → the JSON API's objects (success too).

It must never accept a request KwtSMS would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Literal

from tests.fakes.server import FakeProvider, RecordedRequest, Reply

Style = Literal["text", "bare", "json"]

DESCRIPTIONS = {
    "ERR001": "API is disabled",
    "ERR002": "A required parameter is missing",
    "ERR003": "Wrong API username or password",
    "ERR004": "This account has no API access",
    "ERR005": "This account is blocked",
    "ERR006": "No valid phone numbers",
    "ERR007": "Too many numbers (more than 200)",
    "ERR008": "This sender id is banned or unknown",
    "ERR009": "Empty message",
    "ERR010": "Zero balance",
    "ERR011": "Insufficient balance",
    "ERR012": "Message is too long (more than 6 pages)",
    "ERR013": "Send queue is full, try later",
    "ERR024": "IP address is not whitelisted",
    "ERR025": "Invalid phone number",
    "ERR026": "Country is not activated",
    "ERR027": "HTML tags are not allowed in the message",
    "ERR028": "Wait 15 seconds before sending to the same number again",
    "ERR031": "Bad language",
    "ERR032": "Message detected as spam",
    "ERR033": "No coverage for this number",
}
REQUIRED = ("username", "password", "sender", "mobile", "lang", "message")
LANG_CHARSET = {"2": "cp1256"}  # lang 2 = Arabic in Windows-1256 bytes; the others are UTF-8
_HTML = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")


@dataclass
class KwtAccount:
    password: str
    balance: float
    purchased: float


@dataclass(frozen=True)
class KwtSent:
    """One SMS the fake accepted, as KwtSMS would have sent it to the phone."""

    msg_id: str
    username: str
    number: str
    text: str
    sender: str
    lang: int
    pages: int


_DOUBLE = frozenset("^{}\\[~]|€\f")  # GSM 03.38 extension table: an escape plus the character


def pages(message: str, lang: str) -> int:
    """SMS pages: 160/153 septets for English (extension characters count two), 70/67 for Arabic and Unicode.

    Counted here independently of mail2sms's own code, as KwtSMS would count them."""
    single, multi = (160, 153) if lang == "1" else (70, 67)
    size = sum(2 if ch in _DOUBLE else 1 for ch in message) if lang == "1" else len(message.encode("utf-16-le")) // 2
    return 1 if size <= single else math.ceil(size / multi)


def _valid_number(number: str) -> bool:
    return number.isascii() and number.isdigit() and not number.startswith("00") and 7 <= len(number) <= 15


def _num(value: float) -> str:
    return f"{value:g}"


class FakeKwtSms(FakeProvider):
    """KwtSMS at `http://127.0.0.1:PORT/API/`."""

    base_path = "/API/"

    def __init__(
        self,
        accounts: dict[str, tuple[str, float]] | None = None,
        senders: tuple[str, ...] | list[str] = ("KWT-MESSAGE",),
        style: Style = "text",
        same_number_interval: float = 15.0,
        balance_decimals: bool = False,
    ) -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100.0)}
        self.accounts = {u: KwtAccount(p, float(b), float(b)) for u, (p, b) in given.items()}
        self.senders = list(senders)
        self.style: Style = style
        self.same_number_interval = same_number_interval
        self.balance_decimals = balance_decimals
        self.sent: list[KwtSent] = []
        self._last_sent: dict[str, float] = {}
        self._forced: deque[str] = deque()

    def force_error(self, *codes: str) -> None:
        """Answer the next `send/` requests with these codes (after the parameter and login checks)."""
        with self._lock:
            self._forced.extend(codes)

    def balance_of(self, username: str) -> float:
        with self._lock:
            return self.accounts[username].balance

    # -- the API ----------------------------------------------------------------------------------
    def form_charset(self, raw: dict[str, list[bytes]]) -> str:
        lang = raw.get("lang", [b""])[0].decode("ascii", "replace").strip()
        return LANG_CHARSET.get(lang, "utf-8")

    def handle(self, request: RecordedRequest) -> Reply:
        endpoints = {"send/": self._send, "balance/": self._balance, "senderid/": self._senderid}
        path = request.path.removeprefix(self.base_path)
        if not request.path.startswith(self.base_path) or path not in endpoints:
            return Reply(404, "Not Found")
        if request.method != "POST":
            return Reply(405, "Method Not Allowed", headers={"Allow": "POST"})
        return endpoints[path](request)

    def _error(self, code: str) -> Reply:
        if self.style == "json":
            body = json.dumps({"result": "ERROR", "code": code, "description": DESCRIPTIONS.get(code, "")})
            return Reply(200, body, content_type="application/json")
        return Reply(200, code if self.style == "bare" else f"ERROR:{code}")

    def _login(self, request: RecordedRequest) -> KwtAccount | None:
        account = self.accounts.get(request.param("username") or "")
        if account is None or account.password != request.param("password"):
            return None
        return account

    def _send(self, request: RecordedRequest) -> Reply:
        p = {k: request.param(k) for k in REQUIRED}
        if any(v is None for v in p.values()) or not p["username"] or not p["password"] or not p["sender"]:
            return self._error("ERR002")
        account = self._login(request)
        if account is None:
            return self._error("ERR003")
        if self._forced:
            return self._error(self._forced.popleft())
        sender, mobile, lang, message = str(p["sender"]), str(p["mobile"]), str(p["lang"]), str(p["message"])
        if sender not in self.senders:  # sender ids are case-sensitive
            return self._error("ERR008")
        if not message.strip():
            return self._error("ERR009")
        if lang not in ("1", "2", "3", "4"):
            return self._error("ERR031")
        numbers = [n for n in mobile.split(",") if n != ""]
        if len(numbers) > 200:
            return self._error("ERR007")
        valid = [n for n in numbers if _valid_number(n)]
        if not valid:
            return self._error("ERR006")
        if len(valid) != len(numbers):
            return self._error("ERR025")
        if _HTML.search(message):
            return self._error("ERR027")
        n_pages = pages(message, lang)
        if n_pages > 6:
            return self._error("ERR012")
        now = time.time()
        if any(now - self._last_sent.get(n, -math.inf) < self.same_number_interval for n in numbers):
            return self._error("ERR028")
        points = n_pages * len(numbers)
        if account.balance <= 0:
            return self._error("ERR010")
        if points > account.balance:
            return self._error("ERR011")
        account.balance -= points
        msg_id = uuid.uuid4().hex
        for number in numbers:
            self._last_sent[number] = now
            self.sent.append(KwtSent(msg_id, str(p["username"]), number, message, sender, int(lang), n_pages))
        if self.style == "json":
            return Reply(
                200,
                json.dumps(
                    {
                        "result": "OK",
                        "msg-id": msg_id,
                        "numbers": len(numbers),
                        "points-charged": points,
                        "balance-after": account.balance,
                        "unix-timestamp": int(now),
                    }
                ),
                content_type="application/json",
            )
        return Reply(200, f"OK:{msg_id}:{len(numbers)}:{points}:{_num(account.balance)}:{int(now)}")

    def _balance(self, request: RecordedRequest) -> Reply:
        account = self._login(request)
        if account is None:
            return self._error("ERR003")
        if self.style == "json":
            body = {"result": "OK", "available": account.balance, "purchased": account.purchased}
            return Reply(200, json.dumps(body), content_type="application/json")
        if self.balance_decimals:
            return Reply(200, f"{account.balance:.2f}/{account.purchased:.2f}")
        return Reply(200, f"{_num(account.balance)}/{_num(account.purchased)}")

    def _senderid(self, request: RecordedRequest) -> Reply:
        if self._login(request) is None:
            return self._error("ERR003")
        if self.style == "json":
            return Reply(
                200, json.dumps({"result": "OK", "senderid": self.senders}), content_type="application/json"
            )
        return Reply(200, "\n".join(self.senders))
