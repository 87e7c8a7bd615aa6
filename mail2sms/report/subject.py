"""The outcome mail's subject: the outcome at a glance, then the subject of the mail it answers.

One SMS: `SMS sent to +96550000000: Server room door open`, `SMS failed to +96550000001: <short reason>`,
`SMS may have been sent to …`, `SMS dry run: would be sent to …`. Several: the counts first
(`SMS sent: 3 of 3: …`, `SMS partly sent: 2 of 3: …`, `SMS failed: 0 of 3 sent (<reason they share>): …`,
`SMS may have been sent: 1 of 3 sent, 2 unknown: …`, `SMS dry run: 3 of 3 would be sent: …`).

It must never say "sent" for a number the provider did not clearly accept: "sent" counts only statuses whose
tone is good, and any unknown makes the whole subject "may have been sent".
"""

from __future__ import annotations

from mail2sms.report import states
from mail2sms.report.outcome import Outcome


def _with_tail(head: str, tail: str) -> str:
    return f"{head}: {tail}" if tail else head


def _one(outcome: Outcome) -> str:
    """The subject for a submission of one SMS: it names the number."""
    [row] = outcome.rows(1)
    number = row.number or "no number"
    original = outcome.original_subject()
    if row.look.failed:
        reason = outcome.failure_in_short(outcome.jobs[0])
        start = states.DRY_RUN_FAILED_SUBJECT if outcome.submission.dry_run else row.look.subject_one
        return f"{start} {number}: {reason}"
    return _with_tail(f"{row.look.subject_one} {number}", original)


def _several(outcome: Outcome) -> str:
    total, sent, failed, unknown = outcome.total, outcome.sent, outcome.failed, outcome.unknown
    original = outcome.original_subject()
    common = outcome.common_failure() if failed else None
    because = f" ({common})" if common else (" (several reasons)" if failed > 1 else "")
    if outcome.submission.dry_run:
        head = f"SMS dry run: {outcome.would_send} of {total} would be sent"
        return _with_tail(head + (because if failed else ""), original)
    if unknown:
        head = f"SMS may have been sent: {sent} of {total} sent, {unknown} unknown"
        return _with_tail(head + (f", {failed} failed" if failed else ""), original)
    if outcome.pending:
        return _with_tail(f"SMS in progress: {sent} of {total} sent so far", original)
    if sent == total:
        return _with_tail(f"SMS sent: {total} of {total}", original)
    if sent == 0:
        return _with_tail(f"SMS failed: 0 of {total} sent{because}", original)
    return _with_tail(f"SMS partly sent: {sent} of {total}", original)


def subject(outcome: Outcome) -> str:
    """The subject line, unfolded; `headers.fold` folds it for the wire."""
    if outcome.total == 0:
        return _with_tail("SMS: nothing to send", outcome.original_subject())
    if outcome.total == 1:
        return _one(outcome)
    return _several(outcome)
