"""`Sent.detail` is kept with its job by both spools, so the outcome mail can show what the provider added.

Runs against SQLite (a file, also one made before the `detail` column existed) and PostgreSQL (a real cluster).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mail2sms.model import Job, JobState, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate, Spool

NOW = 1_800_000_000.0
DETAIL = "KwtSMS took 1 of the 2 numbers of this request"


@pytest.fixture(params=["sqlite", "postgres"])
async def spool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Spool]:
    """An open, empty spool of each backend."""
    url = f"sqlite://{tmp_path}/spool.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_spool(url)
    await s.open()
    yield s
    await s.close()


async def _sent_with_detail(spool: Spool) -> Job:
    sub = Submission(
        envelope_from="a@b.c",
        recipients=["96550000001@sms.test"],
        route="r",
        report_to="a@b.c",
        jobs=[Job(number="96550000001", text="hi", provider="p")],
        received_at=NOW,
    )
    await spool.commit(sub, ["k1"], 86400.0)
    [job] = await spool.claim("me", NOW, 10, 60.0)
    await spool.mark_sending([job.id], NOW, "me")
    await spool.record([JobUpdate(job.id, JobState.SENT, 1, 0.0, "id-7", None, None, DETAIL)], NOW)
    found = await spool.get(sub.id)
    assert found is not None
    [stored] = found[1]
    return stored


async def test_record_keeps_the_sent_detail(spool: Spool) -> None:
    """A job recorded as sent with a detail comes back from the spool with that detail and its provider id."""
    stored = await _sent_with_detail(spool)
    assert (stored.state, stored.provider_id, stored.detail) == (JobState.SENT, "id-7", DETAIL)


async def test_an_older_sqlite_spool_gains_the_detail_column(tmp_path: Path) -> None:
    """A spool file whose jobs table predates `detail` gets the column at open and keeps its rows readable."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, submission_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "number TEXT NOT NULL, text TEXT NOT NULL, provider TEXT NOT NULL, sender TEXT, account TEXT, "
        "options TEXT NOT NULL DEFAULT '{}', row INTEGER, idempotency_key TEXT NOT NULL, "
        "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, "
        "expires_at REAL NOT NULL DEFAULT 0, lease_owner TEXT, lease_until REAL, provider_id TEXT, "
        "code TEXT, error TEXT, parts INTEGER NOT NULL DEFAULT 1, encoding TEXT NOT NULL DEFAULT 'gsm7', "
        "notes TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL DEFAULT 0)"
    )
    old.commit()
    old.close()
    spool = open_spool(f"sqlite://{path}")
    await spool.open()
    try:
        stored = await _sent_with_detail(spool)
    finally:
        await spool.close()
    assert stored.detail == DETAIL
