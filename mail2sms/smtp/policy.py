"""Who may send what: route matching at RCPT and the route's `allow` list.

Decided at RCPT, before any data is read, so a relay attempt costs one line and never reaches the parser.
Matching: an exact address wins over `*@domain`; no match is relaying, refused. `allow` entries:

- `trusted`        the client's address is in `server.trusted_networks`
- `authenticated`  any SMTP AUTH user; `user:NAME` one user
- `a@b.example`    that envelope sender; `@b.example` or `b.example` any sender of that domain
- `10.0.0.0/8`     clients from that network
- `any`            everyone (for a route behind an MTA that already decided); reports go only to trusted senders

Sender addresses are weak evidence (anyone can write any MAIL FROM); the README says so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from mail2sms.config import RouteConfig

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Client:
    """What is known about the SMTP client when a recipient is checked."""

    ip: str
    user: str | None
    mail_from: str


@dataclass(frozen=True)
class Access:
    allowed: bool
    trusted: bool  # the outcome may be mailed to this sender
    auth_would_help: bool = False


def in_networks(ip: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


class Router:
    """Route lookup by recipient address."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self._exact: dict[str, RouteConfig] = {}
        self._domain: dict[str, RouteConfig] = {}
        for route in routes:
            local, _, domain = route.match.rpartition("@")
            if local == "*":
                self._domain.setdefault(domain, route)
            else:
                self._exact.setdefault(route.match, route)

    def match(self, address: str) -> RouteConfig | None:
        local, at, domain = address.rpartition("@")
        if not at:
            return None
        domain = domain.lower().rstrip(".")
        return self._exact.get(f"{local.lower()}@{domain}") or self._domain.get(domain)


def check_access(route: RouteConfig, client: Client, trusted_networks: Sequence[IPNetwork]) -> Access:
    trusted_net = in_networks(client.ip, trusted_networks)
    sender = client.mail_from.lower()
    sender_domain = sender.rpartition("@")[2]
    allowed_by_sender = False
    for entry in route.allow:
        e = entry.strip().lower()
        if e == "trusted" and trusted_net:
            return Access(True, True)
        if e == "authenticated" and client.user is not None:
            return Access(True, True)
        if e.startswith("user:") and client.user is not None and client.user.lower() == e[5:]:
            return Access(True, True)
        if "/" in e:
            try:
                if in_networks(client.ip, [ipaddress.ip_network(e, strict=False)]):
                    return Access(True, True)
            except ValueError:
                continue
        elif "@" in e and not e.startswith("@"):
            allowed_by_sender = allowed_by_sender or (sender == e)
        elif e.startswith("@") or ("." in e and e not in ("trusted", "authenticated")):
            allowed_by_sender = allowed_by_sender or (bool(sender_domain) and sender_domain == e.lstrip("@"))
    if allowed_by_sender:
        return Access(True, True)
    if "any" in (e.strip().lower() for e in route.allow):
        return Access(True, trusted_net or client.user is not None)
    wants_auth = client.user is None and any(
        e == "authenticated" or e.startswith("user:") for e in (x.strip().lower() for x in route.allow)
    )
    return Access(False, False, auth_would_help=wants_auth)
