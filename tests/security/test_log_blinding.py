"""Log blinding: failed AUTH passwords and mail-body credentials can never mask the words of later log lines."""

from __future__ import annotations

import datetime
import io
import json
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mail2sms.observability import SECRETS, setup
from mail2sms.smtp.auth import hash_password
from tests.harness import ThreadServer, message, send, thread_server, wait_until
from tests.secure import Tls, b64, config, make_tls

BODY = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "out"
region = "KW"
allow = ["trusted"]

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
allow = ["trusted"]

[[users]]
name = "alarm"
password_hash = "{hash}"
"""


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup("info", stream=stream, json=True)
    yield stream
    setup("info")


@pytest.fixture
def server(tmp_path: Path, tls: Tls, logs: io.StringIO) -> Iterator[ThreadServer]:
    path, _, _ = config(tmp_path, BODY.format(tmp=tmp_path, hash=hash_password("alarm-password-1")),
                        server=f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"')
    with thread_server(path) as srv:
        yield srv


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_failed_auth_passwords_do_not_blind_the_log(server: ThreadServer, tls: Tls, logs: io.StringIO) -> None:
    """Failing AUTH with `127.0.0.1`, `queued`, `info` or today's date masks none of them in later lines."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    for guess in ("127.0.0.1", "queued", "info", today, "mail2sms.smtp"):
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.starttls(context=tls.client_context())
            client.ehlo("client.example.org")
            assert client.docmd("AUTH", "PLAIN " + b64(f"\0alarm\0{guess}"))[0] == 535
    code, _ = send(server.port, message("96550000001@sms.test", "hello"))
    assert code == 250
    queued = wait_until(lambda: [line for line in _lines(logs) if line.get("event") == "queued"])
    assert queued[0]["peer"] == "127.0.0.1"
    assert queued[0]["level"] == "info"
    assert queued[0]["timestamp"].startswith(today)
    assert "***" not in logs.getvalue()


def test_body_credentials_are_masked_but_never_hide_structural_fields(server: ThreadServer,
                                                                      logs: io.StringIO) -> None:
    """A keyvalue password equal to today's date is masked in free text, yet timestamps and events stay whole."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    body = f"username:someone\npassword:{today}\nmobile:96550000002\ntext:hi\n"
    code, _ = send(server.port, message("sms@sms.test", body))
    assert code == 250
    queued = wait_until(lambda: [line for line in _lines(logs) if line.get("event") == "queued"])
    assert queued[0]["timestamp"].startswith(today)
    assert SECRETS.scrub(f"a note about {today}") == "a note about ***"
    SECRETS.discard([today])


def test_short_and_failed_values_are_never_registered(server: ThreadServer, tls: Tls) -> None:
    """A wrong AUTH password is not registered, and the right one is, once verified."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.starttls(context=tls.client_context())
        client.ehlo("client.example.org")
        assert client.docmd("AUTH", "PLAIN " + b64("\0alarm\0not-the-password-xyz"))[0] == 535
        assert client.docmd("AUTH", "PLAIN " + b64("\0alarm\0alarm-password-1"))[0] == 235
    assert SECRETS.scrub("not-the-password-xyz") == "not-the-password-xyz"
    assert SECRETS.scrub("x alarm-password-1 y") == "x *** y"
