"""Dispatcher faults (issue 13, items 2-5), each reproduced against a real server: a spool locked while a request is
about to leave, a result from a node that lost its lease, a breaker opened with claimed work, a hanging provider
beside a healthy one, and SIGTERM in the middle of the load.

Fakes answer as KwtSMS does; `GatedKwtSms` only holds its answers until the test lets them go, so that "while a
request is in flight" is a state the test waits for, not a moment it guesses.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms import config as configmod
from mail2sms.app import App
from mail2sms.dispatch.claims import ROUNDS
from mail2sms.model import Job, JobState, Submission
from mail2sms.spool import open_spool
from mail2sms.spool.base import JobUpdate, LeaseLost
from mail2sms.spool.sqlite import SqliteSpool
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import RecordedRequest, Reply
from tests.harness import (
    ProcessServer,
    message,
    reports,
    send,
    thread_server,
    wait_until,
    write_config,
)

PROVIDER = """
[providers.{name}]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
rate = 500
timeout = "{timeout}"
concurrency = {concurrency}

[[routes]]
match = "*@{name}.test"
format = "{format}"
provider = "{name}"
region = "KW"
"""


def provider(name: str, url: str, *, concurrency: int = 4, timeout: str = "30s", fmt: str = "address") -> str:
    return PROVIDER.format(name=name, url=url, concurrency=concurrency, timeout=timeout, format=fmt)


def with_dispatch(path: Path, extra: str) -> None:
    """Add keys to the harness's `[dispatch]` table."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("poll_interval = 0.2\n", "poll_interval = 0.2\n" + extra, 1), encoding="utf-8")


def kwt_fake() -> FakeKwtSms:
    return FakeKwtSms(accounts={"user": ("pass", 1_000_000.0)}, same_number_interval=0)


class GatedKwtSms(FakeKwtSms):
    """KwtSMS that holds every `send/` request (recorded on arrival) until `open_gate()`, then answers as KwtSMS."""

    def __init__(self) -> None:
        super().__init__(accounts={"user": ("pass", 1_000_000.0)}, same_number_interval=0)
        self.gate_open = False

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path.endswith("/send/"):
            # Called under the fake's lock; waiting on its condition releases the lock meanwhile.
            self._changed.wait_for(lambda: self.gate_open or self._stopping.is_set())
        return super().handle(request)

    def open_gate(self) -> None:
        with self._changed:
            self.gate_open = True
            self._changed.notify_all()


def jobs(db: Path) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {r["number"]: r for r in conn.execute("SELECT * FROM jobs")}


@pytest.fixture
def gated() -> Iterator[GatedKwtSms]:
    with GatedKwtSms() as fake:
        try:
            yield fake
        finally:
            fake.open_gate()


def test_spool_locked_at_mark_sending_is_retried_never_unknown(tmp_path: Path, gated: GatedKwtSms) -> None:
    """Another process holds the SQLite write lock (BEGIN IMMEDIATE) across `mark_sending`: no byte leaves, the SMS
    goes back to `queued` and is sent once later (never "may have been sent"); an answer that arrives meanwhile is
    recorded after retries."""
    with kwt_fake() as kwt:
        path, _ = write_config(tmp_path, provider("slow", gated.url) + provider("kwt", kwt.url))
        with_dispatch(path, "concurrency = 1\n")  # one request slot: the kwt batch waits for the slow one's
        config = configmod.load(str(path))
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def boot() -> App:
            app = App(config)
            assert isinstance(app.spool, SqliteSpool)
            app.spool._busy_timeout = 0.3  # a held lock fails a write in 0.3 s instead of 30 s
            await app.start()
            return app

        app = asyncio.run_coroutine_threadsafe(boot(), loop).result(30)
        port = app.smtp_ports[0]
        db = tmp_path / "spool.db"
        try:
            assert send(port, message("96550000001@slow.test", "first"))[0] == 250
            gated.wait_for(1, timeout=120)  # in flight, holding the only request slot
            assert send(port, message("96550000002@kwt.test", "second"))[0] == 250
            wait_until(lambda: jobs(db)["96550000002"]["lease_owner"] is not None, timeout=120)  # claimed, waiting
            lock = sqlite3.connect(db, timeout=30, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            try:
                gated.open_gate()  # the slot frees: the kwt batch's request reaches mark_sending, which fails
                wait_until(lambda: app.dispatcher.stats.held["spool"] >= 1, timeout=120)
                assert app.dispatcher.stats.record_retries >= 1  # the slow answer waits to be recorded too
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            wait_until(lambda: {r["state"] for r in jobs(db).values()} == {"sent"}, timeout=120)
            wait_until(lambda: len(reports(tmp_path / "reports")) == 2, timeout=120)
        finally:
            asyncio.run_coroutine_threadsafe(app.stop(5.0), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
        assert [s.number for s in kwt.sent] == ["96550000002"]  # one request, after the lock was gone
        assert len(kwt.requests) == 1
        assert [s.number for s in gated.sent] == ["96550000001"]
        subjects = [str(r["Subject"]) for r in reports(tmp_path / "reports")]
        assert all(s.startswith("SMS sent") and "may have been" not in s for s in subjects), subjects


async def test_result_from_a_node_that_lost_the_lease_is_refused(spool_url: str) -> None:
    """Node A marks a job sending, its lease runs out, node B recovers, sends and records `sent`: A's late `unknown`
    is refused by the spool (both backends), and the job stays `sent`."""
    now = 1_800_000_000.0
    a, b = open_spool(spool_url), open_spool(spool_url)
    await a.open()
    await b.open()
    try:
        sub = Submission(
            "a@b.c", ["x@sms.test"], [Job(number="96550000001", text="hi", provider="p")], "r", received_at=now
        )
        await a.commit(sub, ["k"], 86400)
        [job] = await a.claim("node-a:1:1", now, 10, 60.0)
        await a.mark_sending([job.id], now, "node-a:1:1")
        assert await b.recover({"p"}, now + 61) == (1, 0)  # idempotent provider: back to queued for anyone
        [again] = await b.claim("node-b:1:1", now + 62, 10, 60.0)
        await b.mark_sending([again.id], now + 62, "node-b:1:1")
        await b.record([JobUpdate(job.id, JobState.SENT, 1, provider_id="id-b")], now + 63, owner="node-b:1:1")
        with pytest.raises(LeaseLost):
            await a.record(
                [JobUpdate(job.id, JobState.UNKNOWN, 1, code="ReadTimeout")], now + 63.012, owner="node-a:1:1"
            )
        found = await a.get(sub.id)
        assert found is not None
        assert [(j.state, j.provider_id) for j in found[1]] == [(JobState.SENT, "id-b")]
    finally:
        await a.close()
        await b.close()


def test_open_breaker_holds_claimed_batches(tmp_path: Path) -> None:
    """A CSV of four texts is claimed as four requests (one worker's claim: ROUNDS of them); the first fails (503)
    and opens the breaker: the other three go back to `queued` with the pause as their next attempt instead of being
    fired at the failing provider."""
    with kwt_fake() as kwt:
        kwt.fail_next(503, "down")
        path, _ = write_config(tmp_path, provider("csv", kwt.url, concurrency=1, fmt="csv"))
        with_dispatch(path, 'breaker_failures = 1\nbreaker_pause = "60s"\n')
        db = tmp_path / "spool.db"
        body = "".join(f"9655000001{i},text number {i}\n" for i in range(ROUNDS))
        with thread_server(path) as server:
            assert send(server.port, message("list@csv.test", body))[0] == 250

            def held_back() -> bool:
                rows = jobs(db).values()
                return (
                    len(rows) == ROUNDS
                    and all(r["state"] == "queued" and r["lease_owner"] is None for r in rows)
                    and sum(1 for r in rows if r["attempts"] == 0) == ROUNDS - 1
                )

            wait_until(held_back, timeout=120)
            assert server.app is not None
            assert server.app.dispatcher.stats.held["paused"] == ROUNDS - 1
            rows = jobs(db)
            assert len(kwt.requests) == 1  # only the request that failed
            waiting = [r for r in rows.values() if r["attempts"] == 0]
            failed = next(r for r in rows.values() if r["attempts"] == 1)
            assert all(r["next_attempt_at"] >= failed["updated_at"] + 50 for r in waiting)  # the 60 s pause


def test_hanging_provider_does_not_starve_a_healthy_one(tmp_path: Path, gated: GatedKwtSms) -> None:
    """Ten SMS for a provider that hangs fill only its own four slots: SMS for a healthy provider leave meanwhile,
    and are reported sent while every request to the hanging one is still unanswered."""
    with kwt_fake() as kwt:
        path, _ = write_config(
            tmp_path, provider("hang", gated.url, concurrency=4) + provider("kwt", kwt.url, concurrency=4)
        )
        with_dispatch(path, "concurrency = 8\n")  # the old shared cap: ten hanging requests would have taken it all
        with thread_server(path) as server:
            for i in range(10):
                assert send(server.port, message(f"9655100000{i}@hang.test", f"hang {i}"))[0] == 250
            gated.wait_for(4, timeout=120)
            for i in range(5):
                assert send(server.port, message(f"9655200000{i}@kwt.test", f"healthy {i}"))[0] == 250
            wait_until(lambda: len(kwt.sent) == 5, timeout=120)
            wait_until(lambda: len(reports(tmp_path / "reports")) == 5, timeout=120)
            assert not gated.sent  # not one hanging request has been answered yet
            assert len(gated.requests) == 4  # its own concurrency, no more
            assert all(str(r["Subject"]).startswith("SMS sent") for r in reports(tmp_path / "reports"))
            gated.stop()  # drop the held requests before the server stops


@pytest.mark.slow
def test_sigterm_mid_load_starts_no_request_and_loses_no_answer(tmp_path: Path, gated: GatedKwtSms) -> None:
    """SIGTERM while two requests hang and 28 SMS are claimed or queued: no request starts after the signal, the two
    answers that arrive within the deadline are recorded `sent`, the rest go back to `queued` and leave once after
    a restart."""
    path, port = write_config(tmp_path, provider("kwt", gated.url, concurrency=2))
    text = path.read_text().replace('hostname = "sms.test"', 'hostname = "sms.test"\nshutdown_deadline = "20s"')
    path.write_text(text)
    db = tmp_path / "spool.db"
    server = ProcessServer(path, port, tmp_path / "server.log").start()
    try:
        for i in range(30):
            assert send(port, message(f"965530000{i:02d}@kwt.test", f"load {i}"))[0] == 250
        gated.wait_for(2, timeout=120)  # both slots busy; the other 28 are claimed or queued
        # One claim's worth is held: more than half of 2 workers × ROUNDS (it claims again only below half), the
        # rest stays queued for other workers (dispatch/claims.py).
        wait_until(lambda: sum(1 for r in jobs(db).values() if r["lease_owner"]) > ROUNDS, timeout=120)
        assert server.proc is not None
        server.proc.send_signal(15)
        wait_until(lambda: "shutting down" in (tmp_path / "server.log").read_text(), timeout=120)
        at_signal = len(gated.requests)
        gated.open_gate()  # the two in-flight answers arrive within the deadline
        assert server.proc.wait(60) == 0
        assert at_signal == 2
        assert len(gated.requests) == 2  # nothing started after the signal
        rows = jobs(db)
        answered = {s.number for s in gated.sent}
        assert len(answered) == 2
        assert {n for n, r in rows.items() if r["state"] == "sent"} == answered
        assert all(
            r["state"] == "queued" and r["lease_owner"] is None and r["attempts"] == 0
            for n, r in rows.items()
            if n not in answered
        )
        server.start()
        wait_until(lambda: len(gated.sent) == 30, timeout=60)
    finally:
        server.terminate()
    numbers = [s.number for s in gated.sent]
    assert len(numbers) == len(set(numbers)) == 30
    assert {r["state"] for r in jobs(db).values()} == {"sent"}


def test_request_unanswered_at_the_deadline_is_cut_and_never_repeated(tmp_path: Path, gated: GatedKwtSms) -> None:
    """SIGTERM while a request hangs past `shutdown_deadline`: the process exits, only that job is left `sending`
    (the rest `queued`), and after the restart it is `unknown` ("may have been sent"), never sent a second time."""
    path, port = write_config(tmp_path, provider("kwt", gated.url, concurrency=1))
    text = path.read_text().replace('hostname = "sms.test"', 'hostname = "sms.test"\nshutdown_deadline = "1s"')
    path.write_text(text)
    db = tmp_path / "spool.db"
    server = ProcessServer(path, port, tmp_path / "server.log").start()
    try:
        for i in range(3):
            assert send(port, message(f"965540000{i:02d}@kwt.test", f"cut {i}"))[0] == 250
        [first] = gated.wait_for(1, timeout=120)
        assert server.terminate(timeout=60) == 0  # the deadline passes with the request unanswered
        rows = jobs(db)
        cut = next(n for n, r in rows.items() if r["state"] == "sending")
        assert first.param("mobile") == cut or cut.encode() in first.body
        assert sorted(r["state"] for r in rows.values()) == ["queued", "queued", "sending"]
        gated.open_gate()
        server.start()
        wait_until(lambda: sorted(r["state"] for r in jobs(db).values()) == ["sent", "sent", "unknown"], timeout=60)
    finally:
        server.terminate()
    assert jobs(db)[cut]["state"] == "unknown"
    assert len(gated.requests) == 3  # the cut one was not repeated
