"""The spool's tables: one ordered list of migrations, applied by both backends under the same version numbers.

SQLite records the version in `PRAGMA user_version`, PostgreSQL in its `schema_version` table (one row per
migration). Every step is idempotent (`IF NOT EXISTS`, a column added only when missing), so a spool made before
the numbers were shared (an SQLite file of the `ADDED_COLUMNS` era: user_version 0) is brought up by running the
whole list. Types are written `$real`, `$bool` and `$false` and spelled per `Dialect`.

Never edit a released migration: append one. Never drop or rename a column an older release reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template

from mail2sms.errors import SpoolError
from mail2sms.spool.dialect import Dialect


@dataclass(frozen=True)
class AddColumn:
    """A column added to a released table; a default keeps every existing row valid."""

    table: str
    column: str
    declaration: str


@dataclass(frozen=True)
class Only:
    """A statement for one backend only (`dialect` is a `Dialect.name`): a table the other does not use."""

    dialect: str
    sql: str


Step = str | AddColumn | Only


@dataclass(frozen=True)
class Migration:
    version: int
    why: str
    steps: tuple[Step, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "submissions, their jobs and the dedupe keys", (
        """CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,
    received_at $real NOT NULL,
    envelope_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    route TEXT NOT NULL,
    message_id TEXT,
    subject TEXT NOT NULL DEFAULT '',
    report_to TEXT,
    report_suppressed TEXT,
    dry_run $bool NOT NULL DEFAULT $false,
    peer TEXT NOT NULL DEFAULT '',
    "user" TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    report_state TEXT NOT NULL DEFAULT 'waiting',
    report_attempts INTEGER NOT NULL DEFAULT 0,
    report_next_at $real NOT NULL DEFAULT 0,
    delay_notified $bool NOT NULL DEFAULT $false,
    finished_at $real
)""",
        "CREATE INDEX IF NOT EXISTS submissions_open ON submissions (received_at) WHERE report_state = 'waiting'",
        "CREATE INDEX IF NOT EXISTS submissions_report ON submissions (report_next_at) WHERE report_state = 'pending'",
        "CREATE INDEX IF NOT EXISTS submissions_suppressed ON submissions (report_to) "
        "WHERE report_state = 'suppressed'",
        """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    number TEXT NOT NULL,
    text TEXT NOT NULL,
    provider TEXT NOT NULL,
    sender TEXT,
    account TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    "row" INTEGER,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at $real NOT NULL DEFAULT 0,
    expires_at $real NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until $real,
    provider_id TEXT,
    code TEXT,
    error TEXT,
    parts INTEGER NOT NULL DEFAULT 1,
    encoding TEXT NOT NULL DEFAULT 'gsm7',
    updated_at $real NOT NULL DEFAULT 0
)""",
        # Added to jobs after SQLite spools were first released (it is in PostgreSQL's first table).
        AddColumn("jobs", "notes", "TEXT NOT NULL DEFAULT '[]'"),
        "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (next_attempt_at) WHERE state IN ('queued', 'scheduled')",
        "CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (lease_until) WHERE lease_owner IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS jobs_submission ON jobs (submission_id, seq)",
        """CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    created_at $real NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe (created_at)",
        # Provider request rates shared by every node (spool.postgres.PostgresRateLimiter).
        Only("postgresql", "CREATE TABLE IF NOT EXISTS rate_buckets (provider TEXT PRIMARY KEY, tat $real NOT NULL)"),
    )),
    # Finding a submission's open job must not scan its finished ones (a CSV submission has 100,000 jobs).
    Migration(2, "a submission's open jobs by index", (
        "CREATE INDEX IF NOT EXISTS jobs_open ON jobs (submission_id) "
        "WHERE state IN ('scheduled', 'queued', 'sending')",
    )),
    # What a provider added to its acceptance (Sent.detail, e.g. "1 of 2 numbers taken"), for the outcome mail.
    Migration(3, "jobs.detail", (AddColumn("jobs", "detail", "TEXT"),)),
    # Reports are claimed like jobs (owner + lease): one delivery per report whatever the number of nodes.
    Migration(4, "report claims", (
        AddColumn("submissions", "report_owner", "TEXT"),
        AddColumn("submissions", "report_lease_until", "$real"),
        "CREATE INDEX IF NOT EXISTS submissions_report_owner ON submissions (report_owner) "
        "WHERE report_owner IS NOT NULL",
    )),
    # Route quotas counted in the spool, so every process and node shares one count (spool.quotas).
    Migration(5, "quota charges", (
        "CREATE TABLE IF NOT EXISTS quota_charges (key TEXT NOT NULL, at $real NOT NULL, count INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS quota_charges_key ON quota_charges (key, at)",
    )),
    # When a request carrying the job first may have left: a provider's idempotency key is remembered only so long.
    Migration(6, "jobs.first_attempt_at", (AddColumn("jobs", "first_attempt_at", "$real"),)),
    # A submission's jobs counted per state from the index alone (queue list, held-report summaries): the same
    # index SQLite spools had before the numbers were shared, so those files already have it.
    Migration(7, "jobs per submission and state", (
        "CREATE INDEX IF NOT EXISTS jobs_submission_state ON jobs (submission_id, state)",
    )),
    # Retention (spool.core.purge) finds the oldest settled submissions without scanning the rest.
    Migration(8, "settled submissions by age", (
        "CREATE INDEX IF NOT EXISTS submissions_settled ON submissions (finished_at) "
        "WHERE report_state IN ('none', 'sent', 'skipped', 'summarised', 'dropped')",
    )),
    # Delivery receipts (issue 15): an accepted (`sent`) job's receipt state — NULL when none is awaited, else
    # pending, delivered, undelivered or no_receipt — with its poll schedule and poll claim (owner + lease, so nodes
    # never ask twice); the submission's follow-up mail claimed like its report (waiting → pending → sent, ...).
    Migration(9, "delivery receipts and follow-up mails", (
        AddColumn("jobs", "receipt_state", "TEXT"),
        AddColumn("jobs", "receipt_code", "TEXT"),
        AddColumn("jobs", "receipt_why", "TEXT"),
        AddColumn("jobs", "receipt_at", "$real"),
        AddColumn("jobs", "receipt_via", "TEXT"),
        AddColumn("jobs", "accepted_at", "$real"),
        AddColumn("jobs", "receipt_polls", "INTEGER NOT NULL DEFAULT 0"),
        AddColumn("jobs", "receipt_next_at", "$real"),
        AddColumn("jobs", "receipt_owner", "TEXT"),
        AddColumn("jobs", "receipt_lease_until", "$real"),
        "CREATE INDEX IF NOT EXISTS jobs_receipt_due ON jobs (receipt_next_at) WHERE receipt_state = 'pending'",
        "CREATE INDEX IF NOT EXISTS jobs_receipt_id ON jobs (provider, provider_id) WHERE receipt_state = 'pending'",
        AddColumn("submissions", "followup_state", "TEXT"),
        AddColumn("submissions", "followup_attempts", "INTEGER NOT NULL DEFAULT 0"),
        AddColumn("submissions", "followup_next_at", "$real NOT NULL DEFAULT 0"),
        AddColumn("submissions", "followup_owner", "TEXT"),
        AddColumn("submissions", "followup_lease_until", "$real"),
        "CREATE INDEX IF NOT EXISTS submissions_followup ON submissions (followup_next_at) "
        "WHERE followup_state = 'pending'",
    )),
    # Two-way replies (issue 17): each SMS a phone sent back, once per (provider, provider_ref), with where the
    # storing transaction decided it goes (spool.replies) and its mail claim (owner + lease, like reports); each
    # provider's replies cursor and poll turn (owner + lease, so nodes take turns). A sent job is found by the id the
    # provider gave it and by its number; a sent job's `updated_at` is its acceptance time (nothing changes a sent
    # job's row later but its receipt columns), and unlike `accepted_at` it is set whether receipts are tracked or not.
    Migration(10, "replies and their poll cursors", (
        """CREATE TABLE IF NOT EXISTS replies (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    number TEXT NOT NULL,
    text TEXT NOT NULL,
    received_at $real,
    fetched_at $real NOT NULL,
    in_reply_to TEXT,
    "match" TEXT NOT NULL,
    job_id TEXT,
    submission_id TEXT,
    mail_to TEXT,
    state TEXT NOT NULL,
    why TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at $real NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until $real,
    UNIQUE (provider, provider_ref)
)""",
        "CREATE INDEX IF NOT EXISTS replies_due ON replies (next_at) WHERE state = 'pending'",
        "CREATE INDEX IF NOT EXISTS replies_per_number ON replies (number, fetched_at) "
        "WHERE state IN ('pending', 'mailed')",
        "CREATE INDEX IF NOT EXISTS replies_settled ON replies (fetched_at) "
        "WHERE state IN ('mailed', 'dropped', 'throttled')",
        "CREATE INDEX IF NOT EXISTS replies_of_submission ON replies (submission_id)",
        """CREATE TABLE IF NOT EXISTS reply_polls (
    provider TEXT PRIMARY KEY,
    cursor TEXT,
    next_at $real NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until $real
)""",
        "CREATE INDEX IF NOT EXISTS jobs_sent_id ON jobs (provider, provider_id) WHERE state = 'sent'",
        "CREATE INDEX IF NOT EXISTS jobs_sent_number ON jobs (provider, number, updated_at) WHERE state = 'sent'",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def statements(migration: Migration, dialect: Dialect) -> list[str | AddColumn]:
    """The migration's steps for this dialect, in its types."""
    types = {"real": dialect.real, "bool": dialect.boolean, "false": dialect.false}
    out: list[str | AddColumn] = []
    for step in migration.steps:
        if isinstance(step, AddColumn):
            out.append(AddColumn(step.table, step.column, Template(step.declaration).substitute(types)))
        elif isinstance(step, Only):
            if step.dialect == dialect.name:
                out.append(Template(step.sql).substitute(types))
        else:
            out.append(Template(step).substitute(types))
    return out


def pending(have: int, dialect: Dialect) -> list[tuple[int, list[str | AddColumn]]]:
    """The migrations a spool at version `have` lacks, in order, as this dialect's steps.

    A spool migrated by a newer mail2sms is refused (SpoolError): its columns may mean things this one does not know.
    """
    if have > SCHEMA_VERSION:
        raise SpoolError(f"spool schema {have} is newer than this mail2sms ({SCHEMA_VERSION})")
    return [(m.version, statements(m, dialect)) for m in MIGRATIONS if m.version > have]
