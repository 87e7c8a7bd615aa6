"""Receipt polling rules (issue 15): the back-off as an SMS ages, the window's last ask, batching per provider's
`max_ids` and account, matching a receipt to its SMS, and the sending-first share of a provider's rate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mail2sms.dispatch import receipt_schedule as schedule
from mail2sms.dispatch.priority import SendingFirst
from mail2sms.dispatch.receipt_store import Awaiting, ReceiptState, StoreSink, final_state, matching
from mail2sms.model import Account, DeliveryState, Receipt
from tests.receipts_memory import MemoryReceiptStore

HOUR = 3600.0


def waiting(n: int, provider: str = "kapow", pid: str | None = None, account: Account | None = None) -> Awaiting:
    return Awaiting(f"job-{n}", "sub", provider, pid or f"id-{n}", f"9655000000{n}", 0.0, account=account)


def test_back_off_grows_then_stays_at_an_hour() -> None:
    """Asks come 1, 2, 5, 15, 30 minutes apart, then hourly."""
    assert [schedule.delay(n) / 60 for n in range(8)] == [1, 2, 5, 15, 30, 60, 60, 60]


def test_asks_over_the_window_stay_few() -> None:
    """Over a 48 h window an SMS that never gets a receipt is asked about about 50 times, not thousands."""
    now, polls, accepted = schedule.first_poll_at(0.0), 0, 0.0
    while not schedule.window_over(accepted, now):
        polls += 1
        now = schedule.next_poll_at(accepted, polls, now)
    assert 45 <= polls + 1 <= 55
    assert now == 48 * HOUR


def test_next_ask_never_passes_the_window_end() -> None:
    """The last ask is at the window's end, whatever the back-off says."""
    assert schedule.next_poll_at(0.0, 9, 47.5 * HOUR) == 48 * HOUR
    assert schedule.first_poll_at(0.0, window=30.0) == 30.0


def test_batches_respect_max_ids_and_keep_numbers_of_one_id_together() -> None:
    """Distinct ids per request stay within max_ids; every number sent under one id rides in that id's request."""
    items = [waiting(1, "bulk"), waiting(2, "bulk", "id-1"), waiting(3, "bulk"), waiting(4, "bulk"), waiting(5, "bulk")]
    plan = schedule.batches(items, lambda provider: 2)
    assert [[a.job_id for a in chunk] for chunk in plan["bulk"]] == [
        ["job-1", "job-2", "job-3"],
        ["job-4", "job-5"],
    ]


def test_batches_split_by_provider_and_account() -> None:
    """One request carries one provider's SMS of one account: a body account is asked with its own login."""
    body = Account("other", "pw")
    items = [waiting(1), waiting(2, account=body), waiting(3, "kwt"), waiting(4)]
    plan = schedule.batches(items, lambda provider: 10)
    assert [[a.job_id for a in c] for c in plan["kapow"]] == [["job-1", "job-4"], ["job-2"]]
    assert [[a.job_id for a in c] for c in plan["kwt"]] == [["job-3"]]


def test_only_clear_words_settle() -> None:
    """Delivered and undelivered settle an SMS; pending never does."""
    assert final_state(Receipt("1", None, DeliveryState.DELIVERED)) is ReceiptState.DELIVERED
    assert final_state(Receipt("1", None, DeliveryState.UNDELIVERED)) is ReceiptState.UNDELIVERED
    assert final_state(Receipt("1", None, DeliveryState.PENDING)) is None


def test_matching_needs_the_number_or_a_single_candidate() -> None:
    """A receipt with a number matches that SMS; without one, only the only SMS under its id."""
    two = [waiting(1, pid="x"), waiting(2, pid="x")]
    assert matching(two, Receipt("x", "96550000002", DeliveryState.DELIVERED)) == [two[1]]
    assert matching(two, Receipt("x", None, DeliveryState.DELIVERED)) == []
    assert matching(two[:1], Receipt("x", None, DeliveryState.DELIVERED)) == two[:1]
    assert matching(two, Receipt("x", "96550000009", DeliveryState.DELIVERED)) == []


async def test_push_sink_settles_once_and_ignores_unknown_ids() -> None:
    """Two pushes for one SMS settle it once; an unknown id and a pending word settle nothing."""
    store = MemoryReceiptStore()
    store.add(waiting(1))
    sink = StoreSink(store, lambda: 100.0)
    delivered = Receipt("id-1", "96550000001", DeliveryState.DELIVERED, "D", "delivered")
    assert await sink("kapow", [delivered, Receipt("nope", None, DeliveryState.DELIVERED)]) == 1
    assert await sink("kapow", [delivered]) == 0
    assert await sink("kapow", [Receipt("id-9", None, DeliveryState.PENDING)]) == 0
    assert store.final["job-1"].via == "push"
    assert store.final["job-1"].state is ReceiptState.DELIVERED


class Turns:
    """A limiter that grants one turn each time the test releases one, recording who got it."""

    def __init__(self) -> None:
        self.granted: list[str] = []
        self._free = asyncio.Semaphore(0)
        self.waiting = 0

    async def acquire(self, provider: str) -> None:
        self.waiting += 1
        await self._free.acquire()
        self.waiting -= 1

    def release(self) -> None:
        self._free.release()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):  # bounded: the tasks need only a few loop turns
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_polling_waits_while_a_send_waits() -> None:
    """A status request takes a turn only when no send to that provider is waiting; both draw from one limiter."""
    turns = Turns()
    shared = SendingFirst(turns)
    order: list[str] = []

    async def send(tag: str) -> None:
        await shared.acquire("kapow")
        order.append(tag)

    async def poll() -> None:
        await shared.polling.acquire("kapow")
        order.append("poll")

    first = asyncio.create_task(send("send-1"))
    await _until(lambda: turns.waiting == 1)
    polling = asyncio.create_task(poll())
    second = asyncio.create_task(send("send-2"))
    await _until(lambda: shared.waiting("kapow") == 2)
    assert turns.waiting == 2  # the poll has not even asked the limiter while sends wait
    turns.release()
    turns.release()
    await asyncio.gather(first, second)
    await _until(lambda: turns.waiting == 1)  # now the poll asks
    turns.release()
    await polling
    assert order == ["send-1", "send-2", "poll"]


async def test_polling_of_another_provider_does_not_wait() -> None:
    """Sending first holds per provider: a send waiting for KwtSMS does not hold back a Kapow status request."""
    turns = Turns()
    shared = SendingFirst(turns)
    sending = asyncio.create_task(shared.acquire("kwt"))
    await _until(lambda: turns.waiting == 1)
    polling = asyncio.create_task(shared.polling.acquire("kapow"))
    await _until(lambda: turns.waiting == 2)
    turns.release()
    turns.release()
    await asyncio.gather(sending, polling)


async def test_a_sender_asking_again_at_once_keeps_priority() -> None:
    """A send that asks for its next turn right after its last one is still first: the poll looks again."""
    turns = Turns()
    shared = SendingFirst(turns)
    order: list[str] = []

    async def two_sends() -> None:
        await shared.acquire("kapow")
        order.append("send-1")
        await shared.acquire("kapow")  # at once: no other task runs between the two
        order.append("send-2")

    async def poll() -> None:
        await shared.polling.acquire("kapow")
        order.append("poll")

    sending = asyncio.create_task(two_sends())
    await _until(lambda: turns.waiting == 1)
    polling = asyncio.create_task(poll())
    await _until(lambda: shared.waiting("kapow") == 1 and turns.waiting == 1)
    turns.release()
    await _until(lambda: order == ["send-1"] and turns.waiting == 1)
    for _ in range(100):  # let the poll run: it must find the second send waiting and not ask the limiter
        await asyncio.sleep(0)
    assert turns.waiting == 1
    turns.release()
    await sending
    await _until(lambda: turns.waiting == 1)
    turns.release()
    await polling
    assert order == ["send-1", "send-2", "poll"]
