"""Compose the outcome mail: what happened to every SMS of one submission, for a person and for a program.

The mail is `multipart/mixed`: first a `multipart/alternative` with a text part (`report.text`) and an HTML
part (`report.html`) that say the same thing, then `results.json` for programs and, for a CSV submission or one
of more than `ROWS_LIMIT` SMS, `results.csv`. Its subject (`report.subject`) tells the outcome without opening
the mail and is folded by `report.headers`. It is an auto-reply (RFC 3834): `Auto-Submitted: auto-replied`,
threaded to the original by `In-Reply-To` and `References`.

This module must never put an account's password or key into the mail (a job may carry the credentials that
came inside the original mail body), never render the SMS account at all, and never do I/O. It must stay
linear in the number of jobs: a CSV submission may hold 100,000 of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mail2sms.model import Job, Submission
from mail2sms.report import headers, html, text
from mail2sms.report.outcome import ROWS_LIMIT, Outcome
from mail2sms.report.results import RESULT_COLUMNS, plain_results_csv, results_csv, results_json
from mail2sms.report.subject import subject as subject_of

__all__ = ["RESULT_COLUMNS", "ROWS_LIMIT", "add_body", "compose", "result_files", "results_csv"]


def _msg_id(value: str) -> str:
    """A Message-ID as a header wants it: one token in angle brackets, no whitespace."""
    value = "".join(value.split())
    return value if value.startswith("<") else f"<{value}>"


def compose(
    submission: Submission,
    jobs: Sequence[Job],
    *,
    from_addr: str,
    hostname: str,
    original_message_id: str | None,
    references: str | None = None,
    explain_advice: Callable[[Job], str] | None = None,
) -> EmailMessage:
    """Build the outcome mail for `submission` from its final `jobs`.

    `explain_advice` gives provider-specific "what to do" for a job (it knows the providers' codes); without
    it, each state gets a generic sentence. Raises ValueError when the submission has no report address,
    because the backscatter rules decided that earlier and composing anyway would be a bug.
    """
    if not submission.report_to:
        raise ValueError("the submission has no report address")
    outcome = Outcome(submission, jobs, explain_advice)
    subject = subject_of(outcome)
    csv_files, results_file = result_files(submission, jobs, outcome)

    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = submission.report_to
    # Folded by our own rules and stored as is: the library's folder may break the line right after "Subject:".
    message.set_raw("Subject", headers.fold("Subject", subject))
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=hostname)
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834 5
    message["X-Auto-Response-Suppress"] = "All"  # keeps Exchange out-of-office replies from answering us
    if original_message_id and original_message_id.strip():
        original = _msg_id(original_message_id)
        message["In-Reply-To"] = original
        # RFC 5322 3.6.4: the parent's References (or In-Reply-To) followed by the parent's Message-ID.
        message["References"] = " ".join([*(references or "").split(), original])
    if submission.id:
        message["X-Mail2SMS-Submission"] = " ".join(submission.id.split())

    return add_body(
        message, text.render(outcome, results_file), html.render(outcome, subject, results_file), outcome, csv_files
    )


def result_files(
    submission: Submission, jobs: Sequence[Job], outcome: Outcome
) -> tuple[list[tuple[str, bytes]], str]:
    """The CSV results to attach (the input rows with their outcome for CSV input, a plain one for a big mail) and
    how the body names them."""
    csv_files = results_csv(submission, jobs)
    if not csv_files and outcome.big:
        csv_files = [("results.csv", plain_results_csv(outcome))]
    return csv_files, csv_files[0][0] if len(csv_files) == 1 else "results CSV files"


def add_body(
    message: EmailMessage, plain: str, rich: str, outcome: Outcome, csv_files: Sequence[tuple[str, bytes]]
) -> EmailMessage:
    """The body every mail2sms mail has: a text and an HTML part saying the same thing, then `results.json` and
    any CSV results (the outcome mail and the receipts follow-up alike)."""
    message.set_content(plain, charset="utf-8", cte="quoted-printable")
    message.add_alternative(rich, subtype="html", charset="utf-8", cte="quoted-printable")
    message.make_mixed()
    message.add_attachment(
        results_json(outcome),
        maintype="application",
        subtype="json",
        filename="results.json",
        params={"charset": "utf-8"},
    )
    for name, data in csv_files:
        message.add_attachment(data, maintype="text", subtype="csv", filename=name, params={"charset": "utf-8"})
    return message
