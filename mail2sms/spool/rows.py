"""Rows to model objects, shared by the SQLite and PostgreSQL spools (their columns are the same).

Nothing here touches a database; a row is anything indexable by column name (`sqlite3.Row`, psycopg's dict rows).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from mail2sms.model import Account, Job, JobState, SmsOptions, Submission
from mail2sms.spool.ids import new_id

INTERRUPTED = ("mail2sms stopped while the request to the provider was in flight, so the SMS may have been sent; "
               "it is not sent again to avoid a duplicate")


class Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


def job_from_row(row: Row) -> Job:
    account = json.loads(row["account"]) if row["account"] else None
    return Job(
        id=row["id"],
        submission_id=row["submission_id"],
        number=row["number"],
        text=row["text"],
        provider=row["provider"],
        sender=row["sender"],
        account=Account.from_dict(account),
        options=SmsOptions.from_dict(json.loads(row["options"])),
        row=row["row"],
        idempotency_key=row["idempotency_key"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        expires_at=row["expires_at"],
        provider_id=row["provider_id"],
        code=row["code"],
        error=row["error"],
        detail=row["detail"],
        parts=row["parts"],
        encoding=row["encoding"],
        notes=json.loads(row["notes"]),
        first_attempt_at=row["first_attempt_at"],
    )


def submission_from_row(row: Row) -> Submission:
    return Submission(
        id=row["id"],
        received_at=row["received_at"],
        envelope_from=row["envelope_from"],
        recipients=json.loads(row["recipients"]),
        route=row["route"],
        message_id=row["message_id"],
        subject=row["subject"],
        report_to=row["report_to"],
        report_suppressed=row["report_suppressed"],
        dry_run=bool(row["dry_run"]),
        peer=row["peer"],
        user=row["user"],
        extra=json.loads(row["extra"]),
        jobs=[],
    )


def job_rows(sub: Submission, now: float) -> list[tuple[Any, ...]]:
    """The jobs table's rows for a submission being committed, in the column order both spools insert.

    Gives each job its id (`<submission>.<seq>`) and, once and for all, its idempotency key. Credentials are kept
    only for jobs that still have to be sent (DESIGN.md "Storage").
    """
    rows = []
    for seq, job in enumerate(sub.jobs):
        job.id = f"{sub.id}.{seq}"
        job.submission_id = sub.id
        job.idempotency_key = job.idempotency_key or new_id()
        rows.append((
            job.id, sub.id, seq, job.number, job.text, job.provider, job.sender,
            json.dumps(job.account.to_dict()) if job.account and not job.state.final else None,
            json.dumps(job.options.to_dict()), job.row, job.idempotency_key, job.state.value, job.attempts,
            job.next_attempt_at, job.expires_at, job.provider_id, job.code, job.error, job.parts,
            job.encoding, json.dumps(job.notes), now,
        ))
    return rows
