"""Claims are sized so that workers share the work: what one dispatcher holds is a few rounds of its requests.

The sizing itself is arithmetic (`dispatch/claims.py`) and is driven directly; the sharing is driven through real
dispatchers on one real SQLite spool, the real KwtSMS adapter and the KwtSMS fake over HTTP on 127.0.0.1, whose
gate holds every request until the test opens it (a latency-bound provider whose latency the test controls).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.dispatch.batching import make_batches
from mail2sms.dispatch.claims import ROUNDS, ClaimSizer
from mail2sms.dispatch.dispatcher import Dispatcher
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.limits import Limits
from mail2sms.model import Job, Submission
from mail2sms.providers.base import Provider
from mail2sms.providers.http import build_client
from mail2sms.providers.registry import build_provider
from mail2sms.spool import open_spool
from mail2sms.spool.base import Spool
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import RecordedRequest, _Handler

PASSWORD = "gate-pa55word"
BOUND = 120.0  # seconds: a bound against a hang on a busy machine, never a timing assertion


class _Limited:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits


def sizer(limits: Limits, *, concurrency: int = 4, lease: float = 300.0, claim_limit: int = 5000) -> ClaimSizer:
    return ClaimSizer({"p": _Limited(limits)}, {"p": concurrency}, lease=lease, rate_share=1, claim_limit=claim_limit)


def jobs(count: int, texts: int, start: int = 0, word: str = "Reminder") -> list[Job]:
    """A CSV's rows as the spool hands them out: one number each, the texts taking turns row by row."""
    return [Job(number=f"9655{i:07d}", text=f"{word} {i % texts}", provider="p") for i in range(start, start + count)]


def claim(s: ClaimSizer, todo: list[Job]) -> int:
    """Take one budget's worth of `todo` as a claim would, and let the sizer see its batches; the jobs taken."""
    taken = todo[: s.budget("p")]
    del todo[: len(taken)]
    s.observe(make_batches(taken, lambda _: s.per_request("p")))
    return len(taken)


def tick(s: ClaimSizer, todo: list[Job]) -> list[int]:
    """One tick of the dispatcher's claim loop, nothing held before it: a budget's worth, then more while the
    claims come back full and the sizer asks for more; the sizes of the requests it makes."""
    asked = s.budget("p")
    taken = todo[:asked]
    del todo[:asked]
    got = len(taken)
    while got >= asked:
        asked = s.more("p", taken, got, 0)
        if asked <= 0:
            break
        extra = todo[:asked]
        del todo[:asked]
        taken += extra
        got = len(extra)
    batches = make_batches(taken, lambda _: s.per_request("p"))
    s.observe(batches)
    return [len(b.jobs) for b in batches]


# -- the arithmetic -------------------------------------------------------------------------------------------


def test_a_generous_rate_does_not_make_a_claim_of_thousands() -> None:
    """A provider allowing 1,000 requests/s with a 5-minute lease gets concurrency × ROUNDS requests, not 5,000."""
    s = sizer(Limits(max_recipients=1, rate=1000.0), concurrency=4)
    assert s.requests("p") == 4 * ROUNDS
    assert s.budget("p") == s.cap("p") == 4 * ROUNDS


def test_a_slow_rate_claims_what_it_sends_within_half_a_lease() -> None:
    """At 0.02 requests/s and a 300 s lease, three requests go out before a claim goes stale: three are claimed."""
    s = sizer(Limits(max_recipients=1, rate=0.02), concurrency=4)
    assert s.budget("p") == 3


def test_claim_limit_stays_the_absolute_cap() -> None:
    """However full the requests, a claim is never more than `claim_limit` jobs."""
    s = sizer(Limits(max_recipients=200, rate=1000.0), concurrency=8, claim_limit=1000)
    todo = jobs(20_000, texts=1)
    taken = [claim(s, todo) for _ in range(10)]
    assert s.cap("p") == 1000
    assert max(taken) == 1000


def test_a_broadcast_grows_to_full_requests_within_a_few_claims() -> None:
    """Rows whose twenty texts take turns look like single mails in a first small claim; the claims grow until
    requests carry a hundred numbers or more, and never beyond the cap."""
    s = sizer(Limits(max_recipients=200, rate=10_000.0), concurrency=4)
    todo = jobs(100_000, texts=20)
    taken = [claim(s, todo) for _ in range(30)]
    assert taken[0] == 4 * ROUNDS  # nothing known yet: one job per request
    assert max(taken) <= s.cap("p")
    assert all(later >= s.cap("p") // 2 for later in taken[12:])  # grown within a dozen claims, and stays grown
    assert s.fill("p") >= 100


def test_single_mails_after_a_broadcast_are_seen_for_what_they_are_after_one_claim() -> None:
    """After a broadcast, one claim of single mails (each its own text) brings the budget back to one per request."""
    s = sizer(Limits(max_recipients=200, rate=10_000.0), concurrency=4)
    broadcast = jobs(50_000, texts=5)
    for _ in range(30):
        claim(s, broadcast)
    singles = jobs(10_000, texts=10_000, start=100_000)
    claim(s, singles)
    assert s.budget("p") == 4 * ROUNDS


def test_a_claim_that_shows_a_broadcast_asks_for_the_rest_at_once() -> None:
    """After single mails, a first claim of one broadcast's numbers (all one text) asks at once for the rest of
    the cap, less what is held; a claim of single mails asks for nothing more."""
    s = sizer(Limits(max_recipients=200, rate=10_000.0), concurrency=4)
    claim(s, jobs(5_000, texts=5_000, start=200_000))
    first = jobs(s.budget("p"), texts=1)
    assert len(first) == 4 * ROUNDS
    assert s.more("p", first, len(first), 0) == s.cap("p") - len(first)  # 16 full requests of 200
    assert s.more("p", first, len(first), held=100) == s.cap("p") - len(first) - 100
    assert s.more("p", jobs(16, texts=16, word="Code"), 16, 0) == 0


def test_a_csv_whose_texts_take_turns_reaches_full_requests_in_its_second_tick() -> None:
    """The 5,000 rows of a CSV with twenty texts taking turns: the first tick sees sixteen texts once each (sixteen
    requests of one); in the second most rows repeat a text seen before, so it claims GROW times more at once until
    the cap, and from then on requests carry 80 rows or more."""
    s = sizer(Limits(max_recipients=200, rate=10_000.0), concurrency=4)
    todo = jobs(5_000, texts=20)
    ticks = []
    while todo:
        ticks.append(tick(s, todo))
    assert ticks[0] == [1] * 4 * ROUNDS
    assert sum(ticks[1]) == s.cap("p")
    assert all(size >= 80 for sizes in ticks[1:-1] for size in sizes)
    assert sum(len(sizes) for sizes in ticks) <= 4 * ROUNDS + 2 * 20 + 20  # the old sizing: 40 requests


def test_single_mails_never_ask_for_more() -> None:
    """A long queue of single mails (each its own text) is claimed a budget at a time: one job per request, never
    more than concurrency × ROUNDS requests in a tick."""
    s = sizer(Limits(max_recipients=200, rate=10_000.0), concurrency=4)
    todo = jobs(2_000, texts=2_000)
    for _ in range(20):
        assert tick(s, todo) == [1] * 4 * ROUNDS


def test_personalised_requests_fill_with_different_texts() -> None:
    """A provider taking different texts in one request (max_messages) fills requests from a CSV of distinct texts."""
    s = sizer(Limits(max_recipients=1, max_messages=100, rate=10.0), concurrency=2)
    todo = jobs(20_000, texts=20_000)
    for _ in range(10):
        claim(s, todo)
    assert s.fill("p") == 100
    assert s.budget("p") == s.cap("p") == 2 * ROUNDS * 100


# -- real dispatchers, one spool, a latency-bound provider ----------------------------------------------------


class GatedKwtSms(FakeKwtSms):
    """The KwtSMS fake, holding each request (after reading it) until `gate` opens; `held` counts the requests
    that reached it. Its answers are otherwise exactly the fake's."""

    def __init__(self) -> None:
        super().__init__(accounts={"user": (PASSWORD, 1e9)}, same_number_interval=0)
        self.gate = threading.Event()
        self.held = 0

    def _read(self, handler: _Handler) -> RecordedRequest:
        request = super()._read(handler)
        with self._changed:
            self.held += 1
            self._changed.notify_all()
        self.gate.wait()
        return request


@pytest.fixture
def fake() -> Any:
    gated = GatedKwtSms().start()
    try:
        yield gated
    finally:
        gated.gate.set()  # a request still held must end before the server can
        gated.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with build_client(timeout=BOUND) as http:
        yield http


def kwtsms(fake: GatedKwtSms, client: httpx.AsyncClient, max_recipients: int = 1) -> Provider:
    """The real KwtSMS adapter against the fake: one number per request unless told, a rate that is never the
    limit."""
    settings = {
        "type": "kwtsms",
        "url": fake.url,
        "username": "user",
        "password": PASSWORD,
        "sender": "KWT-MESSAGE",
        "rate": 1000,
        "max_recipients": max_recipients,
    }
    return build_provider("kwt", ProviderConfig.model_validate(settings), client)


async def queue(spool: Spool, count: int) -> list[str]:
    """`count` single-number mails, committed as the SMTP handler does; their numbers."""
    numbers = [f"9656{i:07d}" for i in range(count)]
    now = time.time()
    for n in numbers:
        sub = Submission(
            "a@example.org", [f"{n}@sms.test"], [Job(number=n, text=f"Code {n}", provider="kwt")], "r", received_at=now
        )
        await spool.commit(sub, [f"k-{n}"], 86400)
    return numbers


def dispatcher(spool: Spool, provider: Provider, **kwargs: Any) -> Dispatcher:
    return Dispatcher(
        spool,
        {"kwt": provider},
        RetryPolicy(base=0.1, cap=0.1),
        concurrency=2,
        provider_concurrency={"kwt": 2},
        poll_interval=0.05,
        **kwargs,
    )


def leased(db: Path, owner: str) -> int:
    """Jobs the spool shows as claimed by `owner` and not settled."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE lease_owner = ? AND state IN ('queued', 'sending')", (owner,)
        ).fetchone()
    return int(row[0])


async def until(fake: GatedKwtSms, predicate: Any) -> None:
    await asyncio.to_thread(fake.wait_until, predicate, BOUND)


async def test_one_worker_with_a_long_queue_claims_at_most_the_cap(
    tmp_path: Path, fake: GatedKwtSms, client: httpx.AsyncClient
) -> None:
    """With 100 ready jobs and every request held at the provider, one dispatcher holds only its cap (its two
    workers × ROUNDS); the rest stay in the spool for other workers, and all 100 go out once when the gate opens."""
    spool = open_spool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    one = dispatcher(spool, kwtsms(fake, client))
    try:
        numbers = await queue(spool, 100)
        run = asyncio.create_task(one.run())
        await until(fake, lambda: fake.held >= 2)  # both workers' requests are at the provider
        cap = one.claim_cap("kwt")
        assert cap == 2 * ROUNDS
        assert leased(tmp_path / "spool.db", one.owner) == cap
        fake.gate.set()
        await until(fake, lambda: len(fake.sent) >= 100)
        await one.stop(BOUND)
        await asyncio.gather(run, return_exceptions=True)
        assert one.stats.most_held["kwt"] == cap
        assert sorted(s.number for s in fake.sent) == numbers
        assert await spool.counts() == {"sent": 100}
    finally:
        await spool.close()


async def test_two_dispatchers_on_one_spool_both_send_a_share(
    tmp_path: Path, fake: GatedKwtSms, client: httpx.AsyncClient
) -> None:
    """Two dispatchers (as two worker processes) on one SQLite spool and a latency-bound provider: both have all
    their requests at the provider at once, each sends a share, neither holds more than its cap, each SMS goes once."""
    first, second = open_spool(f"sqlite://{tmp_path}/spool.db"), open_spool(f"sqlite://{tmp_path}/spool.db")
    await first.open()
    await second.open()
    provider = kwtsms(fake, client)
    one = dispatcher(first, provider)
    other = dispatcher(second, provider, owner="other-node:1:1")  # another host's name: never "dead" to this one
    try:
        numbers = await queue(first, 60)
        runs = [asyncio.create_task(one.run()), asyncio.create_task(other.run())]
        # One dispatcher alone never has more than its 2 workers' requests out: 4 held means both got work.
        await until(fake, lambda: fake.held >= 4)
        fake.gate.set()
        await until(fake, lambda: len(fake.sent) >= 60)
        await asyncio.gather(one.stop(BOUND), other.stop(BOUND))
        await asyncio.gather(*runs, return_exceptions=True)
        sent = [one.stats.recorded["sent"], other.stats.recorded["sent"]]
        assert all(count > 0 for count in sent), sent
        assert sum(sent) == 60
        assert one.stats.most_held["kwt"] <= one.claim_cap("kwt")
        assert other.stats.most_held["kwt"] <= other.claim_cap("kwt")
        assert sorted(s.number for s in fake.sent) == numbers
        assert await first.counts() == {"sent": 60}
    finally:
        await first.close()
        await second.close()


async def test_a_broadcast_after_single_mails_goes_in_full_requests(
    tmp_path: Path, fake: GatedKwtSms, client: httpx.AsyncClient
) -> None:
    """After 40 single mails (one request each), one mail to 1,000 numbers with one text is claimed at once and
    goes in five requests of 200, though the claims before it were single jobs."""
    spool = open_spool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    fake.gate.set()
    one = dispatcher(spool, kwtsms(fake, client, max_recipients=200))
    try:
        run = asyncio.create_task(one.run())
        await queue(spool, 40)
        await until(fake, lambda: len(fake.sent) >= 40)
        singles = len(fake.requests)
        numbers = [f"9657{i:07d}" for i in range(1000)]
        broadcast = [Job(number=n, text="Water off 10-12 tomorrow", provider="kwt") for n in numbers]
        sub = Submission("a@example.org", ["x"], broadcast, "r", received_at=time.time())
        await spool.commit(sub, [f"b-{n}" for n in numbers], 86400)
        one.wake()
        await until(fake, lambda: len(fake.sent) >= 1040)
        await one.stop(BOUND)
        await asyncio.gather(run, return_exceptions=True)
        assert singles == 40
        assert len(fake.requests) - singles == 5
        assert await spool.counts() == {"sent": 1040}
    finally:
        await spool.close()


async def test_a_failed_follow_up_claim_keeps_what_was_claimed(
    tmp_path: Path, fake: GatedKwtSms, client: httpx.AsyncClient
) -> None:
    """When the spool fails the claim that was to fetch the rest of a broadcast, the jobs of the first claim are
    still sent (not left to wait out their lease), the rest follow, and every number gets its SMS once."""
    spool = open_spool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    fake.gate.set()
    real_claim, calls = spool.claim, []

    async def claim(*args: Any, **kwargs: Any) -> list[Job]:
        calls.append(args)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database is locked")
        return await real_claim(*args, **kwargs)

    spool.claim = claim  # type: ignore[method-assign]
    one = dispatcher(spool, kwtsms(fake, client, max_recipients=200))
    try:
        numbers = [f"9657{i:07d}" for i in range(100)]
        broadcast = [Job(number=n, text="Water off 10-12 tomorrow", provider="kwt") for n in numbers]
        sub = Submission("a@example.org", ["x"], broadcast, "r", received_at=time.time())
        await spool.commit(sub, [f"b-{n}" for n in numbers], 86400)
        run = asyncio.create_task(one.run())
        await until(fake, lambda: len(fake.sent) >= 100)
        await one.stop(BOUND)
        await asyncio.gather(run, return_exceptions=True)
        assert sorted(s.number for s in fake.sent) == numbers
        assert len(str(fake.requests[0].param("mobile")).split(",")) == 2 * ROUNDS  # the first claim, alone
        assert await spool.counts() == {"sent": 100}
    finally:
        await spool.close()


async def test_claims_follow_each_other_without_waiting_for_the_poll(
    tmp_path: Path, fake: GatedKwtSms, client: httpx.AsyncClient
) -> None:
    """With a poll interval of an hour, 200 ready jobs through an 8-job cap all go out: every next claim is woken
    by the batches that settle, so no ready job waits for a poll while the workers are idle."""
    spool = open_spool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    fake.gate.set()
    one = Dispatcher(
        spool,
        {"kwt": kwtsms(fake, client)},
        RetryPolicy(base=0.1, cap=0.1),
        concurrency=2,
        provider_concurrency={"kwt": 2},
        poll_interval=3600.0,
    )
    try:
        run = asyncio.create_task(one.run())
        await queue(spool, 200)
        one.wake()  # what the SMTP handler does after its last commit
        await until(fake, lambda: len(fake.sent) >= 200)
        await one.stop(BOUND)
        await asyncio.gather(run, return_exceptions=True)
        assert one.stats.most_held["kwt"] <= one.claim_cap("kwt") == 2 * ROUNDS
        assert await spool.counts() == {"sent": 200}
    finally:
        await spool.close()
