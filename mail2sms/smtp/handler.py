"""The SMTP handler: decide at RCPT what can be decided there; at DATA parse, commit, answer.

`handle_DATA` answers `250` only after `spool.commit()` returned (the commit is durable); any unexpected trouble
answers `451 4.3.0` without the exception's text. No provider is ever called from here: the dispatcher is only
woken. Only mails a cheap scan finds simple are parsed on the loop; the rest go to a worker thread with a deadline
(`server.parse_timeout`), so one CSV or header bomb cannot stall other sessions. Refusals are not logged here:
smtp.server logs each reply it sends that refuses, once, with its name and reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from mail2sms.config import Config
from mail2sms.errors import (
    AutoReplyError,
    ContentError,
    LimitError,
    LoopError,
    NumberError,
    PolicyError,
    SpoolError,
    SpoolFullError,
)
from mail2sms.limits import Limits as ProviderLimits
from mail2sms.model import Account
from mail2sms.observability import SECRETS, get_logger
from mail2sms.parse.address import parse_local_part
from mail2sms.parse.headers import HeaderLimitError, cheap_to_parse
from mail2sms.parse.submission import Envelope as ParsedEnvelope
from mail2sms.parse.submission import Limits, RoutedRecipient, read_submission
from mail2sms.report.backscatter import report_decision
from mail2sms.smtp import replies
from mail2sms.smtp.auth import ATTEMPT, THROTTLED_DELAY, LoginAttempt, LoginThrottle
from mail2sms.smtp.hygiene import address_problem
from mail2sms.smtp.policy import Client, MailCheck, RoutePolicy, Router, check_access, policy_reply
from mail2sms.spool.base import Spool

log = get_logger("mail2sms.smtp")

# Which mails parse on the loop is chosen by a cheap scan (parse.headers.cheap_to_parse: small, one part, plain
# headers), not by size alone: a 59 KB mail of RFC 2231 parameters once held the loop for 10 s. The rest parse
# on a worker thread and get 451 after `server.parse_timeout` (the thread cannot be killed; the header bounds
# are what keep its work small).


class RoutedEnvelope(Envelope):
    """aiosmtpd's envelope plus what RCPT decided for each recipient."""

    def __init__(self) -> None:
        super().__init__()
        self.routed: list[RoutedRecipient] = []
        self.trusted = True
        self.to_user = False  # some route vouches for the user, not the sender: report to the user's address


def user_of(session: Session) -> str | None:
    data = session.auth_data
    return str(data) if session.authenticated and data is not None else None


def clean_address(address: str) -> bool:
    """Only `<>` or a plain local@domain is accepted (smtp.hygiene): no CR, LF, NUL, spaces, quoting, non-ASCII."""
    return address in ("", "<>") or address_problem(address) is None  # aiosmtpd passes the null sender as "<>"


class Handler:
    def __init__(
        self,
        config: Config,
        spool: Spool,
        *,
        on_commit: Callable[[], None] | None = None,
        user_accounts: Mapping[str, Account] | None = None,
        provider_limits: Mapping[str, ProviderLimits] | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.router = Router(config.routes)
        self.on_commit = on_commit
        self.user_accounts = dict(user_accounts or {})
        self.user_emails = {u.name: u.email for u in config.users if u.email}
        self.provider_limits = dict(provider_limits or {})
        self.executor = executor
        self.limits = Limits(max_received=config.server.max_received_headers)
        self.dedupe_window = config.server.dedupe_window
        # Number rules and quotas; quota counts live in the spool, shared by every process and node.
        self.route_policy = RoutePolicy(spool.quota_used, config.server.trusted_networks)
        self.login_throttle = LoginThrottle(config.server.auth_max_failures, config.server.auth_failure_window)

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope, args: list[str]) -> Any:
        """Before aiosmtpd runs the mechanism: refuse a network with too many failed logins (smtp.auth)."""
        peer = _peer(session)
        ATTEMPT.set(LoginAttempt(peer, self.login_throttle))  # travels with the session into the check thread
        if self.login_throttle.blocked(peer):
            log.info("auth refused: too many failures", peer=peer)
            await asyncio.sleep(THROTTLED_DELAY)  # this session waits; the loop and other clients do not
            return str(replies.AUTH_THROTTLED)
        return MISSING

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: Sequence[str]
    ) -> str:
        if not clean_address(address):
            return str(replies.BAD_SENDER_ADDRESS)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: Sequence[str]
    ) -> str:
        assert isinstance(envelope, RoutedEnvelope)
        if not clean_address(address) or "@" not in address:
            return str(replies.BAD_RECIPIENT_ADDRESS)
        if len(envelope.routed) >= self.config.server.max_recipients:
            return str(replies.TOO_MANY_RECIPIENTS)
        route = self.router.match(address)
        if route is None:
            return str(replies.RELAY_DENIED)  # logged with every refusal by the server (smtp.server._replied)
        user = user_of(session)
        client = Client(ip=_peer(session), user=user, mail_from=envelope.mail_from or "",
                        user_email=self.user_emails.get(user, "") if user else "")
        access = check_access(route, client, self.config.server.trusted_networks)
        if not access.allowed:
            if access.auth_would_help:
                return str(replies.AUTH_REQUIRED)
            return str(replies.NOT_ALLOWED)
        number = None
        if route.format == "address":
            try:
                number = parse_local_part(address.rpartition("@")[0], route.region)
            except NumberError as exc:
                return replies.BAD_NUMBER.with_detail(str(exc))
        refusal = await self.route_policy.rcpt_refusal(route, number, client, envelope.routed, time.time())
        if refusal is not None:
            return refusal
        envelope.routed.append(RoutedRecipient(address, route, number))
        envelope.trusted = envelope.trusted and access.trusted
        envelope.to_user = envelope.to_user or access.to_user
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return str(replies.RECIPIENT_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope, RoutedEnvelope)
        raw = envelope.original_content or b""
        user = user_of(session)
        parsed = ParsedEnvelope(
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.routed),
            peer=_peer(session),
            user=user,
            user_account=self.user_accounts.get(user) if user else None,
            trusted=envelope.trusted,
            # The sender is not vouched for but the user is: the report goes to the user's own address, if any.
            report_to=self.user_emails.get(user) if user and not envelope.trusted and envelope.to_user else None,
            is_sms_address=lambda address: self.router.match(address) is not None,
        )
        now = time.time()
        check = self.route_policy.for_mail(parsed, now)
        try:
            if cheap_to_parse(raw):
                submission, keys = self._build(raw, parsed, now, check)
            else:
                loop = asyncio.get_running_loop()
                work = loop.run_in_executor(self.executor, self._build, raw, parsed, now, check)
                submission, keys = await asyncio.wait_for(work, self.config.server.parse_timeout)
        except TimeoutError:
            return str(replies.PARSE_TIMEOUT)
        except PolicyError as exc:
            return policy_reply(exc)
        except AutoReplyError as exc:
            return replies.AUTO_REPLY.with_detail(str(exc))
        except LoopError as exc:
            return replies.LOOP.with_detail(str(exc))
        except HeaderLimitError as exc:
            return replies.HEADERS_TOO_BIG.with_detail(str(exc))
        except LimitError as exc:
            return replies.TOO_MANY.with_detail(str(exc))
        except ContentError as exc:
            return replies.BAD_CONTENT.with_detail(str(exc))
        # Body credentials are masked in logs while their jobs may still be sent, then forgotten (observability).
        body_secrets = {v for job in submission.jobs if job.account is not None for v in job.account.secrets()}
        if body_secrets:
            lifetime = max((r.route.lifetime for r in parsed.recipients), default=0.0)
            SECRETS.add_transient(body_secrets, ttl=lifetime + 3600.0)
        try:
            result = await self.spool.commit(submission, keys, self.dedupe_window, quota=check.charges(submission))
        except PolicyError as exc:  # a quota, checked and charged atomically by the commit
            return policy_reply(exc)
        except SpoolFullError:
            log.error("spool full: mail refused with 452")
            return str(replies.SPOOL_FULL)
        except SpoolError:
            log.exception("spool commit failed: mail refused with 451")
            return str(replies.LOCAL_ERROR)
        if body_secrets:
            SECRETS.belong_to(result.submission_id, body_secrets)  # forgotten when it is final (app: on_final)
        if result.duplicate:
            log.info("duplicate", submission=result.submission_id, peer=parsed.peer)
            return f"{replies.DUPLICATE} {result.submission_id}"
        log.info("queued", submission=result.submission_id, peer=parsed.peer, user=user,
                 sender=parsed.mail_from, jobs=len(submission.jobs), route=submission.route,
                 report=bool(submission.report_to))
        if self.on_commit is not None:
            self.on_commit()
        return f"{replies.QUEUED} {result.submission_id}"

    def _build(self, raw: bytes, parsed: ParsedEnvelope, now: float, check: MailCheck | None = None) -> Any:
        read = read_submission(
            raw, parsed, self.config.providers, now, self.limits, self.provider_limits, check_route=check
        )
        # The backscatter rules decide here, where the mail goes forward, whether its outcome may be mailed back.
        read.submission.report_to, read.submission.report_suppressed = report_decision(
            envelope_from=parsed.mail_from, headers=read.headers, trusted=parsed.trusted,
            report_to=parsed.report_to, is_sms_address=parsed.is_sms_address,
        )
        return read.submission, read.keys

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd's default is "500 Error: (Exc) text": permanent, and it leaks internals.
        log.error("smtp session error", error=type(error).__name__)
        return str(replies.LOCAL_ERROR)


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return str(peer or "")
