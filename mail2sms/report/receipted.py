"""A Job with its delivery-receipt state, as the follow-up mail shows it (issue 15).

The spool stores a job's receipt in columns of its own (migration 9), apart from the send state: a `sent` job
stays `sent` ("accepted") whatever the phone did. The follow-up composer copies each accepted job into a
`ReceiptedJob` so that `states.status`, and with it the
outcome view, the subject and the results files, name `delivered`, `undelivered`, `no_receipt` or `accepted`
instead of `sent`. Plain data: no I/O, and the copy carries nothing the job did not.
"""

from __future__ import annotations

from dataclasses import dataclass

from mail2sms.model import Job


@dataclass
class ReceiptedJob(Job):
    """A job and, when it was accepted, its receipt state (`states.ACCEPTED` and friends); "" for no receipt
    tracking (a job that was never accepted keeps its own state)."""

    receipt: str = ""
    receipt_at: float | None = None  # when the receipt state was reached
