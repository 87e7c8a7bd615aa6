"""Backscatter rules: whether an outcome mail may go to a submission's envelope sender at all.

An SMS gateway that mails every envelope sender is a backscatter source: forged senders, bounces and mailing
lists would get mail they never asked for, and two auto-responders could mail each other forever. So an
outcome report goes only to a real, trusted sender of a mail a person (or a system acting for one) sent on
purpose (RFC 3834 section 2, DESIGN.md "Outcome report"), and no sender gets more than a few reports an hour.
Never to MAILER-DAEMON, `owner-*`, `*-request` (and the other list robots RFC 3834 2 names), never for mail with
`List-Id`, `List-Unsubscribe`, `X-Mailing-List`, `Auto-Submitted` or `Precedence: bulk|list|junk|auto_reply`,
and never to an address that is itself an SMS route of this gateway (the report would become an SMS).

This module is pure: it decides, it never sends. It must never hand back an address that could inject an SMTP
command or a header (CR, LF, NUL, spaces), and never the null sender `<>`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from mail2sms.addresses import address_problem as _address_problem

_PRECEDENCE_AUTOMATIC = frozenset({"bulk", "list", "junk", "auto_reply"})
_LIST_HEADERS = ("list-id", "list-unsubscribe", "x-mailing-list")
# RFC 3834 2: local parts that belong to mail robots, which must not get automatic replies.
_ROBOTS = frozenset({"mailer-daemon", "listserv", "majordomo", "mailman"})


def robot_problem(address: str) -> str | None:
    """Why `address` belongs to a mail robot (RFC 3834 2), or None."""
    local = address.rpartition("@")[0].lower()
    if local in _ROBOTS:
        return f"the sender is {local.upper() if local == 'mailer-daemon' else local} (a mail robot)"
    if local.startswith("owner-") or local.endswith(("-request", "-owner", "-bounces")):
        return "the sender is a mailing list's robot address"
    return None


def address_problem(address: str) -> str | None:
    """Why `address` must never be mailed, or None: the one address rule (mail2sms.addresses), letting
    internationalised letters through. Checked before any outcome mail is addressed, because the envelope sender
    comes from the client and goes onto an SMTP command line and into a `To:` header."""
    return _address_problem(address, utf8=True)


def _first_token(value: str) -> str:
    """The leading keyword of a structured header value: `auto-replied; x=1 (comment)` → `auto-replied`."""
    for stop in ";(":
        value = value.split(stop, 1)[0]
    return value.strip().lower()


def _values(headers: Mapping[str, list[str]], name: str) -> list[str]:
    """All values of one header, whatever case the caller used for its name."""
    found: list[str] = []
    for key, values in headers.items():
        if key.lower() == name:
            found.extend(values)
    return found


def report_decision(
    *, envelope_from: str, headers: Mapping[str, list[str]], trusted: bool, report_to: str | None = None,
    is_sms_address: Callable[[str], bool] | None = None,
) -> tuple[str | None, str | None]:
    """Return `(address, None)` when an outcome mail may go out, else `(None, reason)`.

    The reason is a short plain sentence for logs and the spool's `report_suppressed`, so an operator can see
    why a sender got no report. `trusted` says the envelope sender is vouched for (a trusted network, an
    allow-listed sender or network, or the authenticated user's own address): a sender that is not may be
    forged, and mailing it would be backscatter. `report_to` is where the report goes instead of the envelope
    sender (an authenticated user's configured address); the rules about the original mail apply all the same.
    `is_sms_address(address)` says whether an address is one of this gateway's SMS routes.
    """
    sender = envelope_from
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    if not sender:
        # RFC 3834 2 / RFC 5321 4.5.5: never answer the null sender.
        return None, "the sender is <> (a bounce)"
    target = report_to or sender
    problem = address_problem(target)
    if problem is not None:
        return None, f"the sender address is not usable: {problem}"
    robot = robot_problem(sender)  # the original sender; a configured report_to is the operator's choice
    if robot is not None:
        return None, robot
    if any(_first_token(v) != "no" for v in _values(headers, "auto-submitted")):
        return None, "the mail is auto-submitted"
    for value in _values(headers, "precedence"):
        token = _first_token(value)
        if token in _PRECEDENCE_AUTOMATIC:
            return None, f"the mail has Precedence: {token}"
    for name in _LIST_HEADERS:
        if _values(headers, name):
            return None, "the mail came from a mailing list"
    if not trusted and report_to is None:
        return None, "the sender is not trusted on this route"
    if is_sms_address is not None and is_sms_address(target):
        return None, "the report address is an SMS route of this gateway (the report would become an SMS)"
    return target, None


class SenderRateLimit:
    """At most `per_hour` reports per sender in any sliding window of `window` seconds, in memory.

    Keeps a forged or looping sender from turning the gateway into a mail cannon even when every other rule
    passes. Memory is bounded by the senders seen in the last window: idle senders are swept once per window.
    `per_hour = 0` means no limit (turning reports off is `reports.when = "never"`).
    """

    def __init__(self, per_hour: int, window: float = 3600.0) -> None:
        if per_hour < 0:
            raise ValueError("per_hour must be 0 (no limit) or more")
        if window <= 0:
            raise ValueError("window must be positive")
        self.per_hour = per_hour
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._last_sweep = float("-inf")

    def allow(self, sender: str, now: float) -> bool:
        """Count one report to `sender` at time `now` and say whether it may go; refusals are not counted."""
        if self.per_hour == 0:
            return True
        horizon = now - self.window
        if now - self._last_sweep >= self.window:
            self._sweep(horizon)
            self._last_sweep = now
        key = sender.lower()
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque()
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.per_hour:
            return False
        times.append(now)
        return True

    def _sweep(self, horizon: float) -> None:
        """Forget senders whose last report is outside the window."""
        for key in [k for k, times in self._seen.items() if not times or times[-1] <= horizon]:
            del self._seen[key]

    def __len__(self) -> int:
        """How many senders are currently tracked (for tests and metrics)."""
        return len(self._seen)
