"""Benchmark: a personalised CSV (a different text on every row) to BulkSMS, in one run, three ways.

    python bench/bulksms_bench.py [--rows 10000] [--out bench/bulksms_results.md]

The same 10,000-row CSV mail (distinct UK numbers, each row its own text, as a "Hello <name>, your code is <n>"
campaign has) goes through a real mail2sms process (`python -m mail2sms serve`) to the stateful BulkSMS fakes of
`tests/fakes/bulksms.py` on 127.0.0.1:

1. the JSON API v1 with personalised batches (the default: JSON arrays of up to 4,000 messages);
2. the legacy EAPI with personalised batches (`send_batch`, up to 4,000 CSV rows per request);
3. the baseline: one request per row (the JSON API with `max_recipients = 1`), which is what every provider
   without personalised batches costs.

For each it measures the provider requests and the wall time from the first byte of the mail to the moment the
fake has accepted every SMS, and reports both against the baseline. The provider `rate` is set high (1,000/s) so
the wall time shows mail2sms's and HTTP's own cost; at BulkSMS's default of 5 requests/s the request count alone
decides (10,000 requests ≈ 33 minutes, 3 requests < 1 s) and that column is printed too.

It must never talk to anything but 127.0.0.1, and it cleans up its temporary directories and child processes.
The benchmark never asserts anything: it reports (a smoke test runs it with tiny counts).
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
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.bulksms import FakeBulkSms, FakeBulkSmsJson  # noqa: E402
from tests.fakes.server import FakeProvider  # noqa: E402
from tests.harness import ProcessServer, reports, write_config  # noqa: E402

DEFAULT_RATE = 5.0  # BulkSMS requests per second mail2sms uses unless configured
CONFIG = """
[providers.bulk]
type = "bulksms"
url = "{url}"
username = "bench"
password = "bench-secret"
rate = 1000
{extra}

[[routes]]
match = "csv@sms.test"
format = "csv"
provider = "bulk"
region = "GB"
"""
CASES = (
    ("JSON API, personalised batches (default)", "json", ""),
    ("EAPI, personalised batches (`send_batch`)", "eapi", 'options = { api = "eapi" }'),
    ("baseline: one request per row (JSON API, max_recipients = 1)", "json", "max_recipients = 1"),
)


def csv_text(rows: int) -> str:
    return "".join(f"4477{i:08d},Hello customer {i}: your code is {100000 + i}\r\n" for i in range(rows))


def build_mail(text: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "bench@example.org"
    msg["To"] = "csv@sms.test"
    msg["Subject"] = "personalised campaign"
    msg.set_content("Please send the attached list.")
    msg.add_attachment(text.encode(), maintype="text", subtype="csv", filename="campaign.csv")
    return msg.as_bytes(policy=email.policy.SMTP)


def wait(predicate: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"gave up waiting for {what} after {timeout:.0f} s")


def sent_count(fake: FakeProvider) -> int:
    assert isinstance(fake, FakeBulkSms | FakeBulkSmsJson)
    return len(fake.sent)


def send_requests(fake: FakeProvider) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and ("messages" in r.path or "submission/" in r.path))


def run_case(raw: bytes, rows: int, api: str, extra: str) -> tuple[int, float, float]:
    """(provider requests, seconds until every SMS is at the fake, seconds until the outcome mail is written)."""
    tmp = Path(tempfile.mkdtemp(prefix="mail2sms-bulkbench-"))
    fake: FakeProvider = (FakeBulkSmsJson(accounts={"bench": ("bench-secret", 1e9)}) if api == "json"
                          else FakeBulkSms(accounts={"bench": ("bench-secret", 1e9)}, max_batch=30_000))
    try:
        with fake:
            path, port = write_config(tmp, CONFIG.format(url=fake.url, extra=extra))
            path.write_text(path.read_text().replace('hostname = "sms.test"',
                                                     'hostname = "sms.test"\nmax_message_size = "64MiB"', 1))
            server = ProcessServer(path, port, tmp / "server.log").start()
            try:
                start = time.monotonic()
                with smtplib.SMTP("127.0.0.1", port, timeout=600) as client:
                    client.ehlo("bench.example.org")
                    client.mail("bench@example.org")
                    client.rcpt("csv@sms.test")
                    code, reply = client.data(raw)
                if code != 250:
                    raise SystemExit(f"mail refused: {code} {reply.decode(errors='replace')}")
                all_sent = wait(lambda: sent_count(fake) >= rows, 1800, "every SMS at the fake")
                reported = wait(lambda: reports(tmp / "reports"), 600, "the outcome mail")
                requests = send_requests(fake)
            finally:
                server.terminate()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return requests, all_sent - start, reported - start


def run(rows: int) -> list[tuple[str, ...]]:
    raw = build_mail(csv_text(rows))
    measured = [(name, *run_case(raw, rows, api, extra)) for name, api, extra in CASES]
    base_requests, base_seconds = measured[-1][1], measured[-1][2]
    table: list[tuple[str, ...]] = []
    for name, requests, seconds, reported in measured:
        table.append((
            name,
            f"{requests:,}",
            f"{requests / base_requests:.4f}×",
            f"{seconds:.2f} s",
            f"{seconds / base_seconds:.2f}×",
            f"{reported:.2f} s",
            f"{requests / DEFAULT_RATE:,.1f} s",
        ))
    return table


def markdown(rows: int, table: list[tuple[str, ...]]) -> str:
    head = (f"BulkSMS personalised CSV benchmark — {rows:,} rows, every text different; "
            f"{platform.python_implementation()} {platform.python_version()}, {len(os.sched_getaffinity(0))} CPUs\n\n"
            "| way | requests | vs baseline | every SMS at the fake | vs baseline | outcome mail written "
            "| requests alone at 5/s |\n|---|---|---|---|---|---|---|\n")
    return head + "".join("| " + " | ".join(row) + " |\n" for row in table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    text = markdown(args.rows, run(args.rows))
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
