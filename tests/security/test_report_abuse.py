"""Reports abused: a forged MAIL FROM, mail robots, mailing lists, SMS-route addresses and NULs in Message-IDs.

An authenticated user's report goes to the user's own address unless the MAIL FROM is vouched for; robots and
lists get nothing; a report is never addressed to one of the gateway's SMS routes, nor handed to the smarthost
for one; a NUL in the original's Message-ID or References never reaches In-Reply-To.
"""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.config import ReportsConfig
from mail2sms.model import Submission
from mail2sms.report.send import DeliveryOutcome, ReportSender
from mail2sms.smtp.auth import hash_password
from tests.harness import ThreadServer, free_port, message, reports, thread_server, wait_until
from tests.integration.test_report_send import Recorder, report, smarthost
from tests.secure import config

__all__ = ["smarthost"]  # the fixture, imported for the smarthost guard test

BODY = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "out"
region = "KW"
allow = ["authenticated", "@partner.example", "@sms.test"]

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
allow = ["authenticated", "@partner.example", "@sms.test"]

[[users]]
name = "alarm"
password_hash = "{alarm}"
email = "panel-admin@example.org"

[[users]]
name = "bob"
password_hash = "{bob}"
"""
DRY = "mobile:96550000001\ntext:Your parcel is held: pay at evil.example\ntest:1\n"


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"alarm": hash_password("alarm-password-1"), "bob": hash_password("bob-password-1")}


@pytest.fixture
def server(tmp_path: Path, hashes: dict[str, str]) -> Iterator[ThreadServer]:
    """127.0.0.1 is not trusted; AUTH works in plaintext on this loopback listener to keep the tests short."""
    port = free_port()
    path, _, _ = config(tmp_path, BODY.format(tmp=tmp_path, **hashes), port=port,
                        server=f'trusted_networks = []\nauth_without_tls = ["127.0.0.1:{port}"]')
    with thread_server(path) as srv:
        yield srv


def _send(server: ThreadServer, sender: str, rcpt: str, raw: bytes, user: str | None = None) -> str:
    """One mail; returns the submission id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        if user is not None:
            client.login(user, f"{user}-password-1")
        assert client.mail(sender)[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(raw)
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[1]


def _submission(server: ThreadServer, sid: str) -> Submission:
    assert server.app is not None
    found = asyncio.run_coroutine_threadsafe(server.app.spool.get(sid), server.loop).result(30)
    assert found is not None
    return found[0]


def _raw(body: str, sender: str, headers: dict[str, str] | None = None) -> bytes:
    return message("sms@sms.test", body, sender=sender, headers=headers).as_bytes(policy=email.policy.SMTP)


def test_forged_sender_of_an_authenticated_user_gets_no_report(server: ThreadServer, tmp_path: Path) -> None:
    """A user who forges MAIL FROM gets the dry-run report at the user's own address; the forged one gets nothing."""
    sid = _send(server, "victim@elsewhere.example", "sms@sms.test", _raw(DRY, "victim@elsewhere.example"),
                user="alarm")
    assert _submission(server, sid).report_to == "panel-admin@example.org"
    got = wait_until(lambda: reports(tmp_path / "reports"))
    assert [str(r["To"]) for r in got] == ["panel-admin@example.org"]


def test_user_without_an_address_and_a_forged_sender_gets_no_report(server: ThreadServer) -> None:
    """A user with no `email` who writes someone else's MAIL FROM gets no report at all, and the reason is kept."""
    sid = _send(server, "victim@elsewhere.example", "sms@sms.test", _raw(DRY, "victim@elsewhere.example"),
                user="bob")
    sub = _submission(server, sid)
    assert sub.report_to is None
    assert sub.report_suppressed == "the sender is not trusted on this route"


def test_the_users_own_address_and_allow_listed_senders_get_reports(server: ThreadServer) -> None:
    """MAIL FROM equal to the user's address, or allow-listed on the route, is vouched for and gets the report."""
    own = _send(server, "panel-admin@example.org", "sms@sms.test", _raw(DRY, "panel-admin@example.org"),
                user="alarm")
    assert _submission(server, own).report_to == "panel-admin@example.org"
    listed = _send(server, "ops@partner.example", "sms@sms.test", _raw(DRY, "ops@partner.example"))
    assert _submission(server, listed).report_to == "ops@partner.example"


@pytest.mark.parametrize(("sender", "headers"), [
    ("MAILER-DAEMON@partner.example", {}),
    ("owner-alarms@partner.example", {}),
    ("alarms-request@partner.example", {}),
    ("ops@partner.example", {"List-Unsubscribe": "<mailto:leave@partner.example>"}),
    ("ops@partner.example", {"X-Mailing-List": "alarms@partner.example"}),
    ("ops@partner.example", {"Precedence": "bulk"}),  # Precedence: auto_reply is refused at DATA (parse.autoreply)
])
def test_robots_and_lists_get_no_report(server: ThreadServer, sender: str, headers: dict[str, str]) -> None:
    """Robots (MAILER-DAEMON, owner-, -request) and list or auto-reply mail are taken, but get no report."""
    sid = _send(server, sender, "sms@sms.test", _raw(DRY, sender, headers))
    sub = _submission(server, sid)
    assert sub.report_to is None
    assert sub.report_suppressed


def test_a_sender_that_is_an_sms_route_gets_no_report(server: ThreadServer) -> None:
    """MAIL FROM one of the gateway's own SMS addresses: the report would become an SMS, so there is none."""
    sender = "96550000009@sms.test"
    sid = _send(server, sender, "sms@sms.test", _raw(DRY, sender))
    sub = _submission(server, sid)
    assert sub.report_to is None
    assert "SMS route" in (sub.report_suppressed or "")


async def test_the_smarthost_never_gets_a_report_for_an_sms_route(smarthost: tuple[Recorder, int]) -> None:
    """Handed a report for an SMS-route address, the sender drops it before the smarthost sees anything."""
    recorder, port = smarthost
    sender = ReportSender(ReportsConfig(smarthost=f"127.0.0.1:{port}"), hostname="sms.test", timeout=10)
    sender.is_sms_address = lambda address: address.endswith("@sms.test")
    assert await sender.deliver(report(), "96550000009@sms.test") is DeliveryOutcome.DROP
    assert await sender.deliver(report(), "alice@example.org") is DeliveryOutcome.DELIVERED
    assert recorder.rcpt_tos == ["alice@example.org"]


def test_a_nul_in_message_id_never_reaches_in_reply_to(server: ThreadServer, tmp_path: Path) -> None:
    """A Message-ID or References carrying a raw NUL is not copied into the report's threading headers."""
    raw = (b"From: ops@partner.example\r\nTo: 96550000002@sms.test\r\nSubject: sms\r\n"
           b"Message-ID: <evil\x00id@partner.example>\r\n"
           b"References: <good@partner.example> <bad\x00ref@partner.example>\r\n\r\nhello\r\n")
    sid = _send(server, "ops@partner.example", "96550000002@sms.test", raw)
    sub = _submission(server, sid)
    assert sub.message_id is None  # a broken id is dropped, not repaired
    assert sub.extra["references"] == "<good@partner.example>"
    got = wait_until(lambda: reports(tmp_path / "reports"))
    files = list((tmp_path / "reports" / "new").iterdir())
    assert b"\x00" not in b"".join(f.read_bytes() for f in files)
    assert got[0].get("In-Reply-To") is None
