"""Quotas under a race: 12 parallel sessions on two servers sharing one spool never get more than the quota through.

The quota is checked and charged in the spool's commit transaction, so it holds across processes, PostgreSQL
nodes and restarts; an unauthenticated client is counted by its address too, so rotating MAIL FROM does not help.
"""

from __future__ import annotations

import email.policy
import smtplib
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.harness import ThreadServer, message, thread_server, write_config

QUOTA = 8
SESSIONS = 12
CONFIG = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
allow = ["any"]
quota_per_day = {quota}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def spool_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/shared-spool.db"
    url: str = request.getfixturevalue("pg_url")
    return url


def _config(tmp: Path, name: str, spool_url: str, trusted: bool) -> Path:
    home = tmp / name
    home.mkdir(exist_ok=True)
    path, _ = write_config(home, CONFIG.format(tmp=home, quota=QUOTA))
    text = path.read_text(encoding="utf-8").replace(f'url = "sqlite://{home}/spool.db"', f'url = "{spool_url}"')
    if not trusted:
        text = text.replace('hostname = "sms.test"\n', 'hostname = "sms.test"\ntrusted_networks = []\n', 1)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def two_servers(tmp_path: Path, spool_url: str) -> Iterator[list[ThreadServer]]:
    """Two mail2sms instances (as two workers or two nodes would be) on one spool, in trusted networks."""
    with ExitStack() as stack:
        yield [stack.enter_context(thread_server(_config(tmp_path, f"node{i}", spool_url, True))) for i in range(2)]


def _race(ports: list[int], senders: list[str]) -> list[tuple[int, str]]:
    """One session per sender, spread over `ports`; all reach DATA before any sends it."""
    barrier = threading.Barrier(len(senders))
    results: list[tuple[int, str]] = [(0, "")] * len(senders)

    def session(i: int) -> None:
        msg = message(f"9655000{i:04d}@sms.test", f"alarm {i}", sender=senders[i])
        with smtplib.SMTP("127.0.0.1", ports[i % len(ports)], timeout=60) as client:
            client.ehlo("client.example.org")
            client.mail(senders[i])
            code, text = client.rcpt(f"9655000{i:04d}@sms.test")
            if code != 250:
                barrier.abort()
                results[i] = (code, text.decode())
                return
            barrier.wait(60)
            code, text = client.data(msg.as_bytes(policy=email.policy.SMTP))
            results[i] = (code, text.decode())

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(senders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_parallel_sessions_never_exceed_the_quota(two_servers: list[ThreadServer], tmp_path: Path,
                                                  spool_url: str) -> None:
    """12 sessions racing on two servers: exactly 8 get 250, the rest 550 naming the quota; a new instance agrees."""
    results = _race([s.port for s in two_servers], ["alarm@example.org"] * SESSIONS)
    accepted = [r for r in results if r[0] == 250]
    refused = [r for r in results if r[0] != 250]
    assert len(accepted) == QUOTA
    assert all(replies.QUOTA_EXCEEDED.matches(*r) for r in refused)
    assert all(f"{QUOTA} of {QUOTA} SMS per day" in r[1] for r in refused)
    # A fresh instance (as after a restart) starts with nothing in memory: the count is in the spool.
    with thread_server(_config(tmp_path, "restarted", spool_url, True)) as again:
        with smtplib.SMTP("127.0.0.1", again.port, timeout=60) as client:
            client.ehlo("client.example.org")
            client.mail("alarm@example.org")
            code, text = client.rcpt("96550009999@sms.test")
        assert replies.QUOTA_EXCEEDED.matches(code, text.decode())


def test_rotating_sender_is_counted_by_client_address(tmp_path: Path, spool_url: str) -> None:
    """An untrusted client that changes MAIL FROM for every mail still gets only the quota through."""
    with thread_server(_config(tmp_path, "open", spool_url, False)) as server:
        results = _race([server.port], [f"rotating{i}@example.org" for i in range(SESSIONS)])
    accepted = [r for r in results if r[0] == 250]
    assert len(accepted) == QUOTA
    assert all("by the client 127.0.0.1" in r[1] for r in results if r[0] != 250)
