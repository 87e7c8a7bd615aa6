"""The Spool protocol: durable storage of submissions, jobs, dedupe keys and reports.

`commit()` returning is the promise behind `250`: when it returns, the submission survives a crash. Every
state change a job goes through happens here, so crash recovery (`recover()`) can apply DESIGN.md's rules to
whatever was in flight. Backends: `spool.sqlite` (one host) and `spool.postgres` (many hosts), both running
`spool.core`'s transitions on `spool.schema`'s tables.

A spool never logs credentials; body credentials are deleted when their submission is final.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mail2sms.errors import SpoolError
from mail2sms.model import (
    Awaiting,
    InboundSms,
    Job,
    JobState,
    ReplyMatch,
    ReplyState,
    ReportState,
    Settled,
    Submission,
)
from mail2sms.spool.quotas import QuotaCharge


class LeaseLost(SpoolError):
    """`mark_sending(owner=...)` or `record(owner=...)`: some of the jobs are no longer leased to this owner (its
    lease expired and another process took them). Nothing was marked or stored: the request must not leave, and a
    result is not recorded over the other process's."""


@dataclass(frozen=True)
class CommitResult:
    """What `commit()` did: a new submission id, or the id this mail duplicates (nothing new stored)."""

    submission_id: str
    duplicate: bool = False


@dataclass(frozen=True)
class JobUpdate:
    """A job's new state after a provider call (or a decision not to make one)."""

    job_id: str
    state: JobState
    attempts: int
    next_attempt_at: float = 0.0
    provider_id: str | None = None
    code: str | None = None
    error: str | None = None
    detail: str | None = None  # Sent.detail: what the provider added to its acceptance, shown in the report


@dataclass(frozen=True)
class DueReport:
    submission: Submission
    jobs: list[Job]
    attempts: int


@dataclass(frozen=True)
class ReceiptView:
    """One SMS's delivery receipt as `mail2sms queue show` prints it: `pending` (with its next ask) or settled."""

    state: str  # pending | delivered | undelivered | no_receipt
    code: str | None
    why: str | None
    at: float | None  # when it was settled
    via: str | None  # poll, push or window
    polls: int
    next_poll_at: float | None  # while pending


@dataclass(frozen=True)
class DueFollowup:
    """A submission whose accepted SMS are all settled, for its follow-up mail (report.followup): the jobs, each
    settled receipt by job id, the follow-up's attempts so far, and how its outcome report ended (the follow-up
    threads under it only when it was sent)."""

    submission: Submission
    jobs: list[Job]
    receipts: dict[str, Settled]
    attempts: int
    report_state: ReportState


@dataclass(frozen=True)
class ReplyView:
    """An SMS reply tied to one SMS of a submission, as `mail2sms queue show` prints it."""

    job_id: str
    number: str
    text: str
    state: str  # pending | mailed | dropped | throttled
    match: str  # linked | number
    mail_to: str | None
    why: str | None
    fetched_at: float
    provider: str


@dataclass(frozen=True)
class ReplyRules:
    """How the spool decides, in the transaction that stores a reply, where it goes (issue 17; `[replies]`)."""

    match_window: float  # seconds: an SMS older than this is not matched any more
    per_number_per_hour: int  # replies from one number mailed per hour; more are THROTTLED
    unmatched_to: str | None  # where replies tied to nothing (or to a sender who may not be mailed) go; None: dropped


@dataclass(frozen=True)
class DueReply:
    """A stored reply claimed for mailing (report/replier.py), with what its mail needs for threading: the SMS it
    answers (`job`) and that SMS's submission (sender, subject, Message-ID, route), when it was matched."""

    id: str  # the spool's id of the reply; the mail's fixed Message-ID and the maildir index derive from it
    provider: str  # configured provider name it came through
    number: str  # the phone that sent it: E.164 digits without "+"
    text: str
    received_at: float | None  # the provider's time, when it gave one
    fetched_at: float  # when mail2sms took it
    match: ReplyMatch
    mail_to: str  # the submission's report_to, or replies.unmatched_to
    attempts: int  # mail deliveries tried so far
    submission: Submission | None = None  # None when match is NONE
    job: Job | None = None  # the SMS it answers; None when match is NONE


@dataclass(frozen=True)
class StoredReplies:
    """What `store_replies` did: the replies new to the spool (by provider_ref) and how each one was decided."""

    new: int
    states: dict[str, ReplyState]  # provider_ref → the state it was stored in (only the new ones)
    why: dict[str, str] = field(default_factory=dict)  # provider_ref → why it is not mailed (THROTTLED, DROPPED)


@dataclass(frozen=True)
class HeldReport:
    """A report held back by the per-sender rate limit, as one line of the summary in the next delivered report."""

    submission_id: str
    sent: int
    total: int


@dataclass(frozen=True)
class QueueEntry:
    """One line of `mail2sms queue list`."""

    submission_id: str
    received_at: float
    envelope_from: str
    route: str
    total: int
    states: dict[str, int]
    report_state: ReportState


class Spool(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, submission: Submission, dedupe_keys: list[str], window: float,
                     quota: Sequence[QuotaCharge] = ()) -> CommitResult:
        """Store the submission and its jobs durably, unless every job's dedupe key is already known.

        `quota` is checked and charged in the same transaction (spool.quotas): over a limit, `QuotaExceeded` is
        raised and nothing is stored; a duplicate is not charged."""
        ...

    async def quota_used(self, key: str, since: float) -> int:
        """SMS charged to a quota key after `since` (an early, advisory look: `commit` decides)."""
        ...

    async def claim(
        self, owner: str, now: float, limit: int, lease: float, skip_providers: Collection[str] = ()
    ) -> list[Job]:
        """Lease up to `limit` ready jobs to `owner`; they stay `queued` until `mark_sending()`.

        Jobs of `skip_providers` (paused by the circuit breaker) stay where they are for others to claim later."""
        ...

    async def mark_sending(self, job_ids: list[str], now: float, owner: str | None = None) -> None:
        """Record durably that a request for these jobs is about to leave (the crash-recovery boundary).

        With `owner`, every job must still be `queued` and leased to it, or nothing is marked and `LeaseLost` is
        raised: a lease that expired while its jobs waited (for a rate limit) must not lead to a second send."""
        ...

    async def record(self, updates: list[JobUpdate], now: float, owner: str | None = None) -> list[str]:
        """Store results; return ids of submissions that became final.

        With `owner`, every job must still be leased to it, or nothing is stored and `LeaseLost` is raised: a node
        whose lease ran out (and whose jobs another node recovered or sent) must not overwrite their outcome."""
        ...

    async def recover(
        self, idempotent_providers: set[str], now: float, owner_dead: Callable[[str], bool] | None = None
    ) -> tuple[int, int]:
        """Jobs whose lease expired or whose owner died: `sending` → `queued` (idempotent provider) or `unknown`.

        Returns (requeued, unknown)."""
        ...

    async def expire(self, now: float) -> list[str]:
        """Waiting jobs past their lifetime become `expired`; returns submissions that became final."""
        ...

    async def report_done(
        self, submission_id: str, state: ReportState, next_at: float, now: float, owner: str | None = None
    ) -> bool:
        """`ReportState.PENDING` = retry at next_at. With `owner`, only while it holds the report
        (else nothing changes and False comes back); its lease ends."""
        ...

    # Reports are claimed like jobs (owner + lease), so each is delivered by one process of one node, whatever the
    # number of workers and nodes: only the owner's `report_done` counts, and a report is loaded one at a time.

    async def claim_reports(self, owner: str, now: float, limit: int, lease: float) -> list[str]:
        """Lease up to `limit` due reports (`pending`, due by `now`, no running lease) to `owner`: submission ids."""
        ...

    async def claim_delay_notices(
        self, owner: str, older_than: float, now: float, limit: int, lease: float
    ) -> list[str]:
        """Lease "still trying" notices: unfinished submissions received before `older_than`, not notified yet,
        due by `now` (a notice that could not be delivered waits for its next try)."""
        ...

    async def load_report(self, submission_id: str) -> DueReport | None:
        """One submission with its jobs and report attempts, for composing its report."""
        ...

    async def release_dead_reports(self, owner_dead: Callable[[str], bool]) -> int:
        """Release report leases whose owner `owner_dead` says is dead (a crashed worker on this host), so its
        reports need not wait for the lease to end; how many."""
        ...

    async def release_reports(self, submission_ids: list[str], owner: str) -> None:
        """Give back claimed reports (and delay notices) not tried, without counting an attempt."""
        ...

    async def delay_notice_done(self, submission_id: str, owner: str, notified: bool, next_at: float) -> None:
        """Record a "still trying" notice: delivered or given up (`notified`), else due again at `next_at`."""
        ...

    async def take_held(self, report_to: str, owner: str, now: float, lease: float) -> list[HeldReport]:
        """Lease the reports held back for this address, for a summary; `settle_held` says whether it went out."""
        ...

    async def settle_held(self, submission_ids: list[str], owner: str, summarised: bool) -> None:
        """Held reports named in a delivered summary become `summarised`; otherwise they wait for the next one."""
        ...

    async def queue_list(self, limit: int, job_states: Collection[str] | None = None) -> list[QueueEntry]:
        """Submissions oldest first: still sending or owing a report, or (`job_states`) having an SMS in one of
        those states (empty: all)."""
        ...

    async def get(self, submission_id: str) -> tuple[Submission, list[Job]] | None: ...

    async def retry_now(self, submission_id: str, now: float) -> int: ...

    async def retry(self, submission_id: str, now: float, force: bool = False) -> int:
        """Retries waiting for their next attempt become due now; scheduled SMS keep their sendtime unless `force`.
        How many SMS were moved."""
        ...

    async def cancel(self, submission_id: str, now: float) -> int: ...

    async def delete_final(self, submission_id: str) -> int | None:
        """Remove a final submission with its jobs (how many); None when it has open SMS (or does not exist)."""
        ...

    async def purge(self, before: float, limit: int = 500) -> tuple[int, int]:
        """One retention batch: up to `limit` jobs of submissions settled before `before`, and the submissions
        left empty; (submissions, jobs) removed, (0, 0) when done."""
        ...

    async def purge_counts(self, before: float) -> tuple[int, int]:
        """(submissions, jobs) `purge` would remove."""
        ...

    async def purge_memory(self, dedupe_before: float, quota_before: float, limit: int = 500) -> int:
        """One batch of dedupe keys older than `dedupe_before` and quota charges older than `quota_before`."""
        ...

    # Delivery receipts (issue 15): the ReceiptStore the receipt poller and push door use
    # (dispatch.receipt_store), and the follow-up mails' claims, like the reports'.

    def track_receipts(self, providers: Collection[str], first_poll: float, owner: str = "") -> None:
        """From now on, jobs of `providers` that `record` stores as accepted await a receipt, first asked about
        `first_poll` seconds later."""
        ...

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Awaiting]: ...

    async def poll_later(self, job_id: str, polls: int, next_poll_at: float) -> None: ...

    async def awaiting(self, provider: str, provider_id: str) -> list[Awaiting]: ...

    async def settle(self, job_id: str, final: Settled) -> bool: ...

    async def claim_followups(self, owner: str, now: float, limit: int, lease: float) -> list[str]:
        """Lease up to `limit` due follow-ups (every accepted SMS settled, the outcome report settled)."""
        ...

    async def load_followup(self, submission_id: str) -> DueFollowup | None: ...

    async def followup_done(self, submission_id: str, state: str, next_at: float, owner: str) -> bool:
        """`pending` = retry at `next_at`; `sent`, `skipped`, `dropped` settle it. Only while `owner` holds it."""
        ...

    async def release_followups(self, submission_ids: list[str], owner: str) -> None: ...

    async def release_dead_receipts(self, owner_dead: Callable[[str], bool]) -> int:
        """Free the poll claims and follow-up leases (and the reply poll and reply mail claims) of owners
        `owner_dead` says are dead; how many."""
        ...

    async def receipt_views(self, submission_id: str) -> dict[str, ReceiptView]:
        """The receipt of each of the submission's SMS that awaits or awaited one, by job id."""
        ...

    async def receipt_counts(self) -> dict[str, int]:
        """Jobs per receipt state (pending, delivered, undelivered, no_receipt), for metrics."""
        ...

    # Two-way replies (issue 17): the ReplyStore the reply poller, the push door and the reply mailer use
    # (dispatch.reply_store documents each method; spool.replies holds the transitions).

    async def claim_reply_poll(self, provider: str, owner: str, now: float, lease: float) -> tuple[bool, str | None]:
        ...

    async def store_replies(
        self,
        provider: str,
        found: Sequence[InboundSms],
        rules: ReplyRules,
        now: float,
        *,
        cursor: str | None = None,
        owner: str | None = None,
        next_poll_at: float | None = None,
    ) -> StoredReplies: ...

    async def release_reply_poll(self, provider: str, owner: str, next_poll_at: float) -> None: ...

    async def claim_replies(self, owner: str, now: float, limit: int, lease: float) -> list[DueReply]: ...

    async def reply_done(self, reply_id: str, owner: str, state: ReplyState, next_at: float, why: str = "") -> bool:
        ...

    async def reply_counts(self) -> dict[str, int]: ...

    async def reply_views(self, submission_id: str) -> list[ReplyView]:
        """The SMS replies tied to the submission's SMS, oldest first (`queue show`)."""
        ...

    async def purge_replies(self, before: float, limit: int = 500) -> int:
        """One retention batch of settled replies (mailed, dropped, throttled) fetched before `before`; how many."""
        ...

    def problem(self) -> str | None:
        """Why the spool must be called unhealthy although it answers (a damaged file), or None."""
        ...

    async def counts(self) -> dict[str, int]:
        """Jobs per state, for metrics."""
        ...

    async def live_counts(self) -> dict[str, int]:
        """Jobs not final yet per state (scheduled, queued, sending), for `/healthz`: read by index, whatever the
        number of finished jobs kept."""
        ...
