"""The replier (issue 17): a claimed reply is mailed once (also when a crash came between delivery and the spool's
record), temporary refusals try again later, permanent ones drop it with a reason, and it never mails a reply
whose claim it lost. Deliveries go to a real maildir or a real SMTP smarthost on 127.0.0.1; the spool side is
the contract's two calls, kept in memory (tests/integration/test_replies_e2e.py drives the real spool)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from mail2sms import metrics
from mail2sms.config import ReportsConfig, RouteConfig
from mail2sms.model import Job, JobState, ReplyMatch, ReplyState, Submission
from mail2sms.report.replier import Replier, key
from mail2sms.report.reply_mail import address_routes, compose_reply
from mail2sms.report.send import INDEX_DIR, ReportSender
from mail2sms.spool.base import DueReply
from tests.integration.test_report_send import Recorder, smarthost, via_smarthost

__all__ = ["smarthost"]  # the fixture, used by name below

ROUTES = address_routes([RouteConfig(match="*@sms.example.org", format="address", provider="cellcast")])


@dataclass
class Mailbox:
    """Due replies and what the replier recorded for each (the ReplyStore's two mailing calls)."""

    due: list[DueReply] = field(default_factory=list)
    done: dict[str, tuple[ReplyState, float, str]] = field(default_factory=dict)
    holds: bool = True  # False: the claim was lost to another process before `reply_done`

    async def claim_replies(self, owner: str, now: float, limit: int, lease: float) -> list[DueReply]:
        claimed, self.due = self.due[:limit], self.due[limit:]
        return claimed

    async def reply_done(self, reply_id: str, owner: str, state: ReplyState, next_at: float, why: str = "") -> bool:
        if self.holds:
            self.done[reply_id] = (state, next_at, why)
        return self.holds


def reply(n: int = 1, **kw: object) -> DueReply:
    job = Job(
        number="96550000001",
        text="Door open",
        provider="cellcast",
        id=f"job-{n}",
        submission_id=f"S{n}",
        state=JobState.SENT,
        provider_id=f"cc-{n}",
    )
    sub = Submission(
        envelope_from="alice@example.org",
        recipients=["+96550000001@sms.example.org"],
        jobs=[job],
        route="*@sms.example.org",
        message_id=f"<orig-{n}@example.org>",
        subject="Door",
        report_to="alice@example.org",
        id=f"S{n}",
    )
    base = DueReply(
        id=f"R{n}",
        provider="cellcast",
        number="96550000001",
        text=f"ACK {n}",
        received_at=1e9,
        fetched_at=1e9,
        match=ReplyMatch.LINKED,
        mail_to="alice@example.org",
        attempts=0,
        submission=sub,
        job=job,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def replier(box: Mailbox, sender: ReportSender) -> Replier:
    return Replier(
        box,
        sender,
        from_addr="mail2sms@sms.test",
        hostname="sms.test",
        routes=lambda: ROUTES,
        outcome_message_id=lambda sid: f"<{sid}.report@sms.test>",
        owner="me",
    )


def in_new(maildir: Path) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((maildir / "new").iterdir()):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        found.append(parsed)
    return found


async def test_a_due_reply_is_mailed_and_recorded(tmp_path: Path) -> None:
    """A claimed reply lands in the maildir with its fixed Message-ID, is recorded MAILED and leaves no index."""
    box = Mailbox([reply(1), reply(2)])
    sender = ReportSender(ReportsConfig(maildir=str(tmp_path)))
    assert await replier(box, sender).tick() == 2
    assert sorted(str(m["Message-ID"]) for m in in_new(tmp_path)) == ["<R1.reply@sms.test>", "<R2.reply@sms.test>"]
    assert {rid: state for rid, (state, _, _) in box.done.items()} == {"R1": ReplyState.MAILED, "R2": ReplyState.MAILED}
    assert list((tmp_path / INDEX_DIR).iterdir()) == []


def mailed_count() -> float:
    return (
        metrics.REGISTRY.get_sample_value("mail2sms_replies_total", {"provider": "cellcast", "state": "mailed"}) or 0.0
    )


async def test_a_mailed_reply_is_counted_once(tmp_path: Path) -> None:
    """mail2sms_replies_total{state="mailed"} counts a reply when the spool recorded it mailed, not a lost claim."""
    sender = ReportSender(ReportsConfig(maildir=str(tmp_path)))
    before = mailed_count()
    await replier(Mailbox([reply(1)]), sender).tick()
    await replier(Mailbox([reply(2)], holds=False), sender).tick()
    assert mailed_count() - before == 1


async def test_delivered_before_a_crash_is_not_mailed_twice(tmp_path: Path) -> None:
    """A reply written to the maildir by a process killed before the spool recorded it is found, not doubled."""
    due = reply(1)
    sender = ReportSender(ReportsConfig(maildir=str(tmp_path)))
    first = compose_reply(
        due,
        from_addr="mail2sms@sms.test",
        hostname="sms.test",
        routes=ROUTES,
        outcome_message_id="<S1.report@sms.test>",
    )
    await sender.deliver(first, due.mail_to, key=key(due.id))  # the killed process got this far
    box = Mailbox([replace(due, attempts=1)])
    await replier(box, sender).tick()
    assert [str(m["Message-ID"]) for m in in_new(tmp_path)] == ["<R1.reply@sms.test>"]
    assert box.done["R1"][0] is ReplyState.MAILED


async def test_a_lost_claim_keeps_the_index_for_the_holder(tmp_path: Path) -> None:
    """When another process holds the reply by the time it is recorded, its index entry stays so the holder's
    delivery finds it instead of writing a second copy."""
    box = Mailbox([reply(1)], holds=False)
    sender = ReportSender(ReportsConfig(maildir=str(tmp_path)))
    await replier(box, sender).tick()
    assert (tmp_path / INDEX_DIR / key("R1")).exists()
    await replier(Mailbox([reply(1)]), sender).tick()
    assert len(in_new(tmp_path)) == 1


async def test_temporary_refusal_tries_again_later(smarthost: tuple[Recorder, int]) -> None:
    """A 451 from the smarthost keeps the reply PENDING, due again after a backoff."""
    recorder, port = smarthost
    recorder.data_reply = "451 4.3.0 try again later"
    box = Mailbox([reply(1)])
    before = time.time()
    await replier(box, via_smarthost(port)).tick()
    state, next_at, why = box.done["R1"]
    assert state is ReplyState.PENDING
    assert next_at > before
    assert why == "mail delivery deferred"


async def test_permanent_refusal_drops_with_a_reason(smarthost: tuple[Recorder, int]) -> None:
    """A 550 from the smarthost drops the reply, saying the mail was refused for good."""
    recorder, port = smarthost
    recorder.rcpt_reply = "550 5.1.1 no such user"
    box = Mailbox([reply(1)])
    await replier(box, via_smarthost(port)).tick()
    assert box.done["R1"][0] is ReplyState.DROPPED
    assert box.done["R1"][2] == "the mail was refused for good"
    assert recorder.messages == []


async def test_too_many_tries_drop(smarthost: tuple[Recorder, int]) -> None:
    """A reply that stays undeliverable through the last allowed try is dropped, not retried for ever."""
    recorder, port = smarthost
    recorder.data_reply = "451 4.3.0 try again later"
    box = Mailbox([reply(1, attempts=29)])
    await replier(box, via_smarthost(port)).tick()
    assert box.done["R1"][0] is ReplyState.DROPPED
    assert "30 tries" in box.done["R1"][2]


async def test_smarthost_copy_is_threaded_from_the_number_with_a_null_sender(smarthost: tuple[Recorder, int]) -> None:
    """Through the smarthost the reply goes with MAIL FROM <> and From the number's address."""
    recorder, port = smarthost
    box = Mailbox([reply(1)])
    await replier(box, via_smarthost(port)).tick()
    assert recorder.mail_from == ["<>"]
    sent = email.message_from_bytes(recorder.messages[0], policy=email.policy.default)
    assert sent["From"].addresses[0].addr_spec == "+96550000001@sms.example.org"
    assert sent["In-Reply-To"] == "<orig-1@example.org>"


async def test_never_to_an_sms_route_through_the_smarthost(smarthost: tuple[Recorder, int]) -> None:
    """A reply whose destination is one of the gateway's own SMS routes is dropped, never sent to the smarthost."""
    recorder, port = smarthost
    sender = via_smarthost(port)
    sender.is_sms_address = lambda address: address.endswith("@sms.example.org")
    box = Mailbox([reply(1, mail_to="+96550000009@sms.example.org")])
    await replier(box, sender).tick()
    assert box.done["R1"][0] is ReplyState.DROPPED
    assert recorder.messages == []


@pytest.mark.parametrize("wake", [True, False])
async def test_running_replier_mails_what_is_stored_later_and_stops(tmp_path: Path, wake: bool) -> None:
    """A running replier mails a reply stored while it waits (woken, or at its next look), and stops cleanly."""
    box = Mailbox()
    sender = ReportSender(ReportsConfig(maildir=str(tmp_path)))
    running = replier(box, sender)
    running.poll_interval = 0.05 if not wake else 3600.0
    task = asyncio.create_task(running.run())
    box.due.append(reply(1))
    if wake:
        running.wake()
    async with asyncio.timeout(60):  # a bound against a hang, not a timing assertion
        while "R1" not in box.done:
            await asyncio.sleep(0.01)
    await running.stop(5.0)
    await asyncio.wait_for(task, 60)
    assert box.done["R1"][0] is ReplyState.MAILED
