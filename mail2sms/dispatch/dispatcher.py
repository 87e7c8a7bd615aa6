"""The dispatcher: claim ready jobs, batch them, respect each provider's rate, send, record every Result.

It runs beside the SMTP server in the same event loop and never blocks it: spool calls run on the spool's
thread, provider calls are async HTTP. The SMTP handler only `wake()`s it after a commit; no provider is
ever called from an SMTP session.

The crash-recovery boundary is `spool.mark_sending()`, written durably when the request's first bytes are about
to be written (see `providers.http`): a job that crashes before it is still `queued` (sent later, once); after
it, `recover()` applies DESIGN.md's rule. That write also checks that this process still holds the jobs' lease, so
jobs whose lease ran out while they waited (and that another process or node took) are never sent twice.

Flow control, so that one provider never stalls another:
- each provider has its own queue of claimed batches and its own workers (`providers.NAME.concurrency`), under
  one cap over all providers (`dispatch.concurrency`); the claim loop never waits for a slot, it only claims for
  providers whose queue has room: what the provider sends within half a lease, at most a few rounds of its
  workers (`claims.py`), so other processes and nodes find the rest; it claims again once half of that is sent;
- nothing is sent that cannot be sent well: a batch is handed back to `queued` without a request when the
  dispatcher is stopping, when its provider's breaker is open (with the pause as its next attempt), when it waited
  half its lease, or when the spool cannot mark it `sending`. That last check runs inside the request itself,
  right before its first byte, so it can never be too early or too late;
- a result is recorded only by the lease's owner (the spool refuses the others), and recording is retried with
  backoff (the owner check still guards it past the lease): an answer is never dropped for a passing spool failure.

It must never turn "not sent" into `unknown`, and never start a request after `stop()` began.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from mail2sms import metrics
from mail2sms.dispatch.batching import make_batches
from mail2sms.dispatch.breaker import Breaker
from mail2sms.dispatch.claims import ClaimSizer
from mail2sms.dispatch.ratelimit import LocalRateLimiter, RateLimiter
from mail2sms.dispatch.retry import RetryPolicy
from mail2sms.errors import RequestNotSent
from mail2sms.model import Batch, Job, JobState, Rejected, Result, Retry, Sent, Unknown
from mail2sms.observability import get_logger
from mail2sms.providers.base import Provider
from mail2sms.providers.http import BEFORE_SEND
from mail2sms.spool.base import JobUpdate, LeaseLost, Spool

log = get_logger("mail2sms.dispatch")

LEASE_SECONDS = 300.0
PER_SMS_LOG_LINES = 10  # batches up to this size log each SMS; bigger ones log one summary line
# Result codes by which the adapters say the provider refused the account's login (providers' explanation
# tables: generic HTTP, KwtSMS, Kapow, BulkSMS, Cellcast, KoboMobile). Such an SMS, one that "may have been sent"
# and one that expired are logged at warning: each needs an operator's eyes.
LOGIN_REFUSED = frozenset(
    {"HTTP401", "HTTP403", "ERR003", "USERPASS", "UNAUTHORIZED", "23", "AUTH_FAILED", "error_user"}
)
WARN_STATES = frozenset({JobState.UNKNOWN, JobState.EXPIRED})
RECOVER_EVERY = 5.0  # lease recovery and lifetime expiry: cheap indexed queries
PROVIDER_CONCURRENCY = 4  # requests in flight per provider unless its config says otherwise
RECORD_FIRST_PAUSE = 0.05  # recording results that failed: first pause, doubling ...
RECORD_MAX_PAUSE = 2.0  # ... up to this
RECORD_MIN_TRIES = 3  # however little of the lease is left
STOP_RECORD_GRACE = 5.0  # at stop, answers that arrived by the deadline get this long to be recorded


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


class Hold(enum.StrEnum):
    """Why a claimed batch goes back to `queued` without a request (nothing of it reached the provider)."""

    STOPPING = "stopping"  # SIGTERM: no new request starts
    PAUSED = "paused"  # the provider's breaker is open: wait out the pause
    STALE = "stale"  # it waited half its lease (rate limits): any process may take it
    SPOOL = "spool"  # the spool could not mark it `sending`: try again shortly


class _Held(Exception):
    """Raised by the "request is leaving" hook when the batch must not go (it reaches us as RequestNotSent)."""

    def __init__(self, hold: Hold) -> None:
        super().__init__(hold.value)
        self.hold = hold


class Phase(enum.Enum):
    IDLE = "idle"  # waiting for a batch
    WAITING = "waiting"  # holding a batch whose request has not started: safe to cancel
    IN_FLIGHT = "in flight"  # its request is leaving or left: only the deadline may cut it
    RECORDING = "recording"  # the answer (or the hand-back) is being written: let it finish


@dataclass(eq=False)
class _Claimed:
    """A batch this process holds, and when (monotonic) its jobs were claimed."""

    batch: Batch
    claimed_at: float


@dataclass(eq=False)
class _Worker:
    provider: str
    task: asyncio.Task[None] | None = None
    phase: Phase = Phase.IDLE
    item: _Claimed | None = None


@dataclass
class DispatchStats:
    """Counters for tests and operators: batches handed back by reason, and result writes that had to be retried."""

    held: Counter[str] = field(default_factory=Counter)
    record_retries: int = 0
    most_held: Counter[str] = field(default_factory=Counter)  # provider → the most jobs held here at once
    recorded: Counter[str] = field(default_factory=Counter)  # job state → jobs whose result this process wrote


class Dispatcher:
    def __init__(
        self,
        spool: Spool,
        providers: Mapping[str, Provider],
        policy: RetryPolicy,
        *,
        concurrency: int = 8,
        provider_concurrency: Mapping[str, int] | None = None,
        poll_interval: float = 1.0,
        claim_limit: int = 5000,
        on_final: Callable[[list[str]], Awaitable[None] | None] | None = None,
        rate_share: int = 1,
        breaker_failures: int = 5,
        breaker_pause: float = 30.0,
        lease: float = LEASE_SECONDS,
        rate_limiter: RateLimiter | None = None,
        owner: str | None = None,
    ) -> None:
        self.spool = spool
        self.providers = providers
        self.policy = policy
        self.poll_interval = poll_interval
        self.claim_limit = claim_limit
        self.on_final = on_final
        self.owner = owner or CURRENT_OWNER  # another name only for a second dispatcher in one process (tests)
        self.lease = lease
        self.rate_share = max(1, rate_share)
        self.stats = DispatchStats()
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._run_done = asyncio.Event()
        # One cap over all providers; within it each provider has its own workers, so a provider that hangs holds
        # only its own slots (never all of them: its share is kept below the cap when there is more than one).
        self._global = asyncio.Semaphore(concurrency)
        own = provider_concurrency or {}
        share_cap = concurrency if len(providers) <= 1 else max(1, concurrency - 1)
        self._concurrency = {name: max(1, min(own.get(name, PROVIDER_CONCURRENCY), share_cap)) for name in providers}
        self._queues: dict[str, asyncio.Queue[_Claimed]] = {name: asyncio.Queue() for name in providers}
        self.sizer = ClaimSizer(
            providers, self._concurrency, lease=lease, rate_share=self.rate_share, claim_limit=claim_limit
        )
        self._outstanding: dict[str, int] = dict.fromkeys(providers, 0)  # jobs claimed and not settled yet
        # Jobs held in a batch here. A claim can return one of them again (its lease ran out while it waited, and
        # recovery released it to us): it must not become a second batch, whose hand-back could requeue the job
        # while the first one's request is in flight under the same owner name.
        self._held_ids: set[str] = set()
        self._workers: list[_Worker] = []
        self._side: set[asyncio.Task[None]] = set()  # hand-backs and refusals running beside the workers
        self._limiter = rate_limiter or LocalRateLimiter(
            {name: p.limits.rate for name, p in providers.items()}, share=rate_share
        )
        self.breakers = {
            name: Breaker(breaker_failures, breaker_pause, max(policy.cap, breaker_pause)) for name in providers
        }
        self._last_recover = 0.0
        self._record_trouble = 0  # result writes being retried right now

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
            log.warning("jobs expired", submissions=len(finished))  # an operator should see SMS that never went
            await self._final(finished)

    async def _final(self, finished: list[str]) -> None:
        if finished and self.on_final is not None:
            maybe = self.on_final(finished)
            if maybe is not None:
                await maybe

    # -- the claim loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Loop until `stop()`: claim, batch, hand batches to their provider's workers. Errors are logged and the
        loop goes on. It never waits for a provider: a provider whose queue is full is simply not claimed for."""
        self._running = True
        self._start_workers()
        try:
            while not self._stopping:
                # Cleared before the tick, not after it: a batch that settles (or a mail committed) while the tick
                # runs must wake the next one, or ready jobs would wait a whole poll interval with workers idle.
                self._wake.clear()
                try:
                    claimed = await self._tick()
                except Exception:
                    log.exception("dispatcher tick failed")
                    claimed = 0
                if claimed == 0 and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            self._run_done.set()

    def _start_workers(self) -> None:
        if self._workers:
            return
        for name, count in self._concurrency.items():
            for _ in range(count):
                worker = _Worker(name)
                worker.task = asyncio.create_task(self._work(worker), name=f"dispatch-{name}")
                self._workers.append(worker)

    def _budget(self, provider: str) -> int:
        return self.sizer.budget(provider)

    def claim_cap(self, provider: str) -> int:
        """The most jobs this dispatcher ever holds for `provider` (claims.py: a few rounds of full requests)."""
        return self.sizer.cap(provider)

    async def _tick(self) -> int:
        # While answers wait to be written, our own recovery must not beat them to their jobs once the spool works
        # again (it would call an accepted SMS "stopped while in flight"); they are written first, then it runs.
        due = time.monotonic() - self._last_recover > min(RECOVER_EVERY, self.lease / 2)
        if due and self._record_trouble == 0:
            await self.recover()
        if self._stopping:
            return 0
        now, started = time.time(), time.monotonic()
        rooms: dict[str, int] = {}
        for name in self.providers:
            budget = self._budget(name)
            if not self.breakers[name].is_open(started) and self._outstanding[name] <= budget // 2:
                rooms[name] = budget - self._outstanding[name]
        if not self.providers:
            rooms[""] = self.claim_limit  # only jobs of providers no longer configured: refuse them
        if not rooms:
            return 0
        names = set(self.providers)
        # One claim per provider, each skipping every other configured provider; jobs of a provider that is no
        # longer configured come with any of them and are refused below.
        claims = await asyncio.gather(
            *(self._claim(name, room, now, sorted(names - {name})) for name, room in rooms.items()),
            return_exceptions=True,
        )
        jobs: list[Job] = []
        for claim in claims:
            if isinstance(claim, BaseException):
                log.error("claiming jobs failed", error=type(claim).__name__)
            else:
                jobs.extend(j for j in claim if j.id not in self._held_ids)
        if not jobs:
            return 0
        batches = make_batches(jobs, self._max_recipients, self.providers)
        for batch in batches:
            self._enqueue(_Claimed(batch, started))
        self.sizer.observe(batches)
        return len(jobs)

    async def _claim(self, provider: str, room: int, now: float, skip: list[str]) -> list[Job]:
        """Up to `room` jobs for `provider`; while a full claim shows fuller requests than the budget assumed, more
        at once (claims.py `more`), so that they are batched together."""
        jobs = await self.spool.claim(self.owner, now, room, self.lease, skip)
        got, asked = len(jobs), room
        try:
            while provider in self.providers and got >= asked:  # full: more may be ready
                asked = self.sizer.more(provider, jobs, got, self._outstanding[provider])
                if asked <= 0:
                    break
                extra = await self.spool.claim(self.owner, now, asked, self.lease, skip)
                jobs.extend(extra)
                got = len(extra)
        except Exception as exc:
            # What is claimed already is ours under its lease: send it rather than leave it to wait a lease out.
            log.error("claiming more jobs failed", provider=provider, error=type(exc).__name__)
        return jobs

    def _enqueue(self, item: _Claimed) -> None:
        provider = item.batch.provider
        if provider not in self.providers:
            why = f"no provider named {provider!r} is configured any more"
            self._beside(self._finish(item, [Rejected("NOPROVIDER", why) for _ in item.batch.jobs]))
            return
        self._outstanding[provider] += len(item.batch.jobs)
        self.stats.most_held[provider] = max(self.stats.most_held[provider], self._outstanding[provider])
        self._held_ids.update(j.id for j in item.batch.jobs)
        self._queues[provider].put_nowait(item)

    def _settled(self, item: _Claimed) -> None:
        provider = item.batch.provider
        before = self._outstanding[provider]
        self._outstanding[provider] = before - len(item.batch.jobs)
        self._held_ids.difference_update(j.id for j in item.batch.jobs)
        budget = self._budget(provider)
        if before > budget // 2 >= self._outstanding[provider]:
            self.wake()  # room for the next claim

    def _beside(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    # -- a provider's workers ---------------------------------------------------------------------------

    async def _work(self, worker: _Worker) -> None:
        queue = self._queues[worker.provider]
        while not self._stopping:
            item = await queue.get()
            worker.item, worker.phase = item, Phase.WAITING
            try:
                await self._handle(worker, item)
            except Exception:
                log.exception("sending a batch failed", provider=worker.provider, jobs=len(item.batch.jobs))
            finally:
                worker.item, worker.phase = None, Phase.IDLE
                self._settled(item)

    def _hold(self, item: _Claimed) -> Hold | None:
        """Why this batch must not be sent now, or None."""
        if self._stopping:
            return Hold.STOPPING
        now = time.monotonic()
        breaker = self.breakers.get(item.batch.provider)
        if breaker is not None and breaker.is_open(now):
            return Hold.PAUSED
        if now - item.claimed_at > self.lease / 2:
            return Hold.STALE
        return None

    async def _handle(self, worker: _Worker, item: _Claimed) -> None:
        hold = self._hold(item)
        if hold is None:
            await self._limiter.acquire(item.batch.provider)
            answer: list[Result] | BaseException | None = None
            async with self._global:  # a request slot; writing the answer (or the hand-back) needs none
                hold = self._hold(item)
                if hold is None:
                    answer = await self._call(worker, item)
                    worker.phase = Phase.RECORDING
            if hold is None:
                if isinstance(answer, list):
                    await self._finish(item, answer)
                elif answer is not None:
                    await self._not_sent(item, answer)
                return
        worker.phase = Phase.RECORDING
        await self._hand_back(item, hold)

    async def _call(self, worker: _Worker, item: _Claimed) -> list[Result] | BaseException | None:
        """The provider's results, or why the request stopped before its first byte (RequestNotSent's cause)."""
        batch = item.batch
        provider = self.providers[batch.provider]
        marked = False

        async def leaving() -> None:
            # The last moment before the request's first byte: the final say on whether it may go at all.
            nonlocal marked
            if marked:
                return
            hold = self._hold(item)
            if hold is not None:
                raise _Held(hold)
            worker.phase = Phase.IN_FLIGHT  # from here on, stop() lets the request finish or the deadline cut it
            await self.spool.mark_sending([j.id for j in batch.jobs], time.time(), self.owner)
            marked = True

        token = BEFORE_SEND.set(leaving)
        try:
            with metrics.PROVIDER_LATENCY.labels(batch.provider).time():
                results = await provider.send(batch)
        except RequestNotSent as exc:
            worker.phase = Phase.RECORDING
            return exc.__cause__ or exc
        except Exception as exc:
            # An adapter bug must not lose jobs. Before the hook ran nothing left; after it, we cannot know.
            log.exception("provider adapter raised", provider=batch.provider)
            name = type(exc).__name__
            if not marked:
                why = "an internal error happened before the request left; the SMS was not sent yet"
                return [Retry(name, why) for _ in batch.jobs]
            why = "an internal error happened while sending; the SMS may have been sent"
            if provider.limits.idempotent:
                return [Retry(name, why) for _ in batch.jobs]
            return [Unknown(name, why) for _ in batch.jobs]
        finally:
            BEFORE_SEND.reset(token)
        if len(results) != len(batch.jobs):
            log.error("provider returned a wrong number of results", provider=batch.provider)
            return [
                Unknown("ADAPTER", "the provider's reply could not be matched to the recipients") for _ in batch.jobs
            ]
        return results

    async def _not_sent(self, item: _Claimed, cause: BaseException) -> None:
        """The request stopped before its first byte: hand the batch back, unless another process holds it now."""
        batch = item.batch
        if isinstance(cause, LeaseLost):
            log.warning(
                "lease lost before sending; another process has the jobs", provider=batch.provider, jobs=len(batch.jobs)
            )
            return
        if isinstance(cause, _Held):
            await self._hand_back(item, cause.hold)
            return
        log.warning(
            "the spool could not mark a batch sending; no request left, it is tried again",
            provider=batch.provider,
            jobs=len(batch.jobs),
            error=type(cause).__name__,
        )
        await self._hand_back(item, Hold.SPOOL)

    async def _hand_back(self, item: _Claimed, hold: Hold, *, quiet: bool = False) -> bool:
        """Back to `queued` without counting an attempt: nothing of this batch reached the provider."""
        self.stats.held[hold.value] += 1
        now = time.time()
        not_before = now
        breaker = self.breakers.get(item.batch.provider)
        if hold is Hold.PAUSED and breaker is not None:
            not_before = now + max(0.0, breaker.open_until - time.monotonic())  # other nodes wait the pause too
        elif hold is Hold.SPOOL:
            not_before = now + self.policy.delay(1)
        updates = [
            JobUpdate(
                job_id=j.id,
                state=JobState.QUEUED,
                attempts=j.attempts,
                next_attempt_at=max(j.next_attempt_at, not_before)
                if hold in (Hold.PAUSED, Hold.SPOOL)
                else j.next_attempt_at,
                provider_id=j.provider_id,
                code=j.code,
                error=j.error,
            )
            for j in item.batch.jobs
        ]
        done = await self._record(item, updates) is not None
        if done and not quiet:
            log.info(
                "batch handed back without a request",
                provider=item.batch.provider,
                jobs=len(updates),
                reason=hold.value,
            )
        return done

    async def _hand_back_all(self, items: list[_Claimed], hold: Hold, *, settle: bool) -> None:
        """Hand back many batches at once (a breaker trip, a stop), with one log line per provider."""

        async def one(item: _Claimed) -> bool:
            try:
                return await self._hand_back(item, hold, quiet=True)
            finally:
                if settle:
                    self._settled(item)

        done = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
        jobs: Counter[str] = Counter()
        for item, ok in zip(items, done, strict=True):
            if ok is True:
                jobs[item.batch.provider] += len(item.batch.jobs)
        for provider, count in sorted(jobs.items()):
            log.info("claimed jobs handed back without a request", provider=provider, jobs=count, reason=hold.value)

    # -- results ----------------------------------------------------------------------------------------

    async def _finish(self, item: _Claimed, results: list[Result]) -> None:
        batch = item.batch
        self._breaker(batch.provider, results)
        # One backoff for the whole batch: its jobs come back together, as the same request with the same
        # idempotency key (BulkSMS stop_dup_id / KoboMobile message_uuid are derived from the batch's jobs).
        afters = [r.after for r in results if isinstance(r, Retry) and r.after is not None]
        delay = self.policy.delay(max(j.attempts for j in batch.jobs) + 1, max(afters, default=None))
        updates = [self._update(job, result, delay) for job, result in zip(batch.jobs, results, strict=True)]
        finished = await self._record(item, updates)
        if finished is None:
            return
        self.stats.recorded.update(u.state.value for u in updates)
        self._log_batch(batch, updates)
        await self._final(finished)

    async def _record(self, item: _Claimed, updates: list[JobUpdate]) -> list[str] | None:
        """Store updates as the lease's owner, retried with backoff, so that a spool that fails for a while (locked,
        full, a lost connection) does not lose a provider's answer. Past the lease the owner check still guards the
        write: it succeeds only if nobody took the jobs meanwhile. None when not stored: the spool refused (another
        process holds the jobs now) or kept failing for two leases (recovery decides)."""
        pause, tries = RECORD_FIRST_PAUSE, 0
        provider = item.batch.provider
        try:
            while True:
                try:
                    return await self.spool.record(updates, time.time(), owner=self.owner)
                except LeaseLost:
                    log.warning(
                        "results refused: another process holds these jobs now", provider=provider, jobs=len(updates)
                    )
                    return None
                except Exception as exc:
                    tries += 1
                    self.stats.record_retries += 1
                    if tries == 1:
                        self._record_trouble += 1
                    give_up = item.claimed_at + 2 * self.lease
                    if tries >= RECORD_MIN_TRIES and time.monotonic() + pause > give_up:
                        log.error(
                            "recording results failed; recovery decides about these jobs",
                            provider=provider,
                            jobs=len(updates),
                            error=type(exc).__name__,
                            tries=tries,
                        )
                        return None
                    log.warning(
                        "recording results failed; trying again",
                        provider=provider,
                        jobs=len(updates),
                        error=type(exc).__name__,
                        tries=tries,
                    )
                    await asyncio.sleep(pause)  # backoff before the next write, not a wait for an event
                    pause = min(pause * 2, RECORD_MAX_PAUSE)
        finally:
            if tries:
                self._record_trouble -= 1

    def _log_batch(self, batch: Batch, updates: list[JobUpdate]) -> None:
        """One line per SMS for small batches; one summary line for a broadcast (100,000 CSV rows would otherwise
        cost 100,000 log lines and seconds of CPU)."""
        states: dict[str, int] = {}
        for job, update in zip(batch.jobs, updates, strict=True):
            states[update.state.value] = states.get(update.state.value, 0) + 1
            if len(batch.jobs) <= PER_SMS_LOG_LINES:
                warn = update.state in WARN_STATES or update.code in LOGIN_REFUSED
                (log.warning if warn else log.info)(
                    "sms",
                    submission=job.submission_id,
                    job=job.id,
                    provider=batch.provider,
                    state=update.state.value,
                    code=update.code,
                    attempt=update.attempts,
                    **({"why": update.error} if warn else {}),
                )
        for state, count in states.items():
            metrics.SMS.labels(batch.provider, state).inc(count)
        if len(batch.jobs) > PER_SMS_LOG_LINES:
            codes = sorted({u.code for u in updates if u.code})
            warn = any(u.state in WARN_STATES or u.code in LOGIN_REFUSED for u in updates)
            (log.warning if warn else log.info)(
                "sms batch",
                submissions=sorted({j.submission_id for j in batch.jobs}),
                provider=batch.provider,
                jobs=len(batch.jobs),
                states=states,
                codes=codes,
            )

    def _breaker(self, provider: str, results: list[Result]) -> None:
        breaker = self.breakers.get(provider)
        if breaker is None:
            return
        failed = all(isinstance(r, Retry | Unknown) for r in results)
        if breaker.record(failed, time.monotonic()):
            log.warning(
                "provider paused: it keeps failing",
                provider=provider,
                seconds=round(breaker.open_until - time.monotonic()),
            )
            # What is claimed and not sent yet waits out the pause in the spool, not here, and not at the provider.
            queue, held = self._queues[provider], []
            while not queue.empty():
                held.append(queue.get_nowait())
            if held:
                self._beside(self._hand_back_all(held, Hold.PAUSED, settle=True))

    def _max_recipients(self, provider: str) -> int:
        p = self.providers.get(provider)
        return p.limits.max_recipients if p else 1

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
        """Graceful stop: from now on no request starts (the hook refuses at the first byte); batches claimed and
        not started go back to `queued` at once; requests in flight get until `deadline` and their answers are
        recorded. A request still in flight at the deadline is cut: its jobs stay `sending` and recovery applies
        DESIGN.md's rule, which is the truth ("may have been sent") for a request that left and got no answer."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        self._stopping = True
        self._wake.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run_done.wait(), max(0.0, end - loop.time()))
        unsent: list[_Claimed] = []
        for queue in self._queues.values():
            while not queue.empty():
                unsent.append(queue.get_nowait())
        waiting = [w for w in self._workers if w.phase in (Phase.IDLE, Phase.WAITING) and w.task is not None]
        unsent += [w.item for w in waiting if w.item is not None]
        for w in waiting:
            assert w.task is not None
            w.task.cancel()
        await asyncio.gather(*(w.task for w in waiting if w.task is not None), return_exceptions=True)
        await self._hand_back_all(unsent, Hold.STOPPING, settle=False)
        busy = [w for w in self._workers if w.task is not None and not w.task.done()]
        if busy:
            await asyncio.wait([w.task for w in busy if w.task is not None], timeout=max(0.0, end - loop.time()))
        cut = [w for w in busy if w.phase is Phase.IN_FLIGHT and w.task is not None and not w.task.done()]
        for w in cut:
            assert w.task is not None
            w.task.cancel()
        rest = [w.task for w in self._workers if w.task is not None and not w.task.done()] + list(self._side)
        if rest:
            _, late = await asyncio.wait(rest, timeout=STOP_RECORD_GRACE)
            for task in late:
                task.cancel()
        await asyncio.gather(
            *(w.task for w in self._workers if w.task is not None), *self._side, return_exceptions=True
        )
        log.info("dispatcher stopped", handed_back=len(unsent), cut_in_flight=len(cut))
