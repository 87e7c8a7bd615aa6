"""Plain typed data that crosses the pipeline's boundaries: Submission, Job, Batch, Result, states.

Nothing here does I/O. Everything the SMTP side produces, the spool stores, the dispatcher hands a provider
and the reporter mails back is one of these types, so each stage can be tested without the others.

Secrets (`Account.password`, `Account.key`) are kept out of `repr()` so that a stray log line or a failing test
assertion cannot print them.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    """A job's life (DESIGN.md "Job states")."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {JobState.SENT, JobState.REJECTED, JobState.UNKNOWN, JobState.EXPIRED, JobState.CANCELLED}
)


class ReportState(enum.StrEnum):
    """A submission's outcome report (the spool's `report_state`): waiting for its SMS, then due, then settled."""

    WAITING = "waiting"  # some SMS are not final yet
    NONE = "none"  # final, and no report is wanted (backscatter rules gave no address)
    PENDING = "pending"  # due at `report_next_at`; claimed with an owner and lease before it is delivered
    SENT = "sent"  # delivered to the smarthost or the maildir
    SKIPPED = "skipped"  # `reports.when` did not want it
    SUPPRESSED = "suppressed"  # held back by the per-sender rate limit: summarised in the next delivered report
    SUMMARISED = "summarised"  # named in a delivered report's summary
    DROPPED = "dropped"  # permanently refused by the smarthost, or retried too often


@dataclass(frozen=True)
class Account:
    """Provider credentials: the route's configured account, or one that came inside a mail body."""

    username: str = ""
    password: str = field(default="", repr=False)
    key: str = field(default="", repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.key) if s]

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str] | None) -> Account | None:
        return cls(**data) if data else None


@dataclass(frozen=True)
class SmsOptions:
    """Per-message options a provider may honour. Unknown to a provider = ignored by it."""

    lang: int | None = None  # KwtSMS lang code when the mail named one
    flash: bool = False
    sendtime: str | None = None  # ISO 8601 UTC, when the mail asked to schedule

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, False)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SmsOptions:
        return cls(**(data or {}))


@dataclass
class Job:
    """One SMS to one number. The unit the spool stores and the dispatcher claims."""

    number: str  # E.164 without "+", e.g. "96550000000"
    text: str
    provider: str  # configured provider name
    sender: str | None = None
    account: Account | None = None  # from the mail body; None = the provider's configured account
    options: SmsOptions = field(default_factory=SmsOptions)
    row: int | None = None  # CSV row (as a spreadsheet numbers it), for reports
    id: str = ""
    submission_id: str = ""
    idempotency_key: str = ""  # fixed at commit, sent on every attempt to providers that honour one
    state: JobState = JobState.QUEUED
    attempts: int = 0
    next_attempt_at: float = 0.0
    expires_at: float = 0.0
    provider_id: str | None = None
    code: str | None = None  # provider's own code or word (ERR003, USERPASS, ...)
    error: str | None = None  # plain words: what went wrong and what to do
    detail: str | None = None  # what the provider added to its acceptance (Sent.detail), for the report
    parts: int = 1
    encoding: str = "gsm7"
    notes: list[str] = field(default_factory=list)  # what mail2sms did to the text: smart replacement, truncation
    first_attempt_at: float | None = None  # when a request carrying this job first may have left (spool-kept)


@dataclass
class Submission:
    """One accepted mail: its envelope, where the outcome goes, and one Job per SMS."""

    envelope_from: str
    recipients: list[str]
    jobs: list[Job]
    route: str
    message_id: str | None = None
    subject: str = ""
    report_to: str | None = None  # None: no outcome mail (backscatter rules said no)
    report_suppressed: str | None = None  # why no report is sent
    dry_run: bool = False
    id: str = ""
    received_at: float = 0.0
    peer: str = ""
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. csv rows for results.csv


@dataclass(frozen=True)
class Batch:
    """Jobs that go to one provider in one request: same account, sender, text and options."""

    provider: str
    account: Account | None
    sender: str | None
    text: str
    options: SmsOptions
    jobs: tuple[Job, ...]

    @property
    def numbers(self) -> list[str]:
        return [j.number for j in self.jobs]

    @property
    def personalised(self) -> bool:
        """The jobs carry different texts (a provider with `Limits.max_messages`): read each `job.text`, not
        `text`, which is then only the first job's."""
        return any(j.text != self.text for j in self.jobs)


@dataclass(frozen=True)
class Sent:
    """The provider accepted the SMS for this number."""

    provider_id: str | None = None
    code: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Rejected:
    """The provider (or mail2sms) refused the SMS; repeating the same request will not help."""

    code: str
    why: str


@dataclass(frozen=True)
class Retry:
    """The request surely was not processed, or the provider honours an idempotency key: try again."""

    code: str
    why: str
    after: float | None = None  # seconds the provider asked us to wait (Retry-After)


@dataclass(frozen=True)
class Unknown:
    """The request may have reached the provider and cannot be safely repeated: "may have been sent"."""

    code: str
    why: str


Result = Sent | Rejected | Retry | Unknown


class DeliveryState(enum.StrEnum):
    """What a provider's delivery receipt says about one accepted SMS (issue 15). Kept apart from `JobState`: the
    spool decides how a receipt moves a job (`delivered`, `undelivered`, `no receipt` after the window)."""

    PENDING = "pending"  # not final yet, or the answer could not be read: ask again later, never "delivered"
    DELIVERED = "delivered"  # the provider says the phone has it
    UNDELIVERED = "undelivered"  # the provider says it failed for good (its reason in `Receipt.why`)


@dataclass(frozen=True)
class ReceiptQuery:
    """One accepted SMS whose delivery status is asked for: the id its `Sent` carried, and its number."""

    provider_id: str
    number: str  # E.164 digits without "+", as `Job.number`
    account: Account | None = None  # the account that sent it, when it came inside the mail body


@dataclass(frozen=True)
class Receipt:
    """What a provider said about one SMS's delivery: from a status query (one per `ReceiptQuery`) or a push."""

    provider_id: str
    number: str | None  # digits; None when a pushed receipt does not name the number
    state: DeliveryState
    code: str | None = None  # the provider's own status word or code (`D`, `11`, `FAILED.EXPIRED`, `Delivered`)
    why: str = ""  # plain words for the sender, never a secret
    at: float | None = None  # when the provider says the state was reached (epoch seconds), if it says


# The receipt types the spool stores and the receipt poller and push door use (dispatch/receipt_store.py says how):
# here, at the bottom of the flow, so the spool can build them without importing a stage above it.


class ReceiptState(enum.StrEnum):
    """How an accepted SMS ended, as the follow-up mail and results files name it."""

    DELIVERED = "delivered"  # the provider says the phone has it
    UNDELIVERED = "undelivered"  # the provider says it failed for good
    NO_RECEIPT = "no_receipt"  # nothing final came within receipts.window: nobody can tell


@dataclass(frozen=True)
class Awaiting:
    """One accepted SMS waiting for its receipt, as the store hands it to the poller."""

    job_id: str
    submission_id: str
    provider: str  # the configured provider name that accepted it
    provider_id: str  # the provider's message id from `Sent`
    number: str  # E.164 digits without "+"
    accepted_at: float  # epoch seconds
    polls: int = 0  # status requests answered so far
    next_poll_at: float = 0.0
    account: Account | None = None  # the account that sent it, when it came inside the mail body

    def query(self) -> ReceiptQuery:
        return ReceiptQuery(provider_id=self.provider_id, number=self.number, account=self.account)


@dataclass(frozen=True)
class Settled:
    """The final state of one accepted SMS: what the store keeps and the follow-up mail shows."""

    state: ReceiptState
    code: str | None  # the provider's own status word or code; None for no_receipt
    why: str  # plain words for the sender, never a secret
    at: float  # when it became final (the provider's time when it gave one)
    via: str  # "poll", "push" or "window": how mail2sms learnt it, for the operator


# Two-way (issue 17): an SMS a phone sent back, and where the spool decided it goes. Here for the same reason as
# the receipt types: adapters build InboundSms, the spool stores it, the reply mailer reads StoredReply.


@dataclass(frozen=True)
class InboundSms:
    """One SMS a phone sent to us (a reply), as a provider reports it by a poll or a push."""

    provider_ref: str  # the provider's own id of this inbound SMS: with the provider name, the exactly-once key
    number: str  # the phone that sent it: E.164 digits without "+", as `Job.number`
    text: str
    received_at: float | None = None  # epoch seconds, when the provider says
    in_reply_to: str | None = None  # the provider's message id of the SMS it answers, when the provider links it
    to: str | None = None  # the number (or sender id) it was sent to, when the provider says


class ReplyState(enum.StrEnum):
    """Where a stored reply is on its way to a mailbox."""

    PENDING = "pending"  # to be mailed (to the original sender or to `replies.unmatched_to`)
    MAILED = "mailed"  # delivered to the mail destination
    DROPPED = "dropped"  # nobody may have it (no match and no `replies.unmatched_to`, or its mail bounced for good)
    THROTTLED = "throttled"  # over `replies.per_number_per_hour` for its number: kept, never mailed


class ReplyMatch(enum.StrEnum):
    """How a reply was tied to an SMS mail2sms sent."""

    LINKED = "linked"  # the provider named the SMS it answers (its message id) and the number matches
    NUMBER = "number"  # no link given: the only sender who texted this number through this provider lately
    NONE = "none"  # tied to nothing: goes to `replies.unmatched_to`, or is dropped


@dataclass(frozen=True)
class Balance:
    """A provider account's credit, as the provider states it."""

    provider: str
    credit: float | None
    detail: str = ""
