"""Connection floods (issue 12, item 3): TLS handshakes count as connections and are bounded in time, chatter without
mail and endless sessions get 421, the HTTP listener is capped, and running out of file descriptors is logged once
while an open session's RCPT still answers (number metadata is loaded at start)."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ROOT, free_port, message, thread_server, wait_until
from tests.secure import KWT_ADDRESS, RawSmtp, Tls, config, http_get, make_tls


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 1000.0)}, same_number_interval=0) as fake:
        yield fake


def tls_config(tmp: Path, kwt: FakeKwtSms, tls: Tls, extra: str) -> tuple[Path, int]:
    tls_port = free_port()
    server = f'tls_listen = ["127.0.0.1:{tls_port}"]\ntls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n' + extra
    path, _, _ = config(tmp, KWT_ADDRESS.format(url=kwt.url), server=server)
    return path, tls_port


def tls_greeting(port: int, tls: Tls) -> bytes:
    """Connect to the implicit-TLS port, handshake, and return the greeting line."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        tls.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        return sock.recv(1024)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (reads EOF or a reset); waits up to the socket's timeout."""
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_idle_tls_handshakes_count_towards_max_connections(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """Five connections that never start TLS fill max_connections = 5: a sixth is refused until they go away."""
    tls = make_tls(tmp_path)
    path, tls_port = tls_config(tmp_path, kwt, tls, "max_connections = 5\ntls_handshake_timeout = 600")
    with thread_server(path):
        idle = [socket.create_connection(("127.0.0.1", tls_port), timeout=30) for _ in range(5)]
        try:
            wait_until(lambda: refused_tls(tls_port, tls), timeout=60)
        finally:
            for sock in idle:
                sock.close()
        # Their slots come back as they close: a real client gets its greeting.
        wait_until(lambda: not refused_tls(tls_port, tls), timeout=60)
        assert tls_greeting(tls_port, tls).startswith(b"220 ")


def refused_tls(port: int, tls: Tls) -> bool:
    try:
        greeting = tls_greeting(port, tls)
    except (ssl.SSLError, OSError):
        return True
    return not greeting.startswith(b"220 ")


def test_a_handshake_that_never_comes_is_cut_off(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """A connection that sends nothing on the TLS port is closed after tls_handshake_timeout and frees its slot."""
    tls = make_tls(tmp_path)
    path, tls_port = tls_config(tmp_path, kwt, tls, "max_connections = 1\ntls_handshake_timeout = 0.5")
    with thread_server(path) as srv:
        with socket.create_connection(("127.0.0.1", tls_port), timeout=120) as idle:
            assert closed_by_server(idle)
        assert srv.app is not None
        wait_until(lambda: srv.app is not None and srv.app.gate.total == 0, timeout=60)
        assert tls_greeting(tls_port, tls).startswith(b"220 ")


def test_noop_chatter_gets_421_and_a_mail_resets_the_count(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """After max_idle_commands NOOP/RSET/EHLO without a mail the server says 421 and closes; a mail resets it."""
    path, _, _ = config(tmp_path, KWT_ADDRESS.format(url=kwt.url), server="max_idle_commands = 5")
    with thread_server(path) as srv:
        client = RawSmtp(srv.port)
        assert client.command("EHLO client.example.org")[0] == 250
        for _ in range(4):
            assert client.command("NOOP")[0] == 250
        assert client.command("MAIL FROM:<alice@example.org>")[0] == 250
        assert client.command("RCPT TO:<96550000010@sms.test>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send(message("96550000010@sms.test", "progress").as_bytes().replace(b"\n", b"\r\n") + b".\r\n")
        assert client.reply()[0] == 250
        for _ in range(5):
            assert client.command("RSET")[0] == 250
        code, text = client.command("NOOP")
        assert replies.TOO_MANY_COMMANDS.matches(code, text), text
        assert closed_by_server(client.sock)
        client.sock.close()


def test_a_session_ends_at_its_lifetime(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """A session still open at session_lifetime hears 421 4.4.2 and is closed, whatever it is doing."""
    path, _, _ = config(tmp_path, KWT_ADDRESS.format(url=kwt.url), server="session_lifetime = 0.5")
    with thread_server(path) as srv:
        client = RawSmtp(srv.port)
        client.sock.settimeout(120)
        code, text = client.reply()
        assert replies.SESSION_TOO_LONG.matches(code, text), text
        assert closed_by_server(client.sock)
        client.sock.close()
        assert srv.app is not None
        wait_until(lambda: srv.app is not None and srv.app.gate.total == 0, timeout=60)


def test_http_listener_caps_its_connections(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """With the HTTP listener's connections all held by idle clients, a request gets 503 busy; then 200 again."""
    from mail2sms.web import MAX_CONNECTIONS

    path, _, http_port = config(tmp_path, KWT_ADDRESS.format(url=kwt.url), http=True)
    assert http_port is not None
    with thread_server(path):
        idle = [socket.create_connection(("127.0.0.1", http_port), timeout=30) for _ in range(MAX_CONNECTIONS)]
        try:
            wait_until(lambda: http_get(http_port, "/healthz") == (503, b"busy\n"), timeout=60)
        finally:
            for sock in idle:
                sock.close()
        wait_until(lambda: http_get(http_port, "/healthz")[0] == 200, timeout=60)


@pytest.mark.slow
def test_out_of_file_descriptors_is_logged_once_and_rcpt_still_answers(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """Under a 128-descriptor limit a flood makes accept() fail: one log line, no traceback; an open session's
    RCPT to a new country and DATA still get 250; when the flood ends new clients are served again."""
    path, port, _ = config(tmp_path, KWT_ADDRESS.format(url=kwt.url), server="max_connections = 1000")
    log_path = tmp_path / "server.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mail2sms", "serve", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            preexec_fn=limit,
        )
    flood: list[socket.socket] = []
    try:
        wait_until(lambda: b"listening" in log_path.read_bytes(), timeout=60)
        early = RawSmtp(port)  # connected before the flood
        assert early.command("EHLO early.example.org")[0] == 250
        for _ in range(250):
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_until(lambda: b"accept failed" in log_path.read_bytes(), timeout=60)
        assert early.command("MAIL FROM:<alice@example.org>")[0] == 250
        assert early.command("RCPT TO:<+447911123456@sms.test>")[0] == 250  # a region not used before
        assert early.command("DATA")[0] == 354
        early.send(b"Subject: during the flood\r\n\r\nstill here\r\n.\r\n")
        assert early.reply()[0] == 250
        early.sock.close()
        for sock in flood:
            sock.close()
        flood.clear()
        wait_until(lambda: greets(port), timeout=60)
        text = log_path.read_text(errors="replace")
        assert text.count("accept failed") == 1, text[-3000:]
        assert "Traceback" not in text
        assert "socket.accept() out of system resource" not in text
    finally:
        for sock in flood:
            sock.close()
        proc.kill()
        proc.wait(30)


def greets(port: int) -> bool:
    """True when a new client gets the 220 greeting."""
    try:
        client = RawSmtp(port)
    except OSError:
        return False
    client.sock.close()
    return client.greeting[0] == 220
