"""The reporter: mail each final submission's outcome to its sender, once, from the spool.

Reports are stored in the spool (a submission that became final is `pending` until its report is delivered),
so a crash or a smarthost outage delays a report but never loses it. Reports are claimed like jobs (owner and
lease in the spool): whatever the number of worker processes and nodes, one process holds a report while it
delivers it, and only the holder's "done" counts. Temporary delivery failures retry with backoff; permanent ones
are dropped with a log line.

To keep up with a steady inflow, claimed reports are delivered in groups (one smarthost connection, or one
directory fsync, per group) by several groups at once, each report loaded and composed one at a time (a
100,000-row CSV submission is one big report, not fifty of them held together).

Follow-up mails (issue 15) go the same way: once every accepted SMS of a submission has its receipt settled and
its outcome report is settled, the spool makes the follow-up due and the reporter claims, composes
(`report.followup`, under `reports.receipts`) and delivers it once, threaded under the outcome mail, whose fixed
Message-ID (`<submission.report@hostname>`) it derives.

It must never deliver a report it does not hold, never mark held-back reports as summarised before the summary
was delivered, and never log a report's content.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from mail2sms.config import ReportsConfig
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.model import JobState, ReportState
from mail2sms.observability import get_logger
from mail2sms.report.backscatter import SenderRateLimit
from mail2sms.report.compose import compose
from mail2sms.report.followup import compose_followup, receipted, wanted
from mail2sms.report.send import DeliveryOutcome, Outgoing, ReportSender
from mail2sms.report.ticker import Ticker
from mail2sms.spool.base import DueFollowup, DueReport, HeldReport, Spool

log = get_logger("mail2sms.report")

GROUP = 20  # reports per delivery group (one smarthost connection, one fsync of the maildir's directories)
GROUP_JOBS = 20_000  # ... or fewer, when their SMS add up to this many (composed reports wait in memory)
LEASE = 120.0  # seconds a claimed report is ours (a crashed holder's reports wait this long for another process)
SUMMARY_LINES = 50
DELAY_RETRY_MIN = 60.0  # a "still trying" notice that could not be delivered waits at least this long
RELEASE_DEAD_EVERY = 30.0  # seconds between looks for reports held by processes that died


@dataclass
class _Ready:
    """A composed report waiting for its group to be delivered."""

    report_id: str
    outgoing: Outgoing
    jobs: int
    held: list[HeldReport] = field(default_factory=list)
    attempts: int = 0


class Reporter(Ticker):
    def __init__(
        self, spool: Spool, config: ReportsConfig, hostname: str, *, poll_interval: float = 2.0,
        owner: str = "reporter", concurrency: int = 4, lease: float = LEASE,
        owner_dead: Callable[[str], bool] | None = None,
    ) -> None:
        self.spool = spool
        self.config = config
        super().__init__(poll_interval, "report")
        self.hostname = hostname
        self.sender = ReportSender(config)
        self.owner = owner
        self.concurrency = concurrency
        self.lease = lease
        self.owner_dead = owner_dead  # a worker on this host that was killed holding reports: no lease wait
        self._released_dead = float("-inf")
        self.retry = RetryPolicy(base=30.0, cap=3600.0, max_attempts=30)
        self.rate = SenderRateLimit(config.per_sender_per_hour)

    async def tick(self) -> int:
        """Claim due reports and deliver them, `concurrency` groups at once; how many were claimed."""
        if self.owner_dead is not None and time.monotonic() - self._released_dead >= RELEASE_DEAD_EVERY:
            self._released_dead = time.monotonic()
            if released := await self.spool.release_dead_reports(self.owner_dead):
                log.info("reports held by a process that died were released", reports=released)
            if released := await self.spool.release_dead_receipts(self.owner_dead):
                log.info("receipt polls and follow-ups held by a process that died were released", held=released)
        ids = await self.spool.claim_reports(self.owner, time.time(), GROUP * self.concurrency, self.lease)
        if ids:
            lanes = [ids[i::self.concurrency] for i in range(self.concurrency)]
            await asyncio.gather(*(self._lane(lane) for lane in lanes if lane))
        followups = await self.spool.claim_followups(self.owner, time.time(), GROUP, self.lease)
        for i, report_id in enumerate(followups):
            if self._stopping:
                await self.spool.release_followups(followups[i:], self.owner)
                break
            try:
                await self._followup(report_id)
            except Exception:
                log.exception("follow-up could not be composed; kept for a later try", submission=report_id)
                await self.spool.followup_done(report_id, "pending", time.time() + self.retry.delay(1), self.owner)
        notices = 0
        if self.config.still_trying_after > 0 and not self._stopping:
            now = time.time()
            due = await self.spool.claim_delay_notices(
                self.owner, now - self.config.still_trying_after, now, GROUP, self.lease)
            for i, report_id in enumerate(due):
                if self._stopping:
                    await self.spool.release_reports(due[i:], self.owner)
                    break
                await self._still_trying(report_id)
            notices = len(due)
        return len(ids) + len(followups) + notices

    async def _lane(self, ids: list[str]) -> None:
        """Load, compose and deliver these reports, in groups bounded by count and size."""
        group: list[_Ready] = []
        jobs = 0
        claimed = time.monotonic()
        for i, report_id in enumerate(ids):
            if self._stopping or time.monotonic() - claimed > self.lease / 2:
                # Stopping, or slow going: hand the rest back for any process to claim before our lease ends.
                await self.spool.release_reports(ids[i:], self.owner)
                break
            try:
                ready = await self._prepare(report_id)
            except Exception:
                # Not handed straight back: a report that cannot be composed would be claimed again at once.
                log.exception("report could not be composed; kept for a later try", submission=report_id)
                await self._done(report_id, ReportState.PENDING, time.time() + self.retry.delay(1))
                continue
            if ready is None:
                continue
            group.append(ready)
            jobs += ready.jobs
            if len(group) >= GROUP or jobs >= GROUP_JOBS:
                await self._deliver(group)
                group, jobs = [], 0
        if group:
            await self._deliver(group)

    def _wanted(self, report: DueReport) -> bool:
        if self.config.when == "never":
            return False
        if self.config.when == "failures":
            return report.submission.dry_run or any(j.state != JobState.SENT for j in report.jobs)
        return True

    async def _prepare(self, report_id: str) -> _Ready | None:
        """The composed report, or None when it is settled without a delivery (unwanted, rate limited)."""
        report = await self.spool.load_report(report_id)
        if report is None:
            return None
        sub = report.submission
        now = time.time()
        if not self._wanted(report) or sub.report_to is None:
            await self._done(sub.id, ReportState.SKIPPED, 0.0)
            return None
        if report.attempts == 0 and not self.rate.allow(sub.report_to, now):
            # Held back, not lost: summarised in the next report this address gets.
            log.warning("report rate limit reached; report held for a summary", submission=sub.id)
            await self._done(sub.id, ReportState.SUPPRESSED, 0.0)
            return None
        # A CSV report with 100,000 rows takes seconds to compose: never on the event loop.
        message = await asyncio.to_thread(self._compose, report)
        held: list[HeldReport] = []
        if report.attempts == 0:
            held = await self.spool.take_held(sub.report_to, self.owner, now, self.lease)
            if held:
                _append_text(message, _summary(held, self.config.per_sender_per_hour))
        return _Ready(sub.id, Outgoing(message, sub.report_to, key=sub.id), len(report.jobs), held, report.attempts)

    async def _deliver(self, group: list[_Ready]) -> None:
        outcomes = await self.sender.deliver_many([r.outgoing for r in group])
        await asyncio.gather(*(self._settle(r, o) for r, o in zip(group, outcomes, strict=True)))

    async def _settle(self, ready: _Ready, outcome: DeliveryOutcome) -> None:
        sid = ready.report_id
        if ready.held:
            await self.spool.settle_held([h.submission_id for h in ready.held], self.owner,
                                         summarised=outcome == DeliveryOutcome.DELIVERED)
        if outcome == DeliveryOutcome.DELIVERED:
            if await self._done(sid, ReportState.SENT, 0.0):
                await self.sender.forget([sid])
        elif outcome == DeliveryOutcome.RETRY and ready.attempts + 1 < self.retry.max_attempts:
            delay = self.retry.delay(ready.attempts + 1)
            log.warning("report delivery deferred", submission=sid, retry_in=round(delay, 1))
            await self._done(sid, ReportState.PENDING, time.time() + delay)
        else:
            log.error("report delivery failed permanently; dropped", submission=sid)
            await self._done(sid, ReportState.DROPPED, 0.0)

    async def _done(self, report_id: str, state: ReportState, next_at: float) -> bool:
        held = await self.spool.report_done(report_id, state, next_at, time.time(), owner=self.owner)
        if not held:
            # Our lease ran out and another process took the report: its delivery is the one that counts (the
            # maildir index and the fixed Message-ID keep the copies one).
            log.warning("report lease lost; another process settles it", submission=report_id)
        return held

    def _compose(self, report: DueReport, kind: str = "report") -> EmailMessage:
        sub = report.submission
        message = compose(
            sub,
            report.jobs,
            from_addr=self.config.from_,
            hostname=self.hostname,
            original_message_id=sub.message_id,
            references=sub.extra.get("references"),
        )
        # A fixed Message-ID lets the receiving side recognise a report repeated after a crash (smarthost path).
        del message["Message-ID"]
        message["Message-ID"] = self.outcome_message_id(sub.id, kind)
        return message

    def outcome_message_id(self, submission_id: str, kind: str = "report") -> str:
        """The fixed Message-ID of a submission's outcome mail (or of its `kind` of mail)."""
        return f"<{submission_id}.{kind}@{self.hostname}>"

    async def _followup(self, submission_id: str) -> None:
        """Deliver one claimed follow-up, or settle it without one (unwanted, nowhere to send it)."""
        due = await self.spool.load_followup(submission_id)
        if due is None:
            return
        sub = due.submission
        reason = self._no_followup(due)
        if reason:
            log.info("no follow-up mail", submission=sub.id, why=reason)
            await self.spool.followup_done(sub.id, "skipped", 0.0, self.owner)
            return
        assert sub.report_to is not None  # _no_followup said so
        message = await asyncio.to_thread(self._compose_followup, due)
        key = f"{sub.id}-followup"
        outcome = await self.sender.deliver(message, sub.report_to, key=key)
        if outcome == DeliveryOutcome.DELIVERED:
            if await self.spool.followup_done(sub.id, "sent", 0.0, self.owner):
                await self.sender.forget([key])
        elif outcome == DeliveryOutcome.RETRY and due.attempts + 1 < self.retry.max_attempts:
            delay = self.retry.delay(due.attempts + 1)
            log.warning("follow-up delivery deferred", submission=sub.id, retry_in=round(delay, 1))
            await self.spool.followup_done(sub.id, "pending", time.time() + delay, self.owner)
        else:
            log.error("follow-up delivery failed permanently; dropped", submission=sub.id)
            await self.spool.followup_done(sub.id, "dropped", 0.0, self.owner)

    def _no_followup(self, due: DueFollowup) -> str:
        """Why this follow-up is not sent ("" when it is): the backscatter rules and `reports.receipts`."""
        sub = due.submission
        if sub.report_to is None or sub.dry_run:
            return "no report address" if sub.report_to is None else "dry run"
        if due.report_state is ReportState.DROPPED:
            return "the outcome mail could not be delivered to this address"
        if not wanted(self.config.receipts, receipted(due.jobs, due.receipts)):
            return f"reports.receipts = {self.config.receipts}"
        if due.report_state in (ReportState.SUPPRESSED, ReportState.SUMMARISED) and not self.rate.allow(
                sub.report_to, time.time()):
            return "the per-sender report rate limit is reached"
        return ""

    def _compose_followup(self, due: DueFollowup) -> EmailMessage:
        sub = due.submission
        message = compose_followup(
            sub,
            due.jobs,
            due.receipts,
            from_addr=self.config.from_,
            hostname=self.hostname,
            # Threaded under the outcome mail only when it was delivered; else under the original alone.
            outcome_message_id=self.outcome_message_id(sub.id) if due.report_state is ReportState.SENT else None,
            original_message_id=sub.message_id,
            references=sub.extra.get("references"),
        )
        del message["Message-ID"]
        message["Message-ID"] = self.outcome_message_id(sub.id, "followup")  # a repeat after a crash is recognised
        return message

    async def _still_trying(self, report_id: str) -> None:
        """One "still trying" mail per submission that is not final after `still_trying_after`."""
        report = await self.spool.load_report(report_id)
        if report is None or report.submission.report_to is None:
            await self.spool.release_reports([report_id], self.owner)
            return
        sub, report_to = report.submission, report.submission.report_to
        pending = sum(1 for j in report.jobs if not j.state.final)
        message = await asyncio.to_thread(self._compose, report, "delay")
        total = len(report.jobs)
        del report  # the jobs are not needed for delivery
        del message["Subject"]
        message["Subject"] = f"SMS delayed: still trying ({pending} of {total} not sent yet)"
        _append_text(message, "mail2sms is still trying to send the SMS above that are not sent yet; you will get "
                              "another mail when every SMS is final.")
        key = f"{sub.id}-delay"
        outcome = await self.sender.deliver(message, report_to, key=key)
        now = time.time()
        # Not delivered: try again later, backing off as the submission ages (never every poll).
        next_at = now + max(DELAY_RETRY_MIN, (now - sub.received_at) / 2)
        notified = outcome != DeliveryOutcome.RETRY
        await self.spool.delay_notice_done(sub.id, self.owner, notified, next_at)
        if notified:
            await self.sender.forget([key])


def _summary(held: list[HeldReport], per_hour: int) -> str:
    lines = [f"{len(held)} earlier outcome report(s) to this address were held back (at most {per_hour} an hour):"]
    for h in held[:SUMMARY_LINES]:
        lines.append(f"  {h.submission_id}: {h.sent} of {h.total} SMS sent")
    if len(held) > SUMMARY_LINES:
        lines.append(f"  ... and {len(held) - SUMMARY_LINES} more")
    return "\n".join(lines)


def _append_text(message: EmailMessage, text: str) -> None:
    """Add a paragraph at the end of the report's text part."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return
    body = part.get_content()
    part.set_content(f"{body.rstrip()}\n\n{text}\n", charset="utf-8", cte="quoted-printable")
