"""Retention benchmark (issue 16): does a spool holding 1,000,000 finished jobs accept mail as fast as an empty one?

Baseline in the same run: the accept rate of an empty SQLite spool. Measured: the same accepts on a spool into which
1,000,000 finished (`sent`, report delivered) jobs of 100,000 submissions, with their dedupe keys, were written
directly with SQL in large transactions (building them through `commit()` would take far longer and measures nothing
new). An accept is `Spool.commit()` of a one-SMS submission with a fresh dedupe key, 32 at a time (group commit, as
SMTP sessions do); it is the part of accepting a mail whose cost could grow with the spool (the SMTP and parse work
before it does not read the spool). Runs alternate empty/full so machine noise hits both alike; the median of each
is kept. Also shown: `/healthz`'s count (live work only, by index) against the count of every job by state.

    python bench/retention_bench.py [--jobs 1000000] [--accepts 3000] [--out bench/retention_results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mail2sms.model import Job, Submission  # noqa: E402
from mail2sms.spool import open_spool  # noqa: E402
from mail2sms.spool.base import Spool  # noqa: E402

JOBS_PER_SUBMISSION = 10
CONCURRENCY = 32
WINDOW = 86400.0


async def migrated(path: Path) -> None:
    """Create the spool file with every migration applied."""
    spool = open_spool(f"sqlite://{path}")
    await spool.open()
    await spool.close()


def fill(path: Path, jobs: int) -> float:
    """Write `jobs` finished jobs (and their submissions and dedupe keys) straight into the file; seconds taken."""
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # building the fixture only: the measured accepts run as configured
    now = time.time() - 3600
    subs = jobs // JOBS_PER_SUBMISSION
    step = 10_000
    for first in range(0, subs, step):
        ids = range(first, min(subs, first + step))
        with conn:
            conn.executemany(
                "INSERT INTO submissions (id, received_at, envelope_from, recipients, route, subject, report_to, "
                "report_state, report_attempts, finished_at) VALUES (?, ?, 'a@example.org', '[]', 'r', 's', "
                "'a@example.org', 'sent', 1, ?)", [(f"old{i:08d}", now, now + 1) for i in ids])
            rows = [(f"old{i:08d}-{k}", f"old{i:08d}", k, f"9655{i:07d}", "done", "p", f"idem-{i}-{k}", now + 1)
                    for i in ids for k in range(JOBS_PER_SUBMISSION)]
            conn.executemany(
                "INSERT INTO jobs (id, submission_id, seq, number, text, provider, idempotency_key, state, "
                "attempts, provider_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'sent', 1, 'P', ?)", rows)
            conn.executemany("INSERT INTO dedupe (key, submission_id, created_at) VALUES (?, ?, ?)",
                             [(f"key-{r[0]}", r[1], now) for r in rows])
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return time.perf_counter() - started


async def accept_rate(spool: Spool, count: int, tag: str) -> float:
    """Commits per second of `count` one-SMS submissions, CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with gate:
            sub = Submission(envelope_from="b@example.org", recipients=["x@sms.test"], route="r",
                             received_at=time.time(), report_to="b@example.org",
                             jobs=[Job(number=f"9656{n:07d}", text="bench", provider="p")])
            assert not (await spool.commit(sub, [f"{tag}-{n}"], WINDOW)).duplicate

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    return count / (time.perf_counter() - started)


async def timed(spool: Spool, live: bool) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    counts = await (spool.live_counts() if live else spool.counts())
    return time.perf_counter() - started, counts


async def main(jobs: int, accepts: int, rounds: int) -> str:
    with tempfile.TemporaryDirectory(prefix="retention-bench-") as tmp:
        empty_path, full_path = Path(tmp) / "empty.db", Path(tmp) / "full.db"
        await migrated(empty_path)
        await migrated(full_path)
        built = fill(full_path, jobs)
        empty, full = open_spool(f"sqlite://{empty_path}"), open_spool(f"sqlite://{full_path}")
        await empty.open()
        await full.open()
        try:
            rates: dict[str, list[float]] = {"empty": [], "full": []}
            await accept_rate(empty, accepts // 4, "warm-e")  # caches and the commit thread warmed, not counted
            await accept_rate(full, accepts // 4, "warm-f")
            for r in range(rounds):
                rates["empty"].append(await accept_rate(empty, accepts, f"e{r}"))
                rates["full"].append(await accept_rate(full, accepts, f"f{r}"))
            live_s, live = await timed(full, live=True)
            all_s, everything = await timed(full, live=False)
        finally:
            await empty.close()
            await full.close()
    median_empty, median_full = statistics.median(rates["empty"]), statistics.median(rates["full"])
    ratio = median_full / median_empty
    table = "\n".join([
        "| measure | result | vs baseline | target |",
        "|---|---|---|---|",
        f"| accept rate, empty SQLite spool (`commit()`, {CONCURRENCY} at a time, median of {rounds}) | "
        f"{median_empty:,.0f} mails/s | 1.00× | baseline |",
        f"| accept rate, spool holding {jobs:,} finished jobs | {median_full:,.0f} mails/s | {ratio:.2f}× | ≈ 1.0× |",
        f"| `/healthz` count on that spool (live work only, by index) | {live_s * 1000:.1f} ms "
        f"({sum(live.values()):,} live jobs) | {live_s / all_s if all_s else 0:.3f}× counting every job "
        f"({all_s * 1000:.0f} ms, {sum(everything.values()):,} jobs) | ≪ 1× |",
    ])
    return (f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} ({os.cpu_count()} cores), "
            f"`python bench/retention_bench.py --jobs {jobs} --accepts {accepts}`; building the full spool took "
            f"{built:.0f} s. Every round: empty {', '.join(f'{x:,.0f}' for x in rates['empty'])}; full "
            f"{', '.join(f'{x:,.0f}' for x in rates['full'])} mails/s.\n\n{table}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--accepts", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 jobs, 300 accepts, 2 rounds (the smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.accepts, args.rounds = 20_000, 300, 2
    result = asyncio.run(main(args.jobs, args.accepts, args.rounds))
    print(result)
    if args.out is not None:
        args.out.write_text("# Retention benchmark\n\n" + result, encoding="utf-8")
