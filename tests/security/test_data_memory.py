"""DATA memory (issue 12, item 2): a mail costs a small multiple of its size whatever its lines look like, all mails
being received at once share `server.max_memory`, and a normal client's mail still gets its 250 meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ProcessServer, thread_server, wait_until
from tests.secure import KWT_ADDRESS, config
from tests.security.monitor import Bystander, DataSession, RssMonitor

MiB = 1024 * 1024


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 1000.0)}, same_number_interval=0) as fake:
        yield fake


def start(tmp: Path, kwt: FakeKwtSms, server: str = "") -> ProcessServer:
    path, port, _ = config(tmp, KWT_ADDRESS.format(url=kwt.url), server=server)
    return ProcessServer(path, port, tmp / "server.log").start()


def empty_lines(size: int) -> bytes:
    """A mail of `size` bytes that is nearly all empty lines: the shape that cost one object per line."""
    head = b"Subject: empty lines\r\n\r\n"
    return head + b"\r\n" * ((size - len(head)) // 2)


def with_attachment(size: int) -> bytes:
    """A short text and a base64 attachment: `size` bytes that parse quickly, so memory is what is measured."""
    head = (
        b"Subject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    line = b"QUFB" * 19 + b"\r\n"
    return head + line * ((size - len(head)) // len(line)) + b"--b--\r\n"


@pytest.mark.slow
def test_ten_mib_of_empty_lines_costs_a_small_multiple_of_its_size(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """One session sending 10 MiB of empty lines grows the server by at most 4x the mail (was 70x), then a 552."""
    mail = empty_lines(10 * MiB - 1024)
    server = start(tmp_path, kwt)
    try:
        assert server.proc is not None
        with RssMonitor(server.proc.pid) as monitor:
            sock = DataSession(server.port)
            sock.sendall(mail + b".\r\n")
            reply = sock.reply()
            sock.close()
        assert reply.startswith(b"552 5.3.4"), reply  # more lines than the parser may keep (parse.mime.MAX_LINES)
        assert monitor.growth <= 4 * len(mail), (monitor.baseline, monitor.peak)
    finally:
        server.kill()


@pytest.mark.slow
def test_ten_big_sessions_share_the_budget_and_a_bystander_gets_250(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """Ten sessions mid-DATA with 3.5 MiB each: the ones over max_memory get 452, a normal mail gets 250 meanwhile."""
    budget = 100 * MiB
    server = start(tmp_path, kwt, server=f'max_message_size = "4MiB"\nmax_memory = {budget}')
    try:
        assert server.proc is not None
        body = with_attachment(int(3.5 * MiB))
        with RssMonitor(server.proc.pid) as monitor:
            attackers = [DataSession(server.port) for _ in range(10)]
            for sock in attackers:
                sock.sendall(body)  # no end of data yet: every session holds what it sent
            bystander = Bystander(server.port, count=1)
            bystander.send_one()  # while all ten are still in DATA
            for sock in attackers:
                sock.sendall(b".\r\n")
            answers = [sock.reply() for sock in attackers]
            for sock in attackers:
                sock.close()
        assert bystander.replies == [250], bystander.errors
        refused = [a for a in answers if replies.MEMORY_FULL.matches(int(a[:3]), a[4:].decode().strip())]
        accepted = [a for a in answers if a.startswith(b"250")]
        assert refused, answers
        assert accepted, answers
        assert len(refused) + len(accepted) == 10, answers
        # Each mail reserves 10 bytes per byte (smtp.data); what the process really grew stays inside the budget.
        assert monitor.growth <= budget, (monitor.baseline, monitor.peak)
    finally:
        server.kill()


def test_over_max_message_size_is_read_to_the_end_then_refused(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """A mail over max_message_size gets 552 5.3.4 after its end of data, and the session goes on to a good mail."""
    path, port, _ = config(tmp_path, KWT_ADDRESS.format(url=kwt.url), server='max_message_size = "100KB"')
    with thread_server(path):
        session = DataSession(port)
        session.sendall(b"Subject: big\r\n\r\n" + b"y" * 76 * 3000 + b"\r\n.\r\n")
        answer = session.reply().decode().strip()
        assert replies.TOO_BIG.matches(int(answer[:3]), answer[4:]), answer
        for command, code in (
            (b"MAIL FROM:<alice@example.org>\r\n", b"250"),
            (b"RCPT TO:<96550000004@sms.test>\r\n", b"250"),
            (b"DATA\r\n", b"354"),
        ):
            session.sendall(command)
            assert session.reply().startswith(code)
        session.sendall(b"Subject: small\r\n\r\nafter the big one\r\n.\r\n")
        assert session.reply().startswith(b"250 2.0.0 queued as")
        session.close()


def test_commands_pipelined_after_the_end_of_data_are_answered(tmp_path: Path, kwt: FakeKwtSms) -> None:
    """Bytes after the end of data in the same packet (RFC 2920 pipelining) go back to the command reader."""
    path, port, _ = config(tmp_path, KWT_ADDRESS.format(url=kwt.url))
    with thread_server(path):
        session = DataSession(port)
        session.sendall(b"Subject: pipelined\r\n\r\n..dot-stuffed line\r\n.\r\nNOOP\r\nQUIT\r\n")
        assert session.reply().startswith(b"250 2.0.0 queued as")
        assert session.reply().startswith(b"250")  # NOOP
        assert session.reply().startswith(b"221")  # QUIT
        session.close()
        wait_until(lambda: [s.text for s in kwt.sent] == [".dot-stuffed line"], timeout=120)
