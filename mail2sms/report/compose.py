"""Compose the outcome mail: what happened to every SMS of one submission, for a person and for a program.

The mail has a subject that says the outcome at a glance, a text part a person can act on (per recipient:
number, status, provider id, what the provider added to its acceptance (`Sent.detail`), parts and encoding, what
mail2sms did to the text (smart replacement, truncation) and the text itself when it changed or in a dry run, the
error in plain words with the provider's own code, and what to do) and `results.json`
for programs; a mail that carried CSV also gets `results.csv`, its own rows with the outcome added. It is an
auto-reply (RFC 3834): `Auto-Submitted: auto-replied`, threaded to the original by `In-Reply-To` and
`References`.

This module must never put an account's password or key into the mail (a job may carry the credentials that
came inside the original mail body), never render the SMS account at all, and never do I/O. It must stay
linear in the number of jobs: a CSV submission may hold 100,000 of them, so the text part details only the
first ones.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from mail2sms.model import Job, JobState, Submission

DETAIL_LIMIT = 200  # recipients described one by one in the text part; the rest are only in results.json
FAILURES_LISTED = 50  # failures after DETAIL_LIMIT still named in the text part (with their CSV row)
RESULT_COLUMNS = ("row", "status", "number", "provider_id", "parts", "error")  # added to each results.csv row
SUBJECT_ERROR_CHARS = 100
DRY_RUN_CODE = "DRYRUN"  # the code parse.submission gives jobs of a dry run

_FAILED = frozenset({JobState.REJECTED, JobState.EXPIRED, JobState.CANCELLED})
_PENDING = frozenset({JobState.SCHEDULED, JobState.QUEUED, JobState.SENDING})
_SHOW_CODE = _FAILED | {JobState.UNKNOWN}  # states whose code is worth showing without an error text

_STATUS_WORDS: dict[JobState, str] = {
    JobState.SENT: "sent",
    JobState.REJECTED: "refused",
    JobState.UNKNOWN: "may have been sent (unknown)",
    JobState.EXPIRED: "expired (not sent in time)",
    JobState.CANCELLED: "cancelled",
    JobState.SCHEDULED: "scheduled, not sent yet",
    JobState.QUEUED: "queued, not sent yet",
    JobState.SENDING: "being sent",
}

# What to do when the caller has no better, provider-specific advice (and, for a refusal, no error text).
_DEFAULT_ADVICE: dict[JobState, str] = {
    JobState.REJECTED: "Correct what the error names, then send this SMS again.",
    JobState.UNKNOWN: (
        "Check with the recipient or the provider before sending again, or the recipient may get it twice."
    ),
    JobState.EXPIRED: "The provider could not be reached in time; send it again if it is still needed.",
    JobState.CANCELLED: "An operator cancelled it; ask them before sending it again.",
}

_ENCODING_NAMES = {"gsm7": "GSM-7", "gsm-7": "GSM-7", "ucs2": "UCS-2", "ucs-2": "UCS-2"}


def _would_send(submission: Submission, job: Job) -> bool:
    """In a dry run, a job that passed the checks "would be sent".

    The parser finishes such jobs as `cancelled` with code DRYRUN (nothing may reach a provider); any other
    failed state means the check itself failed and is reported as such.
    """
    if not submission.dry_run:
        return False
    return job.state not in _FAILED or (job.state is JobState.CANCELLED and job.code == DRY_RUN_CODE)


def _status(submission: Submission, job: Job) -> str:
    """The machine-readable status of a job in results.json."""
    return "dry_run" if _would_send(submission, job) else job.state.value


def _status_words(submission: Submission, job: Job) -> str:
    if _would_send(submission, job):
        return "would be sent (dry run)"
    return _STATUS_WORDS.get(job.state, job.state.value)


def _redactor(job: Job) -> Callable[[str | None], str | None]:
    """Blank out this job's own account secrets, in case a provider echoed them into an error or a code."""
    secrets = job.account.secrets() if job.account is not None else []

    def redact(value: str | None) -> str | None:
        if value is None:
            return None
        for secret in secrets:
            value = value.replace(secret, "***")
        return value

    return redact


def _e164(number: str) -> str:
    return number if not number or number.startswith("+") else "+" + number  # "": a CSV row without a number


def _parts(job: Job) -> str:
    encoding = _ENCODING_NAMES.get(job.encoding.lower(), job.encoding.upper())
    return f"{job.parts} part{'s' if job.parts != 1 else ''}, {encoding}"


def _with_code(error: str, code: str | None) -> str:
    """The error followed by the provider's code in brackets, unless the error already names the code.

    A person reads the explanation; the code is what the provider's support and documentation know it by. A code
    that is an ordinary word (KoboMobile's `error`) counts as named only at the start or in brackets.
    """
    if not code or error.startswith(code) or f"[{code}]" in error:
        return error
    code_like = code != code.lower() or any(ch.isdigit() for ch in code)
    if code_like and re.search(rf"(?<!\w){re.escape(code)}(?!\w)", error):
        return error
    return f"{error} [{code}]" if error else code


def _one_line(value: str) -> str:
    """The error in short for a subject: its first clause, on one line, within a bounded length.

    Error texts read "what went wrong: what to do"; the subject carries only what went wrong.
    """
    value = " ".join(value.split())  # a header value must not carry a line break
    cuts = [i for i in (value.find(stop) for stop in (": ", ". ", "; ")) if i > 0]
    if cuts:
        value = value[: min(cuts)]
    value = value.rstrip(".")
    if len(value) > SUBJECT_ERROR_CHARS:
        value = value[: SUBJECT_ERROR_CHARS - 3].rstrip() + "..."
    return value


class _Counts:
    """One pass over the jobs: counts per state and the first error, for the subject and the summary."""

    def __init__(self, submission: Submission, jobs: Sequence[Job]) -> None:
        self.total = len(jobs)
        self.by_state: dict[JobState, int] = dict.fromkeys(JobState, 0)
        self.would_send = 0
        self.first_error: str | None = None
        for job in jobs:
            if _would_send(submission, job):
                self.would_send += 1
                continue
            self.by_state[job.state] += 1
            if self.first_error is None and job.state in _FAILED:
                self.first_error = _redactor(job)(job.error or job.code)

    @property
    def sent(self) -> int:
        return self.by_state[JobState.SENT]

    @property
    def unknown(self) -> int:
        return self.by_state[JobState.UNKNOWN]

    @property
    def failed(self) -> int:
        return sum(self.by_state[s] for s in _FAILED)

    @property
    def pending(self) -> int:
        return sum(self.by_state[s] for s in _PENDING)

    def summary(self) -> dict[str, int]:
        return {
            "total": self.total,
            "sent": self.sent,
            "rejected": self.by_state[JobState.REJECTED],
            "unknown": self.unknown,
            "expired": self.by_state[JobState.EXPIRED],
            "cancelled": self.by_state[JobState.CANCELLED],
            "pending": self.pending,
            "would_send": self.would_send,
        }


def _subject(submission: Submission, counts: _Counts) -> str:
    """A subject that tells the outcome without opening the mail: `SMS sent: 3 of 3`, `SMS failed: …`."""
    total = counts.total
    if submission.dry_run:
        if counts.would_send == total:
            return f"SMS dry run: {total} would be sent"
        subject = f"SMS dry run: {counts.would_send} of {total} would be sent"
        return f"{subject} ({_one_line(counts.first_error)})" if counts.first_error else subject
    if total == 0:
        return "SMS: nothing to send"
    if counts.unknown:
        subject = f"SMS may have been sent: {counts.sent} of {total} sent, {counts.unknown} unknown"
        return f"{subject}, {counts.failed} failed" if counts.failed else subject
    if counts.pending:
        return f"SMS in progress: {counts.sent} of {total} sent so far"
    if counts.sent == total:
        return f"SMS sent: {total} of {total}"
    if counts.sent == 0:
        if counts.first_error and total == 1:
            return f"SMS failed: {_one_line(counts.first_error)}"
        subject = f"SMS failed: 0 of {total} sent"
        return f"{subject} ({_one_line(counts.first_error)})" if counts.first_error else subject
    return f"SMS partly sent: {counts.sent} of {total}"


def _iso(timestamp: float) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


def _job_record(submission: Submission, job: Job) -> dict[str, Any]:
    """One job as results.json shows it. Built field by field so that `job.account` can never slip in."""
    redact = _redactor(job)
    return {
        "number": _e164(job.number),
        "row": job.row,
        "status": _status(submission, job),
        "provider": job.provider,
        "provider_id": redact(job.provider_id),
        "code": redact(job.code),
        "error": redact(job.error),
        "detail": redact(job.detail),
        "parts": job.parts,
        "encoding": job.encoding,
        "attempts": job.attempts,
        "text": redact(job.text),
        "notes": [redact(note) for note in job.notes],
    }


def _job_text(submission: Submission, job: Job, advice: Callable[[Job], str] | None) -> Iterable[str]:
    redact = _redactor(job)
    where = f" (CSV row {job.row})" if job.row is not None else ""
    yield f"{_e164(job.number) or 'no number'}{where}: {_status_words(submission, job)}"
    provider_id = redact(job.provider_id)
    yield f"  via {job.provider}" + (f", message id {provider_id}" if provider_id else "")
    detail = redact(job.detail)
    if detail:
        yield f"  Detail: {detail}"
    yield f"  {_parts(job)}"
    yield from (f"  Note: {redact(note)}" for note in job.notes)
    if _would_send(submission, job) or job.notes:  # what exactly goes (or went) to the phone
        yield "  Text:"
        yield from ("    " + line for line in (redact(job.text) or "").split("\n"))
    if _would_send(submission, job):
        return
    error = redact(job.error)
    code = redact(job.code)
    if error:
        yield f"  Error: {_with_code(error, code)}"
    elif code and job.state in _SHOW_CODE:
        yield f"  Error code: {code}"
    todo = advice(job) if advice is not None else None
    if not todo and not (error and job.state is JobState.REJECTED):  # a refusal's error says what to do
        todo = _DEFAULT_ADVICE.get(job.state)
    if todo:
        yield f"  What to do: {redact(todo)}"


def _text(
    submission: Submission,
    jobs: Sequence[Job],
    counts: _Counts,
    subject: str,
    advice: Callable[[Job], str] | None,
) -> str:
    lines = [subject, ""]
    summary = counts.summary()
    if submission.dry_run:
        lines.append(f"This was a dry run: {counts.total:,} SMS checked, nothing was sent.")
    else:
        words = [f"{summary['sent']} sent"]
        words += [
            f"{summary[k]} {w}"
            for k, w in (
                ("unknown", "may have been sent"),
                ("rejected", "refused"),
                ("expired", "expired"),
                ("cancelled", "cancelled"),
                ("pending", "not finished yet"),
            )
            if summary[k]
        ]
        lines.append(f"{counts.total:,} SMS: " + ", ".join(words) + ".")
    lines += ["", f"Submission: {submission.id}"]
    received = _iso(submission.received_at)
    if received:
        lines.append(f"Received: {received}")
    if submission.route:
        lines.append(f"Route: {submission.route}")
    lines.append("")
    for job in jobs[:DETAIL_LIMIT]:
        lines.extend(_job_text(submission, job, advice))
        lines.append("")
    rest = len(jobs) - DETAIL_LIMIT
    if rest > 0:
        not_sent = sum(1 for job in jobs[DETAIL_LIMIT:] if job.state in _FAILED and not _would_send(submission, job))
        more = f"… and {rest:,} more: see results.json"
        lines.append(more + (f" ({not_sent:,} of them not sent)." if not_sent else "."))
        lines.append("")
        # A CSV's row number is what its sender looks up: name the first rows not sent (numbers: results.csv).
        failed = (
            j
            for j in jobs[DETAIL_LIMIT:]
            if j.row is not None and j.state in _FAILED and not _would_send(submission, j)
        )
        rows = [
            f"CSV row {job.row}: {_status_words(submission, job)}"
            + (f": {error}" if (error := _redactor(job)(job.error or job.code)) else "")
            for job in itertools.islice(failed, FAILURES_LISTED)
        ]
        if rows:
            unlisted = not_sent - len(rows)
            lines += ["Further rows not sent:", *rows]
            lines += [f"… and {unlisted:,} more: see results.csv.", ""] if unlisted > 0 else [""]
    lines.append("This is an automatic reply from mail2sms; replies to it are not read.")
    return "\n".join(lines) + "\n"


def _results_json(submission: Submission, jobs: Sequence[Job], counts: _Counts) -> bytes:
    """results.json with one job per line: small for 100,000 jobs, still readable and diffable by a person."""
    head = {
        "submission": submission.id,
        "received_at": _iso(submission.received_at),
        "route": submission.route,
        "dry_run": submission.dry_run,
        "summary": counts.summary(),
    }
    rows = ",\n".join(json.dumps(_job_record(submission, job), ensure_ascii=False) for job in jobs)
    rows = rows + "\n" if rows else rows
    text = json.dumps(head, ensure_ascii=False)[:-1] + ', "jobs": [\n' + rows + "]}\n"
    return text.encode("utf-8")


def _matched_rows(files: list[dict[str, Any]], jobs: Sequence[Job]) -> Iterator[Job | None]:
    """The job of each stored CSV row, in order; None for a row the spool did not keep as a new job.

    Jobs are stored in row order, one per row, so they pair up one to one. Only when the spool dropped jobs that
    an earlier copy of the same mail already carried (dedupe) are the rest matched by row number.
    """
    rows = [job for job in jobs if job.row is not None]
    if len(rows) == sum(len(file["rows"]) for file in files):
        yield from rows
        return
    remaining = iter(rows)
    upcoming = next(remaining, None)
    for file in files:
        for entry in file["rows"]:
            if upcoming is not None and upcoming.row == entry[0]:
                yield upcoming
                upcoming = next(remaining, None)
            else:
                yield None


def _result_cells(submission: Submission, row: int, job: Job | None) -> list[str]:
    if job is None:
        return [str(row), "duplicate", "", "", "", "an earlier copy of this mail already carried this row"]
    redact = _redactor(job)
    error = redact(job.error) or ""
    code = redact(job.code)
    if job.state in _SHOW_CODE and not _would_send(submission, job):
        error = _with_code(error, code)
    return [
        str(row),
        _status(submission, job),
        _e164(job.number),
        redact(job.provider_id) or "",
        str(job.parts) if job.parts else "",
        error,
    ]


def _results_name(name: str | None, several: bool, taken: set[str]) -> str:
    stem = re.sub(r"[^\w.\- ]+", "_", (name or "").rsplit(".", 1)[0]).strip(" ._")[:60] if several else ""
    base = f"results-{stem}" if stem else "results"
    candidate, n = f"{base}.csv", 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}.csv"
    taken.add(candidate)
    return candidate


def results_csv(submission: Submission, jobs: Sequence[Job]) -> list[tuple[str, bytes]]:
    """(file name, bytes) of results.csv for each CSV file the mail carried; [] when it carried none.

    Every input row comes back with its cells as written, then the columns of RESULT_COLUMNS; the header is the
    input's own (or mobile, message, from_id, sendtime when it had none). The input's delimiter is kept, so
    Excel in a semicolon locale splits it the same way, and the text is UTF-8 with a BOM, which Excel needs to
    read UTF-8 at all. Several input files give one results file each, named after them.
    """
    stored = submission.extra.get("csv")
    files: list[dict[str, Any]] = stored.get("files", []) if isinstance(stored, dict) else []
    if not files:
        return []
    matched = _matched_rows(files, jobs)
    taken: set[str] = set()
    out: list[tuple[str, bytes]] = []
    for file in files:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=file["delimiter"], lineterminator="\r\n")
        width = int(file["width"])
        names = list(file["names"])
        writer.writerow([*names, *[""] * (width - len(names)), *RESULT_COLUMNS])
        for entry in file["rows"]:
            cells = entry[1:]
            writer.writerow([*cells, *[""] * (width - len(cells)), *_result_cells(submission, entry[0], next(matched))])
        data = buffer.getvalue().encode("utf-8-sig", errors="replace")
        out.append((_results_name(file.get("name"), len(files) > 1, taken), data))
    return out


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
    counts = _Counts(submission, jobs)
    subject = _subject(submission, counts)

    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = submission.report_to
    message["Subject"] = subject
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

    message.set_content(
        _text(submission, jobs, counts, subject, explain_advice), charset="utf-8", cte="quoted-printable"
    )
    message.make_mixed()
    message.add_attachment(
        _results_json(submission, jobs, counts),
        maintype="application",
        subtype="json",
        filename="results.json",
        params={"charset": "utf-8"},
    )
    for name, data in results_csv(submission, jobs):
        message.add_attachment(data, maintype="text", subtype="csv", filename=name, params={"charset": "utf-8"})
    return message
