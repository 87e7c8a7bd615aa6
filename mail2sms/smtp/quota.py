"""Whom a route quota counts, and the charges one mail makes; the counting itself is the spool's (spool.quotas).

A quota counts the SMTP AUTH user; an unauthenticated mail counts against its envelope sender *and* its client
network (an IPv4 address, an IPv6 /64), so rotating the MAIL FROM does not reset anything. A client in
`server.trusted_networks` is counted by sender only: it is the operator's relay or LAN, speaking for many senders.
The null sender is counted by client network.

The counts live in the spool and are checked and charged atomically when the mail is committed, so every worker
process and PostgreSQL node shares them and a restart forgets nothing. The RCPT-time look (`used`) is only an
early answer; the commit decides. This module must never count a dry run or a duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mail2sms.config import RouteConfig
from mail2sms.smtp.auth import client_network
from mail2sms.spool.quotas import DAY, HOUR, QuotaCharge, QuotaLimit

QuotaReader = Callable[[str, float], Awaitable[int]]  # spool.quota_used(key, since)

__all__ = ["DAY", "HOUR", "Counted", "QuotaReader", "charges", "counted", "limits"]


@dataclass(frozen=True)
class Counted:
    """One thing a quota counts: its key suffix (`user:alarm`) and, in words, whom (`the client 10.0.0.5`)."""

    key: str
    who: str


def counted(user: str | None, mail_from: str, peer: str, trusted: bool) -> list[Counted]:
    """Whom one mail's SMS count against (see the module docstring)."""
    if user is not None:
        return [Counted(f"user:{user.lower()}", "")]
    out = []
    if mail_from:
        out.append(Counted(f"sender:{mail_from.lower()}", f"the sender {mail_from.lower()}"))
    if not trusted or not mail_from:
        network = client_network(peer)
        out.append(Counted(f"peer:{network}", f"the client {network}"))
    return out


def limits(route: RouteConfig) -> tuple[QuotaLimit, ...]:
    """The route's quotas, the daily one first (its refusal is the permanent one)."""
    found = [QuotaLimit(route.quota_per_day, DAY, "day")] if route.quota_per_day is not None else []
    if route.quota_per_hour is not None:
        found.append(QuotaLimit(route.quota_per_hour, HOUR, "hour"))
    return tuple(found)


def charges(route: RouteConfig, whom: list[Counted], count: int) -> list[QuotaCharge]:
    """The charges `count` SMS on `route` make, one per counted party; none when the route has no quota."""
    route_limits = limits(route)
    if not route_limits or count <= 0:
        return []
    # "|" and not NUL between the parts: PostgreSQL text cannot hold NUL.
    return [QuotaCharge(f"{route.match}|{c.key}", count, route_limits, c.who) for c in whom]
