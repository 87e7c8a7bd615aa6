"""The dispatcher: claim ready jobs, batch them, respect each provider's rate, send, record every Result.

It runs beside the SMTP server in the same event loop and never blocks it: spool calls run on the spool's
thread, provider calls are async HTTP. The SMTP handler only `wake()`s it after a commit; no provider is
ever called from an SMTP session.

The crash-recovery boundary is `spool.mark_sending()`, written durably when the request's first bytes are about
to be written (see `providers.http`): a job that crashes before it is still `queued` (sent later, once); after
it, `recover()` applies DESIGN.md's rule. That write also checks that this process still holds the jobs' lease, so
jobs whose lease ran out while they waited (and that another process or node took) are never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from mail2sms import metrics
from mail2sms.dispatch.batching import make_batches
from mail2sms.dispatch.breaker import Breaker
from mail2sms.dispatch.ratelimit import LocalRateLimiter, RateLimiter
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.model import Batch, Job, JobState, Rejected, Result, Retry, Sent, Unknown
from mail2sms.observability import get_logger
from mail2sms.providers.base import Provider
from mail2sms.providers.http import BEFORE_SEND
from mail2sms.spool.base import JobUpdate, LeaseLost, Spool

log = get_logger("mail2sms.dispatch")

LEASE_SECONDS = 300.0
PER_SMS_LOG_LINES = 10  # batches up to this size log each SMS; bigger ones log one summary line
RECOVER_EVERY = 5.0  # lease recovery and lifetime expiry: cheap indexed queries


def node_name() -> str:
    """This host's name in lease owners: `MAIL2SMS_NODE` if set (it must differ between hosts that share a spool,
    e.g. containers that all have the same hostname), else the hostname."""
    return os.environ.get("MAIL2SMS_NODE", "").replace(":", "_") or socket.gethostname()


def process_owner() -> str:
    """This process's lease owner name: node, pid and start time (a reused pid is not the same owner)."""
    return f"{node_name()}:{os.getpid()}:{int(time.time())}"


def owner_is_dead(owner: str) -> bool:
    """True when `owner` was a process on this host that no longer runs (or is an older incarnation)."""
    host, _, rest = owner.partition(":")
    pid_text, _, _started = rest.partition(":")
    if host != node_name() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != CURRENT_OWNER
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


CURRENT_OWNER = process_owner()


class Dispatcher:
    def __init__(
        self,
        spool: Spool,
        providers: Mapping[str, Provider],
        policy: RetryPolicy,
        *,
        concurrency: int = 8,
        poll_interval: float = 1.0,
        claim_limit: int = 5000,
        on_final: Callable[[list[str]], Awaitable[None] | None] | None = None,
        rate_share: int = 1,
        breaker_failures: int = 5,
        breaker_pause: float = 30.0,
        lease: float = LEASE_SECONDS,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.spool = spool
        self.providers = providers
        self.policy = policy
        self.poll_interval = poll_interval
        self.claim_limit = claim_limit
        self.on_final = on_final
        self.owner = CURRENT_OWNER
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(concurrency)
        self.lease = lease
        self._limiter = rate_limiter or LocalRateLimiter(
            {name: p.limits.rate for name, p in providers.items()}, share=rate_share
        )
        self.breakers = {
            name: Breaker(breaker_failures, breaker_pause, max(policy.cap, breaker_pause)) for name in providers
        }
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_recover = 0.0

    def wake(self) -> None:
        self._wake.set()

    def idempotent_providers(self) -> set[str]:
        return {name for name, p in self.providers.items() if p.limits.idempotent}

    async def recover(self) -> None:
        """Recover what dead owners left in flight, and expire jobs past their lifetime."""
        requeued, unknown = await self.spool.recover(self.idempotent_providers(), time.time(), owner_is_dead)
        self._last_recover = time.monotonic()
        if requeued or unknown:
            log.warning("recovered interrupted jobs", requeued=requeued, unknown=unknown)
        finished = await self.spool.expire(time.time())
        if finished:
            log.info("jobs expired", submissions=len(finished))
            await self._final(finished)

    async def _final(self, finished: list[str]) -> None:
        if finished and self.on_final is not None:
            maybe = self.on_final(finished)
            if maybe is not None:
                await maybe

    async def run(self) -> None:
        """Loop until `stop()`: claim, batch, send. Errors are logged and the loop goes on."""
        while not self._stopping:
            try:
                claimed = await self._tick()
            except Exception:
                log.exception("dispatcher tick failed")
                claimed = 0
            if claimed == 0 and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _tick(self) -> int:
        if time.monotonic() - self._last_recover > min(RECOVER_EVERY, self.lease / 2):
            await self.recover()
        free = self.claim_limit - sum(1 for _ in self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        now = time.time()
        paused = [name for name, b in self.breakers.items() if b.is_open(now)]
        jobs = await self.spool.claim(self.owner, now, self.claim_limit, self.lease, paused)
        if not jobs:
            return 0
        claimed = time.monotonic()
        batches = make_batches(jobs, self._max_recipients)
        for i, batch in enumerate(batches):
            await self._slots.acquire()
            if time.monotonic() - claimed > self.lease / 2:
                # Slow going (rate limits): hand back what waited half its lease, for any process to claim.
                self._slots.release()
                await self._release([job for b in batches[i:] for job in b.jobs])
                break
            task = asyncio.create_task(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(jobs)

    async def _release(self, jobs: list[Job]) -> None:
        updates = [JobUpdate(j.id, JobState.QUEUED, j.attempts, j.next_attempt_at, j.provider_id, j.code, j.error)
                   for j in jobs]
        await self.spool.record(updates, time.time())

    def _log_batch(self, batch: Batch, updates: list[JobUpdate]) -> None:
        """One line per SMS for small batches; one summary line for a broadcast (100,000 CSV rows would otherwise
        cost 100,000 log lines and seconds of CPU)."""
        states: dict[str, int] = {}
        for job, update in zip(batch.jobs, updates, strict=True):
            states[update.state.value] = states.get(update.state.value, 0) + 1
            if len(batch.jobs) <= PER_SMS_LOG_LINES:
                log.info("sms", submission=job.submission_id, job=job.id, provider=batch.provider,
                         state=update.state.value, code=update.code, attempt=update.attempts)
        for state, count in states.items():
            metrics.SMS.labels(batch.provider, state).inc(count)
        if len(batch.jobs) > PER_SMS_LOG_LINES:
            codes = sorted({u.code for u in updates if u.code})
            log.info("sms batch", submissions=sorted({j.submission_id for j in batch.jobs}), provider=batch.provider,
                     jobs=len(batch.jobs), states=states, codes=codes)

    def _breaker(self, provider: str, results: list[Result]) -> None:
        breaker = self.breakers.get(provider)
        if breaker is None:
            return
        failed = all(isinstance(r, Retry | Unknown) for r in results)
        if breaker.record(failed, time.time()):
            log.warning("provider paused: it keeps failing", provider=provider,
                        seconds=round(breaker.open_until - time.time()))
            self.wake()

    def _max_recipients(self, provider: str) -> int:
        p = self.providers.get(provider)
        return p.limits.max_recipients if p else 1

    async def _send(self, batch: Batch) -> None:
        try:
            results = await self._call(batch)
            if results is None:
                return
            self._breaker(batch.provider, results)
            # One backoff for the whole batch: its jobs come back together, as the same request with the same
            # idempotency key (BulkSMS stop_dup_id / KoboMobile message_uuid are derived from the batch's jobs).
            afters = [r.after for r in results if isinstance(r, Retry) and r.after is not None]
            delay = self.policy.delay(max(j.attempts for j in batch.jobs) + 1, max(afters, default=None))
            updates = [self._update(job, result, delay) for job, result in zip(batch.jobs, results, strict=True)]
            finished = await self.spool.record(updates, time.time())
            self._log_batch(batch, updates)
            await self._final(finished)
        except Exception:
            # The jobs keep their lease and come back through recover() when it expires.
            log.exception("recording a batch failed", provider=batch.provider, jobs=len(batch.jobs))
        finally:
            self._slots.release()

    async def _call(self, batch: Batch) -> list[Result] | None:
        """The provider's results, or None when the jobs' lease was lost before the request left."""
        provider = self.providers.get(batch.provider)
        if provider is None:
            why = f"no provider named {batch.provider!r} is configured any more"
            return [Rejected("NOPROVIDER", why) for _ in batch.jobs]
        await self._limiter.acquire(batch.provider)
        marked = False

        async def leaving() -> None:
            nonlocal marked
            if not marked:
                marked = True
                await self.spool.mark_sending([j.id for j in batch.jobs], time.time(), self.owner)

        token = BEFORE_SEND.set(leaving)
        try:
            with metrics.PROVIDER_LATENCY.labels(batch.provider).time():
                results = await provider.send(batch)
        except LeaseLost:
            log.warning("lease lost before sending; another process has the jobs", provider=batch.provider,
                        jobs=len(batch.jobs))
            return None
        except Exception as exc:
            # An adapter bug must not lose jobs; we cannot know whether the request left.
            log.exception("provider adapter raised", provider=batch.provider)
            why = "an internal error happened while sending; the SMS may have been sent"
            if provider.limits.idempotent:
                return [Retry(type(exc).__name__, why) for _ in batch.jobs]
            return [Unknown(type(exc).__name__, why) for _ in batch.jobs]
        finally:
            BEFORE_SEND.reset(token)
        if len(results) != len(batch.jobs):
            log.error("provider returned a wrong number of results", provider=batch.provider)
            return [Unknown("ADAPTER", "the provider's reply could not be matched to the recipients")
                    for _ in batch.jobs]
        return results

    def _update(self, job: Job, result: Result, delay: float) -> JobUpdate:
        attempts = job.attempts + 1
        now = time.time()
        match result:
            case Sent(provider_id=pid, code=code, detail=detail):
                return JobUpdate(job.id, JobState.SENT, attempts, 0.0, pid, code, None, detail)
            case Rejected(code=code, why=why):
                return JobUpdate(job.id, JobState.REJECTED, attempts, 0.0, None, code, why)
            case Unknown(code=code, why=why):
                return JobUpdate(job.id, JobState.UNKNOWN, attempts, 0.0, None, code, why)
            case Retry(code=code, why=why):
                when = now + delay
                if attempts >= self.policy.max_attempts or (job.expires_at and when > job.expires_at):
                    why = f"gave up after {attempts} attempts: {why}"
                    return JobUpdate(job.id, JobState.EXPIRED, attempts, 0.0, None, code, why)
                return JobUpdate(job.id, JobState.QUEUED, attempts, when, None, code, why)
        raise TypeError(f"not a Result: {result!r}")

    async def stop(self, deadline: float = 10.0) -> None:
        """Stop claiming; let in-flight requests finish within `deadline` seconds."""
        self._stopping = True
        self._wake.set()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=deadline)
