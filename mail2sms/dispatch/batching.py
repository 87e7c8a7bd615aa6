"""Group claimed jobs into provider requests: same provider, account, sender, text and options, ≤ the limit.

One request per batch is what turns a 1,000-recipient broadcast into ⌈1000 / limit⌉ HTTP requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mail2sms.model import Account, Batch, Job, SmsOptions


def _key(job: Job) -> tuple[str, Account | None, str | None, str, SmsOptions]:
    return (job.provider, job.account, job.sender, job.text, job.options)


def make_batches(jobs: Iterable[Job], max_recipients: Callable[[str], int]) -> list[Batch]:
    """Batches in first-seen order; a number appears at most once per batch."""
    groups: dict[tuple[str, Account | None, str | None, str, SmsOptions], list[Job]] = {}
    for job in jobs:
        groups.setdefault(_key(job), []).append(job)
    batches: list[Batch] = []
    for (provider, account, sender, text, options), members in groups.items():
        limit = max(1, max_recipients(provider))
        chunk: list[Job] = []
        numbers: set[str] = set()
        for job in members:
            if len(chunk) >= limit or job.number in numbers:
                batches.append(Batch(provider, account, sender, text, options, tuple(chunk)))
                chunk, numbers = [], set()
            chunk.append(job)
            numbers.add(job.number)
        if chunk:
            batches.append(Batch(provider, account, sender, text, options, tuple(chunk)))
    return batches
