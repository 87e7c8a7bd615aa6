"""Every SMTP reply mail2sms gives, as data (DESIGN.md "SMTP replies").

Handler and tests both use these names, never string literals, so a reply's wording changes in one place.
A `detail` added with `Reply.with_detail()` is written for the sender; it must never carry a secret or an
exception's text.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                        "\u2014": "-", "\u2026": "...", "\u2192": "->", "\u00d7": "x"})


def _ascii(text: str) -> str:
    """SMTP replies are ASCII (RFC 5321 4.2); keep the meaning of common typography, drop the rest."""
    text = unicodedata.normalize("NFKD", text.translate(_PLAIN))
    return text.encode("ascii", "replace").decode("ascii")


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def with_detail(self, detail: str) -> str:
        """The reply with a sender-facing detail; one line, bounded, no control characters."""
        clean = _ascii(" ".join(detail.split()))
        if len(clean) > 400:
            clean = clean[:397] + "..."
        return f"{self.code} {self.enhanced} {self.text}: {clean}" if clean else str(self)

    def matches(self, code: int, message: bytes | str) -> bool:
        """True when an smtplib (code, message) pair is this reply (tests compare by name)."""
        text = message.decode() if isinstance(message, bytes) else message
        return code == self.code and text.startswith(f"{self.enhanced} {self.text}")


# Success
QUEUED = Reply(250, "2.0.0", "queued as")
DUPLICATE = Reply(250, "2.0.0", "duplicate of")
SENDER_OK = Reply(250, "2.1.0", "sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "recipient ok")

# Permanent failures
BAD_NUMBER = Reply(550, "5.1.1", "not a valid phone number")
RELAY_DENIED = Reply(550, "5.7.1", "relaying denied")
NOT_ALLOWED = Reply(550, "5.7.1", "not allowed on this route")
NUMBER_NOT_ALLOWED = Reply(550, "5.7.1", "number not allowed on this route")  # allowed_countries, blocked_prefixes
QUOTA_EXCEEDED = Reply(550, "5.7.1", "quota exceeded")  # daily quota, or one mail bigger than a quota
AUTH_REQUIRED = Reply(530, "5.7.0", "authentication required")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "encryption required for requested authentication mechanism")
AUTH_UNAVAILABLE = Reply(502, "5.5.1", "authentication not available")  # no [[users]] configured
BAD_SENDER_ADDRESS = Reply(553, "5.1.7", "bad sender address syntax")
BAD_RECIPIENT_ADDRESS = Reply(553, "5.1.3", "bad recipient address syntax")
TOO_BIG = Reply(552, "5.3.4", "message too big")
TOO_MANY = Reply(552, "5.3.4", "too many")
BAD_CONTENT = Reply(554, "5.6.0", "content cannot be sent as SMS")
LOOP = Reply(554, "5.4.6", "mail loop detected")
# RFC 3834: an automatic reply (a vacation responder answering a reply mail) never becomes an SMS.
AUTO_REPLY = Reply(550, "5.7.1", "automatic reply not sent as SMS")
# RFC 5321 2.3.8: CR and LF only as CRLF. A bare one next to a lone dot is how SMTP smuggling hides a second mail.
SMUGGLING = Reply(554, "5.6.0", "bare CR or LF next to a line with a single dot: refused")

# Temporary failures
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "too many recipients")  # RFC 5321 4.5.3.1.10: 452, client retries rest
QUOTA_REACHED = Reply(450, "4.7.1", "hourly quota reached, try again later")
LOCAL_ERROR = Reply(451, "4.3.0", "local error, try again later")
SPOOL_FULL = Reply(452, "4.3.1", "insufficient system storage, try again later")
TOO_BUSY = Reply(421, "4.7.0", "too many connections, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "service shutting down, try again later")
IDLE_TIMEOUT = Reply(421, "4.4.2", "idle for too long, closing connection")
# Floods and bombs (issue 12): each names the limit that was reached.
MEMORY_FULL = Reply(452, "4.3.1", "too much mail being received at once, try again later")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "too many commands without a mail, closing connection")
SESSION_TOO_LONG = Reply(421, "4.4.2", "session open for too long, closing connection")
PARSE_TIMEOUT = Reply(451, "4.3.0", "the message took too long to read, try again later")
HEADERS_TOO_BIG = Reply(552, "5.3.4", "message header limit exceeded")
# RFC 4954 6: 454 4.7.0 "temporary authentication failure" (smtp.auth's per-network login throttle).
AUTH_THROTTLED = Reply(454, "4.7.0", "too many failed logins from your network, try again later")


ALL: dict[str, Reply] = {name: value for name, value in globals().items() if isinstance(value, Reply)}


def reason(status: str) -> str:
    """The table name of a reply line, lower case (`relay_denied`), or `other_<code>`: a bounded metrics label."""
    found = [(len(str(reply)), name) for name, reply in ALL.items() if status.startswith(str(reply))]
    return max(found)[1].lower() if found else f"other_{status[:3]}"
