"""KwtSMS's answers read into Results: `send/`, `balance/`, `senderid/` and `status/`/`dlr/`, both API shapes.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mail2sms.model import Rejected, Result, Retry, Sent, Unknown
from mail2sms.providers.explain import KWTSMS, explain

TYPE = "kwtsms"
QUEUE_FULL = "ERR013"
QUEUE_FULL_BACKOFF = 30.0  # KwtSMS's SDKs wait 30 s, 60 s, 120 s … after ERR013
SAME_NUMBER = "ERR028"
SAME_NUMBER_WAIT = 15.0
MAX_DESCRIPTION = 200

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
    if code in KWTSMS:
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
