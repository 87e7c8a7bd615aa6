"""Benchmark: a mail2sms process under each attack of issue 12, with a normal client beside it.

    python bench/security_bench.py [--quick] [--out bench/security_results.md]

One run, one `python -m mail2sms serve` child process (default limits, a fake KwtSMS over HTTP on 127.0.0.1), five
phases in a row; in every phase a bystander on 127.0.0.2 sends one small mail after another and its session times
(connect to QUIT) give the p50 and p99, while the server's RSS is sampled from /proc every 10 ms (each phase starts
once the RSS has stopped falling after the one before):

  idle baseline  the bystander alone
  big DATA       10 sessions each sending max_message_size (10 MiB) of empty lines at once (the worst DATA shape)
  TLS flood      3,000 connections to the implicit-TLS port that never start the handshake, held 5 s
  header bombs   the issue's four bombs (100k encoded words, 4,600 RFC 2231 sections, 80 KB of comments,
                 50k From addresses), three sessions each, in parallel
  AUTH flood     8 sessions guessing passwords with AUTH PLAIN for 5 s

Results (peak RSS, its growth over the phase's start, bystander p99 and its ratio to the idle p99, the attack's
replies) are printed and written as a markdown table. The bench raises its own RLIMIT_NOFILE (and so the child's) to
hold 3,000 sockets. It talks only to 127.0.0.x and removes its temporary directory and child process.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import platform
import resource
import shutil
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mail2sms.smtp.auth import hash_password  # noqa: E402
from tests.fakes.kwtsms import FakeKwtSms  # noqa: E402
from tests.harness import ProcessServer, free_port  # noqa: E402
from tests.secure import KWT_ADDRESS, config, make_tls  # noqa: E402
from tests.security.monitor import Bystander, DataSession, RssMonitor, rss  # noqa: E402
from tests.security.test_header_bombs import ATTACKS  # noqa: E402

MiB = 1024 * 1024
USERS = '\n[[users]]\nname = "panel"\npassword_hash = "{hash}"\n'


class Phase:
    """One row of the table: what ran, the server's memory, the bystander's latency, the attack's replies."""

    def __init__(self, name: str, pid: int, port: int) -> None:
        self.name = name
        settle(pid)  # what the previous phase freed is given back first, so growth is this phase's own
        self.monitor = RssMonitor(pid)
        self.bystander = Bystander(port, source="127.0.0.2")
        self.outcomes: collections.Counter[str] = collections.Counter()

    def run(self, attack: Callable[[Phase], None], min_mails: int) -> Phase:
        with self.monitor, self.bystander:
            attack(self)
            while len(self.bystander.replies) < min_mails:
                time.sleep(0.05)
        return self


def settle(pid: int, limit: float = 15.0) -> None:
    """Wait (up to `limit` s) until the server's RSS stops falling: the last phase's threads and frees finish."""
    deadline = time.monotonic() + limit
    last = rss(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss(pid)
        if now >= last - MiB:
            return
        last = now


def big_data(phase: Phase, port: int, size: int) -> None:
    mail = b"Subject: empty lines\r\n\r\n" + b"\r\n" * ((size - 30) // 2)
    sessions = [DataSession(port) for _ in range(10)]

    def send(session: DataSession) -> None:
        session.sendall(mail + b".\r\n")
        phase.outcomes[session.reply()[:9].decode()] += 1
        session.close()

    run_all([lambda s=s: send(s) for s in sessions])


def tls_flood(phase: Phase, port: int, count: int, hold: float) -> None:
    sockets = []
    for _ in range(count):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        except OSError as exc:
            phase.outcomes[type(exc).__name__] += 1
    phase.outcomes["connected"] = len(sockets)
    time.sleep(hold)  # the flood holds its connections; the bystander keeps sending meanwhile
    for sock in sockets:
        sock.setblocking(False)
        try:
            cut = sock.recv(1) == b""
        except BlockingIOError:
            cut = False
        except OSError:
            cut = True
        phase.outcomes["closed by server" if cut else "still open"] += 1
        sock.close()


def header_bombs(phase: Phase, port: int) -> None:
    def send(mail: bytes) -> None:
        session = DataSession(port)
        session.sendall(mail.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        phase.outcomes[session.reply()[:9].decode()] += 1
        session.close()

    run_all([lambda m=m: send(m) for m in ATTACKS.values() for _ in range(3)])


def auth_flood(phase: Phase, port: int, seconds: float) -> None:
    wrong = "AUTH PLAIN " + base64.b64encode(b"\0panel\0wrong-password").decode()
    stop = time.monotonic() + seconds

    def guess() -> None:
        while time.monotonic() < stop:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                    client.ehlo("guesser.example")
                    while time.monotonic() < stop:
                        code, _ = client.docmd(wrong)
                        phase.outcomes[str(code)] += 1
                        if code == 421:
                            break
            except (OSError, smtplib.SMTPException) as exc:
                phase.outcomes[type(exc).__name__] += 1

    run_all([guess] * 8)


def run_all(jobs: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)


def table(phases: list[Phase]) -> str:
    idle = phases[0]
    rows = [
        "| phase | peak RSS | RSS growth | bystander p50 / p99 | p99 vs idle | bystander replies | attack replies |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        p99 = phase.bystander.p99()
        p50 = sorted(phase.bystander.latencies)[len(phase.bystander.latencies) // 2]
        replies = collections.Counter(phase.bystander.replies)
        outcomes = ", ".join(f"{k.strip()}: {v}" for k, v in sorted(phase.outcomes.items())) or "-"
        rows.append(
            f"| {phase.name} | {phase.monitor.peak / MiB:.0f} MiB | +{phase.monitor.growth / MiB:.0f} MiB "
            f"| {p50 * 1000:.0f} / {p99 * 1000:.0f} ms | {p99 / idle.bystander.p99():.1f}x "
            f"| {', '.join(f'{k}: {v}' for k, v in sorted(replies.items()))} | {outcomes} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for tests")
    parser.add_argument("--out", default=str(ROOT / "bench" / "security_results.md"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))  # 3,000 sockets here; inherited by child
    flood, hold, data_size, auth_seconds, mails = (
        (3000, 5.0, 10 * MiB, 5.0, 30) if not args.quick else (100, 0.5, 1 * MiB, 1.0, 5)
    )
    tmp = Path(tempfile.mkdtemp(prefix="mail2sms-secbench-"))
    try:
        with FakeKwtSms(accounts={"kwtuser": ("kwt-config-secret", 1e9)}, same_number_interval=0) as kwt:
            tls = make_tls(tmp)
            tls_port, port = free_port(), free_port()
            server_lines = (
                f'tls_listen = ["127.0.0.1:{tls_port}"]\ntls_cert = "{tls.cert}"\n'
                f'tls_key = "{tls.key}"\nmax_message_size = {data_size}\n'
                f'auth_without_tls = ["127.0.0.1:{port}"]'
            )
            body = KWT_ADDRESS.format(url=kwt.url) + USERS.format(hash=hash_password("right-password-1"))
            path, port, _ = config(tmp, body, server=server_lines, port=port)
            server = ProcessServer(path, port, tmp / "server.log").start()
            try:
                assert server.proc is not None
                pid = server.proc.pid
                Phase("warm-up", pid, port).run(lambda p: None, 5)
                phases = [
                    Phase("idle baseline", pid, port).run(lambda p: None, 4 * mails),  # a steadier p99
                    Phase(f"10 sessions x {data_size // MiB} MiB of empty lines", pid, port).run(
                        lambda p: big_data(p, port, data_size), mails
                    ),
                    Phase(f"{flood:,} idle TLS connections", pid, port).run(
                        lambda p: tls_flood(p, tls_port, flood, hold), mails
                    ),
                    Phase("header bombs (4 kinds x 3)", pid, port).run(lambda p: header_bombs(p, port), mails),
                    Phase("AUTH flood (8 sessions)", pid, port).run(lambda p: auth_flood(p, port, auth_seconds), mails),
                ]
            finally:
                server.kill()
        result = table(phases)
        header = (
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} with {_cores()} cores, "
            f"`python bench/security_bench.py{' --quick' if args.quick else ''}`.\n\n"
        )
        print(header + result)
        Path(args.out).write_text(header + result + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
