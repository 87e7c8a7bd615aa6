"""Watching a mail2sms process under attack: its memory (RSS sampled from /proc) and a normal client beside it.

Used by the flood and bomb tests and by bench/security_bench.py. `RssMonitor` samples VmRSS of a pid on a thread;
`Bystander` sends ordinary mails one after another and records each reply and how long it took. Tests assert
bounds as ratios or generous limits and the order of events, never durations; the benchmark prints them.
"""

from __future__ import annotations

import email.policy
import smtplib
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tests.harness import message

BYSTANDER_RCPT = "96550000999@sms.test"


def rss(pid: int) -> int:
    """Resident set size of `pid` in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class RssMonitor:
    """Peak RSS of a process while the `with` block runs, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = rss(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self._stop.wait(self.interval)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.peak = max(self.peak, rss(self.pid))


@dataclass
class Bystander:
    """A normal client sending one small mail at a time to `port` until stopped (or `count` mails)."""

    port: int
    count: int | None = None
    source: str = "127.0.0.1"  # another loopback address keeps it out of the attacker's per-client count
    replies: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_reply: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def send_one(self) -> int:
        started = time.perf_counter()
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=120, source_address=(self.source, 0)) as client:
                client.ehlo("bystander.example.org")
                client.mail("bystander@example.org")
                client.rcpt(BYSTANDER_RCPT)
                code, _ = client.data(message(BYSTANDER_RCPT, "bystander").as_bytes(policy=email.policy.SMTP))
        except (OSError, smtplib.SMTPException) as exc:
            self.errors.append(type(exc).__name__)
            code = 0
        self.latencies.append(time.perf_counter() - started)
        self.replies.append(code)
        self.first_reply.set()
        return code

    def _run(self) -> None:
        while not self._stop.is_set() and (self.count is None or len(self.replies) < self.count):
            self.send_one()

    def __enter__(self) -> Bystander:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(180)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


class DataSession:
    """A raw SMTP session that has said DATA and got 354: the caller sends the mail's bytes, then reads the reply."""

    def __init__(self, port: int, rcpt: str = "96550000001@sms.test") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.reader = self.sock.makefile("rb")
        expect(self.reader, b"220")
        commands = (
            (b"EHLO attacker.example\r\n", b"250 "),
            (b"MAIL FROM:<attacker@example.org>\r\n", b"250"),
            (f"RCPT TO:<{rcpt}>\r\n".encode(), b"250"),
            (b"DATA\r\n", b"354"),
        )
        for command, code in commands:
            self.sock.sendall(command)
            expect(self.reader, code)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """The next reply line (the answer to the end of data)."""
        line: bytes = self.reader.readline()
        return line

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def expect(reader: BinaryIO, prefix: bytes) -> bytes:
    """Read reply lines until one starts with `prefix` (multi-line replies end with 'code SP')."""
    while True:
        line = reader.readline()
        if not line:
            raise AssertionError(f"connection closed while waiting for {prefix!r}")
        if line.startswith(prefix):
            return line
        if line[3:4] == b" ":
            raise AssertionError(f"expected {prefix!r}, got {line!r}")
