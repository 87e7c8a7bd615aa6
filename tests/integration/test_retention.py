"""Retention: settled submissions and their jobs leave the spool in small batches after `spool.retention`, dedupe
keys after `server.dedupe_window`, on both backends; a running mail2sms does it by itself, and `/healthz` counts
only live work."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mail2sms.model import Job, JobState, ReportState, Submission
from mail2sms.spool import open_spool, retention
from mail2sms.spool.base import JobUpdate, Spool
from tests.harness import thread_server, wait_until
from tests.integration.test_queue_cli import populate
from tests.secure import config, http_get

DAY = 86400.0
NOW = 1_800_000_000.0


async def stored(spool: Spool, numbers: list[str], at: float, tag: str, settle: JobState | None = JobState.SENT,
                 report: ReportState | None = ReportState.SENT) -> str:
    """Commit a submission at `at`; with `settle` record every SMS so at `at`, with `report` settle its report."""
    jobs = [Job(number=n, text="t", provider="p") for n in numbers]
    sub = Submission(envelope_from="a@b.c", recipients=["x@sms.test"], jobs=jobs, route="r", report_to="a@b.c",
                     received_at=at)
    assert not (await spool.commit(sub, [f"{tag}:{n}" for n in numbers], DAY)).duplicate
    if settle is not None:
        claimed = [j for j in await spool.claim("t", at, 10_000, 60.0) if j.submission_id == sub.id]
        await spool.mark_sending([j.id for j in claimed], at, owner="t")
        await spool.record([JobUpdate(j.id, settle, 1) for j in claimed], at, owner="t")
        if report is not None:
            assert await spool.report_done(sub.id, report, 0.0, at)
    return sub.id


async def test_sweep_removes_only_what_is_settled_and_old_in_small_batches(spool_url: str) -> None:
    """Settled submissions older than the retention go with all their jobs, a few rows per batch; open ones, ones
    still owing a report and recent ones stay; dedupe keys past the window go too."""
    spool = open_spool(spool_url)
    await spool.open()
    try:
        old = NOW - 40 * DAY
        gone = [await stored(spool, [f"9655000{i:04d}"], old + i, f"old{i}") for i in range(12)]
        gone.append(await stored(spool, [f"9656000{i:04d}" for i in range(45)], old, "csv"))  # a CSV-sized one
        kept = [
            await stored(spool, ["96570000001"], old, "open", settle=None),  # still queued
            await stored(spool, ["96570000002"], old, "owes", report=None),  # report pending
            await stored(spool, ["96570000003"], NOW - DAY, "recent"),  # settled yesterday
        ]
        batches = []
        while True:
            subs, jobs = await spool.purge(NOW - 30 * DAY, 7)
            if not (subs or jobs):
                break
            batches.append(jobs)
        assert max(batches) <= 7  # never more than the batch's rows of jobs in one transaction
        assert sum(batches) == 12 + 45
        for sid in gone:
            assert await spool.get(sid) is None
        for sid in kept:
            assert await spool.get(sid) is not None
        assert await spool.purge_counts(NOW - 30 * DAY) == (0, 0)

        # Every key but the recent one's is past a one-day window; the sweep frees them in batches too.
        swept = await retention.sweep(spool, 30 * DAY, DAY, now=NOW, batch=5)
        assert swept.memory == 12 + 45 + 2
        again = Submission(envelope_from="a@b.c", recipients=["x@sms.test"], route="r", received_at=NOW,
                           jobs=[Job(number="96570000003", text="t", provider="p")])
        assert (await spool.commit(again, ["recent:96570000003"], DAY)).duplicate  # inside its window: remembered
    finally:
        await spool.close()


def test_a_running_mail2sms_purges_by_itself_and_healthz_counts_live_work(tmp_path: Path) -> None:
    """mail2sms serve removes a submission settled 10 days ago under `retention = "7d"` with no command, keeps the
    rest, and /healthz's queue counts only the SMS still to send."""
    url = f"sqlite://{tmp_path}/spool.db"
    ids = asyncio.run(populate(url))
    path, _, http = config(tmp_path, '[providers.kwt]\ntype = "outbox"\npath = "' + str(tmp_path / "out.jsonl")
                           + '"\n', http=True)
    assert http is not None
    path.write_text(path.read_text().replace(f'url = "{url}"', f'url = "{url}"\nretention = "7d"', 1))
    with thread_server(path) as srv:
        assert srv.app is not None
        app = srv.app

        def held(sid: str) -> bool:
            return asyncio.run_coroutine_threadsafe(app.spool.get(sid), srv.loop).result(30) is not None

        wait_until(lambda: not held(ids.final))
        assert all(held(sid) for sid in (ids.live, ids.retrying, ids.recent))
        status, body = http_get(http, "/healthz")
        assert status == 200
        assert json.loads(body)["queue"] == {"queued": 1, "scheduled": 1}  # no sent, rejected: only live work


async def test_accepting_frees_few_expired_keys_and_the_sweep_the_rest(spool_url: str) -> None:
    """After a long stop, the first accept deletes at most 100 expired dedupe keys in its own transaction; the
    retention sweep frees the rest."""
    spool = open_spool(spool_url)
    await spool.open()
    try:
        await stored(spool, [f"9655{i:07d}" for i in range(250)], NOW - 10 * DAY, "old")
    finally:
        await spool.close()
    spool = open_spool(spool_url)  # a restart: its first commit runs the dedupe housekeeping
    await spool.open()
    try:
        await stored(spool, ["96570000009"], NOW, "new", settle=None)
        swept = await retention.sweep(spool, 30 * DAY, DAY, now=NOW, batch=40)
        assert swept.memory == 150
    finally:
        await spool.close()
