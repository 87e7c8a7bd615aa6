"""The spool as ReceiptStore (issue 15), on both backends: which accepted SMS await a receipt, poll claims, the
first final answer winning, and the follow-up mail due exactly once when every accepted SMS of a final submission
is settled and its outcome report is settled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mail2sms.model import Account, Job, JobState, ReceiptState, ReportState, Settled, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate, Spool

NOW = 1_800_000_000.0
WINDOW = 86400.0


@pytest.fixture
async def spool(spool_url: str) -> AsyncIterator[Spool]:
    """An open spool tracking receipts of provider "kapow", first asked about 60 s after acceptance."""
    s = open_spool(spool_url)
    await s.open()
    s.track_receipts({"kapow"}, 60.0, owner="poller-1")
    yield s
    await s.close()


async def commit(spool: Spool, numbers: list[str], provider: str = "kapow", account: Account | None = None,
                 tag: str = "k") -> Submission:
    jobs = [Job(number=n, text="hi", provider=provider, sender="S", account=account) for n in numbers]
    sub = Submission(envelope_from="a@b.c", recipients=[f"{n}@sms.test" for n in numbers], jobs=jobs, route="r",
                     message_id="<m@x>", subject="s", report_to="a@b.c", received_at=NOW)
    result = await spool.commit(sub, [f"{tag}:{n}" for n in numbers], WINDOW)
    assert not result.duplicate
    return sub


def sent(job: Job, pid: str) -> JobUpdate:
    return JobUpdate(job.id, JobState.SENT, 1, 0.0, pid)


def final(state: ReceiptState, via: str = "poll") -> Settled:
    return Settled(state, "D" if state is ReceiptState.DELIVERED else "X", "words", NOW + 5, via)


async def report_sent(spool: Spool, sid: str) -> None:
    """Deliver the outcome report as the reporter does: claim it, then mark it sent."""
    assert sid in await spool.claim_reports("reporter", NOW + 100, 10, 60.0)
    assert await spool.report_done(sid, ReportState.SENT, 0.0, NOW + 100, owner="reporter")


async def test_only_accepted_sms_of_a_receipt_provider_await_one(spool: Spool) -> None:
    """Accepted jobs of a tracked provider await a receipt; refused ones, other providers' and body-credential
    ones (their account is deleted when final) do not."""
    tracked = await commit(spool, ["96550000001", "96550000002"])
    other = await commit(spool, ["96550000003"], provider="outbox", tag="o")
    body = await commit(spool, ["96550000004"], account=Account("u", "pw"), tag="b")
    await spool.record([sent(tracked.jobs[0], "id-1"), JobUpdate(tracked.jobs[1].id, JobState.REJECTED, 1),
                        sent(other.jobs[0], "id-3"), sent(body.jobs[0], "id-4")], NOW)
    assert await spool.claim_due(NOW + 59, 10, 600.0) == []
    due = await spool.claim_due(NOW + 60, 10, 600.0)
    assert [(a.job_id, a.provider_id, a.number, a.accepted_at, a.polls) for a in due] == [
        (tracked.jobs[0].id, "id-1", "96550000001", NOW, 0)]
    assert [a.job_id for a in await spool.awaiting("kapow", "id-1")] == [tracked.jobs[0].id]
    assert await spool.awaiting("kapow", "id-4") == []


async def test_a_claim_keeps_others_off_until_it_lapses_or_is_released(spool: Spool) -> None:
    """A claimed SMS is not claimed again during its lease; poll_later releases it to its next poll time."""
    sub = await commit(spool, ["96550000001"])
    await spool.record([sent(sub.jobs[0], "id-1")], NOW)
    assert len(await spool.claim_due(NOW + 60, 10, 600.0)) == 1
    assert await spool.claim_due(NOW + 61, 10, 600.0) == []
    assert len(await spool.claim_due(NOW + 661, 10, 600.0)) == 1  # the lease lapsed: a crashed poller's SMS
    await spool.poll_later(sub.jobs[0].id, 1, NOW + 900)
    assert await spool.claim_due(NOW + 899, 10, 600.0) == []
    [again] = await spool.claim_due(NOW + 900, 10, 600.0)
    assert (again.polls, again.next_poll_at) == (1, NOW + 900)


async def test_the_first_final_answer_wins(spool: Spool) -> None:
    """settle records the first answer only; a second (push after poll) is refused and changes nothing."""
    sub = await commit(spool, ["96550000001"])
    await spool.record([sent(sub.jobs[0], "id-1")], NOW)
    assert await spool.settle(sub.jobs[0].id, final(ReceiptState.UNDELIVERED, "poll"))
    assert not await spool.settle(sub.jobs[0].id, final(ReceiptState.DELIVERED, "push"))
    assert not await spool.settle("no-such-job", final(ReceiptState.DELIVERED))
    assert await spool.awaiting("kapow", "id-1") == []
    assert await spool.claim_due(NOW + 10_000, 10, 600.0) == []
    loaded = await spool.load_followup(sub.id)
    assert loaded is not None
    assert loaded.receipts[sub.jobs[0].id].state is ReceiptState.UNDELIVERED
    assert loaded.receipts[sub.jobs[0].id].via == "poll"
    assert await spool.receipt_counts() == {"undelivered": 1}


async def test_follow_up_is_due_once_after_the_last_receipt_and_the_report(spool: Spool) -> None:
    """The follow-up waits for every receipt and for the outcome report, is claimed by one owner only, and once
    settled is never due again."""
    sub = await commit(spool, ["96550000001", "96550000002"])
    await spool.record([sent(sub.jobs[0], "id-1"), sent(sub.jobs[1], "id-2")], NOW)
    await spool.settle(sub.jobs[0].id, final(ReceiptState.DELIVERED))
    await report_sent(spool, sub.id)
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == []  # one SMS still awaits its receipt
    await spool.settle(sub.jobs[1].id, final(ReceiptState.NO_RECEIPT, "window"))
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == [sub.id]
    assert await spool.claim_followups("r2", NOW + 11, 10, 60.0) == []  # held by r1
    assert not await spool.followup_done(sub.id, "sent", 0.0, "r2")
    assert await spool.followup_done(sub.id, "sent", 0.0, "r1")
    assert await spool.claim_followups("r2", NOW + 1000, 10, 60.0) == []


async def test_follow_up_waits_for_the_report_and_for_open_sms(spool: Spool) -> None:
    """All receipts settled while another SMS is still queued: no follow-up until the submission is final and its
    outcome report is settled."""
    sub = await commit(spool, ["96550000001", "96550000002"])
    await spool.record([sent(sub.jobs[0], "id-1")], NOW)
    await spool.settle(sub.jobs[0].id, final(ReceiptState.DELIVERED))
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == []
    await spool.record([JobUpdate(sub.jobs[1].id, JobState.REJECTED, 1, code="X", error="refused")], NOW + 2)
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == []  # the outcome report is still owed
    await report_sent(spool, sub.id)
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == [sub.id]


async def test_no_follow_up_without_an_awaited_receipt(spool: Spool) -> None:
    """A submission none of whose SMS awaited a receipt owes no follow-up."""
    sub = await commit(spool, ["96550000001"], provider="outbox")
    await spool.record([sent(sub.jobs[0], "id-1")], NOW)
    await report_sent(spool, sub.id)
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == []


async def test_last_two_receipts_settled_at_once_make_one_follow_up(spool_url: str) -> None:
    """Two spool connections (two nodes) settling a submission's last two SMS at once: exactly one follow-up."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        a.track_receipts({"kapow"}, 60.0)
        for round_ in range(5):
            sub = await commit(a, ["96550000001", "96550000002"], tag=f"r{round_}")
            await a.record([sent(sub.jobs[0], f"x{round_}"), sent(sub.jobs[1], f"y{round_}")], NOW)
            await report_sent(a, sub.id)
            results = await asyncio.gather(a.settle(sub.jobs[0].id, final(ReceiptState.DELIVERED)),
                                           b.settle(sub.jobs[1].id, final(ReceiptState.DELIVERED)))
            assert results == [True, True]
            assert await a.claim_followups(f"o{round_}", NOW + 10, 10, 60.0) == [sub.id]
    finally:
        await a.close()
        await b.close()


async def test_retention_keeps_a_submission_owing_a_follow_up(spool: Spool) -> None:
    """A settled submission whose SMS still awaits a receipt, or whose follow-up is due, is not purged; once the
    follow-up is sent it is."""
    sub = await commit(spool, ["96550000001"])
    await spool.record([sent(sub.jobs[0], "id-1")], NOW)
    await report_sent(spool, sub.id)
    later = NOW + 100 * 86400
    assert await spool.purge_counts(later) == (0, 0)
    await spool.settle(sub.jobs[0].id, final(ReceiptState.DELIVERED))
    assert await spool.purge(later) == (0, 0)
    assert await spool.claim_followups("r1", NOW + 10, 10, 60.0) == [sub.id]
    assert await spool.followup_done(sub.id, "sent", 0.0, "r1")
    assert await spool.purge_counts(later) == (1, 1)
    assert await spool.purge(later) == (1, 1)


async def test_two_pollers_claiming_at_once_never_share_an_sms(spool_url: str) -> None:
    """Two spool connections (two nodes' pollers) claiming due SMS at the same moment get disjoint sets."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        a.track_receipts({"kapow"}, 60.0)
        sub = await commit(a, [f"9655000{i:04d}" for i in range(40)], tag="many")
        await a.record([sent(job, f"id-{job.number}") for job in sub.jobs], NOW)
        first, second = await asyncio.gather(a.claim_due(NOW + 60, 25, 600.0), b.claim_due(NOW + 60, 25, 600.0))
        ids_a, ids_b = {x.job_id for x in first}, {x.job_id for x in second}
        assert not ids_a & ids_b
        assert len(ids_a | ids_b) == 40
    finally:
        await a.close()
        await b.close()


async def test_claims_of_a_dead_process_are_freed_at_once(spool: Spool) -> None:
    """A poll claim and a follow-up lease held by a process that died are released without waiting for their
    lease; a live owner's are kept."""
    spool.track_receipts({"kapow"}, 60.0, owner="dead-1")
    sub = await commit(spool, ["96550000001", "96550000002"])
    await spool.record([sent(sub.jobs[0], "id-1"), sent(sub.jobs[1], "id-2")], NOW)
    assert len(await spool.claim_due(NOW + 60, 10, 600.0)) == 2
    await spool.settle(sub.jobs[1].id, final(ReceiptState.DELIVERED))
    other = await commit(spool, ["96550000003"], tag="o")
    await spool.record([sent(other.jobs[0], "id-3")], NOW)
    await spool.settle(other.jobs[0].id, final(ReceiptState.DELIVERED))
    await report_sent(spool, other.id)
    assert await spool.claim_followups("dead-1", NOW + 10, 10, 60.0) == [other.id]
    assert await spool.release_dead_receipts(lambda owner: owner == "someone-else") == 0
    assert await spool.release_dead_receipts(lambda owner: owner == "dead-1") == 2
    assert [a.job_id for a in await spool.claim_due(NOW + 61, 10, 600.0)] == [sub.jobs[0].id]
    assert await spool.claim_followups("r2", NOW + 11, 10, 60.0) == [other.id]
