"""The spool as ReplyStore (issue 17), on both backends: every way a stored reply is decided (linked, by number,
tied to nothing, to a sender who may not be mailed, throttled), exactly one row per provider reference even when
two nodes store it at once, poll turns and cursors, mail claims, dead owners' claims, and retention."""

from __future__ import annotations

import asyncio

from mail2sms.model import Account, InboundSms, Job, JobState, ReplyMatch, ReplyState, ReportState, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate, ReplyRules, Spool

NOW = 1_800_000_000.0
WINDOW = 86400.0
RULES = ReplyRules(match_window=7 * 86400.0, per_number_per_hour=10, unmatched_to="ops@example.org")
NO_UNMATCHED = ReplyRules(match_window=7 * 86400.0, per_number_per_hour=10, unmatched_to=None)


async def sent_sms(
    spool: Spool,
    numbers: list[str],
    pids: list[str],
    *,
    provider: str = "cellcast",
    report_to: str | None = "alice@example.org",
    suppressed: str | None = None,
    at: float = NOW,
    tag: str = "k",
    account: Account | None = None,
    keep_open: bool = False,
) -> Submission:
    """Commit a submission of one SMS per number and record each as accepted with its provider id at `at`."""
    jobs = [Job(number=n, text=f"to {n}", provider=provider, sender="S", account=account) for n in numbers]
    if keep_open:
        jobs.append(Job(number="96550009999", text="later", provider=provider, sender="S", account=account))
    sub = Submission(
        envelope_from=report_to or "panel@example.org",
        recipients=[f"{n}@sms.test" for n in numbers],
        jobs=jobs,
        route="r",
        message_id=f"<{tag}@x>",
        subject=f"subject {tag}",
        report_to=report_to,
        report_suppressed=suppressed,
        received_at=at,
    )
    result = await spool.commit(sub, [f"{tag}:{i}" for i in range(len(jobs))], WINDOW)
    assert not result.duplicate
    await spool.record(
        [JobUpdate(j.id, JobState.SENT, 1, 0.0, pid) for j, pid in zip(sub.jobs, pids, strict=False)], at
    )
    return sub


def reply(ref: str, number: str = "96550000001", link: str | None = None, text: str = "ACK") -> InboundSms:
    return InboundSms(provider_ref=ref, number=number, text=text, received_at=NOW + 50, in_reply_to=link)


async def the_reply(spool: Spool, owner: str = "mailer") -> list[tuple[str, ReplyMatch, str, str | None]]:
    """Claim every due reply: (text, match, mail_to, job id) each."""
    due = await spool.claim_replies(owner, NOW + 200, 50, 60.0)
    return [(d.text, d.match, d.mail_to, d.job.id if d.job else None) for d in due]


async def test_a_linked_reply_goes_to_its_sms_sender_with_submission_and_job(spool: Spool) -> None:
    """A reply naming the provider id of an SMS sent to its number is LINKED, PENDING to that submission's
    report_to, and claimed with the submission and the job — without the job's account."""
    sub = await sent_sms(spool, ["96550000001"], ["m-1"], account=Account("u", "pw"), keep_open=True)
    stored = await spool.store_replies("cellcast", [reply("r1", link="m-1")], RULES, NOW + 100)
    assert (stored.new, stored.states) == (1, {"r1": ReplyState.PENDING})
    [due] = await spool.claim_replies("mailer", NOW + 100, 10, 60.0)
    assert (due.match, due.mail_to, due.provider, due.number, due.text) == (
        ReplyMatch.LINKED,
        "alice@example.org",
        "cellcast",
        "96550000001",
        "ACK",
    )
    assert (due.received_at, due.fetched_at, due.attempts) == (NOW + 50, NOW + 100, 0)
    assert due.submission is not None
    assert due.job is not None
    assert (due.submission.id, due.submission.subject, due.submission.message_id) == (sub.id, "subject k", "<k@x>")
    assert (due.job.id, due.job.provider_id, due.job.text) == (sub.jobs[0].id, "m-1", "to 96550000001")
    assert due.job.account is None


async def test_a_link_to_an_unknown_sms_never_falls_back_to_the_number(spool: Spool) -> None:
    """A link that names no SMS mail2sms sent to that number is NONE (to unmatched_to), even though an SMS was
    sent to the number: the link says it answers something else."""
    await sent_sms(spool, ["96550000001", "96550000002"], ["m-1", "m-2"])
    await spool.store_replies("cellcast", [reply("r1", link="m-9"), reply("r2", link="m-2")], RULES, NOW + 100)
    assert await the_reply(spool) == [
        ("ACK", ReplyMatch.NONE, "ops@example.org", None),
        ("ACK", ReplyMatch.NONE, "ops@example.org", None),
    ]


async def test_without_a_link_the_only_recent_sender_to_the_number_gets_it(spool: Spool) -> None:
    """No link: the newest SMS of this provider to this number within the window is matched when every such SMS
    came from one sender; another provider's SMS and SMS older than the window do not count."""
    await sent_sms(spool, ["96550000001"], ["old"], at=NOW - 8 * 86400, report_to="bob@example.org", tag="old")
    await sent_sms(spool, ["96550000001"], ["other"], provider="bulksms", report_to="bob@example.org", tag="bulk")
    first = await sent_sms(spool, ["96550000001"], ["m-1"], at=NOW - 10, tag="a")
    newest = await sent_sms(spool, ["96550000001"], ["m-2"], at=NOW, tag="b")
    await spool.store_replies("cellcast", [reply("r1")], RULES, NOW + 100)
    assert first.jobs[0].id != newest.jobs[0].id
    assert await the_reply(spool) == [("ACK", ReplyMatch.NUMBER, "alice@example.org", newest.jobs[0].id)]


async def test_without_a_link_two_senders_to_the_number_match_nobody(spool: Spool) -> None:
    """No link and two senders texted the number lately (or one whose sender may not be mailed): nobody can tell
    whose reply it is, so it is NONE and goes to unmatched_to."""
    await sent_sms(spool, ["96550000001"], ["m-1"], tag="a")
    await sent_sms(spool, ["96550000001"], ["m-2"], report_to="bob@example.org", tag="b")
    await sent_sms(spool, ["96550000002"], ["m-3"], tag="c")
    await sent_sms(spool, ["96550000002"], ["m-4"], report_to=None, suppressed="Precedence: bulk", tag="d", at=NOW - 1)
    await spool.store_replies("cellcast", [reply("r1"), reply("r2", number="96550000002")], RULES, NOW + 100)
    assert [(m, to) for _, m, to, _ in await the_reply(spool)] == [(ReplyMatch.NONE, "ops@example.org")] * 2


async def test_a_linked_reply_whose_sender_may_not_be_mailed_goes_to_unmatched_to_or_is_dropped(spool: Spool) -> None:
    """A reply linked to an SMS whose sender may not be mailed (no report_to) goes to unmatched_to; with none set,
    it is DROPPED and says why (naming the sender rule, never mailing the sender)."""
    await sent_sms(spool, ["96550000001"], ["m-1"], report_to=None, suppressed="Auto-Submitted: auto-generated")
    await spool.store_replies("cellcast", [reply("r1", link="m-1")], RULES, NOW + 100)
    [due] = await spool.claim_replies("mailer", NOW + 100, 10, 60.0)
    assert (due.match, due.mail_to) == (ReplyMatch.LINKED, "ops@example.org")
    assert due.submission is not None
    assert due.submission.report_to is None
    dropped = await spool.store_replies("cellcast", [reply("r2", link="m-1")], NO_UNMATCHED, NOW + 100)
    assert dropped.states == {"r2": ReplyState.DROPPED}
    assert await spool.claim_replies("other", NOW + 150, 10, 60.0) == []
    assert await spool.reply_counts() == {"pending": 1, "dropped": 1}


async def test_a_reply_tied_to_nothing_without_unmatched_to_is_dropped(spool: Spool) -> None:
    """A reply from a number mail2sms never texted, with replies.unmatched_to unset, is kept as DROPPED."""
    stored = await spool.store_replies("cellcast", [reply("r1", number="96550000077")], NO_UNMATCHED, NOW)
    assert stored.states == {"r1": ReplyState.DROPPED}
    assert await spool.claim_replies("mailer", NOW + 10, 10, 60.0) == []


async def test_replies_over_the_per_number_rate_are_throttled(spool: Spool) -> None:
    """Replies from one number (any provider) beyond per_number_per_hour within an hour are THROTTLED, kept and
    never claimed; an hour later the number may be mailed again, and dropped ones never count."""
    rules = ReplyRules(match_window=86400.0, per_number_per_hour=2, unmatched_to="ops@example.org")
    await spool.store_replies("cellcast", [reply("n1", number="96550000077")], NO_UNMATCHED, NOW)
    first = await spool.store_replies("cellcast", [reply("a"), reply("b"), reply("c")], rules, NOW)
    assert first.states == {"a": ReplyState.PENDING, "b": ReplyState.PENDING, "c": ReplyState.THROTTLED}
    other = await spool.store_replies("bulksms", [reply("d"), reply("e", number="96550000077")], rules, NOW + 10)
    assert other.states == {"d": ReplyState.THROTTLED, "e": ReplyState.PENDING}
    later = await spool.store_replies("cellcast", [reply("f")], rules, NOW + 3601)
    assert later.states == {"f": ReplyState.PENDING}
    assert await spool.reply_counts() == {"pending": 4, "throttled": 2, "dropped": 1}
    assert len(await spool.claim_replies("mailer", NOW + 4000, 50, 60.0)) == 4


async def test_a_reply_stored_again_is_one_row_decided_once(spool: Spool) -> None:
    """The same (provider, provider_ref) stored twice (fetched again after a crash, or pushed and polled) is one
    row, and the second store reports nothing new; the same ref at another provider is another reply."""
    assert (await spool.store_replies("cellcast", [reply("r1"), reply("r1")], RULES, NOW)).new == 1
    again = await spool.store_replies("cellcast", [reply("r1", text="changed")], RULES, NOW + 5)
    assert (again.new, again.states) == (0, {})
    assert (await spool.store_replies("bulksms", [reply("r1")], RULES, NOW + 5)).new == 1
    assert sorted(t for t, *_ in await the_reply(spool)) == ["ACK", "ACK"]


async def test_two_nodes_storing_the_same_replies_at_once_keep_one_row_each(spool_url: str) -> None:
    """Two spool connections (two nodes) storing the same page at the same moment: every reply is stored once,
    and the per-number count sees the other node's replies."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        rules = ReplyRules(match_window=86400.0, per_number_per_hour=3, unmatched_to="ops@example.org")
        page = [reply(f"r{i}", number=f"9655000000{i % 2}") for i in range(8)]
        results = await asyncio.gather(
            a.store_replies("cellcast", page, rules, NOW), b.store_replies("cellcast", list(reversed(page)), rules, NOW)
        )
        assert sum(r.new for r in results) == 8
        assert not set(results[0].states) & set(results[1].states)
        assert await a.reply_counts() == {"pending": 6, "throttled": 2}
    finally:
        await a.close()
        await b.close()


async def test_two_nodes_claiming_one_poll_turn_at_once_get_it_once(spool_url: str) -> None:
    """Two spool connections (two nodes' pollers) claiming a provider's poll turn at the same moment, first use
    included: exactly one gets it."""
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        for round_ in range(5):
            at = NOW + 100 * round_
            got = await asyncio.gather(
                a.claim_reply_poll("cellcast", "node-a", at, 60.0), b.claim_reply_poll("cellcast", "node-b", at, 60.0)
            )
            assert sorted(ok for ok, _ in got) == [False, True]
    finally:
        await a.close()
        await b.close()


async def test_a_poll_turn_is_held_by_one_owner_and_the_cursor_moves_with_the_store(spool: Spool) -> None:
    """claim_reply_poll gives the turn to one owner; store_replies with that owner saves the cursor, sets the next
    turn and ends the claim in one transaction; the next turn hands the cursor back."""
    assert await spool.claim_reply_poll("cellcast", "p1", NOW, 60.0) == (True, None)
    assert await spool.claim_reply_poll("cellcast", "p2", NOW + 1, 60.0) == (False, None)
    assert await spool.claim_reply_poll("bulksms", "p2", NOW + 1, 60.0) == (True, None)
    await spool.store_replies(
        "cellcast", [reply("r1")], RULES, NOW + 2, cursor="c-1", owner="p1", next_poll_at=NOW + 62
    )
    assert await spool.claim_reply_poll("cellcast", "p2", NOW + 61, 60.0) == (False, None)
    assert await spool.claim_reply_poll("cellcast", "p2", NOW + 62, 60.0) == (True, "c-1")
    # No cursor in the page (the provider keeps "unread" itself): the saved one stays.
    await spool.store_replies("cellcast", [], RULES, NOW + 63, cursor=None, owner="p2", next_poll_at=NOW + 63)
    assert await spool.claim_reply_poll("cellcast", "p1", NOW + 63, 60.0) == (True, "c-1")


async def test_a_store_by_an_owner_that_lost_its_turn_keeps_the_replies_but_not_the_cursor(spool: Spool) -> None:
    """A poller whose claim lapsed and was taken over still stores its replies (once), but moves neither the
    cursor nor the new holder's turn."""
    assert (await spool.claim_reply_poll("cellcast", "slow", NOW, 60.0))[0]
    assert await spool.claim_reply_poll("cellcast", "fast", NOW + 61, 60.0) == (True, None)
    stored = await spool.store_replies(
        "cellcast", [reply("r1")], RULES, NOW + 62, cursor="late", owner="slow", next_poll_at=NOW + 62
    )
    assert stored.new == 1
    await spool.store_replies(
        "cellcast", [reply("r1")], RULES, NOW + 63, cursor="c-2", owner="fast", next_poll_at=NOW + 100
    )
    assert await spool.claim_reply_poll("cellcast", "x", NOW + 100, 60.0) == (True, "c-2")


async def test_a_released_poll_keeps_its_cursor_and_waits_for_its_next_turn(spool: Spool) -> None:
    """release_reply_poll (the provider could not be read) keeps the cursor and sets the next turn; a lapsed claim
    can be taken by another owner."""
    assert (await spool.claim_reply_poll("cellcast", "p1", NOW, 60.0))[0]
    await spool.store_replies("cellcast", [], RULES, NOW, cursor="c-1", owner="p1", next_poll_at=NOW)
    assert await spool.claim_reply_poll("cellcast", "p1", NOW, 60.0) == (True, "c-1")
    await spool.release_reply_poll("cellcast", "p1", NOW + 30)
    assert await spool.claim_reply_poll("cellcast", "p2", NOW + 29, 60.0) == (False, None)
    assert await spool.claim_reply_poll("cellcast", "p2", NOW + 30, 60.0) == (True, "c-1")
    assert await spool.claim_reply_poll("cellcast", "p3", NOW + 91, 60.0) == (True, "c-1")


async def test_reply_mail_claims_retries_and_endings(spool: Spool) -> None:
    """A claimed reply is held by its owner until reply_done or its lease lapses; PENDING waits for next_at with
    one more attempt, MAILED ends it, and a stranger's reply_done changes nothing."""
    await spool.store_replies("cellcast", [reply("r1"), reply("r2", text="second")], RULES, NOW)
    claimed = await spool.claim_replies("m1", NOW, 1, 60.0)
    assert [d.text for d in claimed] == ["ACK"]
    assert [d.text for d in await spool.claim_replies("m2", NOW, 10, 60.0)] == ["second"]
    assert await spool.claim_replies("m3", NOW + 59, 10, 60.0) == []
    rid = claimed[0].id
    assert not await spool.reply_done(rid, "m2", ReplyState.MAILED, 0.0)
    assert await spool.reply_done(rid, "m1", ReplyState.PENDING, NOW + 300, "smarthost said 451")
    assert [d.text for d in await spool.claim_replies("m3", NOW + 100, 10, 600.0)] == ["second"]
    [again] = await spool.claim_replies("m3", NOW + 300, 10, 60.0)
    assert (again.id, again.attempts) == (rid, 1)
    assert await spool.reply_done(rid, "m3", ReplyState.MAILED, 0.0)
    assert not await spool.reply_done(rid, "m3", ReplyState.MAILED, 0.0)
    assert await spool.reply_counts() == {"pending": 1, "mailed": 1}


async def test_claims_of_a_dead_process_are_freed_at_once(spool: Spool) -> None:
    """A reply poll claim and a reply mail claim held by a process that died are released by the dead-owner
    sweep without waiting for their lease; a live owner's are kept."""
    await spool.store_replies("cellcast", [reply("r1")], RULES, NOW)
    assert len(await spool.claim_replies("dead-1", NOW, 10, 600.0)) == 1
    assert (await spool.claim_reply_poll("cellcast", "dead-1", NOW, 600.0))[0]
    assert (await spool.claim_reply_poll("bulksms", "alive", NOW, 600.0))[0]
    assert await spool.release_dead_receipts(lambda owner: owner == "someone-else") == 0
    assert await spool.release_dead_receipts(lambda owner: owner == "dead-1") == 2
    assert len(await spool.claim_replies("m2", NOW + 1, 10, 600.0)) == 1
    assert (await spool.claim_reply_poll("cellcast", "p2", NOW + 1, 60.0))[0]
    assert not (await spool.claim_reply_poll("bulksms", "p2", NOW + 1, 60.0))[0]


async def test_retention_purges_settled_replies_and_keeps_what_is_still_to_be_mailed(spool: Spool) -> None:
    """purge_replies removes mailed, dropped and throttled replies fetched before the limit, never pending ones;
    a settled submission with a reply still to be mailed is kept until that reply is settled."""
    sub = await sent_sms(spool, ["96550000001"], ["m-1"])
    assert await spool.claim_reports("rep", NOW, 10, 60.0) == [sub.id]
    assert await spool.report_done(sub.id, ReportState.SENT, 0.0, NOW, owner="rep")
    await spool.store_replies("cellcast", [reply("r1", link="m-1")], RULES, NOW)
    await spool.store_replies("cellcast", [reply("r2", number="96550000077")], NO_UNMATCHED, NOW)
    later = NOW + 100 * 86400
    assert await spool.purge_counts(later) == (0, 0)
    assert await spool.purge_replies(later) == 1
    [due] = await spool.claim_replies("m", NOW, 10, 60.0)
    assert await spool.reply_done(due.id, "m", ReplyState.MAILED, 0.0)
    assert await spool.purge_replies(NOW) == 0
    assert await spool.purge(later) == (1, 1)
    assert await spool.purge_replies(later) == 1
    assert await spool.reply_counts() == {}
