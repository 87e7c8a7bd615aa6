"""Benchmark: do two worker processes send twice as fast as one when the provider's latency is the limit?

    python bench/workers_bench.py [--mails 600] [--latency 0.1] [--concurrency 4] [--lease S] [--legacy] [--out FILE]

The same queue of single-recipient mails (each its own text, so each SMS is its own HTTP request) goes through a
real mail2sms (`python -m mail2sms serve`) with `server.workers = 1` and then `server.workers = 2`, on one SQLite
spool, to the KwtSMS fake of `tests/fakes/kwtsms.py` on 127.0.0.1, which here answers every request only after
`--latency` seconds (as a distant provider does; its answers are otherwise exactly the fake's). Each worker keeps
`--concurrency` requests in flight, so one worker can send at most concurrency / latency SMS/s; the provider's
`rate` is set well above that for both runs (it is split between the workers on SQLite) and is never the limit.
`dispatch.lease` is the default (5 minutes) unless `--lease` says otherwise: a worker claims a few rounds of its
own requests (dispatch/claims.py), not what the rate could send in half a lease, so the second worker finds work
while the first is busy (issue 14, item 3). `--legacy` adds a third run: two workers with the claim sizing from
before (`bench/legacy_claims.py`), where the first worker to claim took up to 5,000 jobs.

`--backlog` makes the queue long before anyone sends: the same SMS come as one CSV mail whose rows are all
scheduled `--hold` seconds ahead (mail2sms holds a KwtSMS job `scheduled` until its time), so every job becomes
ready at the same moment, as after an outage or a restart. Without it, mails arrive one by one over SMTP and each
worker claims what has arrived, so even the old sizing shared the work fairly well.

The rate is measured at the fake, over the middle 80 % of the SMS (the first 10 % overlap the mail submission, the
last 10 % the drain), from the moment the fake accepted each one. The ratio of the two runs is the result.

It must never talk to anything but 127.0.0.1, and it cleans up its temporary directories and child processes.
The benchmark never asserts anything: it reports (a smoke test runs it with small counts).
"""

from __future__ import annotations

import argparse
import email.policy
import os
import platform
import shutil
import smtplib
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import legacy_claims  # noqa: E402
from tests.fakes.kwtsms import FakeKwtSms  # noqa: E402
from tests.fakes.server import RecordedRequest, Reply, _Handler  # noqa: E402
from tests.harness import ProcessServer, message, write_config  # noqa: E402

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "bench"
password = "bench-secret"
sender = "KWT-MESSAGE"
rate = {rate}
concurrency = {concurrency}
max_recipients = 1

[[routes]]
match = "list@sms.test"
format = "csv"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""
MAILS_PER_CONNECTION = 10  # several connections, so the kernel spreads them over both workers' listeners


class SlowKwtSms(FakeKwtSms):
    """The KwtSMS fake, answering each request `latency` seconds after it was read, and noting when each SMS was
    accepted. The wait is outside the fake's lock, so requests wait side by side as they would at a provider."""

    def __init__(self, latency: float) -> None:
        super().__init__(accounts={"bench": ("bench-secret", 1e9)}, same_number_interval=0)
        self.latency = latency
        self.accepted_at: list[float] = []

    def _read(self, handler: _Handler) -> RecordedRequest:
        request = super()._read(handler)
        self._stopping.wait(self.latency)
        return request

    def handle(self, request: RecordedRequest) -> Reply:
        before = len(self.sent)
        reply = super().handle(request)
        now = time.monotonic()
        self.accepted_at.extend(now for _ in range(len(self.sent) - before))
        return reply


def numbers(count: int) -> list[str]:
    return [f"9656{i:07d}" for i in range(count)]


def submit(port: int, count: int) -> None:
    """Every mail through smtplib, a few connections of `MAILS_PER_CONNECTION` each; any refusal ends the run."""
    todo = numbers(count)
    for start in range(0, count, MAILS_PER_CONNECTION):
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.ehlo("bench.example.org")
            for number in todo[start : start + MAILS_PER_CONNECTION]:
                msg = message(
                    f"{number}@sms.test", f"Your code for {number} is {int(number) % 9973}", sender="bench@example.org"
                )
                refused = client.sendmail("bench@example.org", [msg["To"]], msg.as_bytes(policy=email.policy.SMTP))
                if refused:
                    raise SystemExit(f"mail refused: {refused}")


def submit_backlog(port: int, count: int, hold: float) -> None:
    """One CSV mail, a row per number with its own text, every row scheduled `hold` seconds from now (UTC)."""
    at = datetime.fromtimestamp(time.time() + hold, UTC).strftime("%Y-%m-%d %H:%M:%S")
    rows = "".join(f"{n},Your code for {n} is {int(n) % 9973},{at}\r\n" for n in numbers(count))
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bench@example.org", "list@sms.test", "backlog"
    msg.set_content("The list is attached.")
    msg.add_attachment(
        ("mobile,message,sendtime\r\n" + rows).encode(), maintype="text", subtype="csv", filename="backlog.csv"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("bench.example.org")
        refused = client.sendmail("bench@example.org", ["list@sms.test"], msg.as_bytes(policy=email.policy.SMTP))
        if refused:
            raise SystemExit(f"mail refused: {refused}")


def middle_rate(times: list[float]) -> float:
    """SMS per second between the 10th and the 90th percentile of the acceptance times."""
    times = sorted(times)
    low, high = len(times) // 10, len(times) - 1 - len(times) // 10
    if high <= low or times[high] <= times[low]:
        raise SystemExit("too few SMS to measure a rate: use more --mails")
    return (high - low) / (times[high] - times[low])


def run_case(workers: int, args: argparse.Namespace, legacy: bool = False) -> tuple[float, float]:
    """(SMS/s over the middle 80 %, seconds from the first mail to the last SMS) with `workers` workers (with the
    old claim sizing when `legacy`)."""
    tmp = Path(tempfile.mkdtemp(prefix="mail2sms-workersbench-"))
    try:
        with SlowKwtSms(args.latency) as fake:
            path, port = write_config(tmp, CONFIG.format(url=fake.url, rate=args.rate, concurrency=args.concurrency))
            text = path.read_text().replace('hostname = "sms.test"', f'hostname = "sms.test"\nworkers = {workers}', 1)
            # write_config's [dispatch] table gets this run's settings (a second [dispatch] table would be invalid)
            lease = f"lease = {args.lease}\n" if args.lease else ""
            path.write_text(text.replace("[dispatch]\n", f"[dispatch]\nconcurrency = {args.concurrency}\n{lease}", 1))
            env = legacy_claims.server_env(tmp) if legacy else None
            server = ProcessServer(path, port, tmp / "server.log", env=env).start(timeout=60)
            try:
                start = time.monotonic()
                if args.backlog:
                    submit_backlog(port, args.mails, args.hold)
                else:
                    submit(port, args.mails)
                fake.wait_until(
                    lambda: len(fake.sent) >= args.mails, timeout=args.mails * args.latency + args.hold + 300
                )
                end = time.monotonic()
                if len(fake.sent) != args.mails or len({s.number for s in fake.sent}) != args.mails:
                    raise SystemExit(f"{len(fake.sent)} SMS accepted for {args.mails} mails: not one each")
                if fake.errors:
                    raise SystemExit(f"the fake failed: {fake.errors[0]!r}")
                rate = middle_rate(fake.accepted_at)
            finally:
                server.terminate(60)
            if legacy != (legacy_claims.MARK in (tmp / "server.log").read_text(errors="replace")):
                raise SystemExit("the server did not run with the claim sizing asked for")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rate, end - start - (args.hold if args.backlog else 0.0)  # with a backlog: from when it was ready


def run(args: argparse.Namespace) -> list[tuple[str, ...]]:
    one_rate, one_seconds = run_case(1, args)
    two_rate, two_seconds = run_case(2, args)
    ceiling = args.concurrency / args.latency
    legacy: list[tuple[str, ...]] = []
    if args.legacy:
        old_rate, old_seconds = run_case(2, args, legacy=True)
        legacy.append(
            (
                "2 workers, the claim sizing before (`bench/legacy_claims.py`)",
                f"{old_rate:,.1f} SMS/s",
                f"{old_rate / one_rate:.2f}×",
                f"{old_seconds:.1f} s",
                f"{2 * ceiling:,.0f} SMS/s",
            )
        )
    return [
        ("1 worker (baseline)", f"{one_rate:,.1f} SMS/s", "1.00×", f"{one_seconds:.1f} s", f"{ceiling:,.0f} SMS/s"),
        (
            "2 workers (`server.workers = 2`)",
            f"{two_rate:,.1f} SMS/s",
            f"{two_rate / one_rate:.2f}×",
            f"{two_seconds:.1f} s",
            f"{2 * ceiling:,.0f} SMS/s",
        ),
        *legacy,
    ]


def markdown(args: argparse.Namespace, table: list[tuple[str, ...]]) -> str:
    head = (
        f"Workers benchmark — {args.mails:,} "
        f"{'CSV rows, all ready at once' if args.backlog else 'single-recipient mails'}, one request per SMS, "
        "provider latency "
        f"{args.latency * 1000:.0f} ms, concurrency {args.concurrency} per worker, rate {args.rate:g}/s, "
        f"lease {args.lease or 300:g} s; {platform.python_implementation()} {platform.python_version()}, "
        f"{len(os.sched_getaffinity(0))} CPUs\n\n"
        "| workers | SMS/s (middle 80 %) | vs 1 worker | first mail → last SMS | latency ceiling |\n"
        "|---|---|---|---|---|\n"
    )
    return head + "".join("| " + " | ".join(row) + " |\n" for row in table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=600)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake takes to answer a request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per worker")
    parser.add_argument("--rate", type=float, default=200.0, help="the provider's rate (all workers together)")
    parser.add_argument("--lease", type=float, default=0.0, help="dispatch.lease in seconds (default: the default)")
    parser.add_argument("--legacy", action="store_true", help="also two workers with the old claim sizing")
    parser.add_argument("--backlog", action="store_true", help="every SMS ready at once (one scheduled CSV)")
    parser.add_argument("--hold", type=float, default=75.0, help="with --backlog: seconds until they are ready")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    text = markdown(args, run(args))
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
