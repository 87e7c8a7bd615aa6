"""The spool's report claims, on both backends (SQLite and a real PostgreSQL): reports and "still trying" notices
are leased to one owner at a time, only the holder settles them, and held-back reports are summarised only once
the summary went out. Also the SQLite rule that a live owner's in-flight jobs are never declared interrupted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mail2sms.model import Job, JobState, ReportState, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import HeldReport, JobUpdate, Spool

NOW = 1_800_000_000.0
LEASE = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
async def spool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Spool]:
    """An open, empty spool of each backend."""
    url = f"sqlite://{tmp_path}/spool.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_spool(url)
    await s.open()
    yield s
    await s.close()


async def final(spool: Spool, n: int, *, report_to: str = "a@b.c", state: JobState = JobState.SENT,
                at: float = NOW) -> list[str]:
    """`n` submissions committed already final (their reports due at once); their ids."""
    ids = []
    for i in range(n):
        job = Job(number=f"9655{i:07d}", text="t", provider="p", state=state)
        sub = Submission(envelope_from=report_to, recipients=["x@sms.test"], jobs=[job], route="r",
                         report_to=report_to, received_at=at + i)
        await spool.commit(sub, [f"{report_to}:{at}:{i}"], 86400.0)
        ids.append(sub.id)
    return ids


async def test_a_report_is_claimed_by_one_owner_until_its_lease_ends(spool: Spool) -> None:
    """Two owners claiming at once get disjoint reports; a claimed report is nobody else's until its lease ends."""
    ids = await final(spool, 4)
    a = await spool.claim_reports("a", NOW + 10, 3, LEASE)
    b = await spool.claim_reports("b", NOW + 10, 10, LEASE)
    assert sorted(a + b) == sorted(ids)
    assert not set(a) & set(b)
    assert await spool.claim_reports("c", NOW + 20, 10, LEASE) == []
    assert sorted(await spool.claim_reports("c", NOW + 10 + LEASE + 1, 10, LEASE)) == sorted(ids)


async def test_only_the_holder_settles_a_report(spool: Spool) -> None:
    """report_done by an owner that lost the report changes nothing; the holder's counts and ends the lease."""
    [rid] = await final(spool, 1)
    assert await spool.claim_reports("a", NOW + 10, 10, LEASE) == [rid]
    assert await spool.claim_reports("b", NOW + 10 + LEASE + 1, 10, LEASE) == [rid]  # a's lease ran out
    assert not await spool.report_done(rid, ReportState.SENT, 0.0, NOW + 80, owner="a")
    assert await spool.report_done(rid, ReportState.PENDING, NOW + 500, NOW + 80, owner="b")
    assert await spool.claim_reports("c", NOW + 100, 10, LEASE) == []  # not due yet
    assert await spool.claim_reports("c", NOW + 501, 10, LEASE) == [rid]
    loaded = await spool.load_report(rid)
    assert loaded is not None
    assert loaded.attempts == 1
    assert [j.state for j in loaded.jobs] == [JobState.SENT]


async def test_reports_of_a_dead_owner_are_released_before_the_lease_ends(spool: Spool) -> None:
    """release_dead_reports frees the reports of owners said dead (a killed worker) and leaves live ones alone."""
    ids = await final(spool, 2)
    [first] = await spool.claim_reports("dead", NOW + 10, 1, LEASE)
    [second] = await spool.claim_reports("alive", NOW + 10, 1, LEASE)
    assert await spool.release_dead_reports(lambda owner: owner == "dead") == 1
    assert await spool.claim_reports("new", NOW + 11, 10, LEASE) == [first]
    assert sorted([first, second]) == sorted(ids)


async def test_released_reports_are_claimable_at_once_without_an_attempt(spool: Spool) -> None:
    """release_reports hands back reports not tried: another owner gets them at once, attempts unchanged."""
    ids = await final(spool, 2)
    assert sorted(await spool.claim_reports("a", NOW + 10, 10, LEASE)) == sorted(ids)
    await spool.release_reports(ids, "a")
    assert sorted(await spool.claim_reports("b", NOW + 11, 10, LEASE)) == sorted(ids)
    loaded = [await spool.load_report(i) for i in ids]
    assert [r.attempts if r else None for r in loaded] == [0, 0]


async def test_held_reports_are_summarised_only_after_delivery(spool: Spool) -> None:
    """Held reports are leased for a summary; a failed delivery leaves them held, a delivered one summarises them."""
    held = await final(spool, 2, report_to="busy@b.c")
    for rid in held:
        await spool.report_done(rid, ReportState.SUPPRESSED, 0.0, NOW)
    taken = await spool.take_held("busy@b.c", "a", NOW + 10, LEASE)
    assert taken == [HeldReport(held[0], 1, 1), HeldReport(held[1], 1, 1)]
    assert await spool.take_held("busy@b.c", "b", NOW + 11, LEASE) == []  # a holds them for its summary
    await spool.settle_held(held, "a", summarised=False)  # a's report was not delivered
    assert [h.submission_id for h in await spool.take_held("busy@b.c", "b", NOW + 12, LEASE)] == held
    await spool.settle_held(held, "b", summarised=True)
    assert await spool.take_held("busy@b.c", "c", NOW + 10 * LEASE, LEASE) == []


async def test_delay_notices_are_claimed_and_back_off(spool: Spool) -> None:
    """A "still trying" notice is leased to one owner; one not delivered is due again only at its next try."""
    job = Job(number="96550000001", text="t", provider="p")
    sub = Submission(envelope_from="a@b.c", recipients=["x@sms.test"], jobs=[job], route="r", report_to="a@b.c",
                     received_at=NOW)
    await spool.commit(sub, ["slow"], 86400.0)
    assert await spool.claim_delay_notices("a", NOW + 100, NOW + 100, 10, LEASE) == [sub.id]
    assert await spool.claim_delay_notices("b", NOW + 100, NOW + 100, 10, LEASE) == []
    await spool.delay_notice_done(sub.id, "a", False, NOW + 400)
    assert await spool.claim_delay_notices("b", NOW + 200, NOW + 200, 10, LEASE) == []
    assert await spool.claim_delay_notices("b", NOW + 401, NOW + 401, 10, LEASE) == [sub.id]
    await spool.delay_notice_done(sub.id, "b", True, 0.0)
    assert await spool.claim_delay_notices("c", NOW + 9999, NOW + 9999, 10, LEASE) == []


async def test_sqlite_leaves_a_live_owners_request_alone_after_its_lease(tmp_path: Path) -> None:
    """SQLite (one host): a `sending` job whose lease ran out is not declared interrupted while its owner lives
    (it holds the provider's answer, e.g. while the disk is full); once the owner is dead it is."""
    s = open_spool(f"sqlite://{tmp_path}/spool.db")
    await s.open()
    try:
        job = Job(number="96550000001", text="t", provider="p")
        sub = Submission(envelope_from="a@b.c", recipients=["x@sms.test"], jobs=[job], route="r", received_at=NOW)
        await s.commit(sub, ["k"], 86400.0)
        [claimed] = await s.claim("alive", NOW, 10, 5.0)
        await s.mark_sending([claimed.id], NOW, "alive")
        assert await s.recover(set(), NOW + 600, lambda owner: False) == (0, 0)
        assert await s.counts() == {"sending": 1}
        # The owner records the answer when the spool can write again: the SMS is `sent`, not "may have been sent".
        await s.record([JobUpdate(claimed.id, JobState.SENT, 1, 0.0, "id-1")], NOW + 601)
        assert await s.counts() == {"sent": 1}
        other = Job(number="96550000002", text="t", provider="p")
        sub2 = Submission(envelope_from="a@b.c", recipients=["y@sms.test"], jobs=[other], route="r",
                          received_at=NOW)
        await s.commit(sub2, ["k2"], 86400.0)
        [claimed2] = await s.claim("gone", NOW, 10, 5.0)
        await s.mark_sending([claimed2.id], NOW, "gone")
        assert await s.recover(set(), NOW + 1, lambda owner: owner == "gone") == (0, 1)
    finally:
        await s.close()
