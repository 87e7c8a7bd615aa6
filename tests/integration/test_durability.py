"""A 250 is a promise: mail2sms SIGKILLed right after it still sends the SMS, exactly once, after a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mail2sms.model import FINAL_STATES
from mail2sms.smtp import replies
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ProcessServer, message, reports, send, wait_until, write_config

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
rate = 50

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


def job_rows(db: Path) -> list[tuple[str, str, int]]:
    """(number, state, attempts) of every job in the SQLite spool."""
    with sqlite3.connect(db) as conn:
        return [(str(n), str(s), int(a)) for n, s, a in conn.execute("SELECT number, state, attempts FROM jobs")]


def test_sigkill_right_after_250_sends_once_after_restart(tmp_path: Path) -> None:
    """SIGKILL right after each 250, then a restart: every accepted SMS reaches the provider once, none twice."""
    with FakeKwtSms(accounts={"user": ("pass", 1000.0)}, same_number_interval=0) as kwt:
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url))
        server = ProcessServer(path, port, tmp_path / "server.log")
        accepted: list[str] = []
        for i in range(5):
            server.start()
            code, text = send(port, message(f"9655000010{i}@sms.test", f"kill test {i}"))
            server.kill()  # as soon as the 250 is read: the dispatcher may or may not have started
            assert replies.QUEUED.matches(code, text), text
            accepted.append(f"9655000010{i}")
        server.start()
        try:
            wait_until(lambda: len(reports(tmp_path / "reports")) == len(accepted), timeout=120)
        finally:
            assert server.terminate() == 0
        # Every job is final and the server has stopped: nothing is left that could still be sent (a second time).
        assert {state for _, state, _ in job_rows(tmp_path / "spool.db")} <= {s.value for s in FINAL_STATES}
        counts = {n: sum(1 for s in kwt.sent if s.number == n) for n in accepted}
        assert all(c <= 1 for c in counts.values()), counts
        # A kill after the request's first bytes left and before the reply was recorded leaves the job `unknown`
        # ("may have been sent") and it is not sent again; only then may an SMS be missing at the provider, and
        # only if the provider never read the request. Every other accepted SMS arrived exactly once.
        subjects = [str(r["Subject"]) for r in reports(tmp_path / "reports")]
        unknown = sum("may have been sent" in s for s in subjects)
        assert sum(counts.values()) >= len(accepted) - unknown, (counts, subjects)
        assert len({r["X-Mail2SMS-Submission"] for r in reports(tmp_path / "reports")}) == len(accepted)


def test_sigterm_stops_cleanly_and_restart_resumes(tmp_path: Path) -> None:
    """Mail accepted while the provider is down survives a SIGTERM and is sent after the restart."""
    kwt = FakeKwtSms(accounts={"user": ("pass", 1000.0)}, same_number_interval=0).start()
    try:
        kwt.refuse()  # connection refused: surely not sent, retried later
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url))
        server = ProcessServer(path, port, tmp_path / "server.log").start()
        code, text = send(port, message("96550000200@sms.test", "queued while down"))
        assert replies.QUEUED.matches(code, text)
        # The dispatcher has tried (connection refused: surely not sent) and put the job back for later.
        wait_until(lambda: [(s, a >= 1) for _, s, a in job_rows(tmp_path / "spool.db")] == [("queued", True)])
        assert server.terminate() == 0
        kwt.start()
        server.start()
        wait_until(lambda: kwt.sent, timeout=60)
        assert server.terminate() == 0
        assert [s.number for s in kwt.sent] == ["96550000200"]
    finally:
        kwt.stop()
