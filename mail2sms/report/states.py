"""How the outcome mail shows each SMS's state: one table from status to words, colour, symbol and advice.

Every part of the outcome mail (subject, text part, HTML table, results files) looks a status up here, so a new
state (delivery receipts will add `delivered`, `undelivered`, `no receipt`) is one new row, not a hunt through
`if`s. The key is the machine-readable status that results.json carries: a `JobState` value, `dry_run` for a
job of a dry run that passed its checks, or, for an accepted (`sent`) job whose delivery is tracked, its receipt
state (`accepted` while none came, then `delivered`, `undelivered` or `no_receipt`; report/followup.py).

This module must never word a status better than the evidence: only a status whose tone is `good` may say
"sent", and a state the table does not know is shown under its own name, never as a success.
"""

from __future__ import annotations

from dataclasses import dataclass

from mail2sms.model import Job, JobState, Submission
from mail2sms.report.receipted import ReceiptedJob

DRY_RUN = "dry_run"  # the status of a dry-run job that passed its checks ("would be sent")
DRY_RUN_CODE = "DRYRUN"  # the code parse.submission gives jobs of a dry run
# Receipt states of an accepted job (the values of dispatch.receipt_store.ReceiptState, plus "accepted").
ACCEPTED = "accepted"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
NO_RECEIPT = "no_receipt"


@dataclass(frozen=True)
class Tone:
    """A colour pair for the HTML state badge: mid-tone backgrounds with white text read in light and dark mode."""

    name: str  # good | bad | maybe | wait | info
    background: str
    symbol: str  # shown beside the words, so the state never rests on colour alone


GOOD = Tone("good", "#1a7f37", "\u2713")  # ✓
BAD = Tone("bad", "#c4232d", "\u2717")  # ✗
MAYBE = Tone("maybe", "#9a6700", "?")
WAIT = Tone("wait", "#59636e", "\u2026")  # …
INFO = Tone("info", "#0969da", "\u25cb")  # ○


@dataclass(frozen=True)
class Look:
    """One status as people see it."""

    label: str  # short, for a table cell and the counts: "sent", "refused"
    words: str  # the text part's line per number: "may have been sent (unknown)"
    tone: Tone
    subject_one: str  # the subject's start for one SMS, followed by " <number>"
    one: str  # the summary line for one SMS; {number} and {provider} are filled in
    advice: str = ""  # what to do when the caller has no provider-specific advice; "" = nothing to do
    failed: bool = False  # counted as "not sent" (refused, expired, cancelled)


LOOKS: dict[str, Look] = {  # in the order the counts are told: "5 SMS: 1 sent, 1 may have been sent, 1 refused"
    JobState.SENT.value: Look(
        "sent", "sent", GOOD, "SMS sent to", "The SMS to {number} was sent: {provider} accepted it."
    ),
    # Delivery receipts (issue 15): the states of an accepted SMS. Only a provider's clear "delivered" is good;
    # "accepted" says no more than "sent" did; "no receipt" is as undecided as "may have been sent".
    ACCEPTED: Look(
        "accepted",
        "accepted by the provider, no delivery receipt yet",
        GOOD,
        "SMS accepted for",
        "The SMS to {number} was accepted by {provider}; whether it reached the phone is not known yet.",
    ),
    DELIVERED: Look(
        "delivered",
        "delivered to the phone",
        GOOD,
        "SMS delivered to",
        "The SMS to {number} was delivered: {provider} reports it reached the phone.",
    ),
    UNDELIVERED: Look(
        "not delivered",
        "not delivered",
        BAD,
        "SMS not delivered to",
        "The SMS to {number} was not delivered: {provider} reports it did not reach the phone.",
        "Check the number, and that the phone is on and can receive SMS, then send it again if still needed.",
        failed=True,
    ),
    NO_RECEIPT: Look(
        "no receipt",
        "accepted, but no delivery receipt came in time",
        MAYBE,
        "SMS delivery not confirmed to",
        "{provider} accepted the SMS to {number} but sent no delivery receipt in time: nobody can tell whether "
        "it reached the phone.",
        "Ask the recipient whether it arrived before sending it again, or they may get it twice.",
    ),
    DRY_RUN: Look(
        "would be sent",
        "would be sent (dry run)",
        INFO,
        "SMS dry run: would be sent to",
        "Dry run: the SMS to {number} would be sent; nothing was sent.",
    ),
    JobState.UNKNOWN.value: Look(
        "may have been sent",
        "may have been sent (unknown)",
        MAYBE,
        "SMS may have been sent to",
        "The SMS to {number} may have been sent: nobody can tell whether {provider} took it.",
        "Check with the recipient or the provider before sending again, or the recipient may get it twice.",
    ),
    JobState.REJECTED.value: Look(
        "refused",
        "refused",
        BAD,
        "SMS failed to",
        "The SMS to {number} was not sent: it was refused.",
        "Correct what the error names, then send this SMS again.",
        failed=True,
    ),
    JobState.EXPIRED.value: Look(
        "expired",
        "expired (not sent in time)",
        BAD,
        "SMS failed to",
        "The SMS to {number} was not sent: it could not be sent in time.",
        "The provider could not be reached in time; send it again if it is still needed.",
        failed=True,
    ),
    JobState.CANCELLED.value: Look(
        "cancelled",
        "cancelled",
        BAD,
        "SMS failed to",
        "The SMS to {number} was not sent: it was cancelled.",
        "An operator cancelled it; ask them before sending it again.",
        failed=True,
    ),
    JobState.SCHEDULED.value: Look(
        "scheduled", "scheduled, not sent yet", WAIT, "SMS not sent yet to", "The SMS to {number} is scheduled."
    ),
    JobState.QUEUED.value: Look(
        "queued", "queued, not sent yet", WAIT, "SMS not sent yet to", "The SMS to {number} is not sent yet."
    ),
    JobState.SENDING.value: Look(
        "being sent", "being sent", WAIT, "SMS not sent yet to", "The SMS to {number} is being sent."
    ),
}

# A dry-run job that failed its checks keeps its own state's look but not its subject: nothing was sent at all.
DRY_RUN_FAILED_SUBJECT = "SMS dry run: would fail to"

_FAILED_STATES = frozenset({JobState.REJECTED, JobState.EXPIRED, JobState.CANCELLED})


def would_send(submission: Submission, job: Job) -> bool:
    """In a dry run, a job that passed the checks "would be sent".

    The parser finishes such jobs as `cancelled` with code DRYRUN (nothing may reach a provider); any other
    failed state means the check itself failed and is reported as such.
    """
    if not submission.dry_run:
        return False
    return job.state not in _FAILED_STATES or (job.state is JobState.CANCELLED and job.code == DRY_RUN_CODE)


def status(submission: Submission, job: Job) -> str:
    """The machine-readable status of a job, as results.json and results.csv carry it: an accepted job whose
    delivery is tracked (a ReceiptedJob) shows its receipt state instead of `sent`."""
    if would_send(submission, job):
        return DRY_RUN
    if isinstance(job, ReceiptedJob) and job.state is JobState.SENT and job.receipt:
        return job.receipt
    return job.state.value


def look(status_value: str) -> Look:
    """The look of a status; one the table does not know is shown by its name, as undecided, never as good."""
    found = LOOKS.get(status_value)
    if found is not None:
        return found
    name = status_value.replace("_", " ")
    return Look(name, name, WAIT, f"SMS {name} to", f"The SMS to {{number}}: {name}.")
