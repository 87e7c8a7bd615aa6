"""A stateful fake of Cellcast's REST API v3 (`send-sms`, `account`, `get-sms`), as `docs/providers.md` has it.

It keeps API keys with their SMS balance, every message it queued, and a per-key call log for the documented
throttle (15 calls per second → HTTP 429 with `OVER_LIMIT` and a `Retry-After`). It checks what Cellcast checks:
the key (`APPKEY` header, or HTTP Basic auth with the key as user or password when `accept_basic`), a JSON body,
`sms_text`, `numbers` (1 to 1000), `from` (A-Z a-z 0-9 space and dash; ≤ 11 alphanumeric or ≤ 16 digits) and
`schedule_time` (`Y-m-d H:i:s`, future, in `zone`). Numbers in `refused_numbers`, numbers outside Australia (+61)
while `australia_only` (the field's evidence: every example is +61, the newer API allows only 61), and non-numbers
are not queued: the reply is still HTTP 200 `SUCCESS` with `msg` (default "Queued", as Cellcast's own example), and
lists only the others, with `success_number` < `total_numbers` — `messages: []` and `success_number: 0` when none
was queued. Where the answer's details are unconfirmed the fake is switchable: `reasons = "invalid_numbers"` adds
`data.invalid_numbers: [{"number", "reason"}]` for the numbers not queued; `ids = "counts"` leaves out
`data.messages` and answers with the counts only.

The success reply is exactly the documented one. Error bodies are unconfirmed, so `error_shape` picks
`"meta"` (`{"meta": {"code": 4xx, "status": "AUTH_FAILED"}, "msg": …, "data": []}`) or `"error"` (the seed's
`{"error": {"code": "AUTH_FAILED", "description": …}}`). Running out of credit has no documented word; the fake
answers 400 `INSUFFICIENT_BALANCE` (its own guess, so adapters must treat unknown words as refusals).

Delivery status: `get-sms?message_id=` answers `{"meta": SUCCESS, "msg": "Record founded", "data": [{"to", "body",
"sent_time", "message_id", "status"}]}`; a message is `Queued` after sending until `set_status(message_id, word)`
(Cellcast's words: Dispatched, Delivered, Failed, Rejected, Expired, Aborted, Unknown). `dlr_body(ids)` is the DLR
callback body Cellcast would post for those messages: `[{message_id, status, recipient, custom_string}]`.

Replies (issue 17; `mail2sms/providers/cellcast_replies.py` says what is confirmed and what is assumed):
- `add_reply(to_message_id, text, number=None, received_at=None) -> str` holds an SMS a phone sent back and returns
  its inbound message id. With the `message_id` of an SMS the fake queued, the reply is linked to it
  (`original_message_id`, `original_body`), comes from that SMS's number unless `number` says otherwise, and
  belongs to that SMS's key; with `to_message_id=None` it links to nothing and `number` is required (first key).
- `GET get-responses?page=N&type=sms` lists the key's replies not yet read, oldest first, 25 per page, as
  `{"meta": SUCCESS, "msg": "You have N response(s)", "data": {"page": {"count", "number"}, "total": "N",
  "responses": [{from, body, received_at, custom_string, original_body, original_message_id, message_id}]}}`; no
  reply (or a page past the last) is Cellcast's ugly HTTP 400 `NOT_FOUND` "No Response are available!". A `type`
  other than sms/mms is FIELD_INVALID. `list_read=True` lists read replies too (the other reading of the page).
- `POST inbound-read-bulk {"message_id": [ids]}` and `POST inbound-read {"message_id": id}` (or `{"date_before":
  unix}`) mark replies read ("Inbound messages have been marked as read."); `read_bulk=False` makes the bulk call
  a 404, as an account without it would see. `is_read(id)` tells; `read_calls` counts marking requests.
- `inbound_body(id)` is the inbound webhook body Cellcast posts for a reply: one JSON object `{from, body,
  received_at, message_id, custom_string, type: "SMS", original_message_id, original_body}`.

It must never accept a request Cellcast would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from tests.fakes.server import FakeProvider, RecordedRequest, Reply

ErrorShape = Literal["meta", "error"]
Reasons = Literal["none", "invalid_numbers"]
Ids = Literal["messages", "counts"]
NOT_QUEUED_REASON = "Country not supported"
MAX_NUMBERS = 1000
_FROM = re.compile(r"[A-Za-z0-9 -]+")
_SCHEDULE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@dataclass
class CellcastAccount:
    name: str
    balance: float


@dataclass(frozen=True)
class CellcastSent:
    """One message the fake queued."""

    message_id: str
    key: str
    to: str  # as sent back: "+<digits>"
    text: str
    sender: str | None
    schedule_time: datetime | None
    parts: int
    body: dict[str, Any]  # the request's JSON, for wire checks


@dataclass
class CellcastReply:
    """One SMS a phone sent back, as the fake holds it."""

    message_id: str
    key: str
    number: str  # "+<digits>", as Cellcast writes `from`
    text: str
    received_at: datetime  # in the fake's zone
    original: CellcastSent | None
    read: bool = False


def valid_sender(sender: Any) -> bool:
    """A-Z a-z 0-9, space and dash; a numeric sender ID at most 16 digits, an alphanumeric one at most 11."""
    if not isinstance(sender, str) or not sender:
        return False
    digits = sender.removeprefix("+")
    if digits.isdigit():
        return len(digits) <= 16
    return bool(_FROM.fullmatch(sender)) and len(sender) <= 11


def parts_of(text: str) -> int:
    gsm = all(ord(c) < 128 for c in text)
    single, multi = (160, 153) if gsm else (70, 67)
    return 1 if len(text) <= single else math.ceil(len(text) / multi)


class FakeCellcast(FakeProvider):
    """Cellcast API v3 at `http://127.0.0.1:PORT/api/v3/`."""

    base_path = "/api/v3/"

    def __init__(
        self,
        keys: dict[str, float] | None = None,
        error_shape: ErrorShape = "meta",
        calls_per_second: int = 15,
        accept_basic: bool = True,
        refused_numbers: Iterable[str] = (),
        zone: str = "Australia/Sydney",
        australia_only: bool = True,
        msg: str = "Queued",
        reasons: Reasons = "none",
        ids: Ids = "messages",
        list_read: bool = False,
        read_bulk: bool = True,
    ) -> None:
        super().__init__()
        given = keys if keys is not None else {"key": 100.0}
        self.accounts = {k: CellcastAccount(f"account-{i}", float(b)) for i, (k, b) in enumerate(given.items())}
        self.error_shape: ErrorShape = error_shape
        self.calls_per_second = calls_per_second
        self.accept_basic = accept_basic
        self.refused_numbers = set(refused_numbers)
        self.zone: tzinfo = ZoneInfo(zone)
        self.australia_only = australia_only
        self.msg = msg
        self.reasons: Reasons = reasons
        self.ids: Ids = ids
        self.sent: list[CellcastSent] = []
        self.handled = 0
        self._calls: dict[str, deque[float]] = {}
        self.dlr_status: dict[str, str] = {}  # message id → Cellcast's delivery status word
        self.list_read = list_read
        self.read_bulk = read_bulk
        self.replies: list[CellcastReply] = []
        self.read_calls = 0
        self._next_reply = 5_000_000_000

    def add_reply(
        self, to_message_id: str | None, text: str, number: str | None = None, received_at: datetime | None = None
    ) -> str:
        """Hold a reply (see the module docstring); its inbound message id."""
        with self._lock:
            original = next((m for m in self.sent if m.message_id == to_message_id), None)
            if to_message_id is not None and original is None:
                raise KeyError(f"the fake queued no message {to_message_id!r}")
            if number is None and original is None:
                raise ValueError("a reply that links to nothing needs a number")
            digits = (number or (original.to if original else "")).lstrip("+")
            key = original.key if original is not None else next(iter(self.accounts))
            self._next_reply += 1
            when = received_at or datetime.now(self.zone)
            self.replies.append(CellcastReply(str(self._next_reply), key, "+" + digits, text, when, original))
            self._changed.notify_all()
            return str(self._next_reply)

    def is_read(self, message_id: str) -> bool:
        with self._lock:
            return any(r.read for r in self.replies if r.message_id == message_id)

    def inbound_body(self, message_id: str) -> bytes:
        """The inbound webhook body Cellcast posts for this reply."""
        with self._lock:
            reply = next(r for r in self.replies if r.message_id == message_id)
            return json.dumps({**self._response(reply), "type": "SMS"}).encode("utf-8")

    def _response(self, reply: CellcastReply) -> dict[str, Any]:
        original = reply.original
        return {
            "from": reply.number,
            "body": reply.text,
            "received_at": reply.received_at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S"),
            "custom_string": original.body.get("custom_string", "") if original else "",
            "original_body": original.text if original else "",
            "original_message_id": original.message_id if original else "",
            "message_id": reply.message_id,
        }

    def set_status(self, message_id: str, word: str) -> None:
        with self._lock:
            self.dlr_status[message_id] = word

    def dlr_body(self, message_ids: Iterable[str]) -> bytes:
        """The DLR callback body Cellcast posts for these messages (their current status)."""
        with self._lock:
            by_id = {s.message_id: s for s in self.sent}
            return json.dumps([
                {"message_id": i, "status": self.dlr_status[i], "recipient": by_id[i].to.lstrip("+"),
                 "custom_string": by_id[i].body.get("custom_string", "")}
                for i in message_ids
            ]).encode("utf-8")

    def balance_of(self, key: str) -> float:
        with self._lock:
            return self.accounts[key].balance

    # -- the API ----------------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        self.handled += 1
        path = request.path.removeprefix(self.base_path)
        routes = {
            ("POST", "send-sms"): self._send,
            ("GET", "account"): self._account,
            ("GET", "get-sms"): self._get_sms,
            ("GET", "get-responses"): self._get_responses,
            ("POST", "inbound-read"): self._inbound_read,
            ("POST", "inbound-read-bulk"): self._inbound_read_bulk,
        }
        if path == "inbound-read-bulk" and not self.read_bulk:
            return self._error(404, "NOT_FOUND", "Not found")
        if not request.path.startswith(self.base_path) or (request.method, path) not in routes:
            return self._error(404, "NOT_FOUND", "Not found")
        key = self._key(request)
        if key is None:
            return self._error(401, "AUTH_FAILED", "Invalid APPKEY")
        calls = self._calls.setdefault(key, deque())
        now = time.monotonic()
        while calls and now - calls[0] >= 1.0:
            calls.popleft()
        if len(calls) >= self.calls_per_second:
            return self._error(429, "OVER_LIMIT", "Too Many Requests", {"Retry-After": "1"})
        calls.append(now)
        return routes[(request.method, path)](request, key)

    def _key(self, request: RecordedRequest) -> str | None:
        key = request.headers.get("appkey")
        if key is not None:
            return key if key in self.accounts else None
        auth = request.headers.get("authorization", "")
        if self.accept_basic and auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
            except ValueError:
                return None
            for candidate in (password, user):
                if candidate in self.accounts:
                    return candidate
        return None

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, json.dumps(value), headers=headers or {}, content_type="application/json")

    def _error(self, status: int, word: str, message: str, headers: dict[str, str] | None = None) -> Reply:
        if self.error_shape == "error":
            return self._json(status, {"error": {"code": word, "description": message}}, headers)
        return self._json(status, {"meta": {"code": status, "status": word}, "msg": message, "data": []}, headers)

    def _send(self, request: RecordedRequest, key: str) -> Reply:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._error(400, "FIELD_INVALID", "The body must be JSON")
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._error(400, "FIELD_INVALID", "The body must be JSON")
        if not isinstance(body, dict):
            return self._error(400, "FIELD_INVALID", "The body must be a JSON object")
        text, numbers, sender = body.get("sms_text"), body.get("numbers"), body.get("from")
        if not isinstance(text, str) or not text.strip():
            return self._error(400, "FIELD_INVALID", "sms_text is required")
        if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) for n in numbers):
            return self._error(400, "FIELD_INVALID", "numbers must be a JSON array of numbers")
        if len(numbers) > MAX_NUMBERS:
            return self._error(400, "FIELD_INVALID", "You can pass 1000 numbers in one API call")
        if sender is not None and not valid_sender(sender):
            return self._error(400, "FIELD_INVALID", "from: invalid sender ID")
        schedule = None
        if body.get("schedule_time"):
            value = str(body["schedule_time"])
            if not _SCHEDULE.fullmatch(value):
                return self._error(400, "FIELD_INVALID", "schedule_time must be Y-m-d H:i:s")
            schedule = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.zone)
            if schedule <= datetime.now(UTC):
                return self._error(400, "FIELD_INVALID", "schedule_time must be in the future")
        queued = [n for n in numbers if self._valid(n)]
        parts = parts_of(text)
        account = self.accounts[key]
        if account.balance < parts * len(queued):
            return self._error(400, "INSUFFICIENT_BALANCE", "Insufficient balance")
        account.balance -= parts * len(queued)
        now = datetime.now(self.zone).strftime("%Y-%m-%d %H:%M:%S")
        messages = []
        for number in queued:
            message_id = str(uuid.uuid4()).upper()
            to = "+" + number.lstrip("+")
            self.sent.append(CellcastSent(message_id, key, to, text, sender, schedule, parts, body))
            self.dlr_status[message_id] = "Queued"
            messages.append(
                {
                    "message_id": message_id,
                    "from": sender or "",
                    "to": to,
                    "body": text,
                    "date": now,
                    "custom_string": body.get("custom_string", ""),
                    "direction": "out",
                }
            )
        data: dict[str, Any] = {
            "messages": messages,
            "total_numbers": len(numbers),
            "success_number": len(queued),
            "credits_used": parts * len(queued),
        }
        if self.ids == "counts":
            del data["messages"]
        if self.reasons == "invalid_numbers":
            data["invalid_numbers"] = [{"number": n, "reason": NOT_QUEUED_REASON} for n in numbers if n not in queued]
        return self._json(200, {"meta": {"code": 200, "status": "SUCCESS"}, "msg": self.msg, "data": data})

    def _valid(self, number: str) -> bool:
        digits = number.removeprefix("+")
        if self.australia_only and not digits.startswith("61"):
            return False
        return digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 15 and digits not in self.refused_numbers

    def _account(self, request: RecordedRequest, key: str) -> Reply:
        account = self.accounts[key]
        data = {"account_name": account.name, "sms_balance": account.balance, "mms_balance": 0}
        return self._json(200, {"meta": {"code": 200, "status": "SUCCESS"}, "msg": "Here's your account", "data": data})

    def _get_sms(self, request: RecordedRequest, key: str) -> Reply:
        wanted = request.param("message_id") or ""
        for sent in self.sent:
            if sent.message_id == wanted and sent.key == key:
                data = [{"to": sent.to, "body": sent.text, "sent_time": "", "message_id": sent.message_id,
                         "status": self.dlr_status[sent.message_id], "subaccount_id": ""}]
                return self._json(
                    200, {"meta": {"code": 200, "status": "SUCCESS"}, "msg": "Record founded", "data": data}
                )
        return self._error(400, "FIELD_INVALID", "message_id not found")

    def _get_responses(self, request: RecordedRequest, key: str) -> Reply:
        kind = request.param("type")
        if kind not in (None, "sms", "mms"):
            return self._error(400, "FIELD_INVALID", "type must be sms or mms")
        page_text = request.param("page") or "1"
        if not page_text.isdigit() or int(page_text) < 1:
            return self._error(400, "FIELD_INVALID", "page must be a positive number")
        page = int(page_text)
        mine = [r for r in self.replies if r.key == key and (self.list_read or not r.read) and kind != "mms"]
        count = -(-len(mine) // 25)
        if not mine or page > count:
            return self._error(400, "NOT_FOUND", "No Response are available!")
        data = {"page": {"count": count, "number": page}, "total": str(len(mine)),
                "responses": [self._response(r) for r in mine[(page - 1) * 25 : page * 25]]}
        return self._json(200, {"meta": {"code": 200, "status": "SUCCESS"}, "msg": f"You have {len(mine)} "
                                "response(s)", "data": data})

    def _read_body(self, request: RecordedRequest) -> dict[str, Any] | None:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def _marked(self, key: str, ids: set[str] | None = None, before: float | None = None) -> Reply:
        self.read_calls += 1
        for reply in self.replies:
            if reply.key == key and ((ids is not None and reply.message_id in ids)
                                     or (before is not None and reply.received_at.timestamp() < before)):
                reply.read = True
        return self._json(200, {"meta": {"code": 200, "status": "SUCCESS"},
                                "msg": "Inbound messages have been marked as read.", "data": []})

    def _inbound_read(self, request: RecordedRequest, key: str) -> Reply:
        body = self._read_body(request)
        if body is None:
            return self._error(400, "FIELD_INVALID", "The body must be a JSON object")
        if isinstance(body.get("message_id"), str | int) and not isinstance(body.get("message_id"), bool):
            return self._marked(key, ids={str(body["message_id"])})
        if isinstance(body.get("date_before"), int) and not isinstance(body.get("date_before"), bool):
            return self._marked(key, before=float(body["date_before"]))
        return self._error(400, "FIELD_INVALID", "message_id or date_before is required")

    def _inbound_read_bulk(self, request: RecordedRequest, key: str) -> Reply:
        body = self._read_body(request)
        ids = body.get("message_id") if body is not None else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return self._error(400, "FIELD_INVALID", "message_id must be an array of message ids")
        return self._marked(key, ids=set(ids))
