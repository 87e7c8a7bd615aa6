"""Who may send what: route matching at RCPT and the route's `allow` list.

Decided at RCPT, before any data is read, so a relay attempt costs one line and never reaches the parser.
Matching: an exact address wins over `*@domain`; no match is relaying, refused. `allow` entries:

- `trusted`        the client's address is in `server.trusted_networks`
- `authenticated`  any SMTP AUTH user; `user:NAME` one user
- `a@b.example`    that envelope sender; `@b.example` or `b.example` any sender of that domain
- `10.0.0.0/8`     clients from that network (a bare address is one host)
- `any`            everyone (for a route behind an MTA that already decided); reports go only to trusted senders

Who gets the outcome report (`Access.trusted`): the envelope sender only when something vouches for it — the
client is in a trusted or listed network, the sender is allow-listed on the route, or it is the authenticated
user's own address (`users[].email`, or a user name that is an address). An authenticated user writing some
other MAIL FROM gets the report at `users[].email` instead (`Access.to_user`), or none, so a login cannot make
the gateway mail any text to any address.

Sender addresses are weak evidence (anyone can write any MAIL FROM); the README says so.

Then the route's number rules (`allowed_countries`, `blocked_prefixes`, `max_recipients`) and quotas
(`quota_per_hour`, `quota_per_day`): at RCPT for the address format, at DATA (through `build_submission`'s
route check) for numbers that are only known from the body, and finally, atomically, in `spool.commit()`.
An hourly quota answers `450 4.7.1` (waiting helps, and an MTA retries by itself); a daily quota, or a mail
bigger than a quota, answers `550 5.7.1`, because an SMS that arrives a day late is usually worse than a clear
refusal today.
This module must never let a recipient through that no route allows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import phonenumbers

from mail2sms.config import RouteConfig
from mail2sms.errors import LimitError, PolicyError, SpoolError
from mail2sms.model import Job, Submission
from mail2sms.parse.submission import Envelope, RoutedRecipient, refuse_row
from mail2sms.smtp import replies
from mail2sms.smtp.quota import Counted, QuotaReader, charges, counted, limits
from mail2sms.spool import quotas
from mail2sms.spool.quotas import QuotaCharge

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Client:
    """What is known about the SMTP client when a recipient is checked."""

    ip: str
    user: str | None
    mail_from: str
    user_email: str = ""  # the authenticated user's own address (users[].email)

    def owns_sender(self) -> bool:
        """The envelope sender is the authenticated user's own address."""
        if self.user is None or not self.mail_from:
            return False
        sender = self.mail_from.lower()
        return sender == self.user_email.lower() or ("@" in self.user and sender == self.user.lower())


@dataclass(frozen=True)
class Access:
    allowed: bool
    trusted: bool  # the outcome may be mailed to this sender
    auth_would_help: bool = False
    to_user: bool = False  # not to the sender, but to the authenticated user's own address


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


def _network(entry: str) -> IPNetwork | None:
    if "@" in entry or not any(ch.isdigit() for ch in entry):
        return None
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def check_access(route: RouteConfig, client: Client, trusted_networks: Sequence[IPNetwork]) -> Access:
    trusted_net = in_networks(client.ip, trusted_networks)
    sender = client.mail_from.lower()
    sender_domain = sender.rpartition("@")[2]
    by_network = by_user = by_sender = False
    for entry in route.allow:
        e = entry.strip().lower()
        if e == "trusted" and trusted_net:
            by_network = True
        elif client.user is not None and (e == "authenticated" or e == f"user:{client.user.lower()}"):
            by_user = True
        elif (network := _network(e)) is not None:
            by_network = by_network or in_networks(client.ip, [network])
        elif "@" in e and not e.startswith("@"):
            by_sender = by_sender or (sender == e)
        elif e.startswith("@") or ("." in e and e not in ("trusted", "authenticated")):
            by_sender = by_sender or (bool(sender_domain) and sender_domain == e.lstrip("@"))
    # Whatever admitted the mail, the sender address may get the report only when something vouches for it.
    vouched = trusted_net or by_network or by_sender or client.owns_sender()
    to_user = client.user is not None and not vouched
    if by_network or by_user or by_sender or "any" in (e.strip().lower() for e in route.allow):
        return Access(True, vouched, to_user=to_user)
    wants_auth = client.user is None and any(
        e == "authenticated" or e.startswith("user:") for e in (x.strip().lower() for x in route.allow)
    )
    return Access(False, False, auth_would_help=wants_auth)


# -- number rules and quotas -------------------------------------------------------------------------------


def number_problem(route: RouteConfig, number: str) -> str | None:
    """Why `route` never sends to `number` (E.164 digits without '+'), or None. Written for the sender."""
    shown = "+" + number
    for prefix in route.blocked_prefixes:
        if shown.startswith(prefix):
            return f"{shown}: numbers starting {prefix} are blocked on this route"
    if not route.allowed_countries:
        return None
    try:
        parsed = phonenumbers.parse(shown, None)
    except phonenumbers.NumberParseException:
        return f"{shown}: its country cannot be told"
    code = f"+{parsed.country_code}"
    region = phonenumbers.region_code_for_number(parsed)
    if code in route.allowed_countries or (region is not None and region in route.allowed_countries):
        return None
    return f"{shown} is a {region or code} number; this route sends only to {', '.join(route.allowed_countries)}"


def policy_reply(exc: PolicyError) -> str:
    """The SMTP reply for a PolicyError."""
    if not exc.quota:
        return replies.NUMBER_NOT_ALLOWED.with_detail(str(exc))
    return (replies.QUOTA_REACHED if exc.temporary else replies.QUOTA_EXCEEDED).with_detail(str(exc))


class RoutePolicy:
    """The routes' number rules and quotas, shared by every SMTP session of this process.

    Quota counts are read from the spool (`reader` = `spool.quota_used`) for an early answer at RCPT; the
    binding check is made by `spool.commit()` with the charges `MailCheck.charges()` builds."""

    def __init__(self, reader: QuotaReader | None = None, trusted_networks: Sequence[IPNetwork] = ()) -> None:
        self.reader = reader
        self.trusted_networks = list(trusted_networks)

    def whom(self, user: str | None, mail_from: str, peer: str) -> list[Counted]:
        return counted(user, mail_from, peer, in_networks(peer, self.trusted_networks))

    async def quota_problem(self, route: RouteConfig, whom: Sequence[Counted], count: int,
                            now: float) -> PolicyError | None:
        """A PolicyError when `count` more SMS on `route` would exceed a quota by what the spool counts now."""
        if self.reader is None:
            return None
        reader = self.reader
        sums: dict[tuple[str, float], int] = {}
        wanted = charges(route, list(whom), count)
        try:
            for key, since in quotas.windows(wanted, now):
                sums[(key, since)] = await reader(key, since)
        except SpoolError:
            return None  # only an early look: the commit checks again, and answers 451 if the spool is down
        for charge in wanted:
            refusal = quotas.problem(charge, lambda key, since: sums[(key, since)], now)
            if refusal is not None:
                return refusal
        return None

    async def rcpt_refusal(self, route: RouteConfig, number: str | None, client: Client,
                           routed: Sequence[RoutedRecipient], now: float) -> str | None:
        """The reply that refuses this RCPT by the route's number rules, recipient limit or quota, or None."""
        if number is not None:
            problem = number_problem(route, number)
            if problem is not None:
                return replies.NUMBER_NOT_ALLOWED.with_detail(problem)
        already = sum(1 for r in routed if r.route.match == route.match)
        if route.max_recipients is not None and already >= route.max_recipients:
            return str(replies.TOO_MANY_RECIPIENTS)  # RFC 5321 4.5.3.1.10: the client sends the rest later
        whom = self.whom(client.user, client.mail_from, client.ip)
        error = await self.quota_problem(route, whom, already + 1, now)
        return policy_reply(error) if error is not None else None

    def for_mail(self, envelope: Envelope, now: float) -> MailCheck:
        """The DATA-time check for one mail, to pass to `build_submission(check_route=...)`."""
        return MailCheck(self.whom(envelope.user, envelope.mail_from, envelope.peer), now)


@dataclass
class MailCheck:
    """Checks each route's jobs of one mail (raising LimitError or PolicyError); then says what to charge.

    Runs inside the parse (perhaps on a worker thread), so it reads no counts: it refuses what no count can
    allow (a mail bigger than a quota), and `charges()` hands the rest to `spool.commit()`, which decides."""

    whom: list[Counted]
    now: float
    counts: dict[str, tuple[RouteConfig, int]] = field(default_factory=dict)

    def __call__(self, route: RouteConfig, jobs: Sequence[Job]) -> None:
        live = [job for job in jobs if not job.state.final]  # CSV rows already refused for their own problem
        if route.max_recipients is not None and len(live) > route.max_recipients:
            raise LimitError(f"the mail names {len(live)} phone numbers; this route takes at most "
                             f"{route.max_recipients} per mail")
        for job in live:
            problem = number_problem(route, job.number)
            if problem is None:
                continue
            if job.row is None:
                raise PolicyError(problem)
            refuse_row(job, problem)  # a CSV row: reported with its row number; the route's csv_policy decides
        count = self.counts.get(route.match, (route, 0))[1] + sum(1 for job in live if not job.state.final)
        for limit in limits(route):
            if count > limit.limit:
                raise PolicyError(f"this mail needs {count} SMS, more than the {limit.limit} per {limit.name} "
                                  "this route allows", quota=True)
        self.counts[route.match] = (route, count)

    def charges(self, submission: Submission) -> list[QuotaCharge]:
        """What the mail's commit must charge; nothing for a dry run, which sends and counts nothing."""
        if submission.dry_run:
            return []
        return [c for route, count in self.counts.values() for c in charges(route, self.whom, count)]
