"""Group claimed jobs into provider requests: same provider, account, sender, text and options, ≤ the limit.

One request per batch is what turns a 1,000-recipient broadcast into ⌈1000 / limit⌉ HTTP requests.

Personalised batches: a provider whose `Limits.max_messages` is set takes *different texts* in one request
(BulkSMS's JSON array, the EAPI's `send_batch`). Its jobs are grouped without their text, so a CSV of 900 rows with
450 different texts is one request instead of 450; each job keeps its own text (`Job.text`) and its own Result.
A group whose jobs all share one text is still cut at `max_recipients`, exactly as for any other provider.

A number appears at most once per batch, whatever the provider: replies are matched to jobs by number.
This module only groups; it must never reorder a job's own fields or drop a job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from mail2sms.model import Account, Batch, Job, SmsOptions


class _Limited(Protocol):
    @property
    def limits(self) -> _HasMaxMessages: ...


class _HasMaxMessages(Protocol):
    @property
    def max_messages(self) -> int | None: ...


GroupKey = tuple[str, Account | None, str | None, str | None, SmsOptions]


def _personalised(providers: Mapping[str, _Limited] | None) -> dict[str, int]:
    """Provider name → messages per personalised request, for providers that take different texts at once."""
    if not providers:
        return {}
    return {name: p.limits.max_messages for name, p in providers.items() if p.limits.max_messages}


def make_batches(
    jobs: Iterable[Job],
    max_recipients: Callable[[str], int],
    providers: Mapping[str, _Limited] | None = None,
) -> list[Batch]:
    """Batches in first-seen order; a number appears at most once per batch.

    `providers` (name → adapter) tells which providers take personalised batches (`limits.max_messages`).
    """
    mixed = _personalised(providers)
    groups: dict[GroupKey, list[Job]] = {}
    for job in jobs:
        text = None if job.provider in mixed else job.text
        groups.setdefault((job.provider, job.account, job.sender, text, job.options), []).append(job)
    batches: list[Batch] = []
    for (provider, account, sender, _, options), members in groups.items():
        uniform = all(j.text == members[0].text for j in members)
        limit = max(1, max_recipients(provider) if uniform else mixed[provider])
        chunk: list[Job] = []
        numbers: set[str] = set()
        for job in members:
            if len(chunk) >= limit or job.number in numbers:
                batches.append(Batch(provider, account, sender, chunk[0].text, options, tuple(chunk)))
                chunk, numbers = [], set()
            chunk.append(job)
            numbers.add(job.number)
        if chunk:
            batches.append(Batch(provider, account, sender, chunk[0].text, options, tuple(chunk)))
    return batches
