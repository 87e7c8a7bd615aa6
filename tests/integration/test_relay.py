"""Never an open relay: a matrix of refused envelopes, number rules and quotas — each refused as specified, and then
no SMS and no report exist for it (a good mail sent afterwards is the only one that arrives)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from mail2sms.smtp.auth import hash_password
from mail2sms.smtp.replies import Reply
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ThreadServer, message, reports, thread_server, wait_until
from tests.secure import RawSmtp, config

BODY = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "kwtuser"
password = "kwt-config-secret"
sender = "KWT-MESSAGE"
rate = 50

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"
allow = ["@partner.example"]
allowed_countries = ["KW", "+44"]
blocked_prefixes = ["+44909"]
max_recipients = 3

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
allow = ["authenticated", "@partner.example", "boss@example.org"]
allowed_countries = ["KW", "+44"]
blocked_prefixes = ["+44 909", "+1900"]
max_recipients = 3

[[routes]]
match = "*@hourly.test"
format = "address"
provider = "kwt"
region = "KW"
allow = ["@partner.example"]
quota_per_hour = 3

[[routes]]
match = "*@daily.test"
format = "address"
provider = "kwt"
region = "KW"
allow = ["@partner.example"]
quota_per_day = 2

[[routes]]
match = "kv@hourly.test"
format = "keyvalue"
provider = "kwt"
region = "KW"
allow = ["@partner.example"]
quota_per_hour = 2

[[users]]
name = "alarm"
password_hash = "{alarm}"
"""
PARTNER = "ops@partner.example"


@pytest.fixture(scope="module")
def alarm_hash() -> str:
    return hash_password("alarm-password-1")


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 1000.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms, alarm_hash: str) -> Iterator[ThreadServer]:
    """127.0.0.1 is not trusted here; AUTH works without TLS on this loopback listener to keep the matrix short."""
    path, port, _ = config(tmp_path, BODY.format(url=kwt.url, alarm=alarm_hash),
                           server='trusted_networks = ["10.99.0.0/16"]')
    text = path.read_text().replace('trusted_networks = ["10.99.0.0/16"]',
                                    f'trusted_networks = ["10.99.0.0/16"]\nauth_without_tls = ["127.0.0.1:{port}"]')
    path.write_text(text)
    with thread_server(path) as srv:
        yield srv


@dataclass(frozen=True)
class Case:
    """One transaction: who sends what to whom, and which reply refuses it at which command."""

    rcpts: list[str]
    expect: Reply
    sender: str = PARTNER
    user: str | None = None
    body: str = "hello"
    at_data: bool = False
    accepted_first: int = 0  # RCPTs accepted before the refused one
    extra: dict[str, str] = field(default_factory=dict)


MATRIX = {
    "foreign domain": Case(["96550000001@gmail.com"], replies.RELAY_DENIED),
    "foreign domain, authenticated": Case(["someone@gmail.com"], replies.RELAY_DENIED, user="alarm"),
    "look-alike domain": Case(["96550000001@sms.test.evil.org"], replies.RELAY_DENIED),
    "address literal": Case(["96550000001@[127.0.0.1]"], replies.RELAY_DENIED),
    "source route to a foreign domain": Case(["<@sms.test:96550000001@evil.org>"], replies.RELAY_DENIED),
    "percent hack": Case(["96550000001%evil.org@sms.test"], replies.BAD_NUMBER),
    "unauthenticated stranger": Case(["96550000001@sms.test"], replies.AUTH_REQUIRED, sender="eve@example.org"),
    "null sender": Case(["96550000001@sms.test"], replies.AUTH_REQUIRED, sender=""),
    "stranger on a sender-only route": Case(["sms@sms.test"], replies.NOT_ALLOWED, sender="eve@example.org"),
    "authenticated user on a sender-only route": Case(["sms@sms.test"], replies.NOT_ALLOWED, user="alarm",
                                                      sender="alarm@example.org"),
    "disallowed country": Case(["+12125550123@sms.test"], replies.NUMBER_NOT_ALLOWED),
    "premium prefix": Case(["+449098790000@sms.test"], replies.NUMBER_NOT_ALLOWED),
    "premium prefix +1900": Case(["+19005550123@sms.test"], replies.NUMBER_NOT_ALLOWED, user="alarm"),
    "too many recipients": Case([f"9655000001{i}@sms.test" for i in range(4)], replies.TOO_MANY_RECIPIENTS,
                                accepted_first=3),
    "disallowed country in a body": Case(["sms@sms.test"], replies.NUMBER_NOT_ALLOWED, at_data=True,
                                         body="mobile:96550000002,+12125550123\ntext:hi\n"),
    "premium prefix in a body": Case(["sms@sms.test"], replies.NUMBER_NOT_ALLOWED, at_data=True,
                                     body="mobile:00449098790000\ntext:hi\n"),
    "too many numbers in a body": Case(["sms@sms.test"], replies.TOO_MANY, at_data=True,
                                       body="mobile:96550000003,96550000004,96550000005,96550000006\ntext:hi\n"),
    "mail bigger than the hourly quota": Case([f"9655000002{i}@hourly.test" for i in range(4)],
                                              replies.QUOTA_EXCEEDED, accepted_first=3),
    "body bigger than the hourly quota": Case(["kv@hourly.test"], replies.QUOTA_EXCEEDED, at_data=True,
                                              body="mobile:96550000031,96550000032,96550000033\ntext:hi\n"),
}


def attempt(port: int, case: Case) -> None:
    """Run the transaction; assert the refusal is the expected reply at the expected command; never finish DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        if case.user:
            client.login(case.user, "alarm-password-1")
        assert client.mail(case.sender)[0] == 250
        for i, rcpt in enumerate(case.rcpts):
            code, text = client.docmd("RCPT", f"TO:{rcpt if rcpt.startswith('<') else f'<{rcpt}>'}")
            if i < case.accepted_first or case.at_data:
                assert code == 250, text
            else:
                assert case.expect.matches(code, text), (code, text)
                client.rset()
                return
        assert case.at_data
        code, text = client.data(message(case.rcpts, case.body, sender=case.sender).as_bytes())
        assert case.expect.matches(code, text), (code, text)


def barrier(port: int, kwt: FakeKwtSms, tmp: Path) -> None:
    """Send one good mail; when its SMS and report exist, assert they are the only ones."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert not client.send_message(message("96550000999@sms.test", "barrier", sender="boss@example.org"))
    wait_until(lambda: kwt.sent and reports(tmp / "reports"))
    assert [(s.number, s.text) for s in kwt.sent] == [("96550000999", "barrier")]
    assert [r["To"] for r in reports(tmp / "reports")] == ["boss@example.org"]


@pytest.mark.parametrize("case", MATRIX.values(), ids=MATRIX.keys())
def test_refused_and_nothing_sent(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path, case: Case) -> None:
    """Each envelope of the matrix is refused with its reply, and produces no SMS and no report."""
    attempt(server.port, case)
    barrier(server.port, kwt, tmp_path)


def test_hourly_quota_answers_450(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """Three SMS an hour pass; the fourth RCPT is 450 4.7.1 (an MTA retries later); a new sender on another client
    passes (an untrusted client is counted by its address too, so the same client with a new sender would not)."""
    for i in range(3):
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            assert not client.send_message(message(f"9655000004{i}@hourly.test", f"n{i}", sender=PARTNER))
    attempt(server.port, Case(["96550000049@hourly.test"], replies.QUOTA_REACHED))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30, source_address=("127.0.0.2", 0)) as client:
        assert not client.send_message(message("96550000048@hourly.test", "other", sender="other@partner.example"))
    wait_until(lambda: len(kwt.sent) == 4)
    assert "96550000049" not in [s.number for s in kwt.sent]


def test_daily_quota_answers_550(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """Two SMS a day pass; the third is refused for good with 550 5.7.1 naming the quota."""
    for i in range(2):
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            assert not client.send_message(message(f"9655000005{i}@daily.test", f"d{i}", sender=PARTNER))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail(PARTNER)
        code, text = client.rcpt("96550000059@daily.test")
    assert replies.QUOTA_EXCEEDED.matches(code, text)
    assert b"per day" in text
    wait_until(lambda: len(kwt.sent) == 2)


def test_keyvalue_quota_is_checked_at_data(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """Numbers read from a body count against the quota (2 an hour): over it at DATA is 450, used up at RCPT too."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        assert not client.send_message(message("kv@hourly.test", "mobile:96550000061\ntext:hi\n", sender=PARTNER))
    attempt(server.port, Case(["kv@hourly.test"], replies.QUOTA_REACHED, at_data=True,
                              body="mobile:96550000063,96550000064\ntext:again\n"))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:  # one more number still fits
        assert not client.send_message(message("kv@hourly.test", "mobile:96550000065\ntext:hi\n", sender=PARTNER))
    attempt(server.port, Case(["kv@hourly.test"], replies.QUOTA_REACHED))  # used up: refused already at RCPT
    wait_until(lambda: len(kwt.sent) == 2)
    assert {s.number for s in kwt.sent} == {"96550000061", "96550000065"}


@pytest.mark.parametrize(("command", "line"), [
    ("MAIL", "MAIL FROM:<a\rb@partner.example>"),
    ("MAIL", "MAIL FROM:<a\0b@partner.example>"),
    ("MAIL", "MAIL FROM:<\"a b\"@partner.example>"),
    ("MAIL", "MAIL FROM:<a@part_ner.example>"),
    ("RCPT", "RCPT TO:<96550000071\r@sms.test>"),
    ("RCPT", "RCPT TO:<96550000071@sms.test\0>"),
    ("RCPT", "RCPT TO:<9655\u00e90000071@sms.test>"),
])
def test_illegal_envelope_addresses_are_refused(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path,
                                                command: str, line: str) -> None:
    """CR, NUL, quoting, a bad domain or non-ASCII in an envelope address: refused (5xx), nothing sent or mailed."""
    raw = RawSmtp(server.port)
    try:
        raw.command("EHLO client.example.org")
        if command == "RCPT":
            assert raw.command(f"MAIL FROM:<{PARTNER}>")[0] == 250
        code, text = raw.command(line)
        assert 500 <= code < 600, text
        if code == 553:  # refused by mail2sms itself (aiosmtpd refuses some shapes before: 501 or 553 5.1.3)
            expected = replies.BAD_SENDER_ADDRESS if command == "MAIL" else replies.BAD_RECIPIENT_ADDRESS
            assert expected.matches(code, text) or text.startswith("5.1.3 Error")
        if command == "RCPT":
            assert raw.command("DATA")[0] == 503  # no valid recipient: nothing to send
    finally:
        raw.close()
    barrier(server.port, kwt, tmp_path)
