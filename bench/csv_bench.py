"""Benchmark: one 100,000-row CSV mail through a real mail2sms process to a fake KwtSMS over HTTP.

    python bench/csv_bench.py [--rows 100000] [--texts 20] [--compare [--rounds 2]]

What it does, in one run: builds a CSV mail (distinct Kuwaiti numbers, `--texts` distinct messages as a bulk
campaign has), starts the stateful fake KwtSMS (tests/fakes) on 127.0.0.1 and `python -m mail2sms serve` as a child
process, sends the mail with smtplib, and measures the time to the `250`, the time until the fake has accepted
every SMS, the time until the outcome mail (with results.csv) is in the maildir, and the server's peak RSS
(`VmHWM` in /proc/<pid>/status). As a baseline it times Python's csv module alone reading the same rows, in this
process, and reports the end-to-end time as a multiple of it. Results are printed as a markdown table.

`--compare` measures the claim sizing of issue 14 item 3 against the one before it (`bench/legacy_claims.py`, the
same server with only the old sizing put back): the same mail through both, `--rounds` times each, alternating
(old, new, old, new ...) so the machine's load weighs on both alike, and reports the median time until every SMS
is at the fake and the ratio of the rates (new / old).

It must never talk to anything but 127.0.0.1, and it cleans up its temporary directory and child process.
"""

from __future__ import annotations

import argparse
import csv
import email.policy
import io
import os
import platform
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import legacy_claims  # noqa: E402
from tests.fakes.kwtsms import FakeKwtSms  # noqa: E402
from tests.harness import ProcessServer, reports, write_config  # noqa: E402

TARGET_SECONDS = 15.0
TARGET_MB = 300.0

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "bench"
password = "bench-secret"
sender = "KWT-MESSAGE"
rate = 10000

[[routes]]
match = "csv@sms.test"
format = "csv"
provider = "kwt"
region = "KW"
"""


def csv_text(rows: int, texts: int) -> str:
    return "".join(
        f"9655{i:07d};Reminder {i % texts}: your appointment is tomorrow at 10:00, reply STOP to opt out\r\n"
        for i in range(rows)
    )


def build_mail(text: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "bench@example.org"
    msg["To"] = "csv@sms.test"
    msg["Subject"] = "bulk"
    msg.set_content("Please send the attached list.")
    msg.add_attachment(
        b"\xef\xbb\xbf" + text.encode(), maintype="application", subtype="vnd.ms-excel", filename="campaign.csv"
    )
    return msg.as_bytes(policy=email.policy.SMTP)  # CRLF: smtplib sends bytes as they are


def baseline(text: str) -> float:
    """Seconds for the stdlib csv module alone to read every row (no decoding, numbers or storage)."""
    start = time.perf_counter()
    count = sum(1 for _ in csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    elapsed = time.perf_counter() - start
    assert count > 0
    return elapsed


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait(predicate: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"gave up waiting for {what} after {timeout:.0f} s")


@dataclass
class Measured:
    """One run of the mail through a server: times from the start of the SMTP session."""

    accepted: float  # the `250`
    all_sent: float  # every SMS at the fake
    reported: float  # the outcome mail in the maildir
    rss_sent: float
    rss_end: float
    requests: int
    numbers: int
    report_size: int


def measure(raw: bytes, rows: int, legacy: bool = False) -> Measured:
    """Send the mail once through a fresh server (with the old claim sizing when `legacy`) and a fresh fake."""
    tmp = Path(tempfile.mkdtemp(prefix="mail2sms-bench-"))
    try:
        with FakeKwtSms(accounts={"bench": ("bench-secret", 1e12)}, same_number_interval=0) as fake:
            path, port = write_config(tmp, CONFIG.format(url=fake.url))
            # 100,000 rows base64-encoded are more than the default 10 MiB: raise the limit as an operator would.
            path.write_text(
                path.read_text().replace(
                    'hostname = "sms.test"', 'hostname = "sms.test"\nmax_message_size = "64MiB"', 1
                )
            )
            env = legacy_claims.server_env(tmp) if legacy else None
            server = ProcessServer(path, port, tmp / "server.log", env=env).start()
            assert server.proc is not None
            pid = server.proc.pid
            try:
                start = time.monotonic()
                with smtplib.SMTP("127.0.0.1", port, timeout=600) as client:
                    client.ehlo("bench.example.org")
                    client.mail("bench@example.org")
                    client.rcpt("csv@sms.test")
                    code, reply = client.data(raw)
                accepted = time.monotonic()
                if code != 250:
                    raise SystemExit(f"mail refused: {code} {reply.decode(errors='replace')}")
                all_sent = wait(lambda: len(fake.sent) >= rows, 600, "every SMS at the fake")
                rss_sent = peak_rss_mb(pid)
                reported = wait(lambda: reports(tmp / "reports"), 600, "the outcome mail")
                rss_end = peak_rss_mb(pid)
                requests = sum(1 for r in fake.requests if r.path.endswith("/send/"))
                numbers = len({s.number for s in fake.sent})
                report_size = sum(p.stat().st_size for p in (tmp / "reports" / "new").iterdir())
            finally:
                server.terminate()
            if legacy != (legacy_claims.MARK in (tmp / "server.log").read_text(errors="replace")):
                raise SystemExit("the server did not run with the claim sizing asked for")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Measured(
        accepted - start, all_sent - start, reported - start, rss_sent, rss_end, requests, numbers, report_size
    )


def run(rows: int, texts: int) -> list[tuple[str, str]]:
    load_before = os.getloadavg()[0]
    text = csv_text(rows, texts)
    raw = build_mail(text)
    base = baseline(text)
    m = measure(raw, rows)
    to_sent = m.all_sent
    return [
        ("rows (distinct numbers / distinct texts)", f"{rows:,} ({m.numbers:,} / {texts})"),
        ("mail size", f"{len(raw) / 2**20:.1f} MiB"),
        ("time to `250` (parse + durable commit)", f"{m.accepted:.2f} s"),
        ("time until every SMS is at the fake provider", f"{to_sent:.2f} s (target ≤ {TARGET_SECONDS:.0f} s)"),
        ("time until the outcome mail with results.csv is written", f"{m.reported:.2f} s"),
        ("provider requests", f"{m.requests:,} ({rows / max(m.requests, 1):.0f} SMS per request)"),
        ("server peak RSS when all were sent (VmHWM)", f"{m.rss_sent:.0f} MB (target ≤ {TARGET_MB:.0f} MB)"),
        ("server peak RSS after the report (VmHWM)", f"{m.rss_end:.0f} MB"),
        ("outcome mail size", f"{m.report_size / 2**20:.1f} MiB"),
        ("baseline: stdlib csv.reader alone over the same rows", f"{base:.3f} s"),
        ("end-to-end time / baseline", f"{to_sent / base:.0f}×"),
        ("machine load average (1 min) before / after", f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"),
    ]


def compare(rows: int, texts: int, rounds: int) -> list[tuple[str, str]]:
    """The old claim sizing against the new one, alternating runs of the same mail; medians and the ratio."""
    load_before = os.getloadavg()[0]
    raw = build_mail(csv_text(rows, texts))
    runs: dict[bool, list[Measured]] = {True: [], False: []}
    for _ in range(rounds):
        for legacy in (True, False):
            runs[legacy].append(measure(raw, rows, legacy))
            print(
                f"{'old' if legacy else 'new'} sizing: every SMS at the fake after {runs[legacy][-1].all_sent:.2f} s "
                f"({runs[legacy][-1].requests:,} requests)",
                flush=True,
            )
    old = statistics.median(r.all_sent - r.accepted for r in runs[True])
    new = statistics.median(r.all_sent - r.accepted for r in runs[False])

    def each(legacy: bool) -> str:
        return ", ".join(f"{r.all_sent - r.accepted:.2f} s / {r.requests:,} requests" for r in runs[legacy])

    return [
        ("rows (distinct texts), runs of each sizing", f"{rows:,} ({texts}), {rounds}"),
        ("old sizing (rate × half a lease, ≤ 5,000 jobs): `250` → every SMS at the fake, each run", each(True)),
        ("new sizing (≤ concurrency × ROUNDS requests): `250` → every SMS at the fake, each run", each(False)),
        ("median `250` → every SMS at the fake, old / new", f"{old:.2f} s / {new:.2f} s"),
        ("sending rate, new vs old (old time / new time)", f"{old / new:.2f}× (target ≥ 0.9×)"),
        ("machine load average (1 min) before / after", f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--compare", action="store_true", help="old claim sizing vs new, alternating runs")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: runs of each sizing")
    args = parser.parse_args()
    results = compare(args.rows, args.texts, args.rounds) if args.compare else run(args.rows, args.texts)
    print(
        f"\nCSV benchmark — {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs\n"
    )
    print("| measure | result |")
    print("|---|---|")
    for name, value in results:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
