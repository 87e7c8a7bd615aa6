"""The follow-up mail (issue 15): once every accepted SMS of a submission is final (delivered, not delivered, or
no receipt within the window), one mail tells the sender, threaded under the outcome mail.

`wanted()` applies `reports.receipts`: `never`; `always`; or `failures` (the default) — only when an accepted
SMS was not delivered or got no receipt. A submission none of whose SMS was accepted gets no follow-up: the
outcome mail already said everything. `compose_followup()` builds the mail like the outcome mail (text and HTML
alternatives, results.json, and for a CSV or a big submission one updated results.csv, never one mail per
number), with `In-Reply-To` the outcome mail and `References` the original and the outcome mail. The backscatter
rules are the caller's: it sends a follow-up only to a submission's `report_to`.

It must never call an SMS delivered without a settled "delivered" receipt, never render `job.account` or a
secret, and never do I/O. Linear in the number of jobs, as the outcome mail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal, Protocol

from mail2sms.model import Job, JobState, Submission
from mail2sms.report import followup_body, headers, states
from mail2sms.report.compose import add_body, result_files
from mail2sms.report.outcome import Outcome, one_line, redactor, short_reason
from mail2sms.report.receipted import ReceiptedJob

Policy = Literal["failures", "always", "never"]
NOT_CONFIRMED = frozenset({states.UNDELIVERED, states.NO_RECEIPT})


class Settled(Protocol):
    """A settled receipt as the store keeps it (`dispatch.receipt_store.Settled`, read here by shape: the
    report stage imports no stage before it)."""

    @property
    def state(self) -> str: ...  # delivered | undelivered | no_receipt
    @property
    def code(self) -> str | None: ...
    @property
    def why(self) -> str: ...
    @property
    def at(self) -> float: ...


def receipted(jobs: Sequence[Job], receipts: Mapping[str, Settled]) -> list[ReceiptedJob]:
    """Each job with its receipt: an accepted job's settled state, or `accepted` while it has none. An undelivered
    or unconfirmed one carries the reason as its error (and the provider's code), a delivered one the provider's
    words as its detail, so the mail and the results files show them. A settled job loses the detail of its
    acceptance (e.g. "Cellcast queued 2 of the 3 numbers sent"): that was the outcome mail's news, and above a
    "not delivered" it reads as if it were the receipt."""
    out: list[ReceiptedJob] = []
    for job in jobs:
        fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(Job)}
        copy = ReceiptedJob(**fields)
        copy.notes = list(job.notes)
        if job.state is JobState.SENT:
            final = receipts.get(job.id)
            copy.receipt = str(final.state) if final is not None else states.ACCEPTED
            if final is not None:
                copy.receipt_at = final.at
                if copy.receipt == states.DELIVERED:  # the provider's words go beside it, not as an error
                    copy.detail = final.why or job.detail
                else:
                    copy.code, copy.error, copy.detail = final.code, final.why or None, None
        out.append(copy)
    return out


def wanted(policy: Policy, jobs: Sequence[ReceiptedJob]) -> bool:
    """Whether `reports.receipts = policy` sends a follow-up for these (receipted) jobs."""
    accepted = [job for job in jobs if job.receipt]
    if policy == "never" or not accepted:
        return False
    return policy == "always" or any(job.receipt in NOT_CONFIRMED for job in accepted)


def reason_in_short(why: str) -> str:
    """A receipt's reason for a subject: what follows "<provider> reports …: ", unquoted, its first clause."""
    tail = why.split(": ", 1)[1] if ": " in why else why
    return short_reason(tail.strip().strip('"'))


def _reason(job: Job) -> str:
    """A job's receipt reason in short, the account's secrets blanked (a provider may echo them)."""
    return reason_in_short(redactor(job.account)(job.error or job.code) or "")


def subject(outcome: Outcome) -> str:
    """`SMS delivered: 3 of 3: <original subject>`, `SMS not delivered to +96550000001: number unreachable`."""
    original = outcome.original_subject()
    tail = f": {original}" if original else ""
    if outcome.total == 1:
        [row] = outcome.rows(1)
        job = outcome.jobs[0]
        if row.status == states.UNDELIVERED:
            return f"{row.look.subject_one} {row.number}: {_reason(job)}"
        return f"{row.look.subject_one} {row.number}{tail}"
    delivered, total = outcome.count(states.DELIVERED), outcome.total
    undelivered, unconfirmed = outcome.count(states.UNDELIVERED), outcome.count(states.NO_RECEIPT)
    if delivered == 0 and undelivered and not unconfirmed:
        reasons = {_reason(j) for j in outcome.jobs if isinstance(j, ReceiptedJob) and j.receipt == states.UNDELIVERED}
        because = f" ({one_line(reasons.pop())})" if len(reasons) == 1 else ""
        return f"SMS not delivered: 0 of {total} delivered{because}{tail}"
    head = f"SMS delivered: {delivered} of {total}"
    head += f", {undelivered} not delivered" if undelivered else ""
    head += f", {unconfirmed} not confirmed" if unconfirmed else ""
    return head + tail


def _msg_id(value: str) -> str:
    value = "".join(value.split())
    return value if value.startswith("<") else f"<{value}>"


def compose_followup(
    submission: Submission,
    jobs: Sequence[Job],
    receipts: Mapping[str, Settled],
    *,
    from_addr: str,
    hostname: str,
    outcome_message_id: str | None,
    original_message_id: str | None,
    references: str | None = None,
    explain_advice: Callable[[Job], str] | None = None,
) -> EmailMessage:
    """The follow-up mail for `submission` whose accepted jobs have the settled `receipts` (by job id).

    `references` is the original mail's own References, kept at the start of the thread. Raises ValueError
    without a report address (the backscatter rules decided that earlier)."""
    if not submission.report_to:
        raise ValueError("the submission has no report address")
    rjobs = receipted(jobs, receipts)
    outcome = Outcome(submission, rjobs, explain_advice)
    title = subject(outcome)
    csv_files, results_file = result_files(submission, rjobs, outcome)

    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = submission.report_to
    message.set_raw("Subject", headers.fold("Subject", title))
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=hostname)
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834 5
    message["X-Auto-Response-Suppress"] = "All"
    thread = [*(references or "").split()]
    if original_message_id and original_message_id.strip():
        thread.append(_msg_id(original_message_id))
    parent = _msg_id(outcome_message_id) if outcome_message_id and outcome_message_id.strip() else None
    if parent is not None:
        thread.append(parent)
    if parent is not None or thread:
        # RFC 5322 3.6.4: the parent is the outcome mail; References runs from the original down to it.
        message["In-Reply-To"] = parent or thread[-1]
        message["References"] = " ".join(dict.fromkeys(thread))
    if submission.id:
        message["X-Mail2SMS-Submission"] = " ".join(submission.id.split())

    return add_body(
        message,
        followup_body.text(outcome, results_file),
        followup_body.html(outcome, title, results_file),
        outcome,
        csv_files,
    )
