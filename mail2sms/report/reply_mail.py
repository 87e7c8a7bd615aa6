"""The reply mail (issue 17): an SMS a phone sent back, mailed to whoever sent the SMS it answers, in the same
thread as their original mail, from an address that routes back to the same phone.

`compose_reply()` builds it from a claimed `DueReply`: `From: "+96550000000" <+96550000000@sms.example.org>`
(an address-format route's domain, `reply_from()` says which), `Subject: Re: <original subject>`, a fixed
`Message-ID` (`<id.reply@hostname>`, so a mail repeated after a crash is recognisably the same one),
`In-Reply-To` the original mail and `References` the original and the outcome mail, and `Auto-Submitted:
auto-replied` (RFC 3834: vacation responders must not answer it, and mail2sms refuses an auto-reply to an SMS
route). The body is the SMS text first, then who sent it and when, then the SMS it answers. A reply tied to no
SMS (or whose sender may not be mailed) goes to `replies.unmatched_to` with a subject that says so.

It must never do I/O, never render `job.account` or any credential, and never put a string into the HTML part
without escaping it (the SMS text comes from a stranger's phone).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from mail2sms.config import RouteConfig
from mail2sms.model import ReplyMatch
from mail2sms.report import headers
from mail2sms.spool.base import DueReply

ANSWER_LINE = "Reply to this mail to answer by SMS; only your new text is sent."
NO_MATCH_LINE = "mail2sms found no SMS it sent to this number that this could answer."
NO_ROUTE_LINE = (
    "Replies by mail are not possible: mail2sms has no address-format route (`<number>@domain`) to send them by."
)
_RE = re.compile(r"^\s*(re\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class AddressRoute:
    """An address-format route (`*@domain`): mailing `+<number>@domain` sends an SMS to that number."""

    match: str  # the route's `match`, as `Submission.route` names it
    domain: str
    provider: str


def address_routes(routes: Sequence[RouteConfig]) -> list[AddressRoute]:
    """The routes a reply's From can point at: address format and any local part, in the config's order."""
    found: list[AddressRoute] = []
    for route in routes:
        local, _, domain = route.match.rpartition("@")
        if route.format == "address" and local == "*":
            found.append(AddressRoute(route.match, domain, route.provider))
    return found


def reply_from(reply: DueReply, routes: Sequence[AddressRoute]) -> str | None:
    """`+<number>@domain` that routes back to the reply's phone: the domain of the route its SMS was sent by when
    that is an address route, else of an address route of the same provider, else of any; None when none exists."""
    own = reply.submission.route if reply.submission is not None else None
    chosen = (
        next((r for r in routes if r.match == own), None)
        or next((r for r in routes if r.provider == reply.provider), None)
        or next(iter(routes), None)
    )
    return f"+{reply.number}@{chosen.domain}" if chosen is not None else None


def to_sender(reply: DueReply) -> bool:
    """Whether the mail goes to the sender of the SMS it answers (else to `replies.unmatched_to`)."""
    sub = reply.submission
    return reply.match is not ReplyMatch.NONE and sub is not None and sub.report_to == reply.mail_to


def subject(reply: DueReply) -> str:
    """`Re: <original subject>` (one "Re:"), `Re: SMS to +<number>` without one; for `unmatched_to`, what it is."""
    number = f"+{reply.number}"
    if reply.match is ReplyMatch.NONE:
        return f"SMS from {number} (not a reply to any SMS mail2sms sent)"
    if not to_sender(reply):
        return f"SMS from {number} (a reply to an SMS whose sender may not be mailed)"
    assert reply.submission is not None  # to_sender said so
    original = " ".join(_RE.sub("", reply.submission.subject).split())
    return f"Re: {original}" if original else f"Re: SMS to {number}"


def message_id(reply_id: str, hostname: str) -> str:
    """The reply mail's fixed Message-ID."""
    return f"<{reply_id}.reply@{hostname}>"


def _msg_id(value: str) -> str:
    value = "".join(value.split())
    return value if value.startswith("<") else f"<{value}>"


def _when(reply: DueReply) -> float:
    return reply.received_at if reply.received_at is not None else reply.fetched_at


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC (%Y-%m-%dT%H:%M:%SZ)")


def text(reply: DueReply, routed: bool) -> str:
    """The text part: the SMS, who sent it and when, how to answer, and the SMS it answers."""
    lines = [reply.text, "", f"SMS from +{reply.number}, received {_iso(_when(reply))} through {reply.provider}"]
    lines.append(ANSWER_LINE if routed else NO_ROUTE_LINE)
    if reply.match is ReplyMatch.NONE:
        lines.append(NO_MATCH_LINE)
    elif reply.job is not None:
        sent = f" on {_iso(reply.job.first_attempt_at)}" if reply.job.first_attempt_at else ""
        lines += ["", f"It answers the SMS sent to +{reply.job.number}{sent}:", "", reply.job.text]
    return "\n".join(lines) + "\n"


def rich(reply: DueReply, routed: bool) -> str:
    """The HTML part: the same content, the SMS texts in their own direction (Arabic reads right to left)."""
    e = html.escape
    parts = [
        '<div style="font-family:sans-serif;max-width:680px">',
        f'<p dir="auto" style="font-size:16px;white-space:pre-wrap">{e(reply.text)}</p>',
        f'<p style="font-size:13px;opacity:.72">SMS from +{e(reply.number)}, received {e(_iso(_when(reply)))} '
        f"through {e(reply.provider)}<br>{e(ANSWER_LINE if routed else NO_ROUTE_LINE)}</p>",
    ]
    if reply.match is ReplyMatch.NONE:
        parts.append(f'<p style="font-size:13px;opacity:.72">{e(NO_MATCH_LINE)}</p>')
    elif reply.job is not None:
        parts.append(
            f'<blockquote style="margin:0;padding-left:10px;border-left:3px solid rgba(128,128,128,.35)">'
            f'<div style="font-size:13px;opacity:.72">It answers the SMS sent to +{e(reply.job.number)}:</div>'
            f'<p dir="auto" style="white-space:pre-wrap">{e(reply.job.text)}</p></blockquote>'
        )
    parts.append("</div>")
    return "\n".join(parts)


def compose_reply(
    reply: DueReply, *, from_addr: str, hostname: str, routes: Sequence[AddressRoute], outcome_message_id: str
) -> EmailMessage:
    """The mail for `reply`, to `reply.mail_to`. `from_addr` (`reports.from`) is used only when no address route
    can carry an answer; `outcome_message_id` is the fixed Message-ID of the outcome mail of the SMS it answers."""
    back = reply_from(reply, routes)
    message = EmailMessage()
    message["From"] = f'"+{reply.number}" <{back}>' if back is not None else from_addr
    message["To"] = reply.mail_to
    message.set_raw("Subject", headers.fold("Subject", subject(reply)))
    # The SMS's own time, not the composing moment: a mail composed again after a crash is the same mail.
    message["Date"] = format_datetime(datetime.fromtimestamp(_when(reply), UTC))
    message["Message-ID"] = message_id(reply.id, hostname)
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834 5
    message["X-Auto-Response-Suppress"] = "All"  # keeps Exchange out-of-office replies from answering us
    sub = reply.submission
    if to_sender(reply) and sub is not None:
        # Only the original sender has the thread; `unmatched_to` gets a mail of its own.
        original = _msg_id(sub.message_id) if sub.message_id and sub.message_id.strip() else None
        outcome = _msg_id(outcome_message_id)
        thread = [*str(sub.extra.get("references") or "").split(), *([original] if original else []), outcome]
        message["In-Reply-To"] = original or outcome
        message["References"] = " ".join(dict.fromkeys(thread))
        message["X-Mail2SMS-Submission"] = " ".join(sub.id.split())
    message["X-Mail2SMS-Reply"] = " ".join(reply.id.split())
    message.set_content(text(reply, back is not None), charset="utf-8", cte="quoted-printable")
    message.add_alternative(rich(reply, back is not None), subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary of its own rather than a random one, so the mail composed again is the same bytes; "=_" never
    # occurs in a quoted-printable part (an "=" is written "=3D" there).
    message.set_boundary(f"=_reply_{''.join(reply.id.split())}")
    return message
