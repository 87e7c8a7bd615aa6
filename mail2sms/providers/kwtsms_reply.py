"""KwtSMS's answers read into Results: `send/`, `balance/`, `senderid/` and `status/`/`dlr/`/`report/`, both API
shapes.

The JSON API (v4.1, the default) answers `{"result":"OK","msg-id":…,"numbers":…,"points-charged":…,
"balance-after":…,"unix-timestamp":…}` or `{"result":"ERROR","code":"ERR003","description":…}`, sometimes with
an HTTP 4xx (403 for ERR024); the legacy text API answers `OK:<msg-id>:<numbers>:<points>:<balance>:<time>` or
a line carrying `ERR\\d{3}`. `read()` recognises either shape whatever the HTTP status, so the adapter reads the
body before it falls back to the status.

No outcome is better than the evidence: OK is `Sent` only when `numbers` matches the numbers sent. KwtSMS does
not say which numbers it dropped, so fewer taken makes every number of the request `Unknown`, with how many were
taken; none taken is a refusal; a test-mode OK (`test=1`: validated, nothing sent) is never `Sent`.

Pure: no I/O. KwtSMS's own `description` text is quoted only sanitised (one line, bounded, the account's secrets
masked); nothing here may ever put a password into a Result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mail2sms.model import DeliveryState, Receipt, ReceiptQuery, Rejected, Result, Retry, Sent, Unknown
from mail2sms.providers import receipts
from mail2sms.providers.explain import explain

TYPE = "kwtsms"

# Its codes in plain words (explain.py falls back to its generic table): mailed to the sender, so written for a
# person who has never read the API document, and never carrying a secret.
EXPLAIN: Mapping[str, str] = {
    "ERR001": "KwtSMS says the API is disabled for this account: enable the API in the KwtSMS account "
    "settings or ask KwtSMS support to enable it",
    "ERR002": "KwtSMS says a required parameter is missing (username, password, sender, mobile, lang or "
    "message): check the provider settings and the mail's fields",
    "ERR003": "the username or password was not accepted by KwtSMS: check the account's API username and "
    "password",
    "ERR004": "the KwtSMS account has no API access: ask KwtSMS to enable API access for it",
    "ERR005": "the KwtSMS account is blocked: contact KwtSMS support",
    "ERR006": "KwtSMS found no valid number in the request: write numbers in international form, digits only "
    "(e.g. 96550000000)",
    "ERR007": "KwtSMS accepts at most 200 numbers per request: send to fewer numbers at once",
    "ERR008": "the sender ID is not registered on the KwtSMS account, or is banned (sender IDs are "
    "case-sensitive): use one of the account's sender IDs exactly as registered",
    "ERR009": "the message text is empty: write the text of the SMS",
    "ERR010": "the KwtSMS account balance is zero: buy credit, then resend",
    "ERR011": "the KwtSMS account balance is too low for this message: buy credit, then resend",
    "ERR012": "the message is longer than KwtSMS's limit of 6 SMS pages: shorten the text",
    "ERR013": "the KwtSMS send queue is full and the message was not taken: mail2sms tries again later",
    "ERR024": "KwtSMS refused the request because the sending IP address is not on the account's allowed "
    "list: add this server's IP address in the KwtSMS account settings",
    "ERR025": "KwtSMS says a number is invalid: write numbers in international form, digits only "
    "(e.g. 96550000000)",
    "ERR026": "the destination country is not activated on the KwtSMS account: ask KwtSMS to activate it",
    "ERR027": "KwtSMS does not accept HTML in the message: send plain text",
    "ERR028": "less than 15 seconds passed since the last SMS to the same number, so KwtSMS did not take "
    "it: mail2sms tries again shortly",
    "ERR019": "KwtSMS found no delivery report for this message",
    "ERR020": "KwtSMS says this message id does not exist",
    "ERR021": "KwtSMS has no delivery report for this message yet: it is asked again later",
    "ERR022": "KwtSMS's delivery reports for this message are not ready yet (they can take 24 hours)",
    "ERR023": "KwtSMS had an unknown error while reading the delivery report",
    "ERR029": "KwtSMS says the message id is not correct",
    "ERR030": "KwtSMS says the message is stuck in its queue with an error: delete it from the queue on "
    "kwtsms.com to recover the credit, then resend",
    "ERR031": "KwtSMS did not accept the language code: use lang 1 (English), 2 (Arabic, Windows-1256), "
    "3 (Arabic, UTF-8) or 4 (Unicode)",
    "ERR032": "KwtSMS flagged the message as spam and refused it: change the text or contact KwtSMS",
    "ERR033": "KwtSMS has no coverage for this number: the number's network cannot be reached through "
    "KwtSMS",
    "ERROR": "KwtSMS refused the request without an error code: check the account, the sender ID and the "
    "numbers, and look at the account's message log on kwtsms.com",
    "TEST": "KwtSMS checked this SMS in test mode (the provider's options.test is on) and sent nothing to the "
    "phone: turn options.test off to send for real",
    "NONE_TAKEN": "KwtSMS answered OK but took none of the numbers, so nothing was sent: check the numbers and "
    "the destination countries activated on the KwtSMS account",
    "PARTIAL": "KwtSMS took fewer numbers than were sent and did not say which, so mail2sms cannot tell whether "
    "this number's SMS was sent: check the KwtSMS message log before resending",
    "UNEXPECTED": "KwtSMS's reply was not one mail2sms understands, so it cannot tell whether the SMS was sent: "
    "check the KwtSMS account's message log before resending",
    "CP1256": "the text has characters that Windows-1256 (KwtSMS lang 2) cannot carry: use lang 3 "
    "(Arabic, UTF-8) or 4 (Unicode)",
    "NUMBER": "the number cannot be sent through KwtSMS: it must be in international form, digits only "
    "(e.g. 96550000000)",
}
QUEUE_FULL = "ERR013"
QUEUE_FULL_BACKOFF = 30.0  # KwtSMS's SDKs wait 30 s, 60 s, 120 s … after ERR013
SAME_NUMBER = "ERR028"
SAME_NUMBER_WAIT = 15.0
MAX_DESCRIPTION = 200
RECEIPT_PATHS = ("status/", "dlr/", "report/")  # where sources say KwtSMS answers delivery status (they conflict)

_CODE = re.compile(r"ERR\d{3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BALANCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Reply:
    """One KwtSMS answer: OK with its fields, or an error with its code and KwtSMS's description."""

    ok: bool
    code: str | None = None
    description: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def read(body: str) -> Reply | None:
    """The answer in `body` (JSON or text API), or None when it is neither shape: nobody can tell what it means."""
    text = body.strip()
    if text.startswith("{"):
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("result"), str):
            if data["result"].upper() == "OK":
                return Reply(True, fields=data)
            if data["result"].upper() == "ERROR":
                m = _CODE.search(str(data.get("code", "")))
                return Reply(False, m.group(0) if m else None, str(data.get("description") or ""))
        return None
    if text.upper().startswith("OK:") or text.upper() == "OK":
        keys = ("msg-id", "numbers", "points-charged", "balance-after", "unix-timestamp")
        return Reply(True, fields=dict(zip(keys, text.split(":")[1:], strict=False)))
    m = _CODE.search(text)
    if m:
        return Reply(False, m.group(0))
    if text.upper().startswith("ERROR"):
        return Reply(False, None)
    return None


def clean(description: str, secrets: Sequence[str] = ()) -> str:
    """KwtSMS's words made safe to mail: secrets masked, one line, at most MAX_DESCRIPTION characters."""
    for secret in secrets:
        if secret:
            description = description.replace(secret, "***")
    one_line = " ".join(_CONTROL.sub(" ", description).split())
    return one_line if len(one_line) <= MAX_DESCRIPTION else one_line[: MAX_DESCRIPTION - 3] + "..."


def error_result(reply: Reply, attempts: int = 0, secrets: Sequence[str] = ()) -> Result:
    """The Result of an error answer: ERR013/ERR028 mean "not processed" (Retry), the rest are refusals."""
    code = reply.code
    if code == QUEUE_FULL:
        # Doubling from 30 s per attempt already made: a full queue drains slowly, hammering it helps nobody.
        return Retry(code=code, why=explain(TYPE, code), after=QUEUE_FULL_BACKOFF * 2 ** max(0, attempts))
    if code == SAME_NUMBER:
        return Retry(code=code, why=explain(TYPE, code), after=SAME_NUMBER_WAIT)
    words = clean(reply.description, secrets)
    if code is None:
        why = explain(TYPE, "ERROR")
        return Rejected(code="ERROR", why=f"{why} (KwtSMS said: {words})" if words else why)
    if code in EXPLAIN:
        return Rejected(code=code, why=explain(TYPE, code))
    if words:
        return Rejected(
            code=code,
            why=f'KwtSMS refused the request with {code}: "{words}" (a code mail2sms '
            "does not know: see KwtSMS's documentation or ask its support)",
        )
    return Rejected(code=code, why=explain(TYPE, code))


def _count(value: Any) -> int | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def sent_results(reply: Reply, count: int, test: bool = False) -> list[Result]:
    """One Result per number for an OK answer to a request carrying `count` numbers."""
    f = reply.fields
    msg_id = str(f.get("msg-id") or "").strip() or None
    if test:
        why = explain(TYPE, "TEST")
        return [Rejected(code="TEST", why=f"{why} (msg-id {msg_id})" if msg_id else why)] * count
    raw = f.get("numbers")
    taken = count if raw in (None, "") else _count(raw)
    charge = _charge(f)
    if taken == count:
        detail = f"KwtSMS took {count} of {count} number{'s' if count != 1 else ''}{charge}"
        return [Sent(provider_id=msg_id, detail=detail)] * count
    if taken == 0:
        return [Rejected(code="NONE_TAKEN", why=explain(TYPE, "NONE_TAKEN"))] * count
    said = f"took {taken} of {count} numbers" if taken is not None else f"answered OK with numbers = {raw!r:.20}"
    why = (
        f"KwtSMS {said} and did not say which{charge}, so mail2sms cannot tell whether this number's SMS was "
        f"sent: check the KwtSMS message log{f' (msg-id {msg_id})' if msg_id else ''} before resending"
    )
    return [Unknown(code="PARTIAL", why=why)] * count


def _charge(fields: dict[str, Any]) -> str:
    points, balance = fields.get("points-charged"), fields.get("balance-after")
    words = ""
    if points not in (None, ""):
        words += f", charged {_num(points)} point{'s' if _num(points) != '1' else ''}"
    if balance not in (None, ""):
        words += f"; balance after {_num(balance)}"
    return words


def _num(value: Any) -> str:
    try:
        return f"{float(str(value)):g}"
    except ValueError:
        return clean(str(value))[:20]


def send_results(
    reply: Reply, count: int, attempts: int = 0, test: bool = False, secrets: Sequence[str] = ()
) -> list[Result]:
    """One Result per number for any recognised answer to `send/`."""
    if reply.ok:
        return sent_results(reply, count, test)
    return [error_result(reply, attempts, secrets)] * count


def balance(body: str) -> tuple[float, float | None] | None:
    """(available, purchased) from `181/377`, `181.00/1000.00` or the JSON API's OK object; None otherwise."""
    m = _BALANCE.match(body)
    if m:
        return float(m.group(1)), float(m.group(2))
    reply = read(body)
    if reply is None or not reply.ok:
        return None
    try:
        available = float(reply.fields["available"])
        purchased = float(reply.fields["purchased"]) if "purchased" in reply.fields else None
    except (KeyError, TypeError, ValueError):
        return None
    return available, purchased


def sender_ids(body: str) -> list[str] | None:
    """The account's sender ids from `{"result":"OK","senderid":[…]}` or one id per line; None when unreadable."""
    reply = read(body)
    if reply is not None:
        ids = reply.fields.get("senderid") if reply.ok else None
        if isinstance(ids, list):
            return [clean(str(i))[:20] for i in ids if str(i).strip()]
        return None
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if lines and all(len(line) <= 20 and not line.startswith(("<", "{")) for line in lines):
        return lines
    return None


def delivery_status(body: str, msg_id: str) -> str | None:
    """KwtSMS's status words for `msg_id` from `status/` (`{"result":"OK","status":…}`) or `dlr/` (`<msgid>,<text>`
    lines); None when the answer says nothing about it (an ERR code such as ERR021 "not ready yet" included)."""
    reply = read(body)
    if reply is not None:
        if not reply.ok:
            return None
        for key in ("status", "description", "report"):
            value = reply.fields.get(key)
            if isinstance(value, str) and value.strip():
                return clean(value)
        return None
    for line in body.splitlines():
        first, comma, rest = line.partition(",")
        if comma and first.strip() == msg_id and rest.strip():
            return clean(rest)
    return None


@dataclass(frozen=True)
class DeliveryReport:
    """What a `status/`/`dlr/`/`report/` answer says about one msg-id: an error code, per-number status words
    (when the answer names numbers), or one status word for the whole msg-id; `at` = `delivered-at` if given."""

    error: str | None = None  # ERR021 (not ready), ERR020 (no such id), ...; "UNEXPECTED" when unreadable
    by_number: dict[str, str] = field(default_factory=dict)
    word: str | None = None
    at: float | None = None


_NUMBER_KEYS = ("mobile", "number", "msisdn", "to", "phone")
_STATUS_KEYS = ("status", "report", "description", "dlr", "state")


def delivery_report(body: str, msg_id: str) -> DeliveryReport:
    """Read a delivery status answer in either API's shape (sources conflict on the path and the shape, so both
    the JSON API's `{"result":"OK","status":…}` and the text API's `<msgid|number>,<status text>` lines count)."""
    reply = read(body)
    if reply is not None:
        if not reply.ok:
            return DeliveryReport(error=reply.code or "ERROR")
        f = reply.fields
        at = _count(f.get("delivered-at")) or _count(f.get("unix-timestamp")) or None
        by_number: dict[str, str] = {}
        for value in f.values():
            for entry in value if isinstance(value, list) else []:
                if not isinstance(entry, Mapping):
                    continue
                number = next((str(entry[k]) for k in _NUMBER_KEYS if entry.get(k) not in (None, "")), "")
                said = next((str(entry[k]) for k in _STATUS_KEYS if isinstance(entry.get(k), str)), "")
                digits = number.lstrip("+").strip()
                if digits.isdigit() and said.strip():
                    by_number[digits] = clean(said)
        word = next((clean(f[k]) for k in _STATUS_KEYS if isinstance(f.get(k), str) and f[k].strip()), None)
        if by_number or word:
            return DeliveryReport(by_number=by_number, word=word, at=float(at) if at else None)
        return DeliveryReport(error="UNEXPECTED")
    lines = [line.strip() for line in body.strip().splitlines()[:1000] if line.strip()]
    by_number = {}
    word = None
    for line in lines:
        first, comma, rest = line.partition(",")
        first, rest = first.strip(), rest.strip()
        if not comma or not rest or first.startswith("<"):
            return DeliveryReport(error="UNEXPECTED")
        if first == msg_id:
            word = clean(rest)
        elif first.lstrip("+").isdigit():
            by_number[first.lstrip("+")] = clean(rest)
    if by_number or word:
        return DeliveryReport(by_number=by_number, word=word)
    return DeliveryReport(error="UNEXPECTED")


def receipts_for(report: DeliveryReport, items: list[ReceiptQuery]) -> list[Receipt]:
    """One Receipt per item (all of one msg-id) from what the answer says: a number's own word first; the msg-id's
    one word only when a single number is asked about (a msg-id covers every number of its request)."""
    out: list[Receipt] = []
    for item in items:
        if report.error is not None:
            code = report.error
            why = explain(TYPE, code) if code.startswith("ERR") and code in EXPLAIN else (
                "KwtSMS's answer to the delivery status request was not one mail2sms understands; it asks again later"
            )
            out.append(receipts.pending(item, code, why))
            continue
        word = report.by_number.get(item.number) or (report.word if len(items) == 1 else None)
        if word is None:
            out.append(receipts.pending(item, "SHARED", "KwtSMS gave one delivery status for a message sent to "
                                        "several numbers without naming them, so it says nothing sure about this "
                                        "number"))
            continue
        state = receipts.classify(word)
        at = report.at if state is DeliveryState.DELIVERED else None
        out.append(Receipt(item.provider_id, item.number, state, word[:40], receipts.state_words("KwtSMS", state, word),
                           at))
    return out
