"""A stateful fake of KwtSMS's HTTP API (`send/`, `balance/`, `senderid/`), as `docs/providers.md` has it.

It keeps accounts (password, balance, purchased), the account's sender IDs, and every SMS it "sent"; it checks
each request the way KwtSMS does and answers with the documented codes, so an adapter that sends the wrong
thing gets the error KwtSMS would give.

Two APIs on the same paths, chosen per request as KwtSMS chooses: a body with `Content-Type: application/json`
is the JSON API v4.1 (JSON answers; `test: 1` validates and sends nothing; errors with HTTP 200, except the
statuses in `json_error_status`, by default 403 for ERR024), anything else falls back to the legacy text API,
whose error line is unconfirmed, so `style` picks one: `"text"` → `ERROR:ERR003` (default), `"bare"` →
`ERR003`, `"json"` → the JSON API's objects (success too).

Field evidence it reproduces: numbers in `drop_prefixes` are dropped silently (the OK answer's `numbers` is
smaller than the numbers sent, and it does not say which); a message with emoji or invisible characters is
accepted and charged but lands in `stuck`, never in `sent` (KwtSMS never delivers it).

Delivery status: sources conflict on the path (`status/`, `dlr/`, `report/`), so `report_paths` picks the ones
this fake serves (the others are 404). Each takes `username, password, msgid` and answers ERR003 (login), ERR020
(no such msg-id) or ERR021 (no report yet, the state after sending) until `set_report(msg_id, word)` gives the
msg-id a status word (`DELIVERED`, `FAILED`, …), or `set_report(msg_id, word, number)` one number's: JSON
`{"result":"OK","msg-id":…,"status":…}` (with `delivered-at` once delivered; per-number words as `"report":
[{"mobile", "status"}]`), text `<msgid>,<word>` (per number: `<number>,<word>` lines).

It must never accept a request KwtSMS would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from tests.fakes.server import FakeProvider, RecordedRequest, Reply, _Handler

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
    "ERR019": "No delivery reports found",
    "ERR020": "Message ID does not exist",
    "ERR021": "No delivery report for this message yet",
    "ERR022": "Delivery reports are not ready, try after 24 hours",
    "ERR023": "Unknown delivery report error",
    "ERR024": "IP address is not whitelisted",
    "ERR025": "Invalid phone number",
    "ERR026": "Country is not activated",
    "ERR027": "HTML tags are not allowed in the message",
    "ERR028": "Wait 15 seconds before sending to the same number again",
    "ERR029": "Message ID is not correct",
    "ERR030": "Message is stuck in the send queue with an error",
    "ERR031": "Bad language",
    "ERR032": "Message detected as spam",
    "ERR033": "No coverage for this number",
}
REQUIRED = ("username", "password", "sender", "mobile", "lang", "message")
LANG_CHARSET = {"2": "cp1256"}  # lang 2 = Arabic in Windows-1256 bytes; the others are UTF-8
_HTML = re.compile(r"<\s*/?\s*[A-Za-z][^>]*>")
# What KwtSMS takes, charges and never delivers (the official SDKs' list, written here independently):
# the emoji and pictograph blocks, tags, symbols and dingbats, variation selectors, zero-width and bidi marks.
_UNDELIVERABLE = re.compile(
    "[\U0001f000-\U0001faff\U000e0000-\U000e007f\u2600-\u27bf\ufe00-\ufe0f\u200b\u200d-\u200f"
    "\u202a-\u202e\u2060\u2066-\u2069\ufeff\u00ad]"
)


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
        drop_prefixes: tuple[str, ...] = (),
        json_error_status: dict[str, int] | None = None,
        report_paths: tuple[str, ...] = ("status/", "dlr/"),
    ) -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100.0)}
        self.accounts = {u: KwtAccount(p, float(b), float(b)) for u, (p, b) in given.items()}
        self.senders = list(senders)
        self.style: Style = style
        self.same_number_interval = same_number_interval
        self.balance_decimals = balance_decimals
        self.drop_prefixes = drop_prefixes
        self.json_error_status = {"ERR024": 403} if json_error_status is None else dict(json_error_status)
        self.sent: list[KwtSent] = []
        self.stuck: list[KwtSent] = []  # accepted and charged, never delivered (emoji, invisible characters)
        self.tested: list[KwtSent] = []  # validated with test=1: not sent, not charged
        self._last_sent: dict[str, float] = {}
        self._forced: deque[str] = deque()
        self.report_paths = report_paths
        self.reports: dict[str, tuple[str, str | None, dict[str, str]]] = {}  # msg-id → (user, word, per number)

    def set_report(self, msg_id: str, word: str, number: str | None = None) -> None:
        """Give a msg-id (or one of its numbers) a delivery status word."""
        with self._lock:
            username, whole, numbers = self.reports[msg_id]
            if number is None:
                self.reports[msg_id] = (username, word, numbers)
            else:
                self.reports[msg_id] = (username, whole, {**numbers, number: word})

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

    def _read(self, handler: _Handler) -> RecordedRequest:
        """A JSON API request's fields become the request's params, so both APIs are checked alike."""
        request = super()._read(handler)
        if not _is_json(request):
            return request
        try:
            data: Any = json.loads(request.body.decode("utf-8"))
        except ValueError:
            data = None
        fields = data if isinstance(data, dict) else {}
        params = {str(k): [v if isinstance(v, str) else json.dumps(v)] for k, v in fields.items()}
        return dataclasses.replace(request, params=params, charset="utf-8")

    def handle(self, request: RecordedRequest) -> Reply:
        endpoints = {"send/": self._send, "balance/": self._balance, "senderid/": self._senderid,
                     **dict.fromkeys(self.report_paths, self._report)}
        path = request.path.removeprefix(self.base_path)
        if not request.path.startswith(self.base_path) or path not in endpoints:
            return Reply(404, "Not Found")
        if request.method != "POST":
            return Reply(405, "Method Not Allowed", headers={"Allow": "POST"})
        return endpoints[path](request)

    def _error(self, code: str, request: RecordedRequest) -> Reply:
        if _is_json(request):
            body = json.dumps({"result": "ERROR", "code": code, "description": DESCRIPTIONS.get(code, "")})
            return Reply(self.json_error_status.get(code, 200), body, content_type="application/json")
        if self.style == "json":
            body = json.dumps({"result": "ERROR", "code": code, "description": DESCRIPTIONS.get(code, "")})
            return Reply(200, body, content_type="application/json")
        return Reply(200, code if self.style == "bare" else f"ERROR:{code}")

    def _ok(self, request: RecordedRequest, fields: dict[str, Any], text: str) -> Reply:
        if _is_json(request) or self.style == "json":
            return Reply(200, json.dumps({"result": "OK", **fields}), content_type="application/json")
        return Reply(200, text)

    def _login(self, request: RecordedRequest) -> KwtAccount | None:
        account = self.accounts.get(request.param("username") or "")
        if account is None or account.password != request.param("password"):
            return None
        return account

    def _send(self, request: RecordedRequest) -> Reply:
        p = {k: request.param(k) for k in REQUIRED}
        if any(v is None for v in p.values()) or not p["username"] or not p["password"] or not p["sender"]:
            return self._error("ERR002", request)
        account = self._login(request)
        if account is None:
            return self._error("ERR003", request)
        if self._forced:
            return self._error(self._forced.popleft(), request)
        sender, mobile, lang, message = str(p["sender"]), str(p["mobile"]), str(p["lang"]), str(p["message"])
        if sender not in self.senders:  # sender ids are case-sensitive
            return self._error("ERR008", request)
        if not message.strip():
            return self._error("ERR009", request)
        if lang not in ("1", "2", "3", "4"):
            return self._error("ERR031", request)
        numbers = [n for n in mobile.split(",") if n != ""]
        if len(numbers) > 200:
            return self._error("ERR007", request)
        valid = [n for n in numbers if _valid_number(n)]
        if not valid:
            return self._error("ERR006", request)
        if len(valid) != len(numbers):
            return self._error("ERR025", request)
        if _HTML.search(message):
            return self._error("ERR027", request)
        n_pages = pages(message, lang)
        if n_pages > 6:
            return self._error("ERR012", request)
        now = time.time()
        if any(now - self._last_sent.get(n, -math.inf) < self.same_number_interval for n in numbers):
            return self._error("ERR028", request)
        taken = [n for n in numbers if not n.startswith(self.drop_prefixes)]
        test = _is_json(request) and request.param("test") in ("1", "true")
        points = 0 if test else n_pages * len(taken)
        if account.balance <= 0:
            return self._error("ERR010", request)
        if points > account.balance:
            return self._error("ERR011", request)
        account.balance -= points
        msg_id = uuid.uuid4().hex
        if not test:
            self.reports[msg_id] = (str(p["username"]), None, {})
        into = self.tested if test else self.stuck if _UNDELIVERABLE.search(message) else self.sent
        for number in taken:
            if not test:
                self._last_sent[number] = now
            into.append(KwtSent(msg_id, str(p["username"]), number, message, sender, int(lang), n_pages))
        fields = {
            "msg-id": msg_id,
            "numbers": len(taken),
            "points-charged": points,
            "balance-after": account.balance,
            "unix-timestamp": int(now),
        }
        return self._ok(request, fields, f"OK:{msg_id}:{len(taken)}:{points}:{_num(account.balance)}:{int(now)}")

    def _report(self, request: RecordedRequest) -> Reply:
        if self._login(request) is None:
            return self._error("ERR003", request)
        msg_id = request.param("msgid") or ""
        known = self.reports.get(msg_id)
        if known is None or known[0] != request.param("username"):
            return self._error("ERR020", request)
        _, word, numbers = known
        if word is None and not numbers:
            return self._error("ERR021", request)
        if _is_json(request) or self.style == "json":
            fields: dict[str, Any] = {"msg-id": msg_id}
            if numbers:
                fields["report"] = [{"mobile": n, "status": w} for n, w in numbers.items()]
            if word is not None:
                fields["status"] = word
                if word.upper().startswith("DELIVERED"):
                    fields["delivered-at"] = int(time.time())
            return Reply(200, json.dumps({"result": "OK", **fields}), content_type="application/json")
        lines = [f"{n},{w}" for n, w in numbers.items()] or [f"{msg_id},{word}"]
        return Reply(200, "\n".join(lines))

    def _balance(self, request: RecordedRequest) -> Reply:
        account = self._login(request)
        if account is None:
            return self._error("ERR003", request)
        if self.balance_decimals:
            text = f"{account.balance:.2f}/{account.purchased:.2f}"
        else:
            text = f"{_num(account.balance)}/{_num(account.purchased)}"
        return self._ok(request, {"available": account.balance, "purchased": account.purchased}, text)

    def _senderid(self, request: RecordedRequest) -> Reply:
        if self._login(request) is None:
            return self._error("ERR003", request)
        return self._ok(request, {"senderid": self.senders}, "\n".join(self.senders))


def _is_json(request: RecordedRequest) -> bool:
    """KwtSMS speaks its JSON API only to a JSON content type; anything else gets the legacy text API."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
