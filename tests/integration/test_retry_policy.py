"""Retry policy, circuit breaker, lifetimes, "still trying" and rate-limited reports, and the queue commands."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mail2sms.smtp import replies
from tests.fakes.kapow import FakeKapow
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import (
    ROOT,
    message,
    report_json,
    report_text,
    reports,
    send,
    thread_server,
    wait_until,
    write_config,
)

CONFIG = """
[dispatch]
retry_base = 0.1
retry_cap = 0.5
poll_interval = 0.1
breaker_failures = {breaker_failures}
breaker_pause = "60s"

[providers.kwt]
type = "kwtsms"
url = "{kwt}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
rate = 100

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "user"
password = "pass"
rate = 100

[[routes]]
match = "*@kwt.test"
format = "address"
provider = "kwt"
region = "KW"
lifetime = "{lifetime}"

[[routes]]
match = "*@kapow.test"
format = "address"
provider = "kapow"
region = "GB"
"""


def config(tmp: Path, kwt: FakeKwtSms, kapow: FakeKapow, lifetime: str = "24h", breaker_failures: int = 1000) -> Path:
    text = CONFIG.format(kwt=kwt.url, kapow=kapow.url, lifetime=lifetime, breaker_failures=breaker_failures)
    path, _ = write_config(tmp, text)
    # write_config's own [dispatch] comes first; ours must win, so drop the harness defaults.
    body = path.read_text()
    head, _, rest = body.partition("[dispatch]\nretry_base = 0.2\nretry_cap = 1.0\npoll_interval = 0.2\n")
    path.write_text(head + rest)
    return path


def due_again(db: Path, number: str) -> bool:
    """True when the job for `number` waits for its next attempt and that moment has passed."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state, next_attempt_at FROM jobs WHERE number = ?", (number,)).fetchone()
    return row is not None and row[0] == "queued" and row[1] is not None and float(row[1]) <= time.time()


def waiting_an_hour(db: Path, number: str, attempts: int) -> bool:
    """True when the job for `number` has had `attempts` attempts, holds no lease, and waits most of an hour."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state, attempts, next_attempt_at, lease_until FROM jobs WHERE number = ?",
                           (number,)).fetchone()
    return (row is not None and row[0] == "queued" and row[1] == attempts and row[3] is None
            and float(row[2]) > time.time() + 1800)


def report_states(db: Path) -> list[str]:
    """Every submission's report state, sorted."""
    with sqlite3.connect(db) as conn:
        return sorted(str(r[0]) for r in conn.execute("SELECT report_state FROM submissions"))


def test_failing_provider_is_paused_while_others_carry_on(tmp_path: Path) -> None:
    """KwtSMS answering 503 trips the breaker after 3 requests; Kapow mail keeps flowing meanwhile."""
    with FakeKwtSms(accounts={"user": ("pass", 1000.0)}, same_number_interval=0) as kwt, \
            FakeKapow(accounts={"user": ("pass", 1000)}) as kapow:
        for _ in range(50):
            kwt.fail_next(503, "down")
        with thread_server(config(tmp_path, kwt, kapow, breaker_failures=3)) as server:
            assert send(server.port, message("96550000700@kwt.test", "to a failing provider"))[0] == 250
            wait_until(lambda: len(kwt.requests) >= 3)
            # The KwtSMS job is due again (retry_cap is 0.5 s) while the breaker pauses its provider; then mail to
            # Kapow is claimed and sent, so the dispatcher has run past the moment a retry would have gone out.
            wait_until(lambda: due_again(tmp_path / "spool.db", "96550000700"))
            assert len(kwt.requests) == 3
            for i in range(3):
                assert send(server.port, message(f"0777712345{i}@kapow.test", f"others carry on {i}"))[0] == 250
            wait_until(lambda: len(kapow.sent) == 3)
            assert len(kwt.requests) == 3


def test_job_expires_after_the_route_lifetime_and_is_reported(tmp_path: Path) -> None:
    """A job that cannot be sent within the route's lifetime ends `expired`, and the report says so."""
    with FakeKwtSms(accounts={"user": ("pass", 1000.0)}) as kwt, FakeKapow() as kapow:
        kwt.refuse()
        with thread_server(config(tmp_path, kwt, kapow, lifetime="1s")) as server:
            assert send(server.port, message("96550000701@kwt.test", "never arrives"))[0] == 250
            report = wait_until(lambda: reports(tmp_path / "reports"), timeout=60)[0]
    assert report["Subject"].startswith("SMS failed")
    assert report_json(report)["jobs"][0]["status"] == "expired"
    assert "expired" in report_text(report)


def test_still_trying_notice_then_final_report(tmp_path: Path) -> None:
    """With still_trying_after set, a slow submission gets one "still trying" mail, then the final report."""
    with FakeKwtSms(accounts={"user": ("pass", 1000.0)}) as kwt, FakeKapow() as kapow:
        kwt.refuse()
        path = config(tmp_path, kwt, kapow)
        path.write_text(path.read_text().replace('from = "mail2sms@sms.test"',
                                                 'from = "mail2sms@sms.test"\nstill_trying_after = "1s"'))
        with thread_server(path) as server:
            assert send(server.port, message("96550000702@kwt.test", "slow one"))[0] == 250
            notice = wait_until(lambda: reports(tmp_path / "reports"), timeout=60)[0]
            assert notice["Subject"] == "SMS delayed: still trying (1 of 1 not sent yet)"
            kwt.start()
            wait_until(lambda: len(reports(tmp_path / "reports")) == 2, timeout=60)
    subjects = sorted(str(r["Subject"]) for r in reports(tmp_path / "reports"))
    assert subjects == ["SMS delayed: still trying (1 of 1 not sent yet)", "SMS sent to +96550000702: sms"]


def test_report_rate_limit_holds_reports_for_a_summary(tmp_path: Path) -> None:
    """Past per_sender_per_hour, reports are held and summarised in the next report the sender gets."""
    with FakeKwtSms(accounts={"user": ("pass", 1000.0)}, same_number_interval=0) as kwt, FakeKapow() as kapow:
        path = config(tmp_path, kwt, kapow)
        path.write_text(path.read_text().replace('from = "mail2sms@sms.test"',
                                                 'from = "mail2sms@sms.test"\nper_sender_per_hour = 2'))
        with thread_server(path) as server:
            for i in range(4):
                assert send(server.port, message(f"9655000071{i}@kwt.test", f"burst {i}"))[0] == 250
                wait_until(lambda n=i: len(kwt.sent) == n + 1)
            # Every submission's report is decided (two written, two held): only then are the written ones counted.
            wait_until(lambda: report_states(tmp_path / "spool.db") == ["sent", "sent", "suppressed", "suppressed"])
            assert len(reports(tmp_path / "reports")) == 2
    # The two held reports are not lost: they sit in the spool as "suppressed" for the next summary.
    assert report_states(tmp_path / "spool.db") == ["sent", "sent", "suppressed", "suppressed"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mail2sms", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ}, timeout=60, check=False)


def test_queue_commands(tmp_path: Path) -> None:
    """queue list shows a waiting submission, show lists its SMS, retry and cancel act on it, and delete then removes
    the final submission (delete refuses an open one: cancel comes first)."""
    with FakeKwtSms(accounts={"user": ("pass", 1000.0)}) as kwt, FakeKapow() as kapow:
        # KwtSMS busy for an hour (429 + Retry-After), every time: the SMS waits an hour after each attempt, so what
        # the commands find never depends on how fast the machine is.
        for _ in range(10):
            kwt.fail_next(429, "", {"Retry-After": "3600"})
        path = config(tmp_path, kwt, kapow)
        db = tmp_path / "spool.db"
        with thread_server(path) as server:
            code, text = send(server.port, message("96550000720@kwt.test", "stuck"))
            assert replies.QUEUED.matches(code, text)
            sid = text.decode().split()[-1]
            wait_until(lambda: waiting_an_hour(db, "96550000720", attempts=1))
            assert sid in run_cli("queue", "list", "--config", str(path)).stdout
            shown = run_cli("queue", "show", sid, "--config", str(path))
            assert shown.returncode == 0
            assert "+96550000720" in shown.stdout
            assert "queued" in shown.stdout
            assert run_cli("queue", "retry", sid, "--config", str(path)).returncode == 0
            wait_until(lambda: waiting_an_hour(db, "96550000720", attempts=2))  # retried at once, busy again
            refused = run_cli("queue", "delete", sid, "--config", str(path))
            assert refused.returncode == 1
            assert "queue cancel" in refused.stdout + refused.stderr
            cancelled = run_cli("queue", "cancel", sid, "--config", str(path))
            assert cancelled.returncode == 0
            assert f"1 SMS of {sid} cancelled" in cancelled.stdout
            report = wait_until(lambda: reports(tmp_path / "reports"), timeout=60)[0]
            assert report_json(report)["jobs"][0]["status"] == "cancelled"
            assert "the queue is empty" in run_cli("queue", "list", "--config", str(path)).stdout
            assert run_cli("queue", "delete", sid, "--config", str(path)).returncode == 0
            assert run_cli("queue", "show", sid, "--config", str(path)).returncode == 1
