"""SMTP smuggling: a bare CR or LF around a lone dot never ends DATA nor starts a second transaction here, and a mail
carrying one is refused whole — no SMS and no report for it, nor for the transaction hidden inside it."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ThreadServer, message, reports, thread_server, wait_until
from tests.secure import KWT_ADDRESS, RawSmtp, config

BODY = KWT_ADDRESS

SMUGGLED = (b"MAIL FROM:<mallory@evil.example>\r\nRCPT TO:<96550000666@sms.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled text\r\n")

# The fake end-of-data sequences of the SMTP smuggling research (SEC Consult, 2023), and two more of the same family.
FAKE_ENDS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
}


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 100.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms) -> Iterator[ThreadServer]:
    path, _, _ = config(tmp_path, BODY.format(url=kwt.url))
    with thread_server(path) as srv:
        yield srv


def only_the_barrier_arrives(port: int, kwt: FakeKwtSms, tmp: Path) -> None:
    """A good mail sent last is the only SMS and the only report: what came before produced nothing."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert not client.send_message(message("96550000999@sms.test", "barrier"))
    wait_until(lambda: kwt.sent and reports(tmp / "reports"))
    assert [(s.number, s.text) for s in kwt.sent] == [("96550000999", "barrier")]
    assert len(reports(tmp / "reports")) == 1


@pytest.mark.parametrize("fake_end", FAKE_ENDS.values(), ids=FAKE_ENDS.keys())
def test_smuggled_transaction_is_refused(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path,
                                         fake_end: bytes) -> None:
    """The mail hiding a second transaction behind a fake end of data gets one 554 5.6.0; no reply to the hidden one."""
    raw = RawSmtp(server.port)
    try:
        assert raw.command("EHLO client.example.org")[0] == 250
        assert raw.command("MAIL FROM:<alice@example.org>")[0] == 250
        assert raw.command("RCPT TO:<96550000001@sms.test>")[0] == 250
        assert raw.command("DATA")[0] == 354
        raw.send(b"Subject: first\r\n\r\nfirst text" + fake_end + SMUGGLED + b".\r\n")
        code, text = raw.reply()
        assert replies.SMUGGLING.matches(code, text), (code, text)
        code, text = raw.command("NOOP")  # the very next reply answers NOOP: nothing hidden was run
        assert (code, text) == (250, "OK")
    finally:
        raw.close()
    only_the_barrier_arrives(server.port, kwt, tmp_path)


def test_bare_lf_commands_after_fake_end_are_refused(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """A hidden transaction written with bare LF line ends throughout is refused the same way."""
    raw = RawSmtp(server.port)
    try:
        raw.command("EHLO client.example.org")
        raw.command("MAIL FROM:<alice@example.org>")
        raw.command("RCPT TO:<96550000002@sms.test>")
        assert raw.command("DATA")[0] == 354
        raw.send(b"Subject: first\r\n\r\nfirst text\n.\n" + SMUGGLED.replace(b"\r\n", b"\n") + b"\r\n.\r\n")
        assert replies.SMUGGLING.matches(*raw.reply())
        assert raw.command("NOOP") == (250, "OK")
    finally:
        raw.close()
    only_the_barrier_arrives(server.port, kwt, tmp_path)


def test_dot_stuffed_lone_dot_line_is_fine(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """A proper client's lone-dot line (sent dot-stuffed as '..') is ordinary text, not smuggling."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        assert not client.send_message(message("96550000003@sms.test", "first line\n.\nlast line"))
    wait_until(lambda: kwt.sent)
    assert kwt.sent[0].text.startswith("first line")
    assert "last line" in kwt.sent[0].text
