"""AUTH floods: failed logins per client network are throttled (454 4.7.0), while another network logs in at once."""

from __future__ import annotations

import io
import json
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import mail2sms.smtp.auth as auth
from mail2sms.observability import setup
from mail2sms.smtp.auth import hash_password
from mail2sms.smtp.replies import AUTH_THROTTLED
from tests.harness import ThreadServer, thread_server
from tests.secure import Tls, b64, config, make_tls

RIGHT = "alarm-password-1"
MAX_FAILURES = 3
BODY = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
allow = ["authenticated"]

[[users]]
name = "alarm"
password_hash = "{hash}"
"""


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


@pytest.fixture
def server(tmp_path: Path, tls: Tls) -> Iterator[ThreadServer]:
    path, _, _ = config(tmp_path, BODY.format(tmp=tmp_path, hash=hash_password(RIGHT)),
                        server=f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\ntrusted_networks = []\n'
                               f"auth_max_failures = {MAX_FAILURES}\nauth_failure_window = \"1h\"")
    with thread_server(path) as srv:
        yield srv


class Spy:
    """Counts the scrypt checks made, by password, and still runs them."""

    def __init__(self) -> None:
        self.real = auth.verify_password
        self.checked: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, password: str, encoded: str) -> bool:
        with self._lock:
            self.checked.append(password)
        return self.real(password, encoded)


def _auth(server: ThreadServer, tls: Tls, password: str, source: str = "127.0.0.1") -> tuple[int, str]:
    """One AUTH PLAIN after STARTTLS from `source` (any 127/8 address reaches the loopback listener)."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=60, source_address=(source, 0)) as client:
        client.starttls(context=tls.client_context())
        client.ehlo("client.example.org")
        code, text = client.docmd("AUTH", "PLAIN " + b64(f"\0alarm\0{password}"))
        return code, text.decode()


def test_failed_logins_are_throttled_per_network(server: ThreadServer, tls: Tls,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """After the configured failures, the network gets 454 4.7.0 even for the right password, which is not checked."""
    spy = Spy()
    monkeypatch.setattr(auth, "verify_password", spy)
    for i in range(MAX_FAILURES):
        assert _auth(server, tls, f"guess-number-{i}")[0] == 535
    code, text = _auth(server, tls, RIGHT)
    assert AUTH_THROTTLED.matches(code, text)
    assert RIGHT not in spy.checked  # the throttled attempt never reached scrypt
    assert _auth(server, tls, RIGHT, source="127.0.0.2")[0] == 235  # another network is not affected


def test_flood_from_one_network_leaves_another_network_alone(server: ThreadServer, tls: Tls,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight parallel guessing sessions get few scrypt checks; a login from another address during the flood works."""
    spy = Spy()
    monkeypatch.setattr(auth, "verify_password", spy)
    codes: list[int] = []
    lock = threading.Lock()

    def guess(n: int) -> None:
        for i in range(4):
            code, _ = _auth(server, tls, f"flood-{n}-{i}")
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    legit = _auth(server, tls, RIGHT, source="127.0.0.3")
    for t in threads:
        t.join(120)
    assert legit[0] == 235
    assert len(codes) == 32
    assert set(codes) <= {535, 454}
    assert codes.count(454) >= 32 - MAX_FAILURES - 8
    guesses_checked = [p for p in spy.checked if p.startswith("flood-")]
    # Only the failures up to the limit, plus guesses already past the check when the limit was reached.
    assert len(guesses_checked) <= MAX_FAILURES + 8


def test_auth_failed_lines_name_the_client(server: ThreadServer, tls: Tls) -> None:
    """An "auth failed" log line carries the client's address, and never the password tried."""
    stream = io.StringIO()
    setup("info", stream=stream, json=True)
    try:
        assert _auth(server, tls, "wrong-password-canary", source="127.0.0.4")[0] == 535
    finally:
        setup("info")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("event") == "auth failed"]
    assert failed
    assert failed[0]["peer"] == "127.0.0.4"
    assert "wrong-password-canary" not in stream.getvalue()
