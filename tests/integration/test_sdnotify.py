"""systemd integration: `mail2sms serve` tells a NOTIFY_SOCKET READY=1, WATCHDOG=1 and STOPPING=1; the unit verifies."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms import sdnotify
from tests.harness import ROOT, ProcessServer, write_config

BODY = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound where systemd's would be; short path, since AF_UNIX paths have ~100 bytes."""
    directory = Path("/tmp") / f"m2s-{secrets.token_hex(4)}"
    directory.mkdir()
    path = directory / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)  # a hang fails the test instead of stalling the suite; nothing asserts on timing
    try:
        yield sock, str(path)
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def messages(sock: socket.socket) -> Iterator[set[str]]:
    """Each datagram as a set of its KEY=value lines."""
    while True:
        yield set(sock.recv(4096).decode().split("\n"))


def test_serve_notifies_ready_watchdog_and_stopping(tmp_path: Path, notify_socket: tuple[socket.socket, str]) -> None:
    """READY=1 comes once SMTP answers, WATCHDOG=1 keeps coming at half WATCHDOG_USEC, STOPPING=1 on SIGTERM."""
    sock, address = notify_socket
    path, port = write_config(tmp_path, BODY.format(tmp=tmp_path))
    server = ProcessServer(path, port, tmp_path / "serve.log",
                           env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    server.start()
    try:
        received = messages(sock)
        first = next(received)
        assert "READY=1" in first
        assert any(line.startswith("STATUS=") for line in first)
        assert "WATCHDOG=1" in next(received)
        assert "WATCHDOG=1" in next(received)
    finally:
        assert server.terminate() == 0
    rest = []
    sock.settimeout(0)
    while True:
        try:
            rest.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    assert any("STOPPING=1" in m for m in rest)


def test_no_watchdog_for_another_pid() -> None:
    """WATCHDOG_PID naming another process turns the watchdog off; no WATCHDOG_USEC means none either."""
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_abstract_namespace_socket() -> None:
    """An `@name` NOTIFY_SOCKET is Linux's abstract namespace: the datagram arrives there."""
    name = f"mail2sms-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(30)
        assert sdnotify.Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).ready("up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"


def test_without_notify_socket_nothing_is_sent() -> None:
    """No NOTIFY_SOCKET: every notification is a quiet no-op."""
    notifier = sdnotify.Notifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_unreachable_socket_is_not_fatal(tmp_path: Path) -> None:
    """A NOTIFY_SOCKET nobody listens on makes notify() return False rather than raise."""
    assert not sdnotify.Notifier(str(tmp_path / "nobody")).ready()


def test_unit_file_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts systemd/mail2sms.service without a warning (when the tool is present)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "systemd" / "mail2sms.service").read_text(encoding="utf-8")
    for key in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=", "ProtectSystem=strict",
                "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "SystemCallFilter=",
                "LoadCredential=", "ExecStartPre=/opt/mail2sms/bin/mail2sms check-config",
                "ExecReload=/bin/kill -HUP $MAINPID"):
        assert key in unit
    # verify checks that ExecStart's program exists: point it at one that does, change nothing else.
    copy = tmp_path / "mail2sms.service"
    copy.write_text(unit.replace("/opt/mail2sms/bin/mail2sms", shutil.which("mail2sms") or sys.executable),
                    encoding="utf-8")
    result = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 and "mail2sms.service" not in result.stderr + result.stdout:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "mail2sms.service" in line]
    assert result.returncode == 0, result.stderr
    assert not complaints
