"""A stateful fake of BulkSMS's legacy EAPI (`send_sms`, `get_credits`, `get_report`), as `docs/providers.md` has it.

It keeps accounts (password, credits), every SMS it "sent" with its batch, and the replies given to each
`stop_dup_id`: a repeat of a successful submission's id is answered with the original reply and sends nothing, as
the seed describes (failures are not remembered, so a failed submission can be repeated). Parameters are read as
ISO-8859-1; `dca=16bit` messages are hex of UTF-16BE and are decoded back to text. It checks what BulkSMS checks
(login, numbers, unique recipients, sender, length and concatenation, dca, msg_class, routing_group, send_time)
and answers `status_code|status_description[|batch_id]` with HTTP 200.

Unconfirmed readings are switchable: `error_batch_id=True` adds a batch id to error lines (3 fields instead of
2), `report_header` picks "Results to follow" or the newer "Returns to follow", `zone` is the account's time zone
that `send_time` is read in.

It must never accept a request BulkSMS would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from tests.fakes.server import FakeProvider, RecordedRequest, Reply

SEND = "submission/send_sms/2/2.0"
CREDITS = "user/get_credits/1/1.1"
REPORT = "status_reports/get_report/2/2.0"
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
    ) -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100.0)}
        self.accounts = {u: BulkAccount(p, float(c)) for u, (p, c) in given.items()}
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
        endpoints = {SEND: self._send, CREDITS: self._credits, REPORT: self._report}
        if not request.path.startswith(self.base_path) or path not in endpoints:
            return Reply(404, "Not Found")
        return Reply(200, endpoints[path](request), content_type="text/plain; charset=ISO-8859-1")

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
