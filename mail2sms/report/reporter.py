"""The reporter: mail each final submission's outcome to its sender, once, from the spool.

Reports are stored in the spool (a submission that became final is `pending` until its report is delivered),
so a crash or a smarthost outage delays a report but never loses or repeats it. Temporary delivery failures
retry with backoff; permanent ones are dropped with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.message import EmailMessage

from mail2sms.config import ReportsConfig
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.model import JobState
from mail2sms.observability import get_logger
from mail2sms.report.backscatter import SenderRateLimit
from mail2sms.report.compose import compose
from mail2sms.report.send import DeliveryOutcome, ReportSender
from mail2sms.spool.base import DueReport, Spool

log = get_logger("mail2sms.report")


class Reporter:
    def __init__(
        self, spool: Spool, config: ReportsConfig, hostname: str, *, poll_interval: float = 2.0
    ) -> None:
        self.spool = spool
        self.config = config
        self.hostname = hostname
        self.sender = ReportSender(config)
        self.poll_interval = poll_interval
        self.retry = RetryPolicy(base=30.0, cap=3600.0, max_attempts=30)
        self.rate = SenderRateLimit(config.per_sender_per_hour)
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self, _submissions: list[str] | None = None) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                due = await self.spool.due_reports(time.time(), 50)
                for report in due:
                    await self._one(report)
                if self.config.still_trying_after > 0:
                    older = time.time() - self.config.still_trying_after
                    for report in await self.spool.due_delay_notices(older, 50):
                        await self._still_trying(report)
            except Exception:
                log.exception("report tick failed")
                due = []
            if not due and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _wanted(self, report: DueReport) -> bool:
        if self.config.when == "never":
            return False
        if self.config.when == "failures":
            return report.submission.dry_run or any(j.state != JobState.SENT for j in report.jobs)
        return True

    async def _one(self, report: DueReport) -> None:
        sub = report.submission
        now = time.time()
        if not self._wanted(report) or sub.report_to is None:
            await self.spool.report_done(sub.id, "skipped", 0.0, now)
            return
        if report.attempts == 0 and not self.rate.allow(sub.report_to, now):
            # Held back, not lost: summarised in the next report this address gets.
            log.warning("report rate limit reached; report held for a summary", submission=sub.id)
            await self.spool.report_done(sub.id, "suppressed", 0.0, now)
            return
        # A CSV report with 100,000 rows takes seconds to compose: never on the event loop.
        message = await asyncio.to_thread(self._compose, report)
        held = await self.spool.take_suppressed(sub.report_to) if report.attempts == 0 else []
        if held:
            _append_text(message, _summary(held, self.config.per_sender_per_hour))
        outcome = await self.sender.deliver(message, sub.report_to, key=sub.id)
        if outcome == DeliveryOutcome.DELIVERED:
            log.info("report delivered", submission=sub.id)
            await self.spool.report_done(sub.id, "sent", 0.0, time.time())
        elif outcome == DeliveryOutcome.RETRY and report.attempts + 1 < self.retry.max_attempts:
            delay = self.retry.delay(report.attempts + 1)
            log.warning("report delivery deferred", submission=sub.id, retry_in=round(delay, 1))
            await self.spool.report_done(sub.id, "pending", time.time() + delay, time.time())
        else:
            log.error("report delivery failed permanently; dropped", submission=sub.id)
            await self.spool.report_done(sub.id, "dropped", 0.0, time.time())

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
        message["Message-ID"] = f"<{sub.id}.{kind}@{self.hostname}>"
        return message

    async def _still_trying(self, report: DueReport) -> None:
        """One "still trying" mail per submission that is not final after `still_trying_after`."""
        sub = report.submission
        assert sub.report_to is not None
        pending = sum(1 for j in report.jobs if not j.state.final)
        message = await asyncio.to_thread(self._compose, report, "delay")
        del message["Subject"]
        message["Subject"] = f"SMS delayed: still trying ({pending} of {len(report.jobs)} not sent yet)"
        _append_text(message, "mail2sms is still trying to send the SMS above that are not sent yet; you will get "
                              "another mail when every SMS is final.")
        outcome = await self.sender.deliver(message, sub.report_to, key=f"{sub.id}-delay")
        if outcome != DeliveryOutcome.RETRY:
            await self.spool.mark_delay_notified(sub.id)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()


def _summary(held: list[DueReport], per_hour: int) -> str:
    lines = [f"{len(held)} earlier outcome report(s) to this address were held back (at most {per_hour} an hour):"]
    for r in held[:50]:
        sent = sum(1 for j in r.jobs if j.state == JobState.SENT)
        lines.append(f"  {r.submission.id}: {sent} of {len(r.jobs)} SMS sent")
    if len(held) > 50:
        lines.append(f"  ... and {len(held) - 50} more")
    return "\n".join(lines)


def _append_text(message: EmailMessage, text: str) -> None:
    """Add a paragraph at the end of the report's text part."""
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return
    body = part.get_content()
    part.set_content(f"{body.rstrip()}\n\n{text}\n", charset="utf-8", cte="quoted-printable")
