"""`mail2sms queue` as an admin runs it: list, show, retry, cancel, delete and purge against a real spool (SQLite, and
PostgreSQL for list, show and purge), text and JSON output read back."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from mail2sms.model import InboundSms, Job, JobState, ReplyState, ReportState, SmsOptions, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate, ReplyRules
from tests.harness import write_config
from tests.integration.test_cli import run

DAY = 86400.0
LATER = "2030-01-02T09:00:00+00:00"  # a sendtime mail2sms holds the SMS for


def config_for(tmp_path: Path, url: str, retention: str = "30d") -> Path:
    """A config file whose spool is `url`."""
    path, _ = write_config(tmp_path, "")
    text = path.read_text().replace(f'url = "sqlite://{tmp_path}/spool.db"',
                                    f'url = "{url}"\nretention = "{retention}"', 1)
    path.write_text(text)
    return path


def job(number: str, text: str = "hello", **kw: object) -> Job:
    return Job(number=number, text=text, provider="kwt", sender="KWT-SMS", **kw)  # type: ignore[arg-type]


@dataclass
class Spooled:
    """Ids of what `populate` stored."""

    live: str  # one SMS refused (ERR006), one scheduled for LATER
    retrying: str  # one SMS waiting a day for its retry
    final: str  # sent long ago, report delivered
    recent: str  # sent just now, report delivered


async def populate(url: str) -> Spooled:
    """Store four submissions through the spool's own transitions, as the dispatcher and reporter leave them."""
    spool = open_spool(url)
    await spool.open()
    now = time.time()
    try:
        async def commit(jobs: list[Job], at: float, tag: str) -> Submission:
            sub = Submission(envelope_from="alice@example.org", recipients=[f"{j.number}@sms.test" for j in jobs],
                             jobs=jobs, route="kwt", subject="s", report_to="alice@example.org", received_at=at)
            assert not (await spool.commit(sub, [f"{tag}:{j.number}" for j in jobs], DAY)).duplicate
            return sub

        async def settle(sub: Submission, updates: dict[str, tuple[JobState, str | None, str | None]],
                         at: float) -> None:
            claimed = await spool.claim("cli-test", at, 100, 60.0)
            ids = [j.id for j in claimed if j.submission_id == sub.id and j.number in updates]
            await spool.mark_sending(ids, at, owner="cli-test")
            by_id = {j.id: j.number for j in claimed}
            await spool.record([JobUpdate(i, updates[by_id[i]][0], 1, next_attempt_at=at + DAY,
                                          provider_id=updates[by_id[i]][1], code=updates[by_id[i]][2],
                                          error="ERR006: not a valid number" if updates[by_id[i]][2] else None,
                                          detail="accepted for 1 of 1")
                                for i in ids], at, owner="cli-test")
            await spool.release_reports([sub.id], "cli-test")

        old = now - 10 * DAY
        final = await commit([job("96550000301")], old, "final")
        await settle(final, {"96550000301": (JobState.SENT, "OK-301", None)}, old)
        assert await spool.report_done(final.id, ReportState.SENT, 0.0, old)

        live = await commit([job("96550000101"), job("96550000102", "later", options=SmsOptions(sendtime=LATER),
                                                    state=JobState.SCHEDULED, next_attempt_at=1_893_574_800.0)],
                            now, "live")
        await settle(live, {"96550000101": (JobState.REJECTED, None, "ERR006")}, now)

        retrying = await commit([job("96550000201")], now, "retrying")
        await settle(retrying, {"96550000201": (JobState.QUEUED, None, None)}, now)

        recent = await commit([job("96550000401")], now, "recent")
        await settle(recent, {"96550000401": (JobState.SENT, "OK-401", None)}, now)
        assert await spool.report_done(recent.id, ReportState.SENT, 0.0, now)
        return Spooled(live.id, retrying.id, final.id, recent.id)
    finally:
        await spool.close()


def jobs_of(url: str, submission_id: str) -> list[Job]:
    """The submission's jobs as the spool holds them now."""
    async def read() -> list[Job]:
        spool = open_spool(url)
        await spool.open()
        try:
            found = await spool.get(submission_id)
            assert found is not None
            return found[1]
        finally:
            await spool.close()
    return asyncio.run(read())


def test_list_and_show_in_text_and_json(tmp_path: Path, spool_url: str) -> None:
    """queue list shows live submissions, --state picks by SMS state, and show gives each SMS's text, schedule,
    attempts, next attempt, provider id, code and detail; the JSON parses back to the same facts."""
    ids = asyncio.run(populate(spool_url))
    path = config_for(tmp_path, spool_url)

    listed = run("queue", "list", "--json", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    entries = {e["id"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {ids.live, ids.retrying}
    assert entries[ids.live]["states"] == {"rejected": 1, "scheduled": 1}
    assert entries[ids.live]["total"] == 2
    assert entries[ids.live]["report"] == "waiting"
    text = run("queue", "list", "--config", str(path)).stdout
    assert ids.live in text
    assert ids.final not in text
    assert "rejected 1, scheduled 1" in text

    def state(word: str) -> set[str]:
        out = run("queue", "list", "--state", word, "--json", "--config", str(path))
        assert out.returncode == 0, out.stderr
        return {e["id"] for e in json.loads(out.stdout)}

    assert state("failed") == {ids.live}
    assert state("queued") == {ids.live, ids.retrying}
    assert state("sending") == set()
    assert state("unknown") == set()
    assert state("expired") == set()
    assert state("all") == {ids.live, ids.retrying, ids.final, ids.recent}
    assert "no submission has an SMS expired" in run("queue", "list", "--state", "expired", "-c", str(path)).stdout

    shown = run("queue", "show", ids.live, "--json", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["id"] == ids.live
    assert data["from"] == "alice@example.org"
    refused, later = data["jobs"]
    assert (refused["number"], refused["state"], refused["code"], refused["attempts"]) == \
        ("96550000101", "rejected", "ERR006", 1)
    assert refused["next_attempt_at"] is None  # final: no next attempt
    assert (later["number"], later["text"], later["state"], later["sendtime"]) == \
        ("96550000102", "later", "scheduled", LATER)
    assert later["next_attempt_at"] == 1_893_574_800.0
    assert later["attempts"] == 0
    sent = json.loads(run("queue", "show", ids.final, "--json", "-c", str(path)).stdout)["jobs"][0]
    assert (sent["state"], sent["provider_id"], sent["detail"]) == ("sent", "OK-301", "accepted for 1 of 1")

    text = run("queue", "show", ids.live, "--config", str(path)).stdout
    for fact in ("+96550000101  rejected", "code      ERR006", "'later'", f"schedule  {LATER}",
                 "next 2030-01-02 09:00:00 UTC"):
        assert fact in text, (fact, text)


def test_an_unknown_id_is_exit_1_for_every_command(tmp_path: Path) -> None:
    """show, retry, cancel and delete of an id the spool does not hold each exit 1 naming it."""
    path = config_for(tmp_path, f"sqlite://{tmp_path}/spool.db")
    for command in (["show"], ["show", "--json"], ["retry"], ["retry", "--now"], ["cancel"], ["delete"]):
        result = run("queue", command[0], "NOSUCHID", *command[1:], "--config", str(path))
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "no submission NOSUCHID" in result.stderr


def test_retry_keeps_the_sendtime_unless_now(tmp_path: Path) -> None:
    """retry makes a waiting retry due at once but leaves a scheduled SMS to its sendtime, saying so; --now sends it;
    a submission with nothing to retry gets the reason and exit 1."""
    url = f"sqlite://{tmp_path}/spool.db"
    ids = asyncio.run(populate(url))
    path = config_for(tmp_path, url)

    before = time.time()
    moved = run("queue", "retry", ids.retrying, "--config", str(path))
    assert moved.returncode == 0, moved
    assert "1 SMS" in moved.stdout, moved
    assert jobs_of(url, ids.retrying)[0].next_attempt_at <= time.time()

    held = run("queue", "retry", ids.live, "--config", str(path))
    assert held.returncode == 1
    assert "nothing retried" in held.stdout
    assert "scheduled for 2030-01-02 09:00:00 UTC" in held.stdout
    assert "--now" in held.stdout
    assert "rejected 1" in held.stdout
    assert jobs_of(url, ids.live)[1].next_attempt_at == 1_893_574_800.0

    forced = run("queue", "retry", ids.live, "--now", "--config", str(path))
    assert forced.returncode == 0, forced
    later = jobs_of(url, ids.live)[1]
    assert later.state == JobState.QUEUED
    assert before <= later.next_attempt_at <= time.time()

    final = run("queue", "retry", ids.final, "--config", str(path))
    assert final.returncode == 1
    assert "sent 1" in final.stdout
    assert "never sent again" in final.stdout


def test_cancel_then_delete(tmp_path: Path) -> None:
    """delete refuses a submission with open SMS and points to cancel; cancel ends them; delete then removes it."""
    url = f"sqlite://{tmp_path}/spool.db"
    ids = asyncio.run(populate(url))
    path = config_for(tmp_path, url)

    refused = run("queue", "delete", ids.live, "--config", str(path))
    assert refused.returncode == 1
    assert f"mail2sms queue cancel {ids.live}" in refused.stderr
    assert "not final (1 SMS" in refused.stderr

    cancelled = run("queue", "cancel", ids.live, "--config", str(path))
    assert cancelled.returncode == 0, cancelled
    assert "1 SMS" in cancelled.stdout, cancelled
    assert [j.state for j in jobs_of(url, ids.live)] == [JobState.REJECTED, JobState.CANCELLED]
    again = run("queue", "cancel", ids.live, "--config", str(path))
    assert again.returncode == 1
    assert "every SMS is final already" in again.stdout

    deleted = run("queue", "delete", ids.live, "--config", str(path))
    assert deleted.returncode == 0, deleted
    assert "2 SMS" in deleted.stdout, deleted
    assert run("queue", "show", ids.live, "--config", str(path)).returncode == 1
    assert run("queue", "show", ids.retrying, "--config", str(path)).returncode == 0


async def store_replies(url: str) -> None:
    """Two SMS replies tied to nothing, so kept as dropped: one taken ten days ago, one now."""
    spool = open_spool(url)
    await spool.open()
    rules = ReplyRules(match_window=DAY, per_number_per_hour=10, unmatched_to=None)
    try:
        for ref, at in (("old", time.time() - 10 * DAY), ("new", time.time())):
            stored = await spool.store_replies("cellcast", [InboundSms(ref, "61400000001", "ok")], rules, at)
            assert stored.states == {ref: ReplyState.DROPPED}
    finally:
        await spool.close()


def test_show_lists_the_sms_replies_of_each_sms(tmp_path: Path, spool_url: str) -> None:
    """queue show prints, under the SMS it answers, each SMS reply with its text and where it went (issue 17), and
    the JSON carries the same per SMS."""
    ids = asyncio.run(populate(spool_url))
    path = config_for(tmp_path, spool_url)

    async def reply() -> None:
        spool = open_spool(spool_url)
        await spool.open()
        try:
            rules = ReplyRules(match_window=DAY, per_number_per_hour=10, unmatched_to=None)
            answer = InboundSms("r-1", "96550000401", "ACK, on my way", in_reply_to="OK-401")
            assert (await spool.store_replies("kwt", [answer], rules, time.time())).states == {
                "r-1": ReplyState.PENDING}
        finally:
            await spool.close()

    asyncio.run(reply())
    shown = run("queue", "show", ids.recent, "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "reply     " in shown.stdout, shown.stdout
    assert "'ACK, on my way': to be mailed to alice@example.org (linked)" in shown.stdout, shown.stdout
    data = json.loads(run("queue", "show", ids.recent, "--json", "-c", str(path)).stdout)
    [replies] = [j["replies"] for j in data["jobs"]]
    assert [(r["text"], r["state"], r["match"], r["mail_to"]) for r in replies] == [
        ("ACK, on my way", "pending", "linked", "alice@example.org")]
    assert "reply " not in run("queue", "show", ids.final, "-c", str(path)).stdout


def test_purge_by_hand_with_dry_run(tmp_path: Path, spool_url: str) -> None:
    """purge --dry-run counts what is older than --older-than and removes nothing; purge removes exactly the settled
    submissions (and SMS replies) that old, keeping recent and live ones, and says how many."""
    ids = asyncio.run(populate(spool_url))
    path = config_for(tmp_path, spool_url)

    dry = run("queue", "purge", "--older-than", "7d", "--dry-run", "--config", str(path))
    assert dry.returncode == 0, dry.stderr
    assert "would purge 1 submissions (1 SMS)" in dry.stdout
    assert run("queue", "show", ids.final, "--config", str(path)).returncode == 0

    kept = run("queue", "purge", "--config", str(path))  # spool.retention = 30d: nothing that old
    assert kept.returncode == 0, kept
    assert "purged 0 submissions" in kept.stdout, kept

    asyncio.run(store_replies(spool_url))
    purged = run("queue", "purge", "--older-than", "7d", "--config", str(path))
    assert purged.returncode == 0, purged.stderr
    assert "purged 1 submissions (1 SMS) and 1 SMS replies" in purged.stdout, purged.stdout
    assert run("queue", "show", ids.final, "--config", str(path)).returncode == 1
    for still in (ids.live, ids.retrying, ids.recent):
        assert run("queue", "show", still, "--config", str(path)).returncode == 0
