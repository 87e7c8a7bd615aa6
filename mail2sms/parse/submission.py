"""Turn one accepted mail (bytes + envelope + the routes its recipients matched) into a Submission.

Pure and bounded: no I/O, no clock (the caller passes `now`), so the SMTP handler can run it in a worker thread
for big mails and tests can call it directly. Every problem becomes a ContentError / NumberError / LimitError /
LoopError whose message is written for the sender and names the line, key, value or row; never a secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mail2sms.config import ProviderConfig, RouteConfig
from mail2sms.errors import ContentError, LoopError, NumberError
from mail2sms.model import Account, Job, JobState, SmsOptions, Submission
from mail2sms.parse.address import parse_kapow_credentials
from mail2sms.parse.keyvalue import parse_keyvalue
from mail2sms.parse.mime import MailContent, read_message
from mail2sms.parse.numbers import normalize
from mail2sms.parse.text import analyze, clean_body
from mail2sms.providers.base import Limits as ProviderLimits
from mail2sms.providers.base import check_job
from mail2sms.report.backscatter import report_decision


@dataclass(frozen=True)
class RoutedRecipient:
    """One RCPT that was accepted: the address, its route, and (address format) the number it names."""

    address: str
    route: RouteConfig
    number: str | None = None


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    recipients: Sequence[RoutedRecipient]
    peer: str = ""
    user: str | None = None
    user_account: Account | None = None  # an authenticated user's own provider account
    trusted: bool = False  # may the outcome be mailed to the sender


@dataclass(frozen=True)
class Limits:
    max_received: int = 100
    max_parts: int = 1000
    max_depth: int = 20
    max_jobs: int = 100_000


def _text_for(route: RouteConfig, mail: MailContent) -> str:
    body = clean_body(mail.text)
    subject = " ".join(mail.subject.split())
    if route.text_from == "subject":
        return subject
    if route.text_from == "subject+body":
        return f"{subject}\n{body}".strip() if subject else body
    return body


def _jobs_for_route(
    route: RouteConfig,
    recipients: Sequence[RoutedRecipient],
    mail: MailContent,
    provider: ProviderConfig,
    account: Account | None,
) -> tuple[list[Job], bool]:
    """Jobs for the recipients of one route, and whether the mail asked for a dry run."""
    if route.format == "address":
        text = _text_for(route, mail)
        if route.credentials_in_body:
            # Kapow's mail form: subject = text, body = username and password lines.
            creds = parse_kapow_credentials(mail.text)
            text = " ".join(mail.subject.split())
            if creds is not None:
                account = Account(username=creds[0], password=creds[1])
        if not text:
            where = "subject" if route.text_from == "subject" or route.credentials_in_body else "body"
            raise ContentError(f"the mail's {where} is empty: there is no text to send")
        sender = route.sender or provider.sender
        jobs = [Job(number=r.number or "", text=text, provider=route.provider, sender=sender, account=account)
                for r in recipients]
        return jobs, route.dry_run
    if route.format == "keyvalue":
        kv = parse_keyvalue(clean_body(mail.text), plus_as_space=route.plus_as_space)
        numbers: list[str] = []
        line = kv.lines.get("mobile", 0)
        for value in kv.mobiles:
            try:
                number = normalize(value, route.region)
            except NumberError as exc:
                raise NumberError(f"line {line}: mobile: {exc}") from None
            if number not in numbers:
                numbers.append(number)
        if kv.username or kv.password:
            account = Account(username=kv.username or "", password=kv.password or "")
        sender = kv.sender or route.sender or provider.sender
        options = SmsOptions(lang=kv.lang, sendtime=kv.sendtime)
        jobs = [Job(number=n, text=kv.text, provider=route.provider, sender=sender, account=account,
                    options=options) for n in numbers]
        return jobs, route.dry_run or kv.test
    raise ContentError(f"the route {route.match} uses the {route.format!r} format, which this mail2sms cannot read")


def dedupe_key(mail_id: str, job: Job) -> str:
    """Same Message-ID (or content), number and text → same key: an MTA's resend is recognised."""
    h = hashlib.sha256()
    for part in (mail_id, job.number, job.text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def build_submission(
    raw: bytes,
    envelope: Envelope,
    providers: Mapping[str, ProviderConfig],
    now: float,
    limits: Limits = Limits(),
    provider_limits: Mapping[str, ProviderLimits] | None = None,
) -> tuple[Submission, list[str]]:
    """The Submission for one mail and one dedupe key per job."""
    mail = read_message(raw, max_parts=limits.max_parts, max_depth=limits.max_depth)
    if mail.received_count >= limits.max_received:
        raise LoopError(f"the mail has passed {mail.received_count} relays")
    groups: dict[str, tuple[RouteConfig, list[RoutedRecipient]]] = {}
    for rcpt in envelope.recipients:
        groups.setdefault(rcpt.route.match, (rcpt.route, []))[1].append(rcpt)
    jobs: list[Job] = []
    dry_run = False
    for route, recipients in groups.values():
        route_jobs, route_dry = _jobs_for_route(
            route, recipients, mail, providers[route.provider], envelope.user_account
        )
        dry_run = dry_run or route_dry
        for job in route_jobs:
            job.expires_at = now + route.lifetime
            job.next_attempt_at = now
        jobs += route_jobs
    if not jobs:
        raise ContentError("the mail names no phone number")
    for job in jobs:
        shape = analyze(job.text)
        job.parts, job.encoding = shape.parts, shape.encoding
        limits_of = (provider_limits or {}).get(job.provider)
        if limits_of is not None:
            problem = check_job(job, limits_of, providers[job.provider].type)
            if problem is not None:
                raise ContentError(problem)
        if dry_run:
            job.state, job.code, job.error = JobState.CANCELLED, "DRYRUN", "dry run: checked, not sent"
    first_route = next(iter(groups.values()))[0]
    report_to, suppressed = report_decision(
        envelope_from=envelope.mail_from, headers=mail.headers, trusted=envelope.trusted
    )
    references = " ".join(mail.headers.get("references", []))
    submission = Submission(
        envelope_from=envelope.mail_from,
        recipients=[r.address for r in envelope.recipients],
        jobs=jobs,
        route=first_route.match,
        message_id=mail.message_id,
        subject=mail.subject[:200],
        report_to=report_to,
        report_suppressed=suppressed,
        dry_run=dry_run,
        received_at=now,
        peer=envelope.peer,
        user=envelope.user,
        extra={"references": references} if references else {},
    )
    mail_id = mail.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    return submission, [dedupe_key(mail_id, job) for job in jobs]
