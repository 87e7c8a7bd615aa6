"""A stateful fake of Kapow's HTTP scripts (`sendsms.php`, `chk_credit.php`, `chk_status.php`).

It answers as `docs/providers.md` and the seed `kapow-http-api.txt` say.

It keeps accounts (password, credits), the from_ids enabled for sending, every SMS it accepted and each one's
delivery status. Like Kapow it answers GET and POST, always with HTTP 200 and a plain-text body without a
newline: `OK <credits_left> <id>…`, `USERPASS`, `NOCREDIT` or `ERROR`. The separator between several ids is
unconfirmed, so `id_separator` is switchable (a single space by default); so is how many ids a request with
several numbers gets back (`returnids`: "all", one per number in order, or "first", only the first one's).
`garble_next()` makes the next accepted requests (sent, credits taken) answer with other bodies — an empty body,
prose, an `OK` cut short — as a proxy or a Kapow fault might: what mail2sms must not read as success.

Delivery reports: `chk_status.php` answers each returnid's letter (`S` after sending; `deliver(returnid, "D")`
moves it). A send that carried `dlr=<address without http://>` is called back as Kapow does — an HTTP GET to
`http://<address>` with `returnid, mobile, status, timesent` added to its query — when `deliver()` moves it to `D` or
`X`, or at once when `auto_report` names a letter. Callbacks run in a thread, only to 127.0.0.1; `callbacks` records
each (url, HTTP status or the error's name) and `wait_callbacks(n)` waits for them.

It must never accept a request Kapow would refuse: a fake that accepts anything proves nothing.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from tests.fakes.server import FakeProvider, RecordedRequest, Reply

# The seed's `DD-MM-YY+HH:MM` (and `D-MM-YYYY`) as PHP sees it: the `+` of the URL is a space once decoded.
_SENDTIME = re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{2}|\d{4}) (\d{1,2}):(\d{2})$")
FLASH = "FLASH"


@dataclass
class KapowAccount:
    password: str
    credits: int


@dataclass(frozen=True)
class KapowSent:
    """One SMS the fake accepted."""

    returnid: str
    username: str
    number: str
    text: str  # without the FLASH marker
    flash: bool
    from_id: str | None
    sendtime: datetime | None
    credits: int


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        return UTC


def parse_sendtime(value: str, zone: tzinfo, now: datetime) -> datetime | None:
    """The scheduled time, or None when Kapow would answer ERROR (format, `/`, past, > 365 days ahead)."""
    m = _SENDTIME.match(value)
    if not m:
        return None
    day, month, year, hour, minute = (int(g) for g in m.groups())
    if year < 100:
        year += 2000
    try:
        when = datetime(year, month, day, hour, minute, tzinfo=zone)
    except ValueError:
        return None
    if when <= now or when > now + timedelta(days=365):
        return None
    return when


class FakeKapow(FakeProvider):
    """Kapow at `http://127.0.0.1:PORT/scripts/`."""

    base_path = "/scripts/"

    def __init__(
        self,
        accounts: dict[str, tuple[str, int]] | None = None,
        from_ids: Iterable[str] | None = None,
        id_separator: str = " ",
        timezone: str = "Europe/London",
        returnids: Literal["all", "first"] = "all",
        auto_report: str | None = None,
    ) -> None:
        super().__init__()
        given = accounts if accounts is not None else {"user": ("pass", 100)}
        self.accounts = {u: KapowAccount(p, int(c)) for u, (p, c) in given.items()}
        self.from_ids = set(from_ids) if from_ids is not None else None  # None: any from_id is enabled
        self.id_separator = id_separator
        self.zone = _zone(timezone)
        self.sent: list[KapowSent] = []
        self.status: dict[str, tuple[str, str]] = {}  # returnid → (username, D|B|S|X|N|R)
        self.returnids: Literal["all", "first"] = returnids
        self._garbled: deque[str] = deque()
        self.auto_report = auto_report  # a letter (D or X): report every SMS sent with dlr at once
        self.dlr_of: dict[str, str] = {}  # returnid → the dlr address its send carried
        self.callbacks: list[tuple[str, int | str]] = []  # (url called, HTTP status or the error's name)

    def garble_next(self, *bodies: str) -> None:
        """Answer the next accepted `sendsms.php` requests with these bodies (the SMS are still sent)."""
        with self._lock:
            self._garbled.extend(bodies)

    def credits_of(self, username: str) -> int:
        with self._lock:
            return self.accounts[username].credits

    def set_status(self, returnid: str, letter: str) -> None:
        with self._lock:
            username, _ = self.status[returnid]
            self.status[returnid] = (username, letter)

    def deliver(self, returnid: str, letter: str) -> None:
        """Move an SMS to `letter`; a final one (D or X) of a send with dlr is called back, as Kapow does."""
        with self._lock:
            self.set_status(returnid, letter)
            address = self.dlr_of.get(returnid)
            sent = next(s for s in self.sent if s.returnid == returnid)
        if address is not None and letter in ("D", "X"):
            self._call_back(address, returnid, sent.number, letter)

    def wait_callbacks(self, n: int, timeout: float = 30.0) -> list[tuple[str, int | str]]:
        """Block until at least `n` callbacks have been made (answered or failed); TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.callbacks) >= n, timeout):
                raise TimeoutError(f"{len(self.callbacks)} of {n} delivery report callbacks within {timeout} s")
            return list(self.callbacks)

    def _call_back(self, address: str, returnid: str, mobile: str, status: str) -> None:
        timesent = datetime.now(self.zone).strftime("%Y-%m-%d %H:%M:%S")
        query = urlencode({"returnid": returnid, "mobile": mobile, "status": status, "timesent": timesent})
        url = f"http://{address}{'' if address.endswith(('?', '&')) else '&' if '?' in address else '?'}{query}"

        def call() -> None:
            outcome: int | str
            if urlsplit(url).hostname != "127.0.0.1":  # tests call loopback only
                outcome = "NotLoopback"
            else:
                try:
                    outcome = httpx.get(url, timeout=10.0).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
            with self._changed:
                self.callbacks.append((url, outcome))
                self._changed.notify_all()

        threading.Thread(target=call, name="kapow-dlr", daemon=True).start()

    # -- the API ----------------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        endpoints = {
            "sendsms.php": self._send,
            "chk_credit.php": self._credit,
            "chk_status.php": self._status,
        }
        path = request.path.removeprefix(self.base_path)
        if not request.path.startswith(self.base_path) or path not in endpoints:
            return Reply(404, "Not Found")
        return Reply(200, endpoints[path](request))

    def _login(self, request: RecordedRequest) -> KapowAccount | None:
        account = self.accounts.get(request.param("username") or "")
        if account is None or account.password != request.param("password"):
            return None
        return account

    def _send(self, request: RecordedRequest) -> str:
        account = self._login(request)
        if account is None:
            return "USERPASS"
        mobile, sms = request.param("mobile") or "", request.param("sms") or ""
        if not mobile or not sms:
            return "ERROR"
        numbers = mobile.split(",")
        if not all(n.isascii() and n.isdigit() and 7 <= len(n) <= 15 for n in numbers):
            return "ERROR"
        from_id = request.param("from_id") or None
        if from_id is not None and self.from_ids is not None and from_id not in self.from_ids:
            return "ERROR"
        sendtime = None
        if request.param("sendtime"):
            sendtime = parse_sendtime(str(request.param("sendtime")), self.zone, datetime.now(UTC))
            if sendtime is None:
                return "ERROR"
        flash = sms.startswith(FLASH)
        text = sms[len(FLASH) :] if flash else sms
        parts = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
        cost = parts * len(numbers)
        if account.credits < cost:
            return "NOCREDIT"
        account.credits -= cost
        username = str(request.param("username"))
        ids = []
        for number in numbers:
            returnid = str(10**16 + secrets.randbelow(9 * 10**16))
            ids.append(returnid)
            self.status[returnid] = (username, "S")
            self.sent.append(KapowSent(returnid, username, number, text, flash, from_id, sendtime, parts))
            if request.param("dlr"):
                self.dlr_of[returnid] = str(request.param("dlr"))
                if self.auto_report in ("D", "X"):
                    self.status[returnid] = (username, self.auto_report)
                    self._call_back(str(request.param("dlr")), returnid, number, self.auto_report)
        if self._garbled:
            return self._garbled.popleft()
        if (request.param("returnid") or "").upper() == "TRUE":
            shown = ids if self.returnids == "all" else ids[:1]
            return f"OK {account.credits} {self.id_separator.join(shown)}"
        return f"OK {account.credits}"

    def _credit(self, request: RecordedRequest) -> str:
        account = self._login(request)
        return "USERPASS" if account is None else str(account.credits)

    def _status(self, request: RecordedRequest) -> str:
        known = self.status.get(request.param("returnid") or "")
        if known is None or known[0] != request.param("username"):
            return "ERROR"
        return known[1]
