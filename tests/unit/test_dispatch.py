"""Dispatcher parts without a server: backoff bounds, batching, the circuit breaker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mail2sms.dispatch.batching import make_batches
from mail2sms.dispatch.breaker import Breaker
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.errors import RequestNotSent, SpoolFullError
from mail2sms.model import Account, Job, SmsOptions
from mail2sms.providers.http import BEFORE_SEND, request_leaving
from mail2sms.spool.base import LeaseLost


@given(attempts=st.integers(min_value=1, max_value=60), after=st.none() | st.floats(min_value=0, max_value=1e4))
def test_full_jitter_stays_within_bounds(attempts: int, after: float | None) -> None:
    """A delay is never over the exponential bound (capped) unless the provider's Retry-After asks for more."""
    policy = RetryPolicy(base=5.0, cap=600.0)
    delay = policy.delay(attempts, after, random.Random(attempts))
    bound = min(600.0, 5.0 * 2 ** (attempts - 1))
    assert delay >= (after or 0.0)
    assert delay <= max(bound, after or 0.0)


def test_jitter_spreads_retries() -> None:
    """Many jobs failing together get different delays (no synchronized wave)."""
    policy = RetryPolicy(base=5.0, cap=600.0)
    rng = random.Random(1)
    delays = {round(policy.delay(4, None, rng), 3) for _ in range(100)}
    assert len(delays) > 90


def _job(number: str, text: str = "hi", sender: str | None = "S", account: Account | None = None) -> Job:
    return Job(number=number, text=text, provider="p", sender=sender, account=account)


def test_batches_group_same_text_and_split_at_the_limit() -> None:
    """Identical text/sender/account go together up to the limit; anything different starts another batch."""
    jobs = [_job(f"9655000{i:04d}") for i in range(450)] + [_job("96551111111", text="other")]
    jobs.append(_job("96552222222", account=Account("u", "p")))
    batches = make_batches(jobs, lambda _: 200)
    assert [len(b.jobs) for b in batches] == [200, 200, 50, 1, 1]
    assert batches[3].text == "other"
    assert batches[4].account == Account("u", "p")


def test_a_number_twice_goes_in_two_requests() -> None:
    """The same number twice with the same text (two CSV rows) is two SMS, so two requests."""
    batches = make_batches([_job("96550000001"), _job("96550000001")], lambda _: 200)
    assert [b.numbers for b in batches] == [["96550000001"], ["96550000001"]]


def test_options_separate_batches() -> None:
    """A flash SMS and a normal one with the same text are different requests."""
    a, b = _job("96550000001"), _job("96550000002")
    b.options = SmsOptions(flash=True)
    assert len(make_batches([a, b], lambda _: 200)) == 2


def test_breaker_trips_after_threshold_and_doubles() -> None:
    """Three failures in a row pause the provider; a success closes it; repeated trips double the pause."""
    breaker = Breaker(threshold=3, pause=10.0, cap=100.0)
    assert not breaker.record(True, 0.0)
    assert not breaker.record(True, 0.0)
    assert breaker.record(True, 0.0)
    assert breaker.is_open(5.0)
    assert not breaker.is_open(10.0)
    for _ in range(3):
        breaker.record(True, 10.0)
    assert breaker.open_until == 30.0
    breaker.record(False, 31.0)
    assert breaker.failures == 0
    assert breaker.trips == 0


@pytest.mark.parametrize("failure", [SpoolFullError("spool storage is full"), LeaseLost("gone"), OSError("disk")])
async def test_any_hook_failure_leaves_as_request_not_sent(failure: Exception) -> None:
    """Whatever the "request is leaving" hook raises reaches the adapter as RequestNotSent, the failure its cause."""

    async def hook() -> None:
        raise failure

    token = BEFORE_SEND.set(hook)
    try:
        with pytest.raises(RequestNotSent) as caught:
            await request_leaving()
    finally:
        BEFORE_SEND.reset(token)
    assert caught.value.__cause__ is failure


async def test_no_hook_means_nothing_to_refuse() -> None:
    """Outside the dispatcher (balance requests, tests) there is no hook and a request simply goes."""
    assert BEFORE_SEND.get() is None
    await request_leaving()
