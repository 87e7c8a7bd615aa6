"""STARTTLS and implicit TLS: offered as configured, TLS 1.2 at least, no command pipelined past STARTTLS survives."""

from __future__ import annotations

import smtplib
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ThreadServer, free_port, message, reports, thread_server, wait_until
from tests.secure import KWT_ADDRESS, RawSmtp, Tls, config, make_tls

BODY = KWT_ADDRESS.replace('region = "KW"\n', 'region = "KW"\nallow = ["trusted", "authenticated"]\n') + """
[[users]]
name = "alarm"
password_hash = "{hash}"
"""


@pytest.fixture(scope="module")
def alarm_hash() -> str:
    from mail2sms.smtp.auth import hash_password

    return hash_password("alarm-password-1")


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 100.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms, tls: Tls, alarm_hash: str) -> Iterator[ThreadServer]:
    implicit = free_port()
    path, _, _ = config(tmp_path, BODY.format(url=kwt.url, hash=alarm_hash),
                        server=f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n'
                               f'tls_listen = ["127.0.0.1:{implicit}"]')
    with thread_server(path) as srv:
        yield srv


def implicit_port(server: ThreadServer) -> int:
    return server.app.smtp_ports[1] if server.app else 0


def test_starttls_is_offered_and_works(server: ThreadServer, tls: Tls, kwt: FakeKwtSms) -> None:
    """A plain listener offers STARTTLS (and no AUTH before it); after it AUTH is offered and mail goes through."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, _ = client.starttls(context=tls.client_context())
        assert code == 220
        client.ehlo("client.example.org")
        assert not client.has_extn("starttls")
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        client.login("alarm", "alarm-password-1")
        client.send_message(message("96550000101@sms.test", "over starttls"))
    wait_until(lambda: kwt.sent)
    assert kwt.sent[0].text == "over starttls"


def test_implicit_tls_listener(server: ThreadServer, tls: Tls, kwt: FakeKwtSms) -> None:
    """A `tls_listen` listener speaks TLS from the first byte, offers AUTH and no STARTTLS, and delivers."""
    with smtplib.SMTP_SSL("127.0.0.1", implicit_port(server), timeout=30, context=tls.client_context()) as client:
        client.ehlo("client.example.org")
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")
        client.login("alarm", "alarm-password-1")
        client.send_message(message("96550000102@sms.test", "over implicit tls"))
    wait_until(lambda: kwt.sent)
    assert kwt.sent[0].text == "over implicit tls"


def test_tls_below_1_2_is_refused(server: ThreadServer, tls: Tls) -> None:
    """A client that can only speak TLS 1.1 or older cannot complete the handshake, on either kind of listener."""
    ctx = tls.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # naming TLS 1.0/1.1 is deprecated: that is the point
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client really offer TLS 1.1, so the refusal is the server's
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        with pytest.raises(ssl.SSLError):
            client.starttls(context=ctx)
    with pytest.raises(ssl.SSLError):
        smtplib.SMTP_SSL("127.0.0.1", implicit_port(server), timeout=30, context=ctx)


def test_commands_pipelined_after_starttls_are_discarded(server: ThreadServer, tls: Tls, kwt: FakeKwtSms,
                                                          tmp_path: Path) -> None:
    """A whole transaction sent in plaintext in the STARTTLS packet is thrown away (RFC 3207 4.2): nothing is sent."""
    raw = RawSmtp(server.port)
    try:
        raw.command("EHLO attacker.example")
        injected = (b"STARTTLS\r\nMAIL FROM:<mallory@example.org>\r\nRCPT TO:<96550000666@sms.test>\r\n"
                    b"DATA\r\nSubject: injected\r\n\r\ninjected text\r\n.\r\n")
        raw.send(injected)
        assert raw.reply()[0] == 220
        raw.starttls(tls.client_context())
        # Had the injected MAIL survived, RCPT would be accepted here; it must be "need MAIL" after a fresh EHLO.
        assert raw.command("EHLO attacker.example")[0] == 250
        code, text = raw.command("RCPT TO:<96550000667@sms.test>")
        assert code == 503, text
        assert raw.command("NOOP")[0] == 250  # the session is in step: no reply to an injected command is queued
    finally:
        raw.close()
    barrier = make_barrier(server, tls)
    wait_until(lambda: any(s.text == barrier for s in kwt.sent))
    assert [s.number for s in kwt.sent] == ["96550000199"]
    wait_until(lambda: reports(tmp_path / "reports"))
    assert len(reports(tmp_path / "reports")) == 1


def make_barrier(server: ThreadServer, tls: Tls) -> str:
    """Send one good mail over STARTTLS; once its SMS exists, everything sent before it has been decided."""
    text = "barrier"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.starttls(context=tls.client_context())
        assert not client.send_message(message("96550000199@sms.test", text))  # no recipient refused
    return text


def test_many_starttls_sessions_do_not_use_up_the_connection_cap(server: ThreadServer, tls: Tls) -> None:
    """A STARTTLS session counts once against the per-client cap, so more sessions than the cap still get in."""
    assert server.app is not None
    for _ in range(server.app.gate.max_per_client + 5):
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.starttls(context=tls.client_context())
            assert client.noop()[0] == 250
    wait_until(lambda: server.app is not None and server.app.gate.total == 0)
    assert not server.app.gate.open

