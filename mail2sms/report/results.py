"""The outcome mail's attachments for programs and spreadsheets: results.json, and results.csv.

results.json goes with every outcome mail (one job per line). results.csv repeats a CSV submission's own rows
with the outcome added; a big submission of another format (more than `ROWS_LIMIT` SMS, whose rows the mail
body leaves out) gets a plain results.csv of its numbers instead.

This module must never write `job.account` or anything a job's secrets could be in without blanking them, and
never do I/O.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from mail2sms.model import Job, Submission
from mail2sms.report import states
from mail2sms.report.outcome import Outcome, e164, iso, redactor, with_code

RESULT_COLUMNS = ("row", "status", "number", "provider_id", "parts", "error")  # added to each results.csv row
PLAIN_COLUMNS = ("number", "status", "provider", "provider_id", "parts", "encoding", "error", "detail")


def summary(outcome: Outcome) -> dict[str, int]:
    return {
        "total": outcome.total,
        "sent": outcome.count("sent"),
        "rejected": outcome.count("rejected"),
        "unknown": outcome.count("unknown"),
        "expired": outcome.count("expired"),
        "cancelled": outcome.count("cancelled"),
        "pending": outcome.count("scheduled", "queued", "sending"),
        "would_send": outcome.would_send,
    }


def _job_record(job: Job, status: str) -> dict[str, Any]:
    """One job as results.json shows it. Built field by field so that `job.account` can never slip in."""
    redact = redactor(job.account)
    return {
        "number": e164(job.number),
        "row": job.row,
        "status": status,
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


def results_json(outcome: Outcome) -> bytes:
    """results.json with one job per line: small for 100,000 jobs, still readable and diffable by a person."""
    submission = outcome.submission
    head = {
        "submission": submission.id,
        "received_at": iso(submission.received_at),
        "route": submission.route,
        "dry_run": submission.dry_run,
        "summary": summary(outcome),
    }
    records = (_job_record(job, status) for job, status in zip(outcome.jobs, outcome.statuses, strict=True))
    rows = ",\n".join(json.dumps(record, ensure_ascii=False) for record in records)
    rows = rows + "\n" if rows else rows
    text = json.dumps(head, ensure_ascii=False)[:-1] + ', "jobs": [\n' + rows + "]}\n"
    return text.encode("utf-8")


def _error_cell(job: Job, status: str) -> str:
    redact = redactor(job.account)
    error = redact(job.error) or ""
    look = states.look(status)
    if look.failed or look.tone is states.MAYBE:  # a dry run's "would be sent" is neither
        error = with_code(error, redact(job.code))
    return error


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
    status = states.status(submission, job)
    return [
        str(row),
        status,
        e164(job.number),
        redactor(job.account)(job.provider_id) or "",
        str(job.parts) if job.parts else "",
        _error_cell(job, status),
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


def plain_results_csv(outcome: Outcome) -> bytes:
    """results.csv for a submission that did not come as CSV: one row per number, UTF-8 with a BOM for Excel."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(PLAIN_COLUMNS)
    for job, status in zip(outcome.jobs, outcome.statuses, strict=True):
        redact = redactor(job.account)
        writer.writerow(
            [
                e164(job.number),
                status,
                job.provider,
                redact(job.provider_id) or "",
                str(job.parts),
                job.encoding,
                _error_cell(job, status),
                redact(job.detail) or "",
            ]
        )
    return buffer.getvalue().encode("utf-8-sig", errors="replace")
