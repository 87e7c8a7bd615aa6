"""Do outcome reports keep up? A soak at a steady mail rate, then a burst: `python bench/soak.py --duration 600`.

mail2sms (`workers = 2`, SQLite spool, reports written to a maildir or sent to a smarthost on loopback) takes a
steady open-loop inflow of mail (`--rate` mails/s for `--duration` seconds) from this script's SMTP client; every
mail's SMS goes to a local fake provider at once, so every mail gets its report as fast as the reporter can make
it. Every `--sample` seconds the script notes mail accepted, reports delivered, reports waiting, the age of the
oldest waiting report (the report lag) and each worker's RSS. After the soak, a burst (`--burst` mails as fast as
the client can send) measures how many reports per second the reporter delivers against the accept rate of the
same burst.

What "keeps up" means here: the lag stays bounded (the last minute's worst is no worse than the first minute's
worst plus a poll), every report is out shortly after the load stops, RSS at the end is within a few per cent of
RSS after the first minute, and the burst's report rate is at least its accept rate. The script reports those
numbers and ratios; it asserts nothing (a smoke test runs it for a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import CONFIG, child, load  # noqa: E402
from tests.harness import ProcessServer, free_port, write_config  # noqa: E402


@dataclass
class Sample:
    at: float  # seconds since the soak started
    accepted: int
    delivered: int
    waiting: int  # reports due and not delivered yet
    lag: float  # age of the oldest waiting report, seconds
    rss_mb: list[float]


class SmarthostSink:
    """An SMTP server on loopback that counts what it is given (a smarthost that delivers nothing further)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.count = 0
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 2.0.0 kept"

    def __enter__(self) -> SmarthostSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def worker_pids(supervisor: int) -> list[int]:
    path = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def report_counts(spool: Path) -> tuple[int, int, float, int]:
    """(delivered, waiting, age of the oldest waiting report, mails accepted) from the spool, read-only."""
    conn = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=30)
    try:
        accepted = conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
        delivered = conn.execute("SELECT COUNT(*) FROM submissions WHERE report_state = 'sent'").fetchone()[0]
        waiting, oldest = conn.execute(
            "SELECT COUNT(*), MIN(finished_at) FROM submissions WHERE report_state = 'pending'").fetchone()
    finally:
        conn.close()
    return int(delivered), int(waiting), (time.time() - oldest) if oldest else 0.0, int(accepted)


def start_server(home: Path, fake_port: int, smarthost: int | None) -> ProcessServer:
    path, port = write_config(home, CONFIG.format(url=f"http://127.0.0.1:{fake_port}/API/", rate=100_000))
    text = path.read_text(encoding="utf-8").replace(
        'hostname = "sms.test"', 'hostname = "sms.test"\nworkers = 2\nmax_connections = 1000\n'
        'max_connections_per_client = 1000\nshutdown_deadline = "5s"')
    # One load-generating sender: without this, its per-hour report limit would hold most reports back.
    extra = "per_sender_per_hour = 0\n"
    if smarthost is not None:
        extra += f'smarthost = "127.0.0.1:{smarthost}"\nsmarthost_tls = "none"\n'
    text = text.replace('from = "mail2sms@sms.test"\n', f'from = "mail2sms@sms.test"\n{extra}')
    path.write_text(text, encoding="utf-8")
    server = ProcessServer(path, port, home / "server.log").start()
    time.sleep(0.5)  # let the second worker bind too
    return server


def soak(args: argparse.Namespace) -> tuple[list[Sample], dict[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="mail2sms-soak-"))
    spool = home / "spool.db"
    samples: list[Sample] = []
    results: dict[str, float] = {}
    fake_port = free_port()
    with contextlib.ExitStack() as stack:
        stack.enter_context(child("fake", fake_port))
        sink = stack.enter_context(SmarthostSink()) if args.reports == "smarthost" else None
        server = start_server(home, fake_port, sink.port if sink else None)
        stack.callback(server.terminate, 60)
        assert server.proc is not None
        supervisor = server.proc.pid
        stop = threading.Event()
        started = time.monotonic()

        def sampler() -> None:
            while not stop.wait(args.sample):
                delivered, waiting, lag, accepted = report_counts(spool)
                sample = Sample(time.monotonic() - started, accepted, delivered, waiting, lag,
                                [rss_mb(p) for p in worker_pids(supervisor)])
                samples.append(sample)
                print(f"{sample.at:6.0f} s  accepted {sample.accepted:7,}  reports {sample.delivered:7,}  "
                      f"waiting {sample.waiting:5,}  lag {sample.lag:5.1f} s  RSS "
                      f"{', '.join(f'{r:.0f}' for r in sample.rss_mb)} MB", flush=True)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        count = int(args.rate * args.duration)
        steady = asyncio.run(load(server.port, count, 8, rate=args.rate, run="soak"))
        soak_end = time.monotonic()
        deadline = soak_end + 300
        while report_counts(spool)[1] and time.monotonic() < deadline:
            time.sleep(0.2)
        results["drain_s"] = time.monotonic() - soak_end
        stop.set()
        thread.join()

        # The burst: accept rate and report rate measured on the same mails.
        before = report_counts(spool)[0]
        t0 = time.monotonic()
        burst = asyncio.run(load(server.port, args.burst, 16, run="burst"))
        while report_counts(spool)[0] < before + burst.sent and time.monotonic() < t0 + 600:
            time.sleep(0.05)
        results["burst_accept"] = burst.rate
        results["burst_reports"] = (report_counts(spool)[0] - before) / (time.monotonic() - t0)
        if sink is not None:
            results["copies"] = sink.count
        else:
            results["copies"] = sum(len(list((home / "reports" / d).iterdir())) for d in ("new", "cur"))
        results["refused"] = steady.failed + burst.failed
        results["delivered"], _, _, accepted = report_counts(spool)
        results["accepted"] = accepted
    shutil.rmtree(home, ignore_errors=True)
    return samples, results


def summary(args: argparse.Namespace, samples: list[Sample], results: dict[str, float]) -> str:
    first = [s for s in samples if s.at <= 60] or samples[:1]
    last = [s for s in samples if s.at >= samples[-1].at - 60] if samples else []
    rss_first = sum(first[-1].rss_mb) if first else 0.0
    rss_last = sum(last[-1].rss_mb) if last else 0.0
    # Caches (SQLite pages, parsers, log processors) fill during the first minutes: compare with a third in too.
    third = [s for s in samples if s.at >= samples[-1].at / 3][:1] if samples else []
    rss_third = sum(third[0].rss_mb) if third else 0.0
    lines = [
        f"Soak: {args.rate:g} mails/s for {args.duration:g} s, workers = 2, SQLite spool, reports to "
        f"{args.reports}, `python bench/soak.py --duration {args.duration:g} --rate {args.rate:g} "
        f"--reports {args.reports}`.",
        "",
        "| measure | result |",
        "|---|---|",
        f"| mails accepted / reports delivered (refused) | {int(results['accepted']):,} / "
        f"{int(results['delivered']):,} ({int(results['refused'])}) |",
        f"| report lag, worst in the first minute | {max((s.lag for s in first), default=0):.1f} s |",
        f"| report lag, worst over the soak | {max((s.lag for s in samples), default=0):.1f} s |",
        f"| report lag, worst in the last minute | {max((s.lag for s in last), default=0):.1f} s |",
        f"| reports still waiting when the load stopped → all out after | "
        f"{samples[-1].waiting if samples else 0} → {results['drain_s']:.1f} s |",
        f"| RSS of both workers after the first minute → at the end | {rss_first:.0f} MB → {rss_last:.0f} MB "
        f"({rss_last / rss_first if rss_first else 0:.2f}×) |",
        f"| RSS of both workers a third into the soak → at the end | {rss_third:.0f} MB → {rss_last:.0f} MB "
        f"({rss_last / rss_third if rss_third else 0:.2f}×) |",
        f"| burst of {args.burst:,}: reports/s vs accept rate | {results['burst_reports']:,.0f} vs "
        f"{results['burst_accept']:,.0f} mails/s ({results['burst_reports'] / results['burst_accept']:.2f}×) |",
    ]
    where = "at the smarthost" if args.reports == "smarthost" else "in the maildir"
    lines.append(f"| report copies {where} | {int(results['copies']):,} |")
    lines += ["", "| t (s) | accepted | reports delivered | waiting | lag (s) | RSS per worker (MB) |",
              "|---|---|---|---|---|---|"]
    step = max(1, len(samples) // 20)  # about 20 rows whatever the duration
    for s in samples[::step]:
        lines.append(f"| {s.at:.0f} | {s.accepted:,} | {s.delivered:,} | {s.waiting:,} | {s.lag:.1f} | "
                     f"{', '.join(f'{r:.0f}' for r in s.rss_mb)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of steady load (default 600)")
    p.add_argument("--rate", type=float, default=50.0, help="mails per second (default 50)")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--burst", type=int, default=2000, help="mails in the burst after the soak (default 2000)")
    p.add_argument("--reports", choices=["maildir", "smarthost"], default="maildir")
    p.add_argument("--out", default=str(ROOT / "bench" / "soak.md"))
    args = p.parse_args()
    samples, results = soak(args)
    text = summary(args, samples, results)
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
