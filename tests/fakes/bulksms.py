"""Stateful fakes of BulkSMS, as `docs/providers.md` has it: the legacy EAPI (`FakeBulkSms`: `send_sms`,
`send_batch`, `get_credits`, `get_report`) and the JSON REST API v1 (`FakeBulkSmsJson`, below).

EAPI:

It keeps accounts (password, credits), every SMS it "sent" with its batch, and the replies given to each
`stop_dup_id`: a repeat of a successful submission's id is answered with the original reply and sends nothing, as
the seed describes (failures are not remembered, so a failed submission can be repeated). Parameters are read as
ISO-8859-1; `dca=16bit` messages are hex of UTF-16BE and are decoded back to text. It checks what BulkSMS checks
(login, numbers, unique recipients, sender, length and concatenation, dca, msg_class, routing_group, send_time)
and answers `status_code|status_description[|batch_id]` with HTTP 200.

`send_batch` takes `batch_data`, CSV `msisdn,message` with the header row first, one SMS per row (the shared
options apply to every row) and answers the same one line; its `stop_dup_id`s are the same memory as `send_sms`'s.

Unconfirmed readings are switchable: `error_batch_id=True` adds a batch id to error lines (3 fields instead of
2), `report_header` picks "Results to follow" or the newer "Returns to follow", `zone` is the account's time zone
that `send_time` is read in. `misconfigured(status)` makes every request answer as a host that is not the
account's does (301 to another host, 401, or 404 for a removed version) until `misconfigured(None)`.

Replies (issue 17; `mail2sms/providers/bulksms_replies.py` says what is confirmed and what is assumed), the same
call on both fakes: `add_reply(to_message_id, text, number=None) -> str` holds an SMS a phone sent back and
returns its id. `to_message_id` is the batch_id (EAPI) or message id (JSON) of an SMS the fake accepted: the reply
comes from that SMS's number (unless `number` says otherwise) to the same account; `None` links to nothing and
needs `number`. Like BulkSMS, the fake links a reply only to the most recent SMS to that number that was sent
repliable (EAPI `repliable=1`, JSON `from: {"type": "REPLIABLE"}`): `referring_batch_id` 0 /
`relatedSentMessageId` null otherwise, whatever `to_message_id` said.
- EAPI `reception/get_inbox/1/1.1` (`last_retrieved_id` required, an integer) answers `0|records to follow|N`, a
  blank line, then `msg_id|sender|message|received_time|msisdn|referring_batch_id|encoding` lines with id >
  last_retrieved_id, oldest first, at most `inbox_limit` (1000); newlines escaped as `\n`/`\r`; text that
  ISO-8859-1 cannot carry as `16bit` hex of UTF-16BE; times in `zone`.
- JSON `GET messages?filter=…&sortOrder=ASCENDING|DESCENDING&limit=N` reads `type=SENT|RECEIVED`, `id>N`, `id<N`
  clauses joined by `&` (any other clause is 400 bad_request, as BulkSMS does); `received_body(ids)` is the body
  the received-messages webhook posts (a JSON array of RECEIVED message objects).

It must never accept a request BulkSMS would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import math
import re
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from tests.fakes.server import FakeProvider, RecordedRequest, Reply

SEND = "submission/send_sms/2/2.0"
BATCH = "submission/send_batch/1/1.0"
CREDITS = "user/get_credits/1/1.1"
REPORT = "status_reports/get_report/2/2.0"
INBOX = "reception/get_inbox/1/1.1"
OUR_NUMBER = "447700900000"  # the BulkSMS number repliable SMS come from (and replies go to)
DESCRIPTIONS = {
    0: "IN_PROGRESS",
    1: "SCHEDULED",
    22: "INTERNAL_FATAL_ERROR",
    23: "AUTHENTICATION_FAILURE",
    24: "DATA_VALIDATION_FAILED",
    25: "NO_CREDITS",
    26: "NO_CREDITS_UPSTREAM",
    27: "EXCEEDED_QUOTA",
    28: "UPSTREAM_QUOTA_EXCEEDED",
    40: "TEMPORARILY_UNAVAILABLE",
    201: "MAXIMUM_BATCH_SIZE_EXCEEDED",
}
_SENDER_ALNUM = re.compile(r"[A-Za-z0-9 .-]{1,11}")
_SENDER_DIGITS = re.compile(r"\+?\d{1,16}")
_SEND_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


@dataclass
class BulkAccount:
    password: str
    credits: float


@dataclass(frozen=True)
class BulkSent:
    """One SMS the fake accepted."""

    batch_id: str
    username: str
    number: str
    text: str  # decoded: the 16-bit hex turned back into text
    dca: str
    msg_class: int
    sender: str | None
    send_time: datetime | None
    parts: int
    stop_dup_id: int | None
    params: dict[str, str]  # every parameter but the password, for wire checks


@dataclass(frozen=True)
class BulkReply:
    """One SMS a phone sent back, as either fake holds it."""

    id: str
    username: str
    number: str  # digits
    text: str
    received_at: datetime
    related: str | None  # batch_id (EAPI) or message id (JSON) of the SMS it answers, as BulkSMS links it


def _gsm_parts(text: str, single: int = 160, multi: int = 153) -> int:
    return 1 if len(text) <= single else math.ceil(len(text) / multi)


class FakeBulkSms(FakeProvider):
    """BulkSMS EAPI at `http://127.0.0.1:PORT/eapi/`."""

    base_path = "/eapi/"

    def __init__(
        self,
        accounts: dict[str, tuple[str, float]] | None = None,
        max_batch: int = 1000,
        error_batch_id: bool = False,
        report_header: str = "Results to follow",
        zone: str = "UTC",
        inbox_limit: int = 1000,
    ) -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100.0)}
        self.accounts = {u: BulkAccount(p, float(c)) for u, (p, c) in given.items()}
        self.inbox_limit = inbox_limit
        self.inbox: list[BulkReply] = []
        self._next_inbox = 19
        self.max_batch = max_batch
        self.error_batch_id = error_batch_id
        self.report_header = report_header
        self.zone: tzinfo = ZoneInfo(zone)
        self.sent: list[BulkSent] = []
        self.handled = 0  # requests answered by the fake itself (not by an injected fault)
        self.duplicates = 0  # submissions answered from the stop_dup_id memory
        self.dup_replies: dict[int, str] = {}
        self.report_status: dict[str, int] = {}  # "batch:msisdn" → status code (11 delivered, ...)
        self._forced: deque[int] = deque()
        self._next_batch = 70_000_000 + secrets.randbelow(1_000_000)
        self._misconfigured: int | None = None

    def misconfigured(self, status: int | None) -> None:
        """Answer every request with this HTTP status (301/302 with a Location, 401, 404), or normally with None."""
        with self._lock:
            self._misconfigured = status

    def force_code(self, *codes: int) -> None:
        """Answer the next valid `send_sms` submissions with these status codes (after the login check)."""
        with self._lock:
            self._forced.extend(codes)

    def credits_of(self, username: str) -> float:
        with self._lock:
            return self.accounts[username].credits

    # -- the API ----------------------------------------------------------------------------------
    def form_charset(self, raw: dict[str, list[bytes]]) -> str:
        return "iso-8859-1"

    def handle(self, request: RecordedRequest) -> Reply:
        self.handled += 1
        path = request.path.removeprefix(self.base_path)
        endpoints = {SEND: self._send, BATCH: self._send_batch, CREDITS: self._credits, REPORT: self._report,
                     INBOX: self._get_inbox}
        if self._misconfigured is not None:
            location = {"Location": "https://bulksms.example.net/eapi/" + path} if self._misconfigured < 400 else {}
            return Reply(self._misconfigured, "<html>wrong host</html>", headers=location)
        if not request.path.startswith(self.base_path) or path not in endpoints:
            return Reply(404, "Not Found")
        answer = endpoints[path](request).encode("iso-8859-1", "replace")  # the charset the answer declares
        return Reply(200, answer, content_type="text/plain; charset=ISO-8859-1")

    def _line(self, code: int, description: str = "", batch_id: str | None = None) -> str:
        text = f"{code}|{description or DESCRIPTIONS.get(code, 'ERROR')}"
        if batch_id is None and code not in (0, 1) and self.error_batch_id:
            batch_id = self._batch()
        return f"{text}|{batch_id}" if batch_id else text

    def _batch(self) -> str:
        self._next_batch += 1
        return str(self._next_batch)

    def _login(self, request: RecordedRequest) -> BulkAccount | None:
        account = self.accounts.get(request.param("username") or "")
        if account is None or account.password != request.param("password"):
            return None
        return account

    def _send(self, request: RecordedRequest) -> str:
        account = self._login(request)
        if account is None:
            return self._line(23, "invalid credentials")
        p = {k: v[0] for k, v in request.params.items() if v}
        dup_text = p.get("stop_dup_id")
        dup_id: int | None = None
        if dup_text is not None:
            if not dup_text.isdigit() or not 1 <= int(dup_text) <= 2_147_483_647:
                return self._line(24, "stop_dup_id must be an integer from 1 to 2147483647")
            dup_id = int(dup_text)
            if dup_id in self.dup_replies:
                self.duplicates += 1
                return self.dup_replies[dup_id]
        problem = self._validate(p)
        if isinstance(problem, str):
            return self._line(24, problem)
        text, dca, parts, send_time = problem
        numbers = p["msisdn"].split(",")
        if len(numbers) > self.max_batch:
            return self._line(201)
        if self._forced:
            return self._line(self._forced.popleft())
        if p.get("test_always_fail") == "1":
            return self._line(22, "test_always_fail")
        cost = parts * len(numbers)
        if p.get("test_always_succeed") != "1" and account.credits < cost:
            return self._line(25, "insufficient credits")
        now = datetime.now(UTC)
        scheduled = send_time is not None and send_time > now
        batch_id = self._batch()
        reply = self._line(1 if scheduled else 0, batch_id=batch_id)
        if p.get("test_always_succeed") == "1":
            return reply
        account.credits -= cost
        shown = {k: v for k, v in p.items() if k != "password"}
        for number in numbers:
            self.sent.append(BulkSent(batch_id, p["username"], number, text, dca, int(p.get("msg_class", "2")),
                                      p.get("sender"), send_time if scheduled else None, parts, dup_id, shown))
            self.report_status[f"{batch_id}:{number}"] = 10
        if dup_id is not None:
            self.dup_replies[dup_id] = reply  # only successes are remembered
        return reply

    def _send_batch(self, request: RecordedRequest) -> str:
        """`send_batch`: every CSV row of `batch_data` is one SMS with its own text; one reply line for them all."""
        account = self._login(request)
        if account is None:
            return self._line(23, "invalid credentials")
        p = {k: v[0] for k, v in request.params.items() if v}
        dup_id: int | None = None
        if p.get("stop_dup_id") is not None:
            if not p["stop_dup_id"].isdigit() or not 1 <= int(p["stop_dup_id"]) <= 2_147_483_647:
                return self._line(24, "stop_dup_id must be an integer from 1 to 2147483647")
            dup_id = int(p["stop_dup_id"])
            if dup_id in self.dup_replies:
                self.duplicates += 1
                return self.dup_replies[dup_id]
        rows = list(csv.reader(io.StringIO(p.get("batch_data", ""))))
        if not rows or [c.strip().lower() for c in rows[0]] != ["msisdn", "message"]:
            return self._line(24, "batch_data must start with the header row msisdn,message")
        if len(rows) - 1 > self.max_batch:
            return self._line(201)
        checked: list[tuple[str, str, str, int, datetime | None]] = []
        for row in rows[1:]:
            if len(row) != 2:
                return self._line(24, "every batch_data row must have msisdn and message")
            problem = self._validate({**p, "msisdn": row[0], "message": row[1]})
            if isinstance(problem, str):
                return self._line(24, problem)
            checked.append((row[0], *problem))
        numbers = [c[0] for c in checked]
        if not numbers:
            return self._line(24, "batch_data has no rows")
        if len(set(numbers)) != len(numbers) and p.get("strip_dup_recipients") != "1":
            return self._line(24, "recipients are not unique")
        if self._forced:
            return self._line(self._forced.popleft())
        cost = sum(c[3] for c in checked)
        if account.credits < cost:
            return self._line(25, "insufficient credits")
        now = datetime.now(UTC)
        send_time = checked[0][4]
        scheduled = send_time is not None and send_time > now
        batch_id = self._batch()
        reply = self._line(1 if scheduled else 0, batch_id=batch_id)
        account.credits -= cost
        shown = {k: v for k, v in p.items() if k != "password"}
        for number, text, dca, parts, _ in checked:
            self.sent.append(BulkSent(batch_id, p["username"], number, text, dca, int(p.get("msg_class", "2")),
                                      p.get("sender"), send_time if scheduled else None, parts, dup_id, shown))
            self.report_status[f"{batch_id}:{number}"] = 10
        if dup_id is not None:
            self.dup_replies[dup_id] = reply
        return reply

    def _validate(self, p: dict[str, str]) -> str | tuple[str, str, int, datetime | None]:
        """A problem in words, or (text, dca, parts, send_time)."""
        if not p.get("message"):
            return "message is required"
        if not p.get("msisdn"):
            return "msisdn is required"
        numbers = p["msisdn"].split(",")
        if not all(n.isascii() and n.isdigit() and 7 <= len(n) <= 15 for n in numbers):
            return "invalid msisdn"
        if len(set(numbers)) != len(numbers) and p.get("strip_dup_recipients") != "1":
            return "recipients are not unique"
        sender = p.get("sender")
        if sender is not None:
            if not (_SENDER_ALNUM.fullmatch(sender) or _SENDER_DIGITS.fullmatch(sender)):
                return "invalid sender"
            if p.get("repliable") == "1":
                return "sender is not compatible with repliable"
        for key, allowed in (("msg_class", {"0", "1", "2", "3"}), ("routing_group", {"1", "2", "3"}),
                             ("want_report", {"0", "1"}), ("repliable", {"0", "1"}),
                             ("allow_concat_text_sms", {"0", "1"})):
            if key in p and p[key] not in allowed:
                return f"invalid {key}"
        dca = p.get("dca", "7bit")
        message = p["message"]
        if dca == "16bit":
            if not _HEX.fullmatch(message) or len(message) > 280 or len(message) % 4:
                return "a 16bit message must be at most 140 octets of UTF-16 hex"
            text = bytes.fromhex(message).decode("utf-16-be", "replace")
            parts = 1
        elif dca == "8bit":
            if not _HEX.fullmatch(message) or len(message) > 280:
                return "an 8bit message must be at most 140 hex octets"
            text, parts = message, 1
        elif dca == "7bit":
            text = message
            parts = _gsm_parts(text)
            if parts > 1:
                if p.get("allow_concat_text_sms") != "1":
                    return "message longer than 160 characters without allow_concat_text_sms"
                max_parts = p.get("concat_text_sms_max_parts", "2")
                if not max_parts.isdigit() or not 1 <= int(max_parts) <= 127 or parts > int(max_parts):
                    return "message needs more parts than concat_text_sms_max_parts"
        else:
            return "invalid dca"
        send_time = None
        if p.get("send_time"):
            if not _SEND_TIME.fullmatch(p["send_time"]):
                return "send_time must be yyyy-mm-dd hh:mm:ss"
            send_time = datetime.strptime(p["send_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=self.zone)
        elif p.get("send_time_unixtime"):
            if not p["send_time_unixtime"].isdigit():
                return "send_time_unixtime must be an integer"
            send_time = datetime.fromtimestamp(int(p["send_time_unixtime"]), UTC)
        return text, dca, parts, send_time

    def _credits(self, request: RecordedRequest) -> str:
        account = self._login(request)
        if account is None:
            return self._line(23, "invalid credentials")
        return f"0|{account.credits:.2f}"

    def _report(self, request: RecordedRequest) -> str:
        if self._login(request) is None:
            return self._line(23, "invalid credentials")
        batch_id = request.param("batch_id") or ""
        rows = [(k.split(":")[1], v) for k, v in self.report_status.items() if k.split(":")[0] == batch_id]
        if not rows:
            return self._line(24, "unknown batch_id")
        return f"0|{self.report_header}\n\n" + "\n".join(f"{n}|{code}" for n, code in rows) + "\n"

    def set_report(self, batch_id: str, number: str, code: int) -> None:
        with self._lock:
            self.report_status[f"{batch_id}:{number}"] = code

    def add_reply(self, to_message_id: str | None, text: str, number: str | None = None) -> str:
        """Hold a reply to the SMS of batch `to_message_id` (see the module docstring); its msg_id."""
        with self._lock:
            original = next((m for m in self.sent if m.batch_id == to_message_id), None)
            if to_message_id is not None and original is None:
                raise KeyError(f"the fake accepted no batch {to_message_id!r}")
            if number is None and original is None:
                raise ValueError("a reply that links to nothing needs a number")
            digits = (number or (original.number if original else "")).lstrip("+")
            username = original.username if original is not None else next(iter(self.accounts))
            repliable = [m for m in self.sent if m.username == username and m.number == digits
                         and m.params.get("repliable") == "1"]
            self._next_inbox += 1
            self.inbox.append(BulkReply(str(self._next_inbox), username, digits, text, datetime.now(self.zone),
                                        repliable[-1].batch_id if repliable else None))
            self._changed.notify_all()
            return str(self._next_inbox)

    def _get_inbox(self, request: RecordedRequest) -> str:
        if self._login(request) is None:
            return self._line(23, "invalid credentials")
        last = request.param("last_retrieved_id")
        if last is None or not last.isdigit():
            return self._line(24, "last_retrieved_id is required")
        rows = [r for r in self.inbox if r.username == request.param("username") and int(r.id) > int(last)]
        rows = rows[: self.inbox_limit]
        lines = []
        for r in rows:
            try:
                r.text.encode("iso-8859-1")
                message, encoding = r.text.replace("\r", "\\r").replace("\n", "\\n"), "7bit"
            except UnicodeEncodeError:
                message, encoding = r.text.encode("utf-16-be").hex(), "16bit"
            when = r.received_at.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"{r.id}|{r.number}|{message}|{when}|{OUR_NUMBER}|{r.related or 0}|{encoding}")
        return f"0|records to follow|{len(rows)}\n\n" + "".join(line + "\n" for line in lines)


# == JSON REST API v1 ==================================================================================
JSON_ACCEPTED = ("ACCEPTED", "SCHEDULED", "SENT", "DELIVERED")
ERRORS_URL = "https://developer.bulksms.com/json/v1/errors#"
MAX_JSON_MESSAGES = 30_000
_GSM = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€\f"
)
_GSM_EXT = frozenset("^{}\\[~]|€\f")


def problem(status: int, title: str, detail: str = "", kind: str = "") -> Reply:
    """A problem JSON answer as BulkSMS gives it (`type`, `title`, `status`, `detail`)."""
    body: dict[str, object] = {"type": ERRORS_URL + (kind or title.lower().replace(" ", "-")), "title": title,
                               "status": status}
    if detail:
        body["detail"] = detail
    return Reply(status, json.dumps(body), content_type="application/json")


@dataclass(frozen=True)
class JsonSent:
    """One message the JSON fake created."""

    id: str
    submission_id: str
    username: str
    number: str  # digits, as given without "+"
    text: str
    encoding: str
    parts: int
    sender: object  # the `from` value as given
    message_class: str | None
    schedule: datetime | None
    dedup_id: int | None
    status: str  # status.type
    subtype: str | None


class FakeBulkSmsJson(FakeProvider):
    """BulkSMS JSON API v1 at `http://127.0.0.1:PORT/v1/`.

    Checks what BulkSMS checks (Basic auth by username:password or token id:secret, JSON content type, `to`, `body`,
    encoding, parts against `longMessageMaxParts`, sender, `messageClass`, `schedule-date` with an offset,
    `deduplication-id` as an int32, at most 30,000 messages, credit) and answers `201` with one message object per
    message, or problem JSON. A repeated `deduplication-id` gets the first `201` again and creates nothing.

    Switches for shapes sources disagree on or that are rare: `status_of[number] = ("FAILED", "BLOCKED")` gives a
    number that status; `omit` drops numbers from the `201` array (a number without a message); `force(reply)`
    answers the next valid submissions with that reply (e.g. `problem(403, "Insufficient Credits")`) after the
    login check; `misconfigured(status)` answers everything as a wrong host would (301 to https, 404).
    """

    base_path = "/v1/"

    def __init__(self, accounts: dict[str, tuple[str, float]] | None = None) -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100.0)}
        self.accounts = {u: BulkAccount(p, float(c)) for u, (p, c) in given.items()}
        self.sent: list[JsonSent] = []
        self.submissions = 0  # POST messages that created messages
        self.duplicates = 0  # submissions answered from the deduplication-id memory
        self.status_of: dict[str, tuple[str, str | None]] = {}
        self.omit: set[str] = set()
        self._dedup: dict[int, str] = {}
        self._forced: deque[Reply] = deque()
        self._misconfigured: int | None = None
        self._next_id = 1_000_000_000 + secrets.randbelow(1_000_000)
        self.received: list[BulkReply] = []

    def force(self, *replies: Reply) -> None:
        """Answer the next valid, authenticated submissions with these replies, one each."""
        with self._lock:
            self._forced.extend(replies)

    def misconfigured(self, status: int | None) -> None:
        """Answer every request with this HTTP status (301 with a Location, 404), or normally with None."""
        with self._lock:
            self._misconfigured = status

    def credits_of(self, username: str) -> float:
        with self._lock:
            return self.accounts[username].credits

    # -- the API ----------------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        path = request.path.removeprefix(self.base_path)
        if self._misconfigured is not None:
            if self._misconfigured < 400:
                return Reply(self._misconfigured, "", headers={"Location": "https://api.bulksms.com/v1/" + path})
            return problem(self._misconfigured, "Not Found", "No such resource", "not-found")
        if not request.path.startswith(self.base_path):
            return problem(404, "Not Found", "No such resource", "not-found")
        username = self._login(request)
        if username is None:
            return problem(401, "Unauthorized", "Authentication failed", "authentication-failed")
        if request.method == "POST" and path == "messages":
            return self._send(request, username)
        if request.method == "GET" and path == "profile":
            credits = self.accounts[username].credits
            return Reply(200, json.dumps({"id": "1", "username": username, "created": "2020-01-01T00:00:00Z",
                                          "credits": {"balance": credits, "isTransferAllowed": False, "limit": 0},
                                          "quota": {"size": 100_000, "remaining": 100_000}}),
                         content_type="application/json")
        if request.method == "GET" and path == "messages":
            return self._list(request, username)
        if request.method == "GET" and path.startswith("messages/"):
            found = [m for m in self.sent if m.id == path.removeprefix("messages/") and m.username == username]
            if not found:
                return problem(404, "Not Found", "No message with that id", "not-found")
            return Reply(200, json.dumps(self._object(found[0])), content_type="application/json")
        return problem(404, "Not Found", "No such resource", "not-found")

    def _login(self, request: RecordedRequest) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            username, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        account = self.accounts.get(username)
        return username if account is not None and account.password == password else None

    def _send(self, request: RecordedRequest, username: str) -> Reply:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return problem(415, "Unsupported Media Type", "Content-Type must be application/json")
        dedup_text = request.param("deduplication-id")
        dedup: int | None = None
        if dedup_text is not None:
            if not dedup_text.lstrip("-").isdigit() or not -(2**31) <= int(dedup_text) < 2**31:
                return problem(400, "Bad Request", "deduplication-id must be a 32-bit integer", "bad-request")
            dedup = int(dedup_text)
            if dedup in self._dedup:
                self.duplicates += 1
                return Reply(201, self._dedup[dedup], content_type="application/json")
        try:
            data = json.loads(request.body)
        except ValueError:
            return problem(400, "Bad Request", "The request body is not valid JSON", "bad-request")
        entries = data if isinstance(data, list) else [data]
        schedule = self._schedule(request.param("schedule-date"))
        if isinstance(schedule, Reply):
            return schedule
        auto = request.param("auto-unicode") == "true"
        planned: list[tuple[str, str, str, int, object, str | None]] = []
        for entry in entries:
            checked = self._entry(entry, auto)
            if isinstance(checked, Reply):
                return checked
            planned.extend(checked)
        if not planned:
            return problem(400, "Bad Request", "No recipients", "bad-request")
        if len(planned) > MAX_JSON_MESSAGES:
            return problem(400, "Bad Request", f"At most {MAX_JSON_MESSAGES} messages per request", "bad-request")
        if self._forced:
            return self._forced.popleft()
        account = self.accounts[username]
        cost = sum(p[3] for p in planned)
        if account.credits < cost:
            return problem(403, "Insufficient Credits", f"The submission needs {cost} credits", "insufficient-credits")
        account.credits -= cost
        self.submissions += 1
        submission = f"1-{self._next_id:020d}"
        scheduled = schedule is not None and schedule > datetime.now(UTC)
        created: list[JsonSent] = []
        for number, text, encoding, parts, sender, message_class in planned:
            self._next_id += 1
            kind, subtype = self.status_of.get(number, ("SCHEDULED" if scheduled else "ACCEPTED", None))
            created.append(JsonSent(str(self._next_id), submission, username, number, text, encoding, parts, sender,
                                    message_class, schedule if scheduled else None, dedup, kind, subtype))
        self.sent.extend(created)
        body = json.dumps([self._object(m) for m in created if m.number not in self.omit])
        if dedup is not None:
            self._dedup[dedup] = body
        return Reply(201, body, content_type="application/json")

    def _schedule(self, value: str | None) -> datetime | Reply | None:
        if value is None:
            return None
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            return problem(400, "Bad Request", "schedule-date must be yyyy-MM-ddThh:mm:ss with an offset",
                           "bad-request")
        return when

    def _entry(self, entry: object, auto: bool) -> list[tuple[str, str, str, int, object, str | None]] | Reply:
        """The messages one submission entry makes: (number, text, encoding, parts, from, messageClass)."""
        if not isinstance(entry, dict) or not isinstance(entry.get("body"), str) or not entry["body"]:
            return problem(400, "Bad Request", "Every message needs a body", "bad-request")
        to = entry.get("to")
        targets = to if isinstance(to, list) else [to]
        numbers: list[str] = []
        for target in targets:
            address = target.get("address") if isinstance(target, dict) else target
            digits = address.removeprefix("+") if isinstance(address, str) else ""
            if not (digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15):
                return problem(400, "Bad Request", f"Invalid phone number: {address!r}", "bad-request")
            numbers.append(digits)
        text: str = entry["body"]
        encoding = entry.get("encoding", "TEXT")
        if encoding not in ("TEXT", "UNICODE"):
            return problem(400, "Bad Request", "encoding must be TEXT or UNICODE", "bad-request")
        if encoding == "TEXT" and auto and not set(text) <= _GSM:
            encoding = "UNICODE"
        max_parts = entry.get("longMessageMaxParts", 3)
        if isinstance(max_parts, bool) or not isinstance(max_parts, int) or max_parts < 1:
            return problem(400, "Bad Request", "longMessageMaxParts must be a positive integer", "bad-request")
        if encoding == "TEXT":
            units = sum(2 if ch in _GSM_EXT else 1 for ch in text)
            parts = 1 if units <= 160 else math.ceil(units / 153)
        else:
            units = len(text.encode("utf-16-le")) // 2
            parts = 1 if units <= 70 else math.ceil(units / 67)
        if parts > max_parts:
            return problem(400, "Bad Request", f"The message needs {parts} parts; longMessageMaxParts is {max_parts}",
                           "bad-request")
        sender = entry.get("from")
        if isinstance(sender, str) and not (_SENDER_ALNUM.fullmatch(sender) or _SENDER_DIGITS.fullmatch(sender)):
            return problem(400, "Bad Request", "Invalid sender id", "bad-request")
        if isinstance(sender, dict) and sender.get("type") not in ("REPLIABLE", "INTERNATIONAL", "ALPHANUMERIC",
                                                                    "SHORTCODE"):
            return problem(400, "Bad Request", "Invalid from.type", "bad-request")
        message_class = entry.get("messageClass")
        if message_class is not None and message_class not in ("FLASH_SMS", "ME_SPECIFIC", "SIM_SPECIFIC",
                                                                "TE_SPECIFIC", 0, 1, 2, 3):
            return problem(400, "Bad Request", "Invalid messageClass", "bad-request")
        return [(n, text, encoding, parts, sender, message_class) for n in numbers]

    @staticmethod
    def _object(m: JsonSent) -> dict[str, object]:
        return {"id": m.id, "type": "SENT", "from": m.sender if isinstance(m.sender, str) else None,
                "to": f"+{m.number}", "body": m.text, "encoding": m.encoding, "protocolId": 0, "messageClass": 2,
                "submission": {"id": m.submission_id, "date": datetime.now(UTC).isoformat()},
                "status": {"id": f"{m.status}.{m.subtype}", "type": m.status, "subtype": m.subtype}}

    def webhook_body(self, message_ids: list[str]) -> bytes:
        """The body BulkSMS's status webhook posts for these messages: a JSON array of their message objects."""
        with self._lock:
            by_id = {m.id: m for m in self.sent}
            return json.dumps([self._object(by_id[i]) for i in message_ids]).encode("utf-8")

    def set_status(self, message_id: str, kind: str, subtype: str | None = None) -> None:
        """Move a created message to another status (what `GET messages/{id}` then shows)."""
        with self._lock:
            self.sent = [dataclasses.replace(m, status=kind, subtype=subtype) if m.id == message_id else m
                         for m in self.sent]

    # -- replies ----------------------------------------------------------------------------------
    def add_reply(self, to_message_id: str | None, text: str, number: str | None = None) -> str:
        """Hold a reply to the SMS `to_message_id` (see the module docstring); its message id."""
        with self._lock:
            original = next((m for m in self.sent if m.id == to_message_id), None)
            if to_message_id is not None and original is None:
                raise KeyError(f"the fake created no message {to_message_id!r}")
            if number is None and original is None:
                raise ValueError("a reply that links to nothing needs a number")
            digits = (number or (original.number if original else "")).lstrip("+")
            username = original.username if original is not None else next(iter(self.accounts))
            repliable = [m for m in self.sent if m.username == username and m.number == digits
                         and isinstance(m.sender, dict) and m.sender.get("type") == "REPLIABLE"]
            self._next_id += 1
            self.received.append(BulkReply(str(self._next_id), username, digits, text, datetime.now(UTC),
                                           repliable[-1].id if repliable else None))
            self._changed.notify_all()
            return str(self._next_id)

    @staticmethod
    def _received_object(r: BulkReply) -> dict[str, object]:
        unicode = not set(r.text) <= _GSM
        return {"id": r.id, "type": "RECEIVED", "from": f"+{r.number}", "to": f"+{OUR_NUMBER}", "body": r.text,
                "encoding": "UNICODE" if unicode else "TEXT", "protocolId": 0, "messageClass": 0,
                "numberOfParts": 1, "creditCost": 0,
                "submission": {"id": f"2-{int(r.id):020d}", "date": r.received_at.isoformat()},
                "status": {"id": "RECEIVED", "type": "RECEIVED", "subtype": None},
                "relatedSentMessageId": r.related}

    def received_body(self, message_ids: list[str]) -> bytes:
        """The body BulkSMS's received-messages webhook posts for these replies: a JSON array of them."""
        with self._lock:
            by_id = {r.id: r for r in self.received}
            return json.dumps([self._received_object(by_id[i]) for i in message_ids]).encode("utf-8")

    def _list(self, request: RecordedRequest, username: str) -> Reply:
        """`GET messages`: the account's messages, filtered, sorted and limited as BulkSMS documents."""
        kind: str | None = None
        above, below = -1, 2**63
        for clause in (request.param("filter") or "").split("&") if request.param("filter") else []:
            match = re.fullmatch(r"(type)=(SENT|RECEIVED)|(id)([<>])(\d+)", clause)
            if match is None:
                return problem(400, "Bad Request", f"Invalid filter clause: {clause!r}", "bad-request")
            if match.group(1):
                kind = match.group(2)
            elif match.group(4) == ">":
                above = int(match.group(5))
            else:
                below = int(match.group(5))
        order = request.param("sortOrder", "DESCENDING")
        limit_text = request.param("limit", "1000") or ""
        if order not in ("ASCENDING", "DESCENDING") or not limit_text.isdigit() or int(limit_text) < 1:
            return problem(400, "Bad Request", "Invalid sortOrder or limit", "bad-request")
        found: list[tuple[int, dict[str, object]]] = []
        if kind in (None, "SENT"):
            found += [(int(m.id), self._object(m)) for m in self.sent if m.username == username]
        if kind in (None, "RECEIVED"):
            found += [(int(r.id), self._received_object(r)) for r in self.received if r.username == username]
        found = sorted((f for f in found if above < f[0] < below), key=lambda f: f[0],
                       reverse=order == "DESCENDING")
        body = [obj for _, obj in found[: min(int(limit_text), 1000)]]
        return Reply(200, json.dumps(body), content_type="application/json")
