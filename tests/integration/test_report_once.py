"""One outcome report per mail whatever the process count: `workers = 2` with a smarthost, `workers = 2` sharing a
maildir, and two nodes on one PostgreSQL spool (issue 13, item 1).

Each test sends mail through real `mail2sms serve` processes with smtplib, waits until the spool says every
report is settled, and counts what arrived: at a real SMTP sink on loopback (aiosmtpd) or as maildir files.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.harness import ProcessServer, free_port, message, reports, send, wait_until, write_config

MAILS = 60
CONFIG = """
[providers.out]
type = "outbox"
path = "{outbox}"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
"""


class Sink:
    """An SMTP server that keeps every message it is given (a smarthost that delivers nothing further)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(envelope.original_content or envelope.content)
        return "250 2.0.0 kept"

    def replies_to(self) -> collections.Counter[str]:
        """How many reports arrived for each original mail (by its In-Reply-To)."""
        with self._lock:
            parsed = [message_from_bytes(m, policy=email_policy.default) for m in self.messages]
        return collections.Counter(str(m["In-Reply-To"]) for m in parsed)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """A smarthost on 127.0.0.1: the sink and its port."""
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def configure(home: Path, *, workers: int = 1, smarthost: int | None = None, spool_url: str | None = None,
              maildir: Path | None = None) -> tuple[Path, int]:
    """A config for one server (or node) in `home`; reports to the smarthost on `smarthost`, or a maildir."""
    home.mkdir(parents=True, exist_ok=True)
    path, port = write_config(home, CONFIG.format(outbox=home / "outbox.jsonl"))
    text = path.read_text(encoding="utf-8")
    if workers > 1:
        text = text.replace('hostname = "sms.test"', f'hostname = "sms.test"\nworkers = {workers}')
    if spool_url is not None:
        text = text.replace(f'url = "sqlite://{home}/spool.db"', f'url = "{spool_url}"')
    if maildir is not None:
        text = text.replace(f'maildir = "{home}/reports"', f'maildir = "{maildir}"')
    if smarthost is not None:
        text = text.replace('from = "mail2sms@sms.test"',
                            f'from = "mail2sms@sms.test"\nsmarthost = "127.0.0.1:{smarthost}"\nsmarthost_tls = "none"')
    path.write_text(text, encoding="utf-8")
    return path, port


def send_all(ports: list[int]) -> list[str]:
    """MAILS mails from distinct senders (no per-sender rate limit), spread over the ports; their Message-IDs."""
    ids = []
    for i in range(MAILS):
        sender = f"user{i}@example.org"
        msg = message(f"9655{i:07d}@sms.test", f"report once {i}", sender=sender)
        code, _ = send(ports[i % len(ports)], msg, sender=sender)
        assert code == 250
        ids.append(str(msg["Message-ID"]))
    return ids


def sqlite_report_states(path: Path) -> collections.Counter[str]:
    with sqlite3.connect(path) as conn:
        return collections.Counter(r[0] for r in conn.execute("SELECT report_state FROM submissions"))


def pg_report_states(url: str) -> collections.Counter[str]:
    with psycopg.connect(url) as conn:
        return collections.Counter(r[0] for r in conn.execute("SELECT report_state FROM submissions"))


def test_two_workers_send_each_report_once_through_the_smarthost(tmp_path: Path, sink: tuple[Sink, int]) -> None:
    """`workers = 2` and a smarthost: every mail gets exactly one report, however the workers race for them."""
    handler, smarthost = sink
    path, port = configure(tmp_path, workers=2, smarthost=smarthost)
    server = ProcessServer(path, port, tmp_path / "server.log").start()
    try:
        ids = send_all([port])
        wait_until(lambda: sqlite_report_states(tmp_path / "spool.db") == {"sent": MAILS}, timeout=120, interval=0.2)
    finally:
        assert server.terminate() == 0
    counts = handler.replies_to()
    assert counts == dict.fromkeys(ids, 1)


def test_two_workers_sharing_a_maildir_write_each_report_once(tmp_path: Path) -> None:
    """`workers = 2` writing one maildir: one file per mail, none written twice across a second boundary."""
    path, port = configure(tmp_path, workers=2)
    server = ProcessServer(path, port, tmp_path / "server.log").start()
    try:
        ids = send_all([port])
        wait_until(lambda: sqlite_report_states(tmp_path / "spool.db") == {"sent": MAILS}, timeout=120, interval=0.2)
    finally:
        assert server.terminate() == 0
    counts = collections.Counter(str(m["In-Reply-To"]) for m in reports(tmp_path / "reports"))
    assert counts == dict.fromkeys(ids, 1)
    # Delivered reports leave nothing behind in the index (the spool records them as sent).
    assert list((tmp_path / "reports" / "mail2sms-index").iterdir()) == []


def test_two_postgres_nodes_send_each_report_once(tmp_path: Path, pg_url: str, sink: tuple[Sink, int]) -> None:
    """Two nodes on one PostgreSQL spool, one smarthost: exactly one report per mail, whichever node holds it."""
    handler, smarthost = sink
    nodes = []
    for name in ("a", "b"):
        path, port = configure(tmp_path / name, smarthost=smarthost, spool_url=pg_url)
        nodes.append(ProcessServer(path, port, tmp_path / name / "server.log",
                                   env={"MAIL2SMS_NODE": f"node-{name}"}).start())
    try:
        ids = send_all([n.port for n in nodes])
        wait_until(lambda: pg_report_states(pg_url) == {"sent": MAILS}, timeout=120, interval=0.2)
    finally:
        for node in nodes:
            assert node.terminate() == 0
    counts = handler.replies_to()
    assert counts == dict.fromkeys(ids, 1)


def test_two_postgres_nodes_sharing_a_maildir_write_each_report_once(tmp_path: Path, pg_url: str) -> None:
    """Two nodes on one PostgreSQL spool writing one maildir: one report file per mail."""
    shared = tmp_path / "reports"
    nodes = []
    for name in ("a", "b"):
        path, port = configure(tmp_path / name, spool_url=pg_url, maildir=shared)
        nodes.append(ProcessServer(path, port, tmp_path / name / "server.log",
                                   env={"MAIL2SMS_NODE": f"node-{name}"}).start())
    try:
        ids = send_all([n.port for n in nodes])
        wait_until(lambda: pg_report_states(pg_url) == {"sent": MAILS}, timeout=120, interval=0.2)
    finally:
        for node in nodes:
            assert node.terminate() == 0
    counts = collections.Counter(str(m["In-Reply-To"]) for m in reports(shared))
    assert counts == dict.fromkeys(ids, 1)
