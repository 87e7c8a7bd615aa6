"""Turn one accepted mail (bytes + envelope + the routes its recipients matched) into a Submission.

Pure and bounded: no I/O, no clock (the caller passes `now`), so the SMTP handler can run it in a worker thread
for big mails and tests can call it directly. Every problem becomes a ContentError / NumberError / LimitError /
LoopError whose message is written for the sender and names the line, key, value or row; never a secret.

It decides what the mail asks for, not what mail2sms does about its sender: whether the outcome may be mailed
back (the backscatter rules, report/backscatter.py) is decided by the caller from `ReadMail.headers`, where the
flow goes forward. The provider's limits and text rules come in from the caller (`mail2sms.limits`), so this
package imports neither providers/ nor report/.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mail2sms.config import ProviderConfig, RouteConfig
from mail2sms.errors import AutoReplyError, ContentError, LimitError, LoopError, NumberError
from mail2sms.limits import Limits as ProviderLimits
from mail2sms.limits import check_job
from mail2sms.model import Account, Job, JobState, SmsOptions, Submission
from mail2sms.parse.address import parse_kapow_credentials
from mail2sms.parse.autoreply import auto_reply_marker
from mail2sms.parse.csvfile import CsvFile, decode_csv
from mail2sms.parse.fit import fit_jobs
from mail2sms.parse.keyvalue import parse_keyvalue
from mail2sms.parse.mime import Attachment, MailContent, read_message
from mail2sms.parse.numbers import normalize
from mail2sms.parse.schedule import parse_sendtime, schedule_job, to_iso
from mail2sms.parse.text import SmsShape, analyze, clean_body


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
    report_to: str | None = None  # where the outcome goes instead of the sender (an authenticated user's address)
    is_sms_address: Callable[[str], bool] | None = None  # an address that is one of the gateway's SMS routes


@dataclass(frozen=True)
class ReadMail:
    """One mail read: its Submission (report address not yet decided), one dedupe key per job, and the headers
    the backscatter rules read (`Auto-Submitted`, `Precedence`, the list headers)."""

    submission: Submission
    keys: list[str]
    headers: Mapping[str, list[str]]


@dataclass(frozen=True)
class Limits:
    max_received: int = 100
    max_parts: int = 1000
    max_depth: int = 20
    max_jobs: int = 100_000  # SMS one mail may become, whatever the format (a CSV is capped by its max_rows too)


# Numbers one keyvalue mail may list when its route sets no `max_recipients`: a body of 10,000 numbers is refused
# (552 5.3.4) instead of becoming 10,000 SMS. An address mail is bounded by `server.max_recipients`, a CSV by
# `max_rows`.
DEFAULT_MAX_NUMBERS = 1000
# SMS parts one text may need when neither the route (`max_parts`) nor the provider sets a limit (outbox, Kapow,
# Cellcast): a 200 KB body must not become 1,300 parts charged one by one.
DEFAULT_MAX_PARTS = 10


def _text_for(route: RouteConfig, mail: MailContent) -> str:
    body = clean_body(mail.text, route.end_markers, sender=mail.from_, reply=bool(mail.headers.get("in-reply-to")))
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
    max_jobs: int = Limits.max_jobs,
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
        cap = min(route.max_recipients or DEFAULT_MAX_NUMBERS, max_jobs)
        kv = parse_keyvalue(clean_body(mail.text, route.end_markers), plus_as_space=route.plus_as_space,
                            max_numbers=cap)
        # A dict keeps the order written and finds a repeat in O(1) (a list made 150,000 numbers quadratic).
        unique: dict[str, None] = {}
        line = kv.lines.get("mobile", 0)
        for value in kv.mobiles:
            try:
                number = normalize(value, route.region)
            except NumberError as exc:
                raise NumberError(f"line {line}: mobile: {exc}") from None
            unique[number] = None
        numbers = list(unique)
        if kv.username or kv.password:
            account = Account(username=kv.username or "", password=kv.password or "")
        sender = kv.sender or route.sender or provider.sender
        sendtime = None
        if kv.sendtime:  # read here for the line number; checked against the clock in build_submission
            sendtime = to_iso(parse_sendtime(kv.sendtime, key=f"line {kv.lines.get('sendtime', 0)}: sendtime"))
        options = SmsOptions(lang=kv.lang, flash=kv.flash, sendtime=sendtime)
        jobs = [Job(number=n, text=kv.text, provider=route.provider, sender=sender, account=account,
                    options=options) for n in numbers]
        return jobs, route.dry_run or kv.test
    raise ContentError(f"the route {route.match} uses the {route.format!r} format, which this mail2sms cannot read")


# -- csv: Kapow's CSV Email2SMS (providers.md) ------------------------------------------------------------

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/comma-separated-values", "text/x-csv", "application/x-csv"})
CSV_PROBLEMS_SHOWN = 5  # bad rows named in a 554 reply (the reply line is bounded anyway)
_SIGNATURE_LINE = re.compile(r"^--[ \t]?$", re.MULTILINE)
# A problem's first clause: up to ': ', ';' or '(' outside a quoted value ('a;b' is one value).
_SHORT = re.compile(r"(?:[a-z_]+: )?(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^:;('\"]|:(?! )|['\"])*")
_NO_OPTIONS = SmsOptions()


def _csv_attachments(mail: MailContent) -> list[Attachment]:
    """CSV files: `text/csv` and its kin, or any part named *.csv (Excel sends `application/vnd.ms-excel`)."""
    return [a for a in mail.attachments if not a.content_type.startswith(("message/", "multipart/"))
            and (a.content_type in CSV_TYPES or (a.filename or "").lower().endswith(".csv"))]


def _csv_jobs(
    route: RouteConfig,
    mail: MailContent,
    provider: ProviderConfig,
    account: Account | None,
    limits: ProviderLimits | None,
    now: float,
) -> tuple[list[Job], dict[str, Any]]:
    """One job per CSV row (a bad row's job is already `rejected` with its problem), and the cells for results.csv.

    The cells go into `Submission.extra["csv"]` (stored with the submission) because results.csv must repeat
    every input row, including the cells mail2sms does not read, long after the mail itself is gone.
    """
    attachments = _csv_attachments(mail)
    sources: list[tuple[str | None, Attachment | None]] = [
        (a.filename or f"attachment {i}", a) for i, a in enumerate(attachments, 1)
    ] or [(None, None)]
    several = len(sources) > 1
    sender = route.sender or provider.sender
    shared: dict[str, str] = {}  # one string object per distinct message or sender: 100,000 rows share a few
    jobs: list[Job] = []
    files: list[dict[str, Any]] = []
    expires = now + route.lifetime  # one float object for every job
    for name, attachment in sources:
        if attachment is not None:
            text = decode_csv(attachment.data, attachment.charset)
        else:
            cut = _SIGNATURE_LINE.search(mail.text)
            text = mail.text[: cut.start()] if cut else mail.text
            if not text.strip():
                raise ContentError("the mail has no CSV attachment and its body is empty")
        reader = CsvFile(text, region=route.region, max_rows=route.max_rows, rows_before=len(jobs),
                         where=f"{name}: " if several else "")
        stored: list[list[Any]] = []
        width = len(reader.layout.names)
        for row in reader.rows():
            message = shared.setdefault(row.text or "", row.text or "")
            from_id = shared.setdefault(row.sender, row.sender) if row.sender else sender
            options = SmsOptions(sendtime=row.sendtime) if row.sendtime else _NO_OPTIONS
            job = Job(number=row.number or "", text=message, provider=route.provider, sender=from_id,
                      account=account, options=options, row=row.row, expires_at=expires, next_attempt_at=now)
            error = row.error
            if error is None and row.sendtime:
                try:
                    schedule_job(job, limits, now, provider.type)
                except ContentError as exc:
                    error = str(exc)
            if error is not None:
                refuse_row(job, error)
            jobs.append(job)
            stored.append([row.row, *(shared.get(cell, cell) for cell in row.cells)])  # share the message
            width = max(width, len(row.cells))
        files.append({"name": name, "delimiter": reader.layout.delimiter, "header": reader.layout.header,
                      "names": reader.layout.names, "width": width, "rows": stored})
    if not jobs:
        raise ContentError("the CSV has a header row but no rows to send")
    return jobs, {"files": files, "policy": route.csv_policy}


def _with_default_parts(route: RouteConfig, limits: ProviderLimits | None) -> RouteConfig:
    """The route with `max_parts = DEFAULT_MAX_PARTS` when neither it nor its provider limits the parts."""
    if route.max_parts is not None or limits is None or limits.max_parts is not None or limits.max_parts_ucs2:
        return route
    return route.model_copy(update={"max_parts": DEFAULT_MAX_PARTS})


def refuse_row(job: Job, problem: str) -> None:
    """A CSV row that cannot be sent: final at commit, so the dispatcher never claims it, and reported."""
    job.state, job.error, job.code = JobState.REJECTED, problem, None
    if not job.text:
        job.parts = 0


def _apply_csv_policy(jobs: Sequence[Job], csv: dict[str, Any]) -> None:
    """All-or-nothing (or no good row at all): ContentError naming the first bad rows. Else name files in errors."""
    rows = [job for job in jobs if job.row is not None]  # in file order, one per stored row
    several = len(csv["files"]) > 1
    bad: list[tuple[str | None, Job]] = []  # (file name when there are several, job)
    start = 0
    for file in csv["files"]:
        end = start + len(file["rows"])
        bad += [(file["name"] if several else None, job) for job in rows[start:end] if job.state is JobState.REJECTED]
        start = end
    if not bad:
        return
    if csv["policy"] == "partial" and len(bad) < len(rows):
        for name, job in bad:
            if name is not None:
                job.error = f"{name}: {job.error}"
        return
    shown = "; ".join(f"{name + ' ' if name else ''}row {job.row}: {_short(job.error or '')}"
                      for name, job in bad[:CSV_PROBLEMS_SHOWN])
    more = f"; and {len(bad) - CSV_PROBLEMS_SHOWN:,} more" if len(bad) > CSV_PROBLEMS_SHOWN else ""
    if len(bad) == len(rows):
        lead = f"no CSV row can be sent ({len(bad):,} of {len(rows):,} have a problem)"
    else:
        lead = f"{len(bad):,} of {len(rows):,} CSV rows have a problem and the route sends all rows or none"
    raise ContentError(f"{lead}: {shown}{more}")


def _short(problem: str) -> str:
    """A problem's first clause ("'12ab' is not a phone number"), for a reply line that names several rows."""
    match = _SHORT.match(problem)
    return (match.group(0) if match else problem).strip() or problem


def dedupe_key(mail_id: str, job: Job, who: str = "", dry_run: bool = False) -> str:
    """Same sender (or user), Message-ID (or content), number and text → same key: an MTA's resend is recognised.

    `who` keeps one sender's mail from suppressing another's with a copied Message-ID; a dry run gets keys of its
    own, so a test never suppresses a real alarm with the same Message-ID, number and text (nor the other way)."""
    h = hashlib.sha256()
    for part in ("dry" if dry_run else "", who, mail_id, job.number, job.text):
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
    check_route: Callable[[RouteConfig, list[Job]], None] | None = None,
) -> tuple[Submission, list[str]]:
    """The Submission for one mail and one dedupe key per job (its report address left for the caller)."""
    read = read_submission(raw, envelope, providers, now, limits, provider_limits, check_route)
    return read.submission, read.keys


def read_submission(
    raw: bytes,
    envelope: Envelope,
    providers: Mapping[str, ProviderConfig],
    now: float,
    limits: Limits = Limits(),
    provider_limits: Mapping[str, ProviderLimits] | None = None,
    check_route: Callable[[RouteConfig, list[Job]], None] | None = None,
) -> ReadMail:
    """The Submission for one mail, one dedupe key per job, and the headers its report decision reads.

    `check_route(route, jobs)` is the route's number policy (smtp.policy): it may refuse CSV rows or raise."""
    mail = read_message(raw, max_parts=limits.max_parts, max_depth=limits.max_depth)
    if mail.received_count >= limits.max_received:
        raise LoopError(f"the mail has passed {mail.received_count} relays")
    marker = auto_reply_marker(mail.headers)
    if marker is not None:  # a vacation responder answering a reply mail must never text the number
        raise AutoReplyError(marker)
    groups: dict[str, tuple[RouteConfig, list[RoutedRecipient]]] = {}
    for rcpt in envelope.recipients:
        groups.setdefault(rcpt.route.match, (rcpt.route, []))[1].append(rcpt)
    jobs: list[Job] = []
    dry_run = False
    csv: dict[str, Any] | None = None
    for route, recipients in groups.values():
        if route.format == "csv":
            if csv is not None:
                raise ContentError("the mail is addressed to two CSV routes; send it to one of them")
            route_jobs, csv = _csv_jobs(route, mail, providers[route.provider], envelope.user_account,
                                        (provider_limits or {}).get(route.provider), now)
            route_dry = route.dry_run
        else:
            route_jobs, route_dry = _jobs_for_route(
                route, recipients, mail, providers[route.provider], envelope.user_account, limits.max_jobs - len(jobs)
            )
        if len(jobs) + len(route_jobs) > limits.max_jobs:
            raise LimitError(f"the mail would become more than {limits.max_jobs:,} SMS; send it in parts")
        dry_run = dry_run or route_dry
        # Smart replacement, parts limit and truncation (parse/fit.py): the text stored is the text sent.
        fit_route = _with_default_parts(route, (provider_limits or {}).get(route.provider))
        for job, why in fit_jobs(route_jobs, fit_route, (provider_limits or {}).get(route.provider),
                                 providers[route.provider].type):
            refuse_row(job, why)
        for job in route_jobs:
            if not job.expires_at:  # CSV rows come with their own times (a sendtime column schedules them)
                job.expires_at = now + route.lifetime
                job.next_attempt_at = now
        if route.format == "keyvalue":  # its sendtime: key (CSV rows are scheduled row by row)
            for job in route_jobs:
                schedule_job(job, (provider_limits or {}).get(route.provider), now, providers[route.provider].type)
        if check_route is not None:
            check_route(route, route_jobs)
        jobs += route_jobs
    if not jobs:
        raise ContentError("the mail names no phone number")
    # A 100,000-row CSV repeats a few texts and senders: measure and check each distinct one once.
    shapes: dict[str, SmsShape] = {}
    checked: dict[tuple[str, str, str | None, bool], str | None] = {}
    for job in jobs:
        if job.state.final:
            continue  # a CSV row already refused for its own problem
        shape = shapes.get(job.text)
        if shape is None:
            shape = shapes[job.text] = analyze(job.text)
        job.parts, job.encoding = shape.parts, shape.encoding
        limits_of = (provider_limits or {}).get(job.provider)
        if limits_of is not None:
            key = (job.provider, job.text, job.sender, job.options.flash)
            if key not in checked:
                checked[key] = check_job(job, limits_of, providers[job.provider].type)
            refusal = checked[key]
            if refusal is not None:
                if job.row is None:
                    raise ContentError(refusal)
                refuse_row(job, refusal)  # one CSV row; the route's csv_policy decides about the others
                continue
        if dry_run:
            job.state, job.code, job.error = JobState.CANCELLED, "DRYRUN", "dry run: checked, not sent"
    if csv is not None:
        _apply_csv_policy(jobs, csv)
    first_route = next(iter(groups.values()))[0]
    tokens = [token for value in mail.headers.get("references", []) for token in value.split() if _msg_id_ok(token)]
    references = " ".join(tokens[-REFERENCES_KEPT:])
    submission = Submission(
        envelope_from=envelope.mail_from,
        recipients=[r.address for r in envelope.recipients],
        jobs=jobs,
        route=first_route.match,
        message_id=mail.message_id if mail.message_id and _msg_id_ok(mail.message_id) else None,
        subject=mail.subject[:200],
        dry_run=dry_run,
        received_at=now,
        peer=envelope.peer,
        user=envelope.user,
        extra={"references": references} if references else {},
    )
    if csv is not None:
        submission.extra["csv"] = {"files": csv["files"]}
    mail_id = mail.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    who = f"user:{envelope.user.lower()}" if envelope.user else f"sender:{envelope.mail_from.lower()}"
    keys = [dedupe_key(mail_id, job, who, dry_run) for job in jobs]
    return ReadMail(submission, keys, {**mail.headers, **_list_headers(raw)})


# Mailing-list markers the MIME reader does not collect (its LOOP_HEADERS): found by one scan of the header block.
_LIST_MARKERS = re.compile(rb"^(list-unsubscribe|x-mailing-list)[ \t]*:", re.IGNORECASE | re.MULTILINE)


def _list_headers(raw: bytes) -> dict[str, list[str]]:
    """`{"list-unsubscribe": ["(present)"]}` and the like for the list headers in the mail's top header block."""
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    block = raw[: min(ends)] if ends else raw
    return {m.group(1).decode().lower(): ["(present)"] for m in _LIST_MARKERS.finditer(block)}


REFERENCES_KEPT = 20  # Message-IDs of References kept for the report's threading (the newest)
_MSG_ID_MAX = 250


def _msg_id_ok(value: str) -> bool:
    """Whether a Message-ID may be copied into the report's In-Reply-To / References: printable ASCII, one token,
    bounded. A NUL, CR or LF copied there would break (or inject into) the outcome mail's header."""
    return 0 < len(value) <= _MSG_ID_MAX and all(33 <= ord(ch) <= 126 for ch in value.strip())
