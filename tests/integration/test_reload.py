"""SIGHUP reloads the config of a running `mail2sms serve` (systemd's ExecReload) without dropping sessions.

Routes, users, provider settings and the TLS certificate change; an SMTP session opened before the reload carries
on and sees the new routes; a config that does not load, or that adds a provider, is refused and the running
one stays.
"""

from __future__ import annotations

import json
import signal
import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ProcessServer, message, wait_until, write_config
from tests.secure import make_tls

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "{username}"
password = "{password}"
sender = "KWT-MESSAGE"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""

NEW_ROUTE = """
[[routes]]
match = "*@new.test"
format = "address"
provider = "kwt"
region = "KW"
"""


def events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            parsed = json.loads(line)
            if parsed.get("event") == event:
                found.append(parsed)
    return found


def sighup_and_wait(server: ProcessServer, log: Path, event: str, count: int) -> dict[str, Any]:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    return wait_until(lambda: len(events(log, event)) >= count and events(log, event)[-1], timeout=120)


def test_sighup_reloads_routes_provider_and_certificate_while_a_session_stays_open(tmp_path: Path) -> None:
    """After SIGHUP an open session can use a route that did not exist when it began, the SMS goes out on the
    provider account the new config names, new TLS handshakes get the new certificate, and the server runs on."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old_tls, new_tls = make_tls(tmp_path / "old"), make_tls(tmp_path / "new")
    with FakeKwtSms(accounts={"user": ("pass", 100.0), "other": ("other-pass", 100.0)}, same_number_interval=0) as kwt:
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url, username="user", password="pass"))
        text = path.read_text(encoding="utf-8")
        tls_lines = 'tls_cert = "cert.pem"\ntls_key = "key.pem"'
        text = text.replace('hostname = "sms.test"', f'hostname = "sms.test"\n{tls_lines}')
        path.write_text(text, encoding="utf-8")
        for name in ("cert.pem", "key.pem"):
            (tmp_path / name).write_bytes((old_tls.cert if name == "cert.pem" else old_tls.key).read_bytes())
        log = tmp_path / "server.log"
        server = ProcessServer(path, port, log).start()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as session:
                session.ehlo("client.example.org")
                assert session.starttls(context=old_tls.client_context())[0] == 220
                session.ehlo("client.example.org")
                assert session.mail("alice@example.org")[0] == 250
                assert session.rcpt("96550000001@new.test")[0] == 550  # not a route yet

                new = CONFIG.format(url=kwt.url, username="other", password="other-pass") + NEW_ROUTE
                path.write_text(text.split("\n[providers.kwt]")[0] + new, encoding="utf-8")
                for name in ("cert.pem", "key.pem"):
                    (tmp_path / name).write_bytes((new_tls.cert if name == "cert.pem" else new_tls.key).read_bytes())
                reloaded = sighup_and_wait(server, log, "config reloaded", 1)
                assert reloaded["routes"] == 2
                assert reloaded["sessions"] == 1

                assert session.rcpt("96550000001@new.test")[0] == 250  # the same session, the new route
                assert session.data(message("96550000001@new.test", "after reload").as_bytes())[0] == 250
            wait_until(lambda: kwt.sent, timeout=120)
            assert [(s.username, s.number, s.text) for s in kwt.sent] == [("other", "96550000001", "after reload")]

            with smtplib.SMTP("127.0.0.1", port, timeout=30) as fresh:
                fresh.ehlo("client.example.org")
                with pytest.raises(ssl.SSLCertVerificationError):
                    fresh.starttls(context=old_tls.client_context())
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as fresh:
                fresh.ehlo("client.example.org")
                assert fresh.starttls(context=new_tls.client_context())[0] == 220

            # A provider added, then a broken file: both refused, the running config stays.
            path.write_text(path.read_text(encoding="utf-8") + '\n[providers.more]\ntype = "outbox"\npath = "x"\n')
            refused = sighup_and_wait(server, log, "reload refused; the running config stays", 1)
            assert any("needs a restart" in p for p in refused["problems"])
            path.write_text("[server\n", encoding="utf-8")
            sighup_and_wait(server, log, "reload refused; the running config stays", 2)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as after:
                after.ehlo("client.example.org")
                assert after.mail("alice@example.org")[0] == 250
                assert after.rcpt("96550000002@new.test")[0] == 250
        finally:
            assert server.terminate() == 0
    assert "other-pass" not in log.read_text(encoding="utf-8")


def test_sighup_to_the_supervisor_reloads_every_worker(tmp_path: Path) -> None:
    """With `server.workers = 2`, SIGHUP to the supervisor reloads both workers: each logs the reload, and a
    route added to the file works on every new connection, whichever worker takes it."""
    with FakeKwtSms(accounts={"user": ("pass", 100.0)}, same_number_interval=0) as kwt:
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url, username="user", password="pass"))
        text = path.read_text(encoding="utf-8").replace('hostname = "sms.test"', 'hostname = "sms.test"\nworkers = 2')
        path.write_text(text, encoding="utf-8")
        log = tmp_path / "server.log"
        server = ProcessServer(path, port, log).start()
        try:
            wait_until(lambda: len(events(log, "listening")) >= 2, timeout=120)
            path.write_text(text + NEW_ROUTE, encoding="utf-8")
            sighup_and_wait(server, log, "config reloaded", 2)
            for _ in range(6):
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                    client.ehlo("client.example.org")
                    assert client.mail("alice@example.org")[0] == 250
                    assert client.rcpt("96550000001@new.test")[0] == 250
        finally:
            assert server.terminate() == 0
