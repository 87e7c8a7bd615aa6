"""The reply poller (issue 17) against a real SQLite spool and in-test reply sources: stores before it
acknowledges, follows "more" within a bound, keeps the cursor when a provider cannot be read, takes turns with
another poller, never stops for one provider, and logs counts and codes but never a number, a text or a secret."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mail2sms import metrics
from mail2sms.config import RepliesConfig
from mail2sms.dispatch.reply_poller import ReplyPoller, ReplySourcesOf, reply_rules
from mail2sms.model import InboundSms, ReplyState
from mail2sms.providers.replies import ReplyFetchError, ReplyPage, ReplySupport
from mail2sms.spool import open_spool
from mail2sms.spool.base import ReplyRules, Spool

NOW = 1_800_000_000.0
RULES = ReplyRules(match_window=86400.0, per_number_per_hour=10, unmatched_to="ops@example.org")
SECRET = "hunter2-secret"


class Inbox:
    """A provider keeping replies: pages of `page` after a numeric cursor; acknowledging records what the spool
    held at that moment, so a test sees whether anything was acknowledged before it was stored."""

    def __init__(self, spool: Spool, name: str, replies: list[InboundSms], page: int = 2) -> None:
        self.name = name
        self.replies = ReplySupport(poll=True)
        self.spool = spool
        self.kept = replies
        self.page = page
        self.cursors: list[str | None] = []
        self.acked: list[list[str]] = []
        self.stored_when_acked: list[int] = []
        self.fail_fetch: Exception | None = None
        self.fail_ack = False
        self.endless = False
        self.unread: set[str] | None = None  # set: no cursors, the provider hands every reply not marked read

    async def fetch_replies(self, cursor: str | None) -> ReplyPage:
        self.cursors.append(cursor)
        if self.fail_fetch is not None:
            raise self.fail_fetch
        if self.unread is not None:
            return ReplyPage([r for r in self.kept if r.provider_ref not in self.unread], None, False)
        start = int(cursor) if cursor else 0
        chunk = self.kept[start : start + self.page]
        more = self.endless or start + self.page < len(self.kept)
        return ReplyPage(chunk, str(start + len(chunk)), more)

    async def acknowledge_replies(self, refs: list[str]) -> None:
        self.stored_when_acked.append(sum((await self.spool.reply_counts()).values()))
        self.acked.append(refs)
        if self.fail_ack:
            raise ReplyFetchError("ACK_FAILED", f"mark read refused for key {SECRET}")
        if self.unread is not None:
            self.unread.update(refs)


class Turns:
    """A rate limiter that grants every turn and remembers who asked."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    async def acquire(self, provider: str) -> None:
        self.taken.append(provider)


def sms(i: int, number: str = "96550000001") -> InboundSms:
    return InboundSms(provider_ref=f"ref-{i}", number=number, text=f"secret words {i}", received_at=NOW)


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    """An open SQLite spool."""
    s = open_spool(f"sqlite://{tmp_path}/spool.db")
    await s.open()
    yield s
    await s.close()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def poller(spool: Spool, sources: dict[str, Inbox], max_pages: int = 20) -> tuple[ReplyPoller, Turns, Clock, list[int]]:
    """A poller of `sources` on `spool` with its limiter, its clock and how often it woke the mailer."""
    turns, clock, woken = Turns(), Clock(), [0]

    def wake() -> None:
        woken[0] += 1

    made = ReplyPoller(
        spool,
        ReplySourcesOf(sources),
        turns,
        RULES,
        interval=60.0,
        owner="p1",
        on_new=wake,
        clock=clock,
        max_pages=max_pages,
    )
    return made, turns, clock, woken


async def test_pages_are_stored_before_they_are_acknowledged_and_the_cursor_moves(spool: Spool) -> None:
    """Every page is committed before the provider hears it was taken; pages marked "more" follow at once through
    the limiter; the cursor saved with the last page is where the next turn starts; the mailer is woken."""
    inbox = Inbox(spool, "cellcast", [sms(i) for i in range(5)])
    p, turns, clock, woken = poller(spool, {"cellcast": inbox})
    assert await p.run_once() == 5
    assert inbox.cursors == [None, "2", "4"]
    assert inbox.acked == [["ref-0", "ref-1"], ["ref-2", "ref-3"], ["ref-4"]]
    assert inbox.stored_when_acked == [2, 4, 5]
    assert turns.taken == ["cellcast"] * 6  # each fetch and each acknowledgement waits for a turn
    assert woken[0] == 3
    assert await p.run_once() == 0  # its interval has not passed
    clock.now += 60
    inbox.kept.append(sms(5))
    assert await p.run_once() == 1
    assert inbox.cursors[-1] == "5"
    assert await spool.reply_counts() == {"pending": 6}


async def test_a_provider_that_always_says_more_is_bounded_per_round(spool: Spool) -> None:
    """A provider that keeps saying "more" is asked at most `max_pages` times per round, then again next round."""
    inbox = Inbox(spool, "cellcast", [sms(i) for i in range(10)], page=1)
    inbox.endless = True
    p, _, _, _ = poller(spool, {"cellcast": inbox}, max_pages=3)
    assert await p.run_once() == 3
    assert await p.run_once() == 3
    assert inbox.cursors == [None, "1", "2", "3", "4", "5"]


async def test_a_provider_that_cannot_be_read_keeps_its_cursor_and_the_others_go_on(spool: Spool) -> None:
    """A ReplyFetchError gives the turn back with the cursor unchanged (asked again an interval later), a bug that
    raises anything else does the same, and the other provider is polled all the same; only the code is logged."""
    good = Inbox(spool, "bulksms", [sms(i, "96550000002") for i in range(2)])
    bad = Inbox(spool, "cellcast", [sms(i) for i in range(2)])
    bad.fail_fetch = ReplyFetchError("HTTP_500", f"server error for key {SECRET}")
    p, _, clock, _ = poller(spool, {"cellcast": bad, "bulksms": good})
    with capture_logs() as logs:
        assert await p.run_once() == 2
    assert {
        "event": "replies could not be fetched",
        "provider": "cellcast",
        "code": "HTTP_500",
        "log_level": "warning",
    } in logs
    assert SECRET not in repr(logs)
    clock.now += 30
    bad.fail_fetch = None
    assert await p.run_once() == 0  # the released turn is due an interval after the failure
    clock.now += 30
    bad.fail_fetch = RuntimeError(f"adapter bug {SECRET}")
    with capture_logs() as logs:
        assert await p.run_once() == 0
    assert SECRET not in repr(logs)
    clock.now += 60
    bad.fail_fetch = None
    assert await p.run_once() == 2
    assert bad.cursors == [None, None, None]
    assert await spool.reply_counts() == {"pending": 4}


async def test_a_failed_acknowledgement_fetches_again_and_keeps_each_reply_once(spool: Spool) -> None:
    """When the provider's "mark read" fails (as when the poller dies before it), the replies come again and the
    spool keeps each once: nothing new is counted, the mailer is not woken for them again, only the code is
    logged, and the next acknowledgement takes them off the provider."""
    inbox = Inbox(spool, "cellcast", [sms(0), sms(1)])
    inbox.unread, inbox.fail_ack = set(), True
    p, _, clock, woken = poller(spool, {"cellcast": inbox})
    with capture_logs() as logs:
        assert await p.run_once() == 2
    assert any(e["event"] == "replies could not be marked read" and e["code"] == "ACK_FAILED" for e in logs)
    assert SECRET not in repr(logs)
    clock.now += 60
    inbox.fail_ack = False
    assert await p.run_once() == 0
    assert inbox.acked == [["ref-0", "ref-1"], ["ref-0", "ref-1"]]
    assert inbox.stored_when_acked == [2, 2]
    clock.now += 60
    assert await p.run_once() == 0
    assert len(inbox.acked) == 2  # an empty page is not acknowledged
    assert woken[0] == 1
    assert await spool.reply_counts() == {"pending": 2}


async def test_throttled_and_dropped_replies_are_logged_once_with_their_reason_and_counted(spool: Spool) -> None:
    """A reply kept but never mailed (over the per-number rate, or tied to nothing without unmatched_to) is logged
    once with its reason and counted by state; no log line carries the number or the text."""
    inbox = Inbox(spool, "cellcast", [sms(0), sms(1), sms(2, "96550000003")], page=5)
    rules = ReplyRules(match_window=86400.0, per_number_per_hour=1, unmatched_to=None)
    p, _, clock, woken = poller(spool, {"cellcast": inbox})
    p.rules = rules
    before = {
        s: metrics.REGISTRY.get_sample_value("mail2sms_replies_total", {"provider": "cellcast", "state": s}) or 0.0
        for s in ("dropped", "pending")
    }
    inbox.unread, inbox.fail_ack = set(), True  # the same replies come twice
    with capture_logs() as logs:
        assert await p.run_once() == 3
        clock.now += 60
        assert await p.run_once() == 0
    kept = [e for e in logs if e["event"] == "reply kept, not mailed"]
    assert len(kept) == 3
    assert all(e["state"] == "dropped" and "replies.unmatched_to is not set" in e["why"] for e in kept)
    assert "96550000001" not in repr(logs)
    assert "secret words" not in repr(logs)
    after = metrics.REGISTRY.get_sample_value("mail2sms_replies_total", {"provider": "cellcast", "state": "dropped"})
    assert after == before["dropped"] + 3
    assert woken[0] == 0


async def test_throttled_reply_is_logged_with_the_rate_reason(spool: Spool) -> None:
    """Over `per_number_per_hour`, the reply is THROTTLED and its log line names the rule."""
    inbox = Inbox(spool, "cellcast", [sms(0), sms(1)], page=5)
    p, _, _, woken = poller(spool, {"cellcast": inbox})
    p.rules = ReplyRules(match_window=86400.0, per_number_per_hour=1, unmatched_to="ops@example.org")
    with capture_logs() as logs:
        assert await p.run_once() == 2
    [kept] = [e for e in logs if e["event"] == "reply kept, not mailed"]
    assert kept["state"] == ReplyState.THROTTLED.value
    assert "replies.per_number_per_hour" in kept["why"]
    assert woken[0] == 1


async def test_two_pollers_take_turns_on_one_provider(tmp_path: Path) -> None:
    """Two processes' pollers on one spool, polling at the same moment: one fetches the turn, the other does not
    ask the provider at all; every reply is stored once."""
    a, b = open_spool(f"sqlite://{tmp_path}/s.db"), open_spool(f"sqlite://{tmp_path}/s.db")
    await a.open()
    await b.open()
    try:
        inbox = Inbox(a, "cellcast", [sms(i) for i in range(3)], page=5)
        pa, _, _, _ = poller(a, {"cellcast": inbox})
        pb, _, _, _ = poller(b, {"cellcast": inbox})
        pb.owner = "p2"
        found = await asyncio.gather(pa.run_once(), pb.run_once())
        assert sorted(found) == [0, 3]
        assert inbox.cursors == [None]
    finally:
        await a.close()
        await b.close()


async def test_sources_follow_the_providers_and_the_switch(spool: Spool) -> None:
    """ReplySourcesOf lists providers with a replies API that are enabled, read at each look; reply_rules turns
    `[replies]` into the spool's rules (an empty unmatched_to drops)."""
    inbox = Inbox(spool, "cellcast", [])
    providers: dict[str, object] = {"cellcast": inbox, "kapow": object()}
    off: set[str] = set()
    sources = ReplySourcesOf(providers, lambda name: name not in off)
    assert list(sources) == ["cellcast"]
    off.add("cellcast")
    assert list(sources) == []
    assert sources.get("cellcast") is None
    assert reply_rules(RepliesConfig()).unmatched_to is None
    assert reply_rules(RepliesConfig(unmatched_to="ops@example.org", per_number_per_hour=3)) == ReplyRules(
        7 * 86400.0, 3, "ops@example.org"
    )


async def test_run_ends_when_stopped(spool: Spool) -> None:
    """`run` polls until its stop event is set and then returns."""
    inbox = Inbox(spool, "cellcast", [sms(0)])
    p, _, _, _ = poller(spool, {"cellcast": inbox})
    stored, stop = asyncio.Event(), asyncio.Event()
    p.on_new = stored.set
    task = asyncio.create_task(p.run(stop, idle=0.01))
    await asyncio.wait_for(stored.wait(), 30)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert await spool.reply_counts() == {"pending": 1}
