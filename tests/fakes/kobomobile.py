"""A stateful fake of KoboMobile's HTTP API (`send/`, `credit/`), as `docs/providers.md` and the seed have it.

It keeps accounts (password, credit, suspended or not), every SMS it "sent" with its message id, and the reply
given to each `message_uuid`: a repeat of a successful request's uuid is answered with the original reply and
sends nothing (KoboMobile keeps them 30 days). It checks what KoboMobile checks — parameters present, login,
sender (≤ 11 alphanumeric or ≤ 16 digits), numbers international without +, at most 500, `msg` at most 905
characters, `type` 0/1/2, `message_uuid` at most 64 characters — and answers with the documented status words.

KoboMobile's JSON shapes are unconfirmed, so `shape` picks one:
`"string"` — a bare JSON string: `"sent"`, the `number,id~number,id` ids when `enable_msg_id=1`, or `"error_…"`;
`"object"` — `{"status": "sent", "msg_id": "<ids>"}` / `{"status": "error_credit"}`;
`"nested"` — `{"response": {"code": "sent", "data": {"message_ids": "<ids>"}}}`.
`credit/` answers the credit in the same shape (`"1500.00"`, `{"credit": 1500.0}`, `{"response": {"data":
{"balance": "1500.00"}}}`). The status words may come with a non-200 HTTP status (providers.md), so
`error_status` picks the status error words are answered with (200 by default, e.g. 400).
`force_reply(value)` answers the next valid `send/` requests with a JSON value instead of a word (prose such as
`{"status": "error", "message": "Message not sent"}`) and sends nothing; `force_reply(value, sent=True)` sends
the SMS and still answers with the value (a reply mail2sms cannot read must not count as success).

`report/` (`user, pass, msgid`) answers a message's delivery status word in the same `shape` (`"PENDING"`,
`{"status": …, "msgid": …}`, `{"response": {"code": "ok", "data": {"status": …, "msgid": …}}}`); the word is
`PENDING` after sending until `set_report(message_id, word)` (`DELIVERED`, `FAILED`, `EXPIRED`, …), since the real
words are unconfirmed. An unknown id is `error_param`.

It must never accept a request KoboMobile would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from tests.fakes.server import FakeProvider, RecordedRequest, Reply

Shape = Literal["string", "object", "nested"]
WORDS = ("sent", "error_param", "error_credit", "error_billing", "error_gw", "error_user", "error_limit")
_SENDER_ALNUM = re.compile(r"[A-Za-z0-9 .-]{1,11}")
_SENDER_DIGITS = re.compile(r"\d{1,16}")


@dataclass
class KoboAccount:
    password: str
    credit: float
    suspended: bool = False


@dataclass(frozen=True)
class KoboSent:
    """One SMS the fake accepted."""

    message_id: str
    username: str
    number: str
    text: str
    sender: str
    type: int
    parts: int
    message_uuid: str | None


def parts_of(text: str, kind: str) -> int:
    single, multi = (70, 67) if kind == "2" else (160, 153)
    return 1 if len(text) <= single else math.ceil(len(text) / multi)


class FakeKoboMobile(FakeProvider):
    """KoboMobile at `http://127.0.0.1:PORT/api/`."""

    base_path = "/api/"

    def __init__(self, accounts: dict[str, tuple[str, float]] | None = None, shape: Shape = "string") -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100.0)}
        self.accounts = {u: KoboAccount(p, float(c)) for u, (p, c) in given.items()}
        self.shape: Shape = shape
        self.sent: list[KoboSent] = []
        self.handled = 0
        self.duplicates = 0
        self.uuid_replies: dict[str, Reply] = {}
        self._forced: deque[str] = deque()
        self._replies: deque[tuple[Any, bool, int]] = deque()
        self.error_status = 200
        self.reports: dict[str, str] = {}  # message id → delivery status word

    def set_report(self, message_id: str, word: str) -> None:
        with self._lock:
            self.reports[message_id] = word

    def force_reply(self, value: Any, sent: bool = False, status: int = 200) -> None:
        """Answer the next valid `send/` request with `value` (JSON) and `status`; send the SMS only if `sent`."""
        with self._lock:
            self._replies.append((value, sent, status))

    def force_word(self, *words: str) -> None:
        """Answer the next valid `send/` requests with these status words (after the login check)."""
        with self._lock:
            self._forced.extend(words)

    def credit_of(self, username: str) -> float:
        with self._lock:
            return self.accounts[username].credit

    # -- the API ----------------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        self.handled += 1
        path = request.path.removeprefix(self.base_path)
        endpoints = {"send/": self._send, "credit/": self._credit, "report/": self._report}
        if not request.path.startswith(self.base_path) or path not in endpoints:
            return Reply(404, "Not Found")
        if request.method != "POST":
            return Reply(405, "Method Not Allowed", headers={"Allow": "POST"})
        return endpoints[path](request)

    def _json(self, value: Any) -> Reply:
        return Reply(200, json.dumps(value), content_type="application/json")

    def _word(self, word: str, ids: str | None = None) -> Reply:
        reply = self._shaped(word, ids)
        if word != "sent":
            reply.status = self.error_status
        return reply

    def _shaped(self, word: str, ids: str | None) -> Reply:
        if self.shape == "string":
            return self._json(ids if ids else word)
        if self.shape == "object":
            return self._json({"status": word, **({"msg_id": ids} if ids else {})})
        data = {"message_ids": ids} if ids else {}
        return self._json({"response": {"code": word, "data": data}})

    def _login(self, request: RecordedRequest) -> KoboAccount | str:
        if not request.param("user") or not request.param("pass"):
            return "error_param"
        account = self.accounts.get(request.param("user") or "")
        if account is None or account.password != request.param("pass") or account.suspended:
            return "error_user"
        return account

    def _send(self, request: RecordedRequest) -> Reply:
        p = {k: v[0] for k, v in request.params.items() if v}
        if any(not p.get(k) for k in ("user", "pass", "from", "to", "msg")):
            return self._word("error_param")
        account = self._login(request)
        if isinstance(account, str):
            return self._word(account)
        key = p.get("message_uuid")
        if key is not None:
            if not key or len(key) > 64:
                return self._word("error_param")
            if key in self.uuid_replies:
                self.duplicates += 1
                return self.uuid_replies[key]
        sender, kind, text = p["from"], p.get("type", "0"), p["msg"]
        if not (_SENDER_DIGITS.fullmatch(sender) or (_SENDER_ALNUM.fullmatch(sender) and not sender.isdigit())):
            return self._word("error_param")
        if kind not in ("0", "1", "2") or len(text) > 905 or p.get("enable_msg_id", "0") not in ("0", "1"):
            return self._word("error_param")
        numbers = [n.strip() for n in p["to"].split(",")]
        if len(numbers) > 500:
            return self._word("error_limit")
        if not all(n.isascii() and n.isdigit() and 7 <= len(n) <= 15 and not n.startswith("0") for n in numbers):
            return self._word("error_param")  # "must be in international format and no prefix"
        if self._forced:
            return self._word(self._forced.popleft())
        forced = self._replies.popleft() if self._replies else None
        if forced is not None and not forced[1]:
            return Reply(forced[2], json.dumps(forced[0]), content_type="application/json")
        parts = parts_of(text, kind)
        cost = parts * len(numbers)
        if account.credit < cost:
            return self._word("error_credit")
        account.credit -= cost
        pairs = []
        for number in numbers:
            message_id = str(uuid.uuid4())
            pairs.append(f"{number},{message_id}")
            self.sent.append(KoboSent(message_id, p["user"], number, text, sender, int(kind), parts, key))
            self.reports[message_id] = "PENDING"
        reply = self._word("sent", "~".join(pairs) if p.get("enable_msg_id") == "1" else None)
        if forced is not None:
            reply = Reply(forced[2], json.dumps(forced[0]), content_type="application/json")
        if key is not None:
            self.uuid_replies[key] = reply  # only successes are remembered
        return reply

    def _report(self, request: RecordedRequest) -> Reply:
        account = self._login(request)
        if isinstance(account, str):
            return self._word(account)
        msg_id = request.param("msgid") or ""
        owner = next((s.username for s in self.sent if s.message_id == msg_id), None)
        if owner != request.param("user"):
            return self._word("error_param")
        word = self.reports[msg_id]
        if self.shape == "string":
            return self._json(word)
        if self.shape == "object":
            return self._json({"status": word, "msgid": msg_id})
        return self._json({"response": {"code": "ok", "data": {"status": word, "msgid": msg_id}}})

    def _credit(self, request: RecordedRequest) -> Reply:
        account = self._login(request)
        if isinstance(account, str):
            return self._word(account)
        if self.shape == "string":
            return self._json(f"{account.credit:.2f}")
        if self.shape == "object":
            return self._json({"credit": account.credit})
        return self._json({"response": {"code": "ok", "data": {"balance": f"{account.credit:.2f}"}}})
