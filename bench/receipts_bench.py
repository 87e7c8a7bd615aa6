"""Receipt polling benchmark (issue 15): N accepted SMS awaiting receipts are polled against the Kapow fake over
real HTTP on 127.0.0.1 within the provider's rate, alone and while sends saturate the same rate.

Baseline in the same run: the configured rate. Reported: status requests per second while polling alone (should
sit just under the rate: the poller uses the rate when nothing is sent), and sends and polls per second when a
sender asks for every turn it can (sending first: polls should get almost none). Kapow answers one id per status
request, so one request per SMS.

    python bench/receipts_bench.py [--sms 10000] [--rate 250] [--out bench/receipts_results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mail2sms.config import ProviderConfig  # noqa: E402
from mail2sms.dispatch import receipt_schedule as schedule  # noqa: E402
from mail2sms.dispatch.priority import SendingFirst  # noqa: E402
from mail2sms.dispatch.ratelimit import LocalRateLimiter  # noqa: E402
from mail2sms.dispatch.receipt_poller import ReceiptPoller  # noqa: E402
from mail2sms.dispatch.receipt_store import Awaiting  # noqa: E402
from mail2sms.model import Batch, Job, Sent, SmsOptions  # noqa: E402
from mail2sms.providers.base import Provider  # noqa: E402
from mail2sms.providers.http import build_client  # noqa: E402
from mail2sms.providers.receipts import receipt_source  # noqa: E402
from mail2sms.providers.registry import build_provider  # noqa: E402
from tests.fakes.kapow import FakeKapow  # noqa: E402
from tests.receipts_memory import MemoryReceiptStore  # noqa: E402

NAME = "kapow1"
PASSWORD = "bench-pa55"  # noqa: S105 - the fake's throwaway account
T0 = 1_800_000_000.0


async def accepted(provider: Provider, count: int) -> list[Awaiting]:
    """Send `count` SMS through the adapter (50 numbers a request, unpaced: setup, not measured)."""
    out: list[Awaiting] = []
    for start in range(0, count, 50):
        numbers = [f"4477{n:08d}" for n in range(start, min(count, start + 50))]
        jobs = tuple(Job(number=n, text="bench", provider=NAME) for n in numbers)
        results = await provider.send(Batch(NAME, None, None, "bench", SmsOptions(), jobs))
        for number, result in zip(numbers, results, strict=True):
            assert isinstance(result, Sent), result
            assert result.provider_id, result
            out.append(Awaiting(f"job-{number}", "sub", NAME, result.provider_id, number, T0, 0, T0 + 60))
    return out


async def alone(provider: Provider, items: list[Awaiting], rate: float) -> float:
    """Status requests per second when only the poller uses the rate."""
    store = MemoryReceiptStore()
    for item in items:
        store.add(item)
    source = receipt_source(provider)
    assert source is not None
    shared = SendingFirst(LocalRateLimiter({NAME: rate}))
    poller = ReceiptPoller(store, {NAME: source}, shared.polling, claim=len(items), clock=lambda: T0 + 60)
    started = time.perf_counter()
    assert await poller.run_once() == len(items)
    return len(items) / (time.perf_counter() - started)


async def contended(provider: Provider, items: list[Awaiting], rate: float, seconds: float) -> tuple[float, float]:
    """(sends/s, polls/s) while a sender asks for every turn of the same rate for `seconds`."""
    store = MemoryReceiptStore()
    for item in items:
        store.add(item)
    source = receipt_source(provider)
    assert source is not None
    shared = SendingFirst(LocalRateLimiter({NAME: rate}))
    polls = 0

    class Counting:
        async def acquire(self, name: str) -> None:
            nonlocal polls
            await shared.polling.acquire(name)
            polls += 1

    poller = ReceiptPoller(store, {NAME: source}, Counting(), claim=len(items), clock=lambda: T0 + 60)
    sends = 0
    started = time.perf_counter()
    polling = asyncio.create_task(poller.run_once())
    while time.perf_counter() - started < seconds:
        await shared.acquire(NAME)
        sends += 1
    elapsed = time.perf_counter() - started
    polling.cancel()
    return sends / elapsed, polls / elapsed


async def measure(args: argparse.Namespace) -> list[tuple[str, ...]]:
    async with build_client(timeout=30.0) as client:
        with FakeKapow(accounts={"user": (PASSWORD, 10 * args.sms)}) as fake:
            settings = {"type": "kapow", "url": fake.url, "username": "user", "password": PASSWORD}
            provider = build_provider(NAME, ProviderConfig.model_validate(settings), client)
            items = await accepted(provider, args.sms)
            for i, item in enumerate(items):
                if i % 3 < 2:
                    fake.deliver(item.provider_id, "D" if i % 3 == 0 else "X")
            alone_rate = await alone(provider, items, args.rate)
            sends, polls = await contended(provider, items, args.rate, args.seconds)
            assert fake.errors == []
    return [
        ("configured rate (baseline)", f"{args.rate:,.1f}/s", "1.00×", "—"),
        (f"polling alone, {args.sms:,} SMS", f"{alone_rate:,.1f} requests/s", f"{alone_rate / args.rate:.2f}×", "—"),
        (
            f"sends asking every turn, {args.seconds:g} s",
            f"{sends:,.1f} sends/s",
            f"{sends / args.rate:.2f}×",
            f"{polls:,.1f} polls/s ({polls / args.rate:.2f}×)",
        ),
    ]


def markdown(args: argparse.Namespace, table: list[tuple[str, ...]]) -> str:
    head = (
        f"Receipt polling benchmark — Kapow fake over HTTP on loopback, one status request per SMS, window "
        f"{schedule.WINDOW / 3600:g} h; {platform.python_implementation()} {platform.python_version()}, "
        f"{len(os.sched_getaffinity(0))} CPUs\n\n"
        "| case | measured | vs the rate | polls meanwhile |\n|---|---|---|---|\n"
    )
    return head + "".join("| " + " | ".join(row) + " |\n" for row in table)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sms", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=250.0, help="the provider's rate, requests per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the contended phase")
    parser.add_argument("--quick", action="store_true", help="tiny counts, for the smoke test")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        args.sms, args.rate, args.seconds = 60, 200.0, 0.5
    text = markdown(args, asyncio.run(measure(args)))
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
