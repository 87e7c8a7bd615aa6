"""Unit tests of `dispatch.batching.make_batches` for providers that take personalised batches (different texts)."""

from __future__ import annotations

from dataclasses import dataclass

from mail2sms.dispatch.batching import make_batches
from mail2sms.model import Job, SmsOptions
from mail2sms.providers.base import Limits


@dataclass
class _Adapter:
    limits: Limits


def _job(number: str, text: str, provider: str = "bulk", sender: str | None = None) -> Job:
    return Job(number=number, text=text, provider=provider, sender=sender)


PROVIDERS = {"bulk": _Adapter(Limits(max_recipients=3, max_messages=4)), "kwt": _Adapter(Limits(max_recipients=200))}


def _limit(name: str) -> int:
    return PROVIDERS[name].limits.max_recipients


def test_different_texts_share_a_batch_when_the_provider_takes_them() -> None:
    """900 rows with 450 texts to a personalised provider are one batch (≤ max_messages); each job keeps its text."""
    jobs = [_job(f"4477009{i:05d}", f"text {i // 2}") for i in range(900)]
    providers = {"bulk": _Adapter(Limits(max_recipients=100, max_messages=4000))}
    [batch] = make_batches(jobs, lambda _: 100, providers)
    assert batch.personalised
    assert [j.text for j in batch.jobs] == [j.text for j in jobs]
    assert batch.text == jobs[0].text


def test_personalised_batches_are_cut_at_max_messages() -> None:
    """A mixed group is cut at max_messages, not at max_recipients."""
    jobs = [_job(f"4477009000{i:02d}", f"t{i}") for i in range(10)]
    assert [len(b.jobs) for b in make_batches(jobs, _limit, PROVIDERS)] == [4, 4, 2]


def test_a_uniform_group_is_still_cut_at_max_recipients() -> None:
    """Jobs that all share one text keep the ordinary limit and are not personalised."""
    jobs = [_job(f"4477009000{i:02d}", "same") for i in range(7)]
    batches = make_batches(jobs, _limit, PROVIDERS)
    assert [len(b.jobs) for b in batches] == [3, 3, 1]
    assert not any(b.personalised for b in batches)


def test_other_providers_still_batch_by_text() -> None:
    """A provider without max_messages gets one batch per text, as before."""
    jobs = [_job("96550000001", "a", "kwt"), _job("96550000002", "b", "kwt"), _job("96550000003", "a", "kwt")]
    batches = make_batches(jobs, _limit, PROVIDERS)
    assert sorted((b.text, len(b.jobs)) for b in batches) == [("a", 2), ("b", 1)]


def test_sender_and_options_still_split_personalised_batches() -> None:
    """Different senders or options never share a request, whatever the texts."""
    jobs = [_job("447700900001", "a", sender="Shop"), _job("447700900002", "b", sender="Bank"),
            _job("447700900003", "c", sender="Shop")]
    jobs[2].options = SmsOptions(flash=True)
    batches = make_batches(jobs, _limit, PROVIDERS)
    assert sorted((b.sender, len(b.jobs)) for b in batches) == [("Bank", 1), ("Shop", 1), ("Shop", 1)]


def test_a_number_is_at_most_once_per_personalised_batch() -> None:
    """Two rows to one number go in two requests: answers are matched to jobs by number."""
    jobs = [_job("447700900001", "first"), _job("447700900001", "second")]
    assert [len(b.jobs) for b in make_batches(jobs, _limit, PROVIDERS)] == [1, 1]
