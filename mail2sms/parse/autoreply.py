"""Inbound loop safety: whether a mail is an automatic reply (RFC 3834), which must never become an SMS.

mail2sms mails SMS replies and outcomes to people, marked `Auto-Submitted: auto-replied`; a vacation responder
that answers one of them, sent to the number's address, would otherwise text the number "I am out of office" and
perhaps start a loop between two robots. So a mail carrying an automatic-reply marker is refused at DATA:
`Auto-Submitted: auto-replied` (RFC 3834 5.2, any case, with parameters or comments), and the common non-standard
vacation markers `X-Autoreply`, `X-Autorespond` (any value but a plain no) and `Precedence: auto_reply`.
`Auto-Submitted: auto-generated` (alarm panels, monitoring) and `no`, and any other value, still become SMS:
that is what an email-to-SMS gateway is for.

Pure: reads the header values `parse.mime` collected, never raises, never returns the raw value (the caller
shows the marker to the sender, so it is rebuilt from a known name and a short normalised token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Header names as parse.mime collects them (its LOOP_HEADERS), lower case.
_VACATION = ("x-autoreply", "x-autorespond")
_NEGATIVE = frozenset({"no", "false", "0", "off"})
_PLAIN = re.compile(r"[a-z0-9_.-]{1,20}")  # a token shown back as it is; anything else is shown as "..."
_SHOWN = {
    "auto-submitted": "Auto-Submitted",
    "precedence": "Precedence",
    "x-autoreply": "X-Autoreply",
    "x-autorespond": "X-Autorespond",
}


def _token(value: str) -> str:
    """The leading keyword of a header value: `Auto-Replied; owner-email="x@y" (vacation)` → `auto-replied`."""
    for stop in ";(":
        value = value.split(stop, 1)[0]
    return value.strip().lower()


def _values(headers: Mapping[str, list[str]], name: str) -> list[str]:
    return [v for key, values in headers.items() if key.lower() == name for v in values]


def auto_reply_marker(headers: Mapping[str, list[str]]) -> str | None:
    """The marker that makes this mail an automatic reply, as "Name: token" for the SMTP reply, or None."""
    for value in _values(headers, "auto-submitted"):
        if _token(value) == "auto-replied":
            return "Auto-Submitted: auto-replied"
    for value in _values(headers, "precedence"):
        if _token(value) in ("auto_reply", "auto-reply"):
            return f"Precedence: {_token(value)}"
    for name in _VACATION:
        for value in _values(headers, name):
            if _token(value) not in _NEGATIVE:
                token = _token(value)
                return f"{_SHOWN[name]}: {token if _PLAIN.fullmatch(token) else '...'}"
    return None
