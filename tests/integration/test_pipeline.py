"""The core pipeline end to end: smtplib → mail2sms → fake KwtSMS / Kapow over HTTP → outcome mail in a maildir."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.fakes.kapow import FakeKapow
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import (
    ThreadServer,
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
[providers.kwt]
type = "kwtsms"
url = "{kwt}"
username = "kwtuser"
password = "kwt-config-secret"
sender = "KWT-MESSAGE"
rate = 50

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "kapowuser"
password = "kapow-config-secret"
rate = 50

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@kapow.test"
format = "address"
provider = "kapow"
region = "GB"
"""


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 100.0), "bodyuser": ("body-secret-1", 50.0)},
                    senders=("KWT-MESSAGE", "My Shop"), same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def kapow() -> Iterator[FakeKapow]:
    with FakeKapow(accounts={"kapowuser": ("kapow-config-secret", 100)}) as fake:
        yield fake


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms, kapow: FakeKapow) -> Iterator[ThreadServer]:
    path, _ = write_config(tmp_path, CONFIG.format(kwt=kwt.url, kapow=kapow.url))
    with thread_server(path) as srv:
        yield srv


def test_address_mail_is_sent_and_reported(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """A mail to <number>@domain reaches KwtSMS as that number with the body as text, and the sender gets a report."""
    code, text = send(server.port, message("96550000001@sms.test", "Server room temperature high\n"))
    assert replies.QUEUED.matches(code, text)
    wait_until(lambda: kwt.sent)
    assert [(s.number, s.text, s.sender, s.lang) for s in kwt.sent] == [
        ("96550000001", "Server room temperature high", "KWT-MESSAGE", 1)
    ]
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert report["Subject"] == "SMS sent to +96550000001: sms"
    assert report["To"] == "alice@example.org"
    assert "+96550000001" in report_text(report)
    assert report_json(report)["jobs"][0]["provider_id"] == kwt.sent[0].msg_id


def test_keyvalue_mail_with_two_numbers_is_one_request(server: ThreadServer, kwt: FakeKwtSms,
                                                       tmp_path: Path) -> None:
    """KwtSMS's key:value body: '+' is a space, lang is passed, body credentials are used, two numbers → one request."""
    body = ("username:bodyuser\npassword:body-secret-1\nsender:My+Shop\n"
            "mobile:96550000002,+96550000003\nlang:1\ntext:Meet+me+at+starbuck!\n")
    code, text = send(server.port, message("sms@sms.test", body))
    assert replies.QUEUED.matches(code, text)
    wait_until(lambda: len(kwt.sent) == 2)
    sends = [r for r in kwt.requests if r.path.endswith("/send/")]
    assert len(sends) == 1
    assert sends[0].param("mobile") == "96550000002,96550000003"
    assert sends[0].param("username") == "bodyuser"
    assert {(s.text, s.sender, s.username) for s in kwt.sent} == {("Meet me at starbuck!", "My Shop", "bodyuser")}
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert report["Subject"] == "SMS sent: 2 of 2: sms"


def test_kwtsms_login_refused_is_explained(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """ERR003 from KwtSMS ends the job rejected and the report says in words that the login was refused."""
    body = "username:bodyuser\npassword:wrong-password-9\nmobile:96550000004\ntext:hello\n"
    code, text = send(server.port, message("sms@sms.test", body))
    assert replies.QUEUED.matches(code, text)
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert report["Subject"].startswith("SMS failed")
    words = report_text(report)
    assert "username or password was not accepted by KwtSMS" in words
    assert report_json(report)["jobs"][0]["code"] == "ERR003"
    assert not kwt.sent


def test_kapow_userpass_is_explained(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """Kapow's USERPASS ends the job rejected and the report says the login was not accepted by Kapow."""
    with FakeKapow(accounts={"kapowuser": ("another-password", 100)}) as kapow:
        path, _ = write_config(tmp_path, CONFIG.format(kwt=kwt.url, kapow=kapow.url))
        with thread_server(path) as srv:
            code, text = send(srv.port, message("07777123456@kapow.test", "Door open"))
            assert replies.QUEUED.matches(code, text)
            report = wait_until(lambda: reports(tmp_path / "reports"))[0]
        assert kapow.requests
        assert kapow.requests[0].param("mobile") == "447777123456"
    assert "username or password was not accepted by Kapow" in report_text(report)
    assert report_json(report)["jobs"][0]["status"] == "rejected"


def test_kapow_success_uses_international_number(server: ThreadServer, kapow: FakeKapow, tmp_path: Path) -> None:
    """A UK national number on a GB route reaches Kapow in international form and the returnid is reported."""
    code, text = send(server.port, message("07777123457@kapow.test", "Backup finished"))
    assert replies.QUEUED.matches(code, text)
    wait_until(lambda: kapow.sent)
    assert (kapow.sent[0].number, kapow.sent[0].text) == ("447777123457", "Backup finished")
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert report_json(report)["jobs"][0]["provider_id"] == kapow.sent[0].returnid


def test_bad_number_is_refused_at_rcpt(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """RCPT to a local part that is not a number gets 550 5.1.1 saying why; nothing is sent."""
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        code, text = client.rcpt("12ab@sms.test")
        assert replies.BAD_NUMBER.matches(code, text)
        assert b"12ab" in text
        code, text = client.rcpt("123@sms.test")
        assert replies.BAD_NUMBER.matches(code, text)
    assert not kwt.requests


def test_unknown_domain_is_relaying_denied(server: ThreadServer) -> None:
    """RCPT to a domain no route matches is refused as relaying (550 5.7.1)."""
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo()
        client.mail("alice@example.org")
        code, text = client.rcpt("96550000000@example.com")
    assert replies.RELAY_DENIED.matches(code, text)


def test_keyvalue_unknown_key_names_it(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """A keyvalue body with an unknown key gets 554 5.6.0 naming the key and its line; nothing is queued."""
    code, text = send(server.port, message("sms@sms.test", "mobile:96550000005\nmobil:96550000006\ntext:hi\n"))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"'mobil'" in text
    assert b"line 2" in text
    assert not kwt.requests


def test_keyvalue_bad_number_names_the_value(server: ThreadServer) -> None:
    """A keyvalue mobile: value that is not a number gets 554 5.6.0 naming the value."""
    code, text = send(server.port, message("sms@sms.test", "mobile:96550000005,not-a-number\ntext:hi\n"))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"not-a-number" in text


def test_no_report_to_null_sender_or_auto_submitted(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """Mail from <> or marked Auto-Submitted is sent as SMS but gets no outcome mail (no backscatter)."""
    code, _ = send(server.port, message("96550000007@sms.test", "from a bounce"), sender="")
    assert code == 250
    code, _ = send(server.port, message("96550000008@sms.test", "auto", headers={"Auto-Submitted": "auto-generated"}))
    assert code == 250
    wait_until(lambda: len(kwt.sent) == 2)
    code, _ = send(server.port, message("96550000009@sms.test", "normal"))
    wait_until(lambda: reports(tmp_path / "reports"))
    assert len(reports(tmp_path / "reports")) == 1


def test_same_message_resent_is_a_duplicate(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """The same Message-ID, number and text again (an MTA that lost our 250) is answered 250 duplicate, sent once."""
    msg = message("96550000010@sms.test", "only once")
    code, first = send(server.port, msg)
    assert replies.QUEUED.matches(code, first)
    code, second = send(server.port, msg)
    assert replies.DUPLICATE.matches(code, second)
    assert first.split()[-1] == second.split()[-1]
    wait_until(lambda: kwt.sent)
    assert len(kwt.sent) == 1
