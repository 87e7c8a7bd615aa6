"""Both spools keep a job's first attempt time (`Job.first_attempt_at`): set by the first `mark_sending`, never moved
by later ones, carried on every claimed Job — the clock a provider's idempotency-key window is measured on."""

from __future__ import annotations

from mail2sms.model import JobState
from mail2sms.spool.base import JobUpdate, Spool
from tests.integration.test_spool_contract import NOW, commit


async def test_first_attempt_is_set_once_and_carried_on_claim(spool: Spool) -> None:
    """A new job has none; the first mark_sending sets it; a retry's mark_sending keeps the first time."""
    await commit(spool, ["96550000001"])
    [job] = await spool.claim("a", NOW, 10, 60.0)
    assert job.first_attempt_at is None
    await spool.mark_sending([job.id], NOW + 1, "a")
    await spool.record([JobUpdate(job.id, JobState.QUEUED, 1, NOW + 5, None, "ReadTimeout", "timed out")], NOW + 2)
    [again] = await spool.claim("a", NOW + 10, 10, 60.0)
    assert again.first_attempt_at == NOW + 1
    assert (again.code, again.attempts) == ("ReadTimeout", 1)
    await spool.mark_sending([again.id], NOW + 7200, "a")
    await spool.record([JobUpdate(job.id, JobState.QUEUED, 2, NOW + 7300, None, "HTTP503", "busy")], NOW + 7201)
    [third] = await spool.claim("a", NOW + 7400, 10, 60.0)
    assert third.first_attempt_at == NOW + 1


async def test_mark_sending_without_owner_sets_it_too(spool: Spool) -> None:
    """The owner-less mark_sending (single-process use) keeps the same rule."""
    await commit(spool, ["96550000001"])
    [job] = await spool.claim("a", NOW, 10, 60.0)
    await spool.mark_sending([job.id], NOW + 3)
    found = await spool.get(job.submission_id)
    assert found is not None
    assert found[1][0].first_attempt_at == NOW + 3
