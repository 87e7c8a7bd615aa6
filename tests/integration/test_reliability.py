"""Reliability: nothing lost, nothing doubled, nothing stuck, nothing stalls the server (issue: reliability)."""

from __future__ import annotations

import email.policy
import smtplib
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ProcessServer, message, reports, send, thread_server, wait_until, write_config

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
rate = 200
timeout = "5s"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


def kwt_fake() -> FakeKwtSms:
    return FakeKwtSms(accounts={"user": ("pass", 1_000_000.0)}, same_number_interval=0)


def job_states(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT number, state FROM jobs").fetchall())


class Client:
    """An MTA-like client: resends a message until it gets a 250 (queued or duplicate)."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.accepted: dict[str, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        for i in range(self.count):
            number = f"965600{i:05d}"
            msg = message(f"{number}@sms.test", f"storm {i}")
            while not self.stop.is_set():
                try:
                    code, text = send(self.port, msg)
                except (OSError, smtplib.SMTPException):
                    time.sleep(0.05)
                    continue
                if code == 250:
                    self.accepted[number] = text.decode().split()[-1]
                    break
                time.sleep(0.05)  # 4xx while shutting down: try again, as an MTA would


@pytest.mark.slow
def test_kill_storm_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """SIGKILLed four times while a client sends 300 mails: every 250 reaches the provider once or is `unknown`."""
    with kwt_fake() as kwt:
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url))
        # One request in flight at a time: a kill can then leave at most one job `unknown`.
        path.write_text(path.read_text().replace("poll_interval = 0.2", "poll_interval = 0.2\nconcurrency = 1"))
        server = ProcessServer(path, port, tmp_path / "server.log").start()
        client = Client(port, 300)
        thread = threading.Thread(target=client.run)
        thread.start()
        try:
            for _ in range(4):
                target = len(client.accepted) + 30
                wait_until(lambda: len(client.accepted) >= target, timeout=60)  # noqa: B023
                server.kill()
                server.start()
            thread.join(120)
            assert not thread.is_alive()
            wait_until(lambda: all(s in ("sent", "unknown") for s in job_states(tmp_path / "spool.db").values())
                       and len(job_states(tmp_path / "spool.db")) == 300, timeout=60)
        finally:
            client.stop.set()
            thread.join(10)
            server.terminate()
        sent = [s.number for s in kwt.sent]
    assert len(client.accepted) == 300
    states = job_states(tmp_path / "spool.db")
    assert len(sent) == len(set(sent)), "an SMS was sent twice"
    for number in client.accepted:
        if states[number] == "sent":
            assert number in sent
        else:
            assert states[number] == "unknown"  # reported "may have been sent"; at most once at the provider
    assert sum(1 for s in states.values() if s == "unknown") <= 4  # at most one in-flight batch per kill


def test_connection_dropped_after_250_then_resent_is_one_sms(tmp_path: Path) -> None:
    """A client that loses the connection right after our 250 and resends the same mail causes one SMS."""
    with kwt_fake() as kwt:
        path, _ = write_config(tmp_path, CONFIG.format(url=kwt.url))
        with thread_server(path) as server:
            msg = message("96550000400@sms.test", "dropped after 250")
            client = smtplib.SMTP("127.0.0.1", server.port)
            client.ehlo()
            client.mail("alice@example.org")
            client.rcpt("96550000400@sms.test")
            code, first = client.data(msg.as_bytes(policy=email.policy.SMTP))
            assert replies.QUEUED.matches(code, first)
            client.sock.close()  # no QUIT: the connection is just gone
            # The same message without reading our reply at all, then once more normally.
            with socket.create_connection(("127.0.0.1", server.port)) as raw:
                raw.recv(1024)
                raw.sendall(b"EHLO c\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<96550000400@sms.test>\r\nDATA\r\n")
                raw.settimeout(60)
                answers = b""
                while b"\r\n354 " not in answers:  # the data goes after DATA's 354, as a client sends it
                    chunk = raw.recv(4096)
                    assert chunk, answers
                    answers += chunk
                raw.sendall(msg.as_bytes(policy=email.policy.SMTP) + b".\r\n")
            code, again = send(server.port, msg)
            assert replies.DUPLICATE.matches(code, again)
            assert again.split()[-1] == first.split()[-1]
            wait_until(lambda: kwt.sent)
            # The submission's report is written, so its one job is final; and there is no other job to send later.
            wait_until(lambda: reports(tmp_path / "reports"))
            assert job_states(tmp_path / "spool.db") == {"96550000400": "sent"}
    assert [s.number for s in kwt.sent] == ["96550000400"]


def test_full_spool_answers_452_and_recovers(tmp_path: Path) -> None:
    """A spool that has no room answers 452 4.3.1 (never 250, never 5xx); with room again mail is accepted."""
    with kwt_fake() as kwt:
        kwt.refuse()  # keep jobs queued so the spool only grows
        path, _ = write_config(tmp_path, CONFIG.format(url=kwt.url))
        path.write_text(path.read_text().replace('url = "sqlite://', 'max_size = "160KiB"\nurl = "sqlite://', 1))
        codes = []
        with thread_server(path) as server:
            for i in range(200):
                code, text = send(server.port, message(f"96550001{i:03d}@sms.test", ("x" * 70 + "\n") * 10))
                codes.append(code)
                if code != 250:
                    assert replies.SPOOL_FULL.matches(code, text)
                    break
        assert codes[-1] == 452
        assert all(c == 250 for c in codes[:-1])
        path.write_text(path.read_text().replace('max_size = "160KiB"', 'max_size = "10MiB"'))
        with thread_server(path) as server:
            code, text = send(server.port, message("96550002000@sms.test", "room again"))
            assert replies.QUEUED.matches(code, text)


def test_mail_loop_is_refused(tmp_path: Path) -> None:
    """A mail with 100 Received: headers is a loop: 554 5.4.6, nothing sent."""
    with kwt_fake() as kwt:
        path, _ = write_config(tmp_path, CONFIG.format(url=kwt.url))
        with thread_server(path) as server:
            msg = message("96550000500@sms.test", "looping")
            for i in range(100):
                msg["Received"] = f"from hop{i}.example.org by hop{i + 1}.example.org; Sun, 22 Nov 2026 10:00:00 +0000"
            code, text = send(server.port, msg)
            assert replies.LOOP.matches(code, text)
        assert not kwt.requests


def _big_send(port: int, size: int, result: dict[str, object], halfway: threading.Event,
              go_on: threading.Event) -> None:
    """Send `size` bytes of DATA; at half way, signal and wait until told to go on."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        client.mail("alice@example.org")
        client.rcpt("96550000600@sms.test")
        client.putcmd("data")
        client.getreply()
        chunk = b"X" * 998 + b"\r\n"
        sent = 0
        while sent < size:
            client.sock.sendall(chunk * 100)
            sent += len(chunk) * 100
            if sent >= size // 2 and not halfway.is_set():
                halfway.set()
                go_on.wait(30)
        client.sock.sendall(b"\r\n.\r\n")
        result["reply"] = client.getreply()


def test_big_message_and_mime_bombs_do_not_block_others(tmp_path: Path) -> None:
    """An 11 MB message gets 552 and MIME bombs get clear 5xx, while another client's small mail gets its 250."""
    with kwt_fake() as kwt:
        path, _ = write_config(tmp_path, CONFIG.format(url=kwt.url))
        with thread_server(path) as server:
            result: dict[str, object] = {}
            halfway, go_on = threading.Event(), threading.Event()
            big = threading.Thread(target=_big_send,
                                   args=(server.port, 11 * 1024 * 1024, result, halfway, go_on))
            big.start()
            assert halfway.wait(30)
            code, _ = send(server.port, message("96550000601@sms.test", "small one"))  # while the big DATA is open
            go_on.set()
            big.join(60)
            assert code == 250
            reply = result["reply"]
            assert isinstance(reply, tuple)
            assert reply[0] == 552

            deep = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
            for i in range(1, 1000):
                deep += f"--b{i - 1}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n".encode()
            many = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" + (
                b"--zz\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 100_000) + b"--zz--\r\n"
            for bomb in (deep, many):
                raw = b"From: alice@example.org\r\nTo: 96550000602@sms.test\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n"
                with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
                    client.ehlo()
                    client.mail("alice@example.org")
                    client.rcpt("96550000602@sms.test")
                    code, text = client.data(raw + bomb)
                assert replies.TOO_MANY.matches(code, text), text
            code, _ = send(server.port, message("96550000603@sms.test", "after the bombs"))
            assert code == 250
            wait_until(lambda: len(kwt.sent) == 2)
        assert sorted(s.number for s in kwt.sent) == ["96550000601", "96550000603"]


@pytest.mark.slow
def test_sigterm_under_load_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM while clients send: the server exits within its deadline and every 250 is sent after a restart."""
    with kwt_fake() as kwt:
        kwt.refuse()
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url))
        text = path.read_text().replace('hostname = "sms.test"', 'hostname = "sms.test"\nshutdown_deadline = "3s"')
        path.write_text(text)
        server = ProcessServer(path, port, tmp_path / "server.log").start()
        client = Client(port, 60)
        thread = threading.Thread(target=client.run)
        thread.start()
        wait_until(lambda: len(client.accepted) >= 20, timeout=60)
        assert server.terminate(timeout=15) == 0
        kwt.start()
        server.start()
        thread.join(120)
        try:
            wait_until(lambda: len(kwt.sent) >= 60, timeout=60)
            wait_until(lambda: len(reports(tmp_path / "reports")) >= 60, timeout=60)
        finally:
            server.terminate()
    assert len(client.accepted) == 60
    assert sorted(s.number for s in kwt.sent) == sorted(client.accepted)
    assert len(reports(tmp_path / "reports")) == 60


def test_connection_caps_and_idle_timeout(tmp_path: Path) -> None:
    """Past the per-client cap a new connection hears 421 4.7.0; an idle session is closed with 421 4.4.2."""
    with kwt_fake() as kwt:
        path, _ = write_config(tmp_path, CONFIG.format(url=kwt.url))
        text = path.read_text().replace('hostname = "sms.test"',
                                        'hostname = "sms.test"\nmax_connections_per_client = 3\nidle_timeout = "1s"')
        path.write_text(text)
        with thread_server(path) as server:
            held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
            try:
                for conn in held:
                    assert conn.recv(1024).startswith(b"220 ")
                with socket.create_connection(("127.0.0.1", server.port)) as extra:
                    assert extra.recv(1024).startswith(str(replies.TOO_BUSY).encode())
                held[0].settimeout(10)
                assert held[0].recv(1024).startswith(str(replies.IDLE_TIMEOUT).encode())  # after 1 s idle
            finally:
                for conn in held:
                    conn.close()
            wait_until(lambda: server.app is not None and server.app.gate.total == 0)
            assert send(server.port, message("96550000800@sms.test", "room again"))[0] == 250


def test_too_many_recipients_get_452(tmp_path: Path) -> None:
    """Past server.max_recipients a RCPT gets 452 4.5.3, and the mail goes to the accepted ones only."""
    with kwt_fake() as kwt:
        path, _ = write_config(tmp_path, CONFIG.format(url=kwt.url))
        path.write_text(path.read_text().replace('hostname = "sms.test"', 'hostname = "sms.test"\nmax_recipients = 2'))
        with thread_server(path) as server, smtplib.SMTP("127.0.0.1", server.port) as client:
            client.ehlo()
            client.mail("alice@example.org")
            assert client.rcpt("96550000901@sms.test")[0] == 250
            assert client.rcpt("96550000902@sms.test")[0] == 250
            code, text = client.rcpt("96550000903@sms.test")
            assert replies.TOO_MANY_RECIPIENTS.matches(code, text)
            assert client.data(message("x@sms.test", "two only").as_bytes(policy=email.policy.SMTP))[0] == 250
            wait_until(lambda: len(kwt.sent) == 2)
        assert sorted(s.number for s in kwt.sent) == ["96550000901", "96550000902"]
