"""Spool files and databases made by the layouts released before the shared migration list open and migrate.

The old schemas are copied here from the git history (commit ad7673c^: `spool/sqlite.py`'s SCHEMA and ADDED_COLUMNS,
`spool/postgres.py`'s MIGRATIONS), so these tests keep checking the upgrade whatever the code becomes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from mail2sms.errors import SpoolError
from mail2sms.model import JobState, ReportState
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate
from mail2sms.spool.schema import SCHEMA_VERSION

NOW = 1_800_000_000.0

# fmt: off
OLD_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    envelope_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    route TEXT NOT NULL,
    message_id TEXT,
    subject TEXT NOT NULL DEFAULT '',
    report_to TEXT,
    report_suppressed TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    peer TEXT NOT NULL DEFAULT '',
    user TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    report_state TEXT NOT NULL DEFAULT 'waiting',
    report_attempts INTEGER NOT NULL DEFAULT 0,
    report_next_at REAL NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS submissions_open ON submissions (report_state, delay_notified, received_at);
CREATE INDEX IF NOT EXISTS submissions_report ON submissions (report_state, report_next_at);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    number TEXT NOT NULL,
    text TEXT NOT NULL,
    provider TEXT NOT NULL,
    sender TEXT,
    account TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    row INTEGER,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    provider_id TEXT,
    code TEXT,
    error TEXT,
    parts INTEGER NOT NULL DEFAULT 1,
    encoding TEXT NOT NULL DEFAULT 'gsm7',
    notes TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_submission_state ON jobs (submission_id, state);
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe (created_at);
CREATE TABLE IF NOT EXISTS quota_charges (key TEXT NOT NULL, at REAL NOT NULL, count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS quota_charges_key ON quota_charges (key, at);
"""

OLD_SQLITE_ADDED_COLUMNS = {
    "jobs": (("notes", "TEXT NOT NULL DEFAULT '[]'"), ("detail", "TEXT"), ("first_attempt_at", "REAL")),
    "submissions": (("report_owner", "TEXT"), ("report_lease_until", "REAL")),
}


OLD_POSTGRES_MIGRATIONS = (
    (1, """
CREATE TABLE submissions (
    id TEXT PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    envelope_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    route TEXT NOT NULL,
    message_id TEXT,
    subject TEXT NOT NULL DEFAULT '',
    report_to TEXT,
    report_suppressed TEXT,
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    peer TEXT NOT NULL DEFAULT '',
    "user" TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    report_state TEXT NOT NULL DEFAULT 'waiting',
    report_attempts INTEGER NOT NULL DEFAULT 0,
    report_next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    delay_notified BOOLEAN NOT NULL DEFAULT FALSE,
    finished_at DOUBLE PRECISION
);
CREATE INDEX submissions_open ON submissions (received_at) WHERE report_state = 'waiting';
CREATE INDEX submissions_report ON submissions (report_next_at) WHERE report_state = 'pending';
CREATE INDEX submissions_suppressed ON submissions (report_to) WHERE report_state = 'suppressed';
CREATE TABLE jobs (
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
    next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    provider_id TEXT,
    code TEXT,
    error TEXT,
    parts INTEGER NOT NULL DEFAULT 1,
    encoding TEXT NOT NULL DEFAULT 'gsm7',
    notes TEXT NOT NULL DEFAULT '[]',
    updated_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX jobs_ready ON jobs (next_attempt_at) WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_submission ON jobs (submission_id, seq);
CREATE TABLE dedupe (
    key TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX dedupe_age ON dedupe (created_at);
CREATE TABLE rate_buckets (
    provider TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL
);
"""),
    # Finding a submission's open job must not scan its finished ones (a CSV submission has 100,000 jobs).
    (2, """
CREATE INDEX jobs_open ON jobs (submission_id) WHERE state IN ('scheduled', 'queued', 'sending');
"""),
    # What a provider added to its acceptance (Sent.detail, e.g. "1 of 2 numbers taken"), for the outcome mail.
    (3, """
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS detail TEXT;
"""),
    # Reports are claimed like jobs (owner + lease): one delivery per report whatever the number of nodes.
    (4, """
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS report_owner TEXT;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS report_lease_until DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS submissions_report_owner ON submissions (report_owner) WHERE report_owner IS NOT NULL;
"""),
    # Route quotas counted in the spool, so every node shares one count (spool.quotas).
    (5, """
CREATE TABLE IF NOT EXISTS quota_charges (key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS quota_charges_key ON quota_charges (key, at);
"""),
    # When a request carrying the job first may have left: a provider's idempotency key is remembered only so long.
    (6, """
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS first_attempt_at DOUBLE PRECISION;
"""),
)
# fmt: on

SUBMISSION = ("OLDSUB", NOW, "a@b.c", '["96550000001@sms.test", "96550000002@sms.test"]', "*@sms.test", "a@b.c")
JOBS = [(f"OLDSUB.{i}", "OLDSUB", i, f"9655000000{i + 1}", f"old text {i}", "p", '{"username": "u", "password": "pw"}',
         '{}', f"key-{i}", "queued") for i in range(2)]
INSERT_SUBMISSION = ("INSERT INTO submissions (id, received_at, envelope_from, recipients, route, report_to) "
                     "VALUES ({0}, {0}, {0}, {0}, {0}, {0})")
INSERT_JOB = ("INSERT INTO jobs (id, submission_id, seq, number, text, provider, account, options, idempotency_key, "
              "state) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})")


def old_sqlite_file(path: Path, with_added_columns: bool) -> None:
    """A spool file as the released SQLite code left it: schema_version 1, with or without its added columns."""
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SQLITE_SCHEMA)
    if with_added_columns:  # as the released code's _add_columns did at open
        for table, columns in OLD_SQLITE_ADDED_COLUMNS.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns:
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
        conn.execute("CREATE INDEX submissions_report_owner ON submissions (report_owner) "
                     "WHERE report_owner IS NOT NULL")
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute(INSERT_SUBMISSION.format("?"), SUBMISSION)
    conn.executemany(INSERT_JOB.format("?"), JOBS)
    conn.commit()
    conn.close()


def old_postgres_database(url: str, version: int) -> None:
    """A database as the released PostgreSQL code left it at `version`, holding one submission."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL "
                     "DEFAULT now())")
        for number, sql in OLD_POSTGRES_MIGRATIONS:
            if number <= version:
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
        conn.execute(INSERT_SUBMISSION.format("%s").encode(), SUBMISSION)
        for job in JOBS:
            conn.execute(INSERT_JOB.format("%s").encode(), job)


async def the_old_submission_lives_on(url: str) -> None:
    """The old rows read back whole, go through every transition, and a new mail is stored beside them."""
    spool = open_spool(url)
    await spool.open()
    try:
        found = await spool.get("OLDSUB")
        assert found is not None
        sub, jobs = found
        assert (sub.envelope_from, sub.report_to, sub.recipients) == ("a@b.c", "a@b.c", [
            "96550000001@sms.test", "96550000002@sms.test"])
        assert [(j.number, j.text, j.state, j.notes, j.detail, j.first_attempt_at) for j in jobs] == [
            ("96550000001", "old text 0", JobState.QUEUED, [], None, None),
            ("96550000002", "old text 1", JobState.QUEUED, [], None, None)]
        assert jobs[0].account is not None
        claimed = await spool.claim("node", NOW, 10, 60.0)
        assert sorted((j.id, j.submission_id) for j in claimed) == [("OLDSUB.0", "OLDSUB"), ("OLDSUB.1", "OLDSUB")]
        await spool.mark_sending([j.id for j in claimed], NOW, "node")
        updates = [JobUpdate(j.id, JobState.SENT, 1, 0.0, "pid", None, None, "taken") for j in claimed]
        assert await spool.record(updates, NOW + 1, "node") == ["OLDSUB"]
        assert await spool.claim_reports("reporter", NOW + 1, 10, 60.0) == ["OLDSUB"]
        assert await spool.report_done("OLDSUB", ReportState.SENT, 0.0, NOW + 2, owner="reporter")
        again = await spool.get("OLDSUB")
        assert again is not None
        assert [(j.state, j.detail, j.account) for j in again[1]] == [(JobState.SENT, "taken", None)] * 2
    finally:
        await spool.close()


@pytest.mark.parametrize("with_added_columns", [False, True], ids=["first-release", "added-columns"])
async def test_an_sqlite_file_of_the_released_layout_opens_and_migrates(tmp_path: Path,
                                                                         with_added_columns: bool) -> None:
    """An SQLite spool made by the ADDED_COLUMNS-era code reaches the current version with its mail intact."""
    path = tmp_path / "spool.db"
    old_sqlite_file(path, with_added_columns)
    await the_old_submission_lives_on(f"sqlite://{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    await the_old_submission_lives_on_reopened(f"sqlite://{path}")


async def the_old_submission_lives_on_reopened(url: str) -> None:
    """Opening a migrated spool again changes nothing and still finds the mail."""
    spool = open_spool(url)
    await spool.open()
    try:
        assert await spool.counts() == {"sent": 2}
    finally:
        await spool.close()


async def test_an_sqlite_file_of_a_newer_mail2sms_is_refused(tmp_path: Path) -> None:
    """A file whose user_version is beyond this mail2sms's migrations is not opened (nor changed)."""
    path = tmp_path / "spool.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    spool = open_spool(f"sqlite://{path}")
    with pytest.raises(SpoolError, match="newer"):
        await spool.open()
    await spool.close()


@pytest.mark.parametrize("version", [1, 3, 6])
async def test_a_postgres_database_of_the_released_layout_opens_and_migrates(pg_url: str, version: int) -> None:
    """A database at a released PostgreSQL version runs only the migrations it lacks, under the same numbers."""
    old_postgres_database(pg_url, version)
    with psycopg.connect(pg_url) as conn:
        before = conn.execute("SELECT version, applied_at FROM schema_version ORDER BY version").fetchall()
    await the_old_submission_lives_on(pg_url)
    await the_old_submission_lives_on_reopened(pg_url)
    with psycopg.connect(pg_url) as conn:
        after = conn.execute("SELECT version, applied_at FROM schema_version ORDER BY version").fetchall()
    assert after[:version] == before  # what was applied is not applied again
    assert [v for v, _ in after] == list(range(1, SCHEMA_VERSION + 1))
