"""Two mail2sms nodes on one PostgreSQL spool: every SMS exactly once, a dead node's jobs finished by the other
(lease expiry), and one provider rate held across both nodes."""

from __future__ import annotations

import datetime
import json
import threading
import time
from pathlib import Path

import psycopg

from mail2sms.model import FINAL_STATES
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import RecordedRequest, Reply
from tests.harness import ProcessServer, message, send, wait_until, write_config

RATE = 25.0
MESSAGES = 300
CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
rate = {rate}
timeout = "5s"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


class TimedKwtSms(FakeKwtSms):
    """The KwtSMS fake, also noting when each `send/` request arrived."""

    def __init__(self) -> None:
        super().__init__(accounts={"user": ("pass", 1_000_000.0)}, same_number_interval=0)
        self.send_times: list[float] = []
        self.sent_at: dict[str, float] = {}  # when the fake accepted each number

    def handle(self, request: RecordedRequest) -> Reply:
        now = time.time()
        if request.path.endswith("/send/"):
            self.send_times.append(now)
        before = len(self.sent)
        reply = super().handle(request)
        for sms in self.sent[before:]:
            self.sent_at.setdefault(sms.number, now)
        return reply


def node(tmp: Path, name: str, url: str, kwt_url: str) -> ProcessServer:
    home = tmp / name
    home.mkdir()
    path, port = write_config(home, CONFIG.format(url=kwt_url, rate=RATE))
    text = path.read_text(encoding="utf-8")
    text = text.replace(f'url = "sqlite://{home}/spool.db"', f'url = "{url}"')
    text = text.replace("poll_interval = 0.2\n", 'poll_interval = 0.2\nlease = "5s"\nconcurrency = 4\n')
    path.write_text(text, encoding="utf-8")
    # Different node names: the survivor cannot see the other's pids, so only lease expiry frees its jobs.
    return ProcessServer(path, port, home / "server.log", env={"MAIL2SMS_NODE": f"node-{name}"})


def leased_to(url: str, owner_prefix: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT number FROM jobs WHERE lease_owner LIKE %s AND state IN ('queued', 'sending')",
                            (owner_prefix + "%",)).fetchall()
        return [r[0] for r in rows]


def queued_leases(url: str, owner_prefix: str) -> dict[str, float]:
    """number -> lease_until of the jobs an owner holds that have not been sent yet (`queued`: no request left)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT number, lease_until FROM jobs WHERE lease_owner LIKE %s AND state = 'queued'",
                            (owner_prefix + "%",)).fetchall()
        return {str(r[0]): float(r[1]) for r in rows}


def sms_times(log: Path) -> list[float]:
    """When this node recorded each SMS result (from its JSON log)."""
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{") and '"event": "sms"' in line:
            stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
            out.append(datetime.datetime.fromisoformat(stamp).timestamp())
    return out


def job_states(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT number, state FROM jobs").fetchall())


def test_two_nodes_share_the_work_survive_a_kill_and_hold_one_rate(tmp_path: Path, pg_url: str) -> None:
    """300 mails through two nodes, one SIGKILLed mid-way: each SMS at most once (`unknown` only for requests in
    flight at the kill), the dead node's unsent jobs sent by the survivor once their lease ran out, and the provider
    rate held across both (the shared limit an upper bound)."""
    with TimedKwtSms() as kwt:
        a = node(tmp_path, "a", pg_url, kwt.url).start()
        b = node(tmp_path, "b", pg_url, kwt.url).start()
        try:
            numbers = [f"965600{i:05d}" for i in range(MESSAGES)]

            def client(part: list[str], port: int) -> None:
                # A steady inflow at both nodes, faster than the provider takes it: both nodes claim and send.
                for i, number in enumerate(part):
                    pause = started + i / (RATE * 1.5) - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    code, _ = send(port, message(f"{number}@sms.test", f"multinode {number}"))
                    assert code == 250

            threads = [threading.Thread(target=client, args=(numbers[0::2], a.port)),
                       threading.Thread(target=client, args=(numbers[1::2], b.port))]
            started = time.monotonic()
            for t in threads:
                t.start()
            # Kill node a once its client got every 250 (a client cut mid-session would lose mails that were never
            # accepted, which is not what this test is about) and while it still holds leased work.
            threads[0].join(120)
            # ...and holds at least one claimed job it has not started sending: that one must wait for its lease.
            wait_until(lambda: queued_leases(pg_url, "node-a:"), timeout=120, interval=0.01)
            a.kill()
            killed_at = time.time()
            orphaned = leased_to(pg_url, "node-a:")
            waiting = queued_leases(pg_url, "node-a:")
            for t in threads:
                t.join(120)
            final = {s.value for s in FINAL_STATES}
            wait_until(lambda: len(states := job_states(pg_url)) == MESSAGES
                       and set(states.values()) <= final, timeout=300, interval=0.5)
        finally:
            a.kill()
            b.terminate()

        states = job_states(pg_url)
        counts = {n: sum(1 for s in kwt.sent if s.number == n) for n in numbers}
        assert max(counts.values()) == 1, "an SMS was sent twice"
        unknown = {n for n, s in states.items() if s == "unknown"}
        assert {n for n, c in counts.items() if c == 0} <= unknown
        assert len(unknown) <= 4  # at most node a's requests in flight (dispatch.concurrency)
        assert set(states.values()) <= {"sent", "unknown"}

        # The jobs node a held when it died were finished by node b once their lease ran out.
        assert orphaned
        assert all(counts[n] == 1 or n in unknown for n in orphaned)
        # Node a's claimed-but-unsent jobs were sent once (never `unknown`: no request of theirs had left), by node
        # b, and only after their lease ran out (leases are in the nodes' clock, the fake's is the same machine's).
        assert waiting
        assert all(counts[n] == 1 and kwt.sent_at[n] >= lease_until for n, lease_until in waiting.items())

        # The rate, counted at the provider over a window in which both nodes were sending.
        start = kwt.send_times[0] + 0.5
        window = killed_at - start
        assert window >= 2.0
        in_window = sum(1 for t in kwt.send_times if start <= t < start + window)
        expected = RATE * window
        # The shared limit is an upper bound (one request of slack for the window's edges); a busy machine may send
        # slower than the rate, so the lower bound only proves both nodes kept sending.
        assert in_window <= 1.1 * expected + 1, (in_window, expected)
        assert in_window >= 0.3 * expected, (in_window, expected)
        a_times, b_times = (sms_times(tmp_path / n / "server.log") for n in ("a", "b"))
        for times in (a_times, b_times):
            assert sum(1 for t in times if start <= t < start + window) >= 0.2 * in_window
