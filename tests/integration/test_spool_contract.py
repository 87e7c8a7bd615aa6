"""The Spool contract, run against every backend: SQLite (a file) and PostgreSQL (a throwaway real cluster).

Each test states one rule of `spool.base.Spool`; both backends must keep it, so the dispatcher, reporter and CLI can
use either without knowing which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mail2sms.model import Account, Job, JobState, ReportState, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import DueReport, JobUpdate, LeaseLost, Spool
from mail2sms.spool.quotas import QuotaCharge, QuotaExceeded, QuotaLimit

NOW = 1_800_000_000.0
WINDOW = 86400.0


def submission(numbers: list[str], *, text: str = "hello", provider: str = "p", report_to: str | None = "a@b.c",
               account: Account | None = None, at: float = NOW) -> Submission:
    jobs = [Job(number=n, text=text, provider=provider, sender="S", account=account) for n in numbers]
    return Submission(envelope_from="a@b.c", recipients=[f"{n}@sms.test" for n in numbers], jobs=jobs, route="r",
                      message_id="<m@x>", subject="s", report_to=report_to, received_at=at)


def keys(sub: Submission, tag: str = "k") -> list[str]:
    return [f"{tag}:{j.number}:{j.text}" for j in sub.jobs]


async def commit(spool: Spool, numbers: list[str], tag: str = "k", **kw: object) -> Submission:
    sub = submission(numbers, **kw)  # type: ignore[arg-type]
    result = await spool.commit(sub, keys(sub, tag), WINDOW)
    assert not result.duplicate
    return sub


async def due_reports(spool: Spool, now: float, limit: int = 10) -> list[DueReport]:
    """The reports due at `now`, as a reporter sees them: claimed, loaded, then given back untried."""
    ids = await spool.claim_reports("peek", now, limit, 60.0)
    loaded = [await spool.load_report(i) for i in ids]
    await spool.release_reports(ids, "peek")
    return [r for r in loaded if r is not None]


def done(job: Job, state: JobState = JobState.SENT, attempts: int = 1) -> JobUpdate:
    return JobUpdate(job.id, state, attempts, 0.0, "pid-1" if state is JobState.SENT else None, None, None)


async def test_commit_round_trips_every_field(spool: Spool) -> None:
    """What commit stores, get returns: the submission and each job field by field."""
    sub = submission(["96550000001", "96550000002"], account=Account("u", "secret"))
    sub.jobs[0].notes = ["smart quotes replaced"]
    sub.jobs[0].parts, sub.jobs[0].encoding, sub.jobs[0].row = 2, "ucs2", 7
    sub.extra = {"csv": [["a", "b"]]}
    result = await spool.commit(sub, keys(sub), WINDOW)
    assert result.submission_id == sub.id
    assert not result.duplicate
    found = await spool.get(sub.id)
    assert found is not None
    stored, jobs = found
    assert (stored.envelope_from, stored.recipients, stored.route, stored.message_id, stored.report_to,
            stored.extra, stored.received_at) == (sub.envelope_from, sub.recipients, sub.route, sub.message_id,
                                                  sub.report_to, sub.extra, sub.received_at)
    assert [j.id for j in jobs] == [f"{sub.id}.0", f"{sub.id}.1"]
    first = jobs[0]
    assert (first.number, first.text, first.sender, first.account, first.notes, first.parts, first.encoding,
            first.row, first.state) == ("96550000001", "hello", "S", Account("u", "secret"),
                                        ["smart quotes replaced"], 2, "ucs2", 7, JobState.QUEUED)
    assert first.idempotency_key
    assert first.idempotency_key != jobs[1].idempotency_key


async def test_duplicate_commit_stores_nothing_and_names_the_first(spool: Spool) -> None:
    """The same keys within the window: `duplicate of` the first submission, and no new jobs."""
    first = await commit(spool, ["96550000001"])
    again = submission(["96550000001"])
    result = await spool.commit(again, keys(again), WINDOW)
    assert result.duplicate
    assert result.submission_id == first.id
    assert await spool.counts() == {"queued": 1}


async def test_partly_duplicate_commit_stores_only_the_new_jobs(spool: Spool) -> None:
    """A mail that repeats one recipient and adds another gets a new submission with only the new job."""
    await commit(spool, ["96550000001"])
    sub = submission(["96550000001", "96550000002"])
    result = await spool.commit(sub, keys(sub), WINDOW)
    assert not result.duplicate
    assert [j.number for j in sub.jobs] == ["96550000002"]
    assert await spool.counts() == {"queued": 2}


async def test_dedupe_key_outside_the_window_is_new_again(spool: Spool) -> None:
    """After the dedupe window the same mail is a new submission."""
    await commit(spool, ["96550000001"])
    later = submission(["96550000001"], at=NOW + WINDOW + 1)
    result = await spool.commit(later, keys(later), WINDOW)
    assert not result.duplicate


async def test_claim_leases_ready_jobs_once(spool: Spool) -> None:
    """Claimed jobs are leased to their owner; a second claim within the lease gets none of them."""
    await commit(spool, ["96550000001", "96550000002", "96550000003"])
    mine = await spool.claim("a", NOW, 2, 60.0)
    theirs = await spool.claim("b", NOW, 10, 60.0)
    assert len(mine) == 2
    assert len(theirs) == 1
    assert {j.id for j in mine}.isdisjoint(j.id for j in theirs)
    assert await spool.claim("c", NOW + 30, 10, 60.0) == []


async def test_claim_skips_paused_providers_and_future_jobs(spool: Spool) -> None:
    """Jobs of a paused provider, and jobs not due yet, stay where they are."""
    await commit(spool, ["96550000001"], provider="paused")
    later = submission(["96550000002"], provider="p")
    later.jobs[0].next_attempt_at = NOW + 100
    await spool.commit(later, keys(later), WINDOW)
    assert await spool.claim("a", NOW, 10, 60.0, skip_providers={"paused"}) == []
    claimed = await spool.claim("a", NOW, 10, 600.0)
    assert [j.provider for j in claimed] == ["paused"]
    assert [j.number for j in await spool.claim("a", NOW + 101, 10, 60.0)] == ["96550000002"]


async def test_expired_lease_can_be_claimed_again(spool: Spool) -> None:
    """A lease that ran out (its node died) no longer protects the job: another owner may claim it."""
    await commit(spool, ["96550000001"])
    assert len(await spool.claim("a", NOW, 10, 5.0)) == 1
    assert len(await spool.claim("b", NOW + 6, 10, 5.0)) == 1


async def test_mark_sending_with_owner_refuses_a_lost_lease(spool: Spool) -> None:
    """mark_sending(owner=…) marks nothing and raises LeaseLost once another owner holds any of the jobs."""
    await commit(spool, ["96550000001", "96550000002"])
    jobs = await spool.claim("a", NOW, 10, 5.0)
    stolen = await spool.claim("b", NOW + 6, 1, 5.0)
    assert len(stolen) == 1
    with pytest.raises(LeaseLost):
        await spool.mark_sending([j.id for j in jobs], NOW + 7, "a")
    assert await spool.counts() == {"queued": 2}
    await spool.mark_sending([stolen[0].id], NOW + 7, "b")
    assert await spool.counts() == {"queued": 1, "sending": 1}


async def test_record_finishes_the_submission_and_forgets_credentials(spool: Spool) -> None:
    """When the last job is final the submission is returned once, its report is due, body credentials are gone."""
    sub = await commit(spool, ["96550000001", "96550000002"], account=Account("u", "secret"))
    jobs = await spool.claim("a", NOW, 10, 60.0)
    await spool.mark_sending([j.id for j in jobs], NOW, "a")
    assert await spool.record([done(jobs[0])], NOW + 1) == []
    assert await spool.record([done(jobs[1], JobState.REJECTED)], NOW + 2) == [sub.id]
    found = await spool.get(sub.id)
    assert found is not None
    assert [j.state for j in found[1]] == [JobState.SENT, JobState.REJECTED]
    assert all(j.account is None for j in found[1])
    due = await due_reports(spool, NOW + 3)
    assert [(d.submission.id, d.attempts) for d in due] == [(sub.id, 0)]


async def test_retry_record_releases_the_lease(spool: Spool) -> None:
    """A Retry puts the job back to `queued` without a lease, due at its next attempt."""
    await commit(spool, ["96550000001"])
    job = (await spool.claim("a", NOW, 10, 60.0))[0]
    await spool.record([JobUpdate(job.id, JobState.QUEUED, 1, NOW + 10, None, "429", "busy")], NOW)
    assert await spool.claim("b", NOW + 5, 10, 60.0) == []
    again = await spool.claim("b", NOW + 10, 10, 60.0)
    assert [j.attempts for j in again] == [1]


async def test_recover_applies_the_rule_to_expired_leases(spool: Spool) -> None:
    """Expired leases: `queued` is released, `sending` is requeued (idempotent provider) or becomes `unknown`."""
    await commit(spool, ["96550000001"], provider="idem", tag="a")
    await commit(spool, ["96550000002"], provider="plain", tag="b")
    await commit(spool, ["96550000003"], provider="plain", tag="c")
    jobs = {j.number: j for j in await spool.claim("dead", NOW, 10, 5.0)}
    await spool.mark_sending([jobs["96550000001"].id, jobs["96550000002"].id], NOW, "dead")
    assert await spool.recover({"idem"}, NOW + 1) == (0, 0)  # leases still running
    assert await spool.recover({"idem"}, NOW + 6) == (1, 1)
    counts = await spool.counts()
    assert counts == {"queued": 2, "unknown": 1}
    assert len(await spool.claim("alive", NOW + 6, 10, 5.0)) == 2


async def test_recover_takes_jobs_of_a_dead_owner_before_the_lease_ends(spool: Spool) -> None:
    """`owner_dead` lets a node recover its own dead processes' jobs at once; other owners keep theirs."""
    await commit(spool, ["96550000001"], tag="a")
    await commit(spool, ["96550000002"], tag="b")
    first = await spool.claim("dead", NOW, 1, 300.0)
    await spool.claim("alive", NOW, 1, 300.0)
    await spool.mark_sending([first[0].id], NOW, "dead")
    assert await spool.recover(set(), NOW + 1, lambda owner: owner == "dead") == (0, 1)
    assert await spool.counts() == {"queued": 1, "unknown": 1}


async def test_expire_ends_waiting_jobs_past_their_lifetime(spool: Spool) -> None:
    """Queued jobs past `expires_at` become `expired` (naming the last problem) and finish their submission."""
    sub = submission(["96550000001"])
    sub.jobs[0].expires_at = NOW + 10
    sub.jobs[0].error = "provider down"
    await spool.commit(sub, keys(sub), WINDOW)
    assert await spool.expire(NOW + 5) == []
    assert await spool.expire(NOW + 11) == [sub.id]
    found = await spool.get(sub.id)
    assert found is not None
    job = found[1][0]
    assert job.state is JobState.EXPIRED
    assert "provider down" in (job.error or "")


async def test_commit_of_final_jobs_finishes_at_once(spool: Spool) -> None:
    """A submission whose jobs are all final at commit (dry run) is final and its report due at once."""
    sub = submission(["96550000001"])
    sub.jobs[0].state = JobState.REJECTED
    await spool.commit(sub, keys(sub), WINDOW)
    assert [d.submission.id for d in await due_reports(spool, NOW)] == [sub.id]


async def test_report_states_delay_notices_and_held_reports(spool: Spool) -> None:
    """report_done moves a report along; a delivered delay notice comes once; held reports are summarised once."""
    slow = await commit(spool, ["96550000001"], tag="slow", at=NOW - 100)
    assert await spool.claim_delay_notices("n", NOW, NOW, 10, 60.0) == [slow.id]
    await spool.delay_notice_done(slow.id, "n", True, NOW)
    assert await spool.claim_delay_notices("n", NOW, NOW + 61, 10, 60.0) == []

    subs = []
    for i in range(3):
        s = submission([f"9655000010{i}"], at=NOW + i)
        s.jobs[0].state = JobState.SENT
        await spool.commit(s, keys(s), WINDOW)
        subs.append(s)
    await spool.report_done(subs[0].id, ReportState.PENDING, NOW + 60, NOW)
    assert [d.submission.id for d in await due_reports(spool, NOW + 10)] == [subs[1].id, subs[2].id]
    retry = {d.submission.id: d.attempts for d in await due_reports(spool, NOW + 61)}
    assert retry == {subs[0].id: 1, subs[1].id: 0, subs[2].id: 0}
    await spool.report_done(subs[1].id, ReportState.SUPPRESSED, 0.0, NOW)
    await spool.report_done(subs[2].id, ReportState.SUPPRESSED, 0.0, NOW)
    held = await spool.take_held("a@b.c", "r", NOW, 60.0)
    assert [(h.submission_id, h.sent, h.total) for h in held] == [(subs[1].id, 1, 1), (subs[2].id, 1, 1)]
    assert await spool.take_held("a@b.c", "other", NOW + 1, 60.0) == []  # leased to "r"
    await spool.settle_held([h.submission_id for h in held], "r", summarised=True)
    assert await spool.take_held("a@b.c", "r", NOW + 120, 60.0) == []


async def test_report_claims_are_held_by_one_owner(spool: Spool) -> None:
    """A claimed report is leased: others skip it until the lease ends, and only the holder's report_done counts."""
    sub = submission(["96550000001"])
    sub.jobs[0].state = JobState.SENT
    await spool.commit(sub, keys(sub), WINDOW)
    assert await spool.claim_reports("a", NOW, 10, 60.0) == [sub.id]
    assert await spool.claim_reports("b", NOW + 1, 10, 60.0) == []
    assert not await spool.report_done(sub.id, ReportState.SENT, 0.0, NOW + 2, owner="b")
    assert await spool.claim_reports("b", NOW + 61, 10, 60.0) == [sub.id]  # a's lease ran out
    assert not await spool.report_done(sub.id, ReportState.SENT, 0.0, NOW + 62, owner="a")
    assert await spool.report_done(sub.id, ReportState.SENT, 0.0, NOW + 62, owner="b")
    assert await spool.claim_reports("c", NOW + 200, 10, 60.0) == []
    assert await spool.queue_list(10) == []


async def test_released_reports_are_due_again_without_an_attempt(spool: Spool) -> None:
    """release_reports gives claims back untried; release_dead_reports frees only the dead owners' reports."""
    first, second = submission(["96550000001"]), submission(["96550000002"], at=NOW + 1)
    for s in (first, second):
        s.jobs[0].state = JobState.SENT
        await spool.commit(s, keys(s), WINDOW)
    assert await spool.claim_reports("live", NOW + 1, 1, 60.0) == [first.id]
    assert await spool.claim_reports("dead", NOW + 1, 1, 60.0) == [second.id]
    assert await spool.release_dead_reports(lambda owner: owner == "dead") == 1
    assert await spool.claim_reports("x", NOW + 2, 10, 60.0) == [second.id]
    await spool.release_reports([first.id], "live")
    report = await spool.load_report(first.id)
    assert report is not None
    assert report.attempts == 0
    assert await spool.claim_reports("y", NOW + 2, 10, 60.0) == [first.id]
    assert await spool.load_report("nope") is None


async def test_a_delay_notice_not_delivered_waits_for_its_next_try(spool: Spool) -> None:
    """A "still trying" notice given back undelivered is due again at next_at, not before."""
    slow = await commit(spool, ["96550000001"], at=NOW - 100)
    assert await spool.claim_delay_notices("n", NOW, NOW, 10, 60.0) == [slow.id]
    assert await spool.claim_delay_notices("m", NOW, NOW + 1, 10, 60.0) == []  # leased
    await spool.delay_notice_done(slow.id, "n", False, NOW + 300)
    assert await spool.claim_delay_notices("n", NOW, NOW + 299, 10, 60.0) == []
    assert await spool.claim_delay_notices("n", NOW, NOW + 300, 10, 60.0) == [slow.id]


async def test_quota_charges_are_counted_and_a_refused_commit_stores_nothing(spool: Spool) -> None:
    """commit charges route quotas in its transaction; over the limit it raises QuotaExceeded and stores nothing."""
    limit = (QuotaLimit(3, 3600.0, "hour"),)
    first = submission(["96550000001", "96550000002"])
    await spool.commit(first, keys(first), WINDOW, quota=[QuotaCharge("route:a", 2, limit)])
    assert await spool.quota_used("route:a", NOW - 3600) == 2
    again = submission(["96550000001", "96550000002"])
    assert (await spool.commit(again, keys(again), WINDOW, quota=[QuotaCharge("route:a", 2, limit)])).duplicate
    more = submission(["96550000003", "96550000004"])
    with pytest.raises(QuotaExceeded):
        await spool.commit(more, keys(more), WINDOW, quota=[QuotaCharge("route:a", 2, limit)])
    assert await spool.counts() == {"queued": 2}
    assert await spool.quota_used("route:a", NOW - 3600) == 2
    later = submission(["96550000003"], at=NOW + 3601)
    await spool.commit(later, keys(later), WINDOW, quota=[QuotaCharge("route:a", 1, limit)])
    assert await spool.quota_used("route:a", NOW) == 1


async def test_submission_id_is_stored_with_each_job(spool: Spool) -> None:
    """Jobs name their submission from the stored column: record and recover finish the right submission."""
    sub = await commit(spool, ["96550000001"], provider="plain")
    job = (await spool.claim("gone", NOW, 10, 5.0))[0]
    assert job.submission_id == sub.id
    await spool.mark_sending([job.id], NOW, "gone")
    assert await spool.recover(set(), NOW + 6) == (0, 1)
    assert [d.submission.id for d in await due_reports(spool, NOW + 6)] == [sub.id]


async def test_queue_operations(spool: Spool) -> None:
    """queue list shows open submissions with job counts; retry_now makes jobs due; cancel finishes them."""
    sub = submission(["96550000001", "96550000002"])
    for job in sub.jobs:
        job.next_attempt_at = NOW + 3600
    await spool.commit(sub, keys(sub), WINDOW)
    entries = await spool.queue_list(10)
    assert [(e.submission_id, e.total, e.states) for e in entries] == [(sub.id, 2, {"queued": 2})]
    assert await spool.retry_now(sub.id, NOW) == 2
    assert len(await spool.claim("a", NOW, 10, 60.0)) == 2
    assert await spool.cancel("nope", NOW) == 0
    other = await commit(spool, ["96550000003"], tag="o")
    assert await spool.cancel(other.id, NOW) == 1
    assert (await spool.counts()).get("cancelled") == 1
    assert other.id in [d.submission.id for d in await due_reports(spool, NOW)]
    assert await spool.get("nope") is None


async def test_two_processes_claim_disjoint_jobs(spool_url: str) -> None:
    """Two spool connections (two nodes) claiming at once never get the same job."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await asyncio.gather(a.open(), b.open())  # migrations race, too
    try:
        for i in range(20):
            await commit(a, [f"965500{i:05d}"], tag=str(i))
        got: list[list[Job]] = await asyncio.gather(*(s.claim(o, NOW, 3, 60.0) for s, o in [(a, "a"), (b, "b")] * 4))
        ids = [j.id for batch in got for j in batch]
        assert len(ids) == len(set(ids)) == 20
    finally:
        await a.close()
        await b.close()


async def test_the_same_mail_at_two_nodes_at_once_is_stored_once(spool_url: str) -> None:
    """Concurrent commits of the same dedupe keys: one is stored, the other is its duplicate."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        subs = [submission(["96550000001"]), submission(["96550000001"])]
        results = await asyncio.gather(*(s.commit(sub, keys(sub), WINDOW) for s, sub in zip((a, b), subs, strict=True)))
        assert sorted(r.duplicate for r in results) == [False, True]
        assert results[0].submission_id == results[1].submission_id
        assert await a.counts() == {"queued": 1}
    finally:
        await a.close()
        await b.close()


async def test_last_jobs_recorded_at_two_nodes_at_once_finish_the_submission(spool_url: str) -> None:
    """Two nodes recording a submission's last two jobs at the same moment: it becomes final exactly once."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        for round_ in range(10):
            sub = await commit(a, ["96550000001", "96550000002"], tag=f"r{round_}")
            jobs = await a.claim("x", NOW, 10, 60.0)
            finished = await asyncio.gather(a.record([done(jobs[0])], NOW), b.record([done(jobs[1])], NOW))
            assert sorted(finished[0] + finished[1]) == [sub.id]
    finally:
        await a.close()
        await b.close()


def _counting(calls: list[str]) -> Callable[[str], bool]:
    def dead(owner: str) -> bool:
        calls.append(owner)
        return False
    return dead


async def test_recover_leaves_live_owners_alone(spool: Spool) -> None:
    """Leases that have not run out and whose owner is alive are not touched."""
    await commit(spool, ["96550000001"])
    await spool.claim("alive", NOW, 10, 60.0)
    calls: list[str] = []
    assert await spool.recover(set(), NOW + 1, _counting(calls)) == (0, 0)
    assert calls == ["alive"]
    assert await spool.claim("other", NOW + 1, 10, 60.0) == []


async def test_postgres_migrations_are_recorded_and_a_newer_schema_is_refused(pg_url: str) -> None:
    """Each migration is recorded once in schema_version; a database migrated by a newer mail2sms is not touched."""
    import psycopg

    from mail2sms.errors import SpoolError
    from mail2sms.spool.schema import SCHEMA_VERSION

    for _ in range(2):
        s = open_spool(pg_url)
        await s.open()
        await s.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    newer = open_spool(pg_url)
    with pytest.raises(SpoolError, match="newer"):
        await newer.open()
