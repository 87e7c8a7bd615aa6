"""PostgreSQL spool: many mail2sms nodes on one database, durable commits (PostgreSQL commit, synchronous_commit on).

The same `Spool` protocol as `spool.sqlite`, with the same rules, for nodes on different hosts:
- claims take rows with `FOR UPDATE SKIP LOCKED` and stamp a lease (`lease_owner`, `lease_until`); a node that dies
  leaves leases that expire, and any node's `recover()` applies DESIGN.md's rule to them;
- a submission's "became final" check locks the submission row first, so two nodes recording its last two jobs at
  once cannot both miss it (write skew under READ COMMITTED);
- dedupe keys are claimed with `INSERT … ON CONFLICT`, so the same mail arriving at two nodes at once is stored once;
- the schema is an ordered list of migrations applied under an advisory lock, recorded in `schema_version`;
- provider request rates are held globally by `PostgresRateLimiter` (one row per provider in `rate_buckets`).

Times are the callers' clocks (as with SQLite); nodes must keep their clocks in sync (NTP) for leases to mean the
same on every node. The rate limiter uses the database's clock, so it needs no such care.

Never log row contents or the URL here: jobs carry credentials and the URL may carry a password.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import psycopg.errors
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mail2sms.errors import SpoolError, SpoolFullError
from mail2sms.model import Job, Submission
from mail2sms.spool import quotas
from mail2sms.spool.base import CommitResult, DueReport, HeldReport, JobUpdate, LeaseLost, QueueEntry
from mail2sms.spool.ids import new_id
from mail2sms.spool.rows import INTERRUPTED, job_from_row, job_rows, submission_from_row

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]
ADVISORY_LOCK = 0x6D61696C32736D73  # "mail2sms": serialises migrations between nodes starting together
RETRY_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock: the transaction is simply run again
DEDUPE_PURGE_EVERY = 60.0
GROUP_MAX = 128  # submissions per group-commit transaction

# Ordered; each runs once, in one transaction with its version row. Never edit a released one: append.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
CREATE TABLE submissions (
    id TEXT PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    envelope_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    route TEXT NOT NULL,
    message_id TEXT,
    subject TEXT NOT NULL DEFAULT '',
    report_to TEXT,
    report_suppressed TEXT,
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    peer TEXT NOT NULL DEFAULT '',
    "user" TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    report_state TEXT NOT NULL DEFAULT 'waiting',
    report_attempts INTEGER NOT NULL DEFAULT 0,
    report_next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    delay_notified BOOLEAN NOT NULL DEFAULT FALSE,
    finished_at DOUBLE PRECISION
);
CREATE INDEX submissions_open ON submissions (received_at) WHERE report_state = 'waiting';
CREATE INDEX submissions_report ON submissions (report_next_at) WHERE report_state = 'pending';
CREATE INDEX submissions_suppressed ON submissions (report_to) WHERE report_state = 'suppressed';
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    number TEXT NOT NULL,
    text TEXT NOT NULL,
    provider TEXT NOT NULL,
    sender TEXT,
    account TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    "row" INTEGER,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    provider_id TEXT,
    code TEXT,
    error TEXT,
    parts INTEGER NOT NULL DEFAULT 1,
    encoding TEXT NOT NULL DEFAULT 'gsm7',
    notes TEXT NOT NULL DEFAULT '[]',
    updated_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX jobs_ready ON jobs (next_attempt_at) WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE lease_owner IS NOT NULL;
CREATE INDEX jobs_submission ON jobs (submission_id, seq);
CREATE TABLE dedupe (
    key TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX dedupe_age ON dedupe (created_at);
CREATE TABLE rate_buckets (
    provider TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL
);
"""),
    # Finding a submission's open job must not scan its finished ones (a CSV submission has 100,000 jobs).
    (2, """
CREATE INDEX jobs_open ON jobs (submission_id) WHERE state IN ('scheduled', 'queued', 'sending');
"""),
    # What a provider added to its acceptance (Sent.detail, e.g. "1 of 2 numbers taken"), for the outcome mail.
    (3, """
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS detail TEXT;
"""),
    # Reports are claimed like jobs (owner + lease): one delivery per report whatever the number of nodes.
    (4, """
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS report_owner TEXT;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS report_lease_until DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS submissions_report_owner ON submissions (report_owner) WHERE report_owner IS NOT NULL;
"""),
    # Route quotas counted in the spool, so every node shares one count (spool.quotas).
    (5, """
CREATE TABLE IF NOT EXISTS quota_charges (key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS quota_charges_key ON quota_charges (key, at);
"""),
    # When a request carrying the job first may have left: a provider's idempotency key is remembered only so long.
    (6, """
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS first_attempt_at DOUBLE PRECISION;
"""),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

JOB_COLUMNS = (
    'id, submission_id, number, text, provider, sender, account, options, "row", idempotency_key, state, '
    "attempts, next_attempt_at, expires_at, provider_id, code, error, parts, encoding, notes, detail, first_attempt_at"
)
_CLAIMED_COLUMNS = ", ".join("j." + c.strip() for c in JOB_COLUMNS.split(","))



async def _durable(conn: Conn) -> None:
    # The 250 promise: COMMIT returns only after the WAL is flushed, whatever the server's default says.
    await conn.execute("SET synchronous_commit TO on")


async def _relaxed(conn: Conn) -> None:
    # Rate-limit bookkeeping may be lost in a crash: nothing else depends on it.
    await conn.execute("SET synchronous_commit TO off")


async def migrate(conn: Conn) -> int:
    """Apply the migrations this database lacks; returns the schema version. Safe when nodes start together."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ "
            "NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        row = await cur.fetchone()
        have = int(row["v"]) if row else 0
        if have > SCHEMA_VERSION:
            raise SpoolError(f"spool schema {have} is newer than this mail2sms ({SCHEMA_VERSION})")
        for version, sql in MIGRATIONS:
            if version > have:
                await conn.execute(sql.encode())  # no parameters: several statements in one go
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                have = version
    return have


@dataclass
class _PendingCommit:
    submission: Submission
    jobs: list[Job]
    given_id: str
    keys: list[str]
    window: float
    future: asyncio.Future[CommitResult]
    quota: Sequence[quotas.QuotaCharge] = ()


class PostgresSpool:
    """The `Spool` protocol on a PostgreSQL database shared by any number of nodes."""

    def __init__(self, url: str, min_connections: int = 1, max_connections: int = 10, timeout: float = 30.0) -> None:
        self.url = url
        self._pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url, min_size=min_connections, max_size=max_connections, timeout=timeout, open=False,
            kwargs={"autocommit": True, "row_factory": dict_row}, configure=_durable, name="mail2sms-spool",
            connection_class=psycopg.AsyncConnection[DictRow],
        )
        self._rate_pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url, min_size=0, max_size=2, timeout=timeout, open=False,
            kwargs={"autocommit": True, "row_factory": dict_row}, configure=_relaxed, name="mail2sms-rates",
            connection_class=psycopg.AsyncConnection[DictRow],
        )
        self._last_purge = 0.0
        self._pending: list[_PendingCommit] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True)
            await self._rate_pool.open()
            async with self._pool.connection() as conn:
                await migrate(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            await self._close_pools()
            raise SpoolError(f"cannot open the PostgreSQL spool: {type(exc).__name__}") from exc
        except SpoolError:
            await self._close_pools()
            raise

    async def _close_pools(self) -> None:
        await self._rate_pool.close()
        await self._pool.close()

    async def close(self) -> None:
        await self._close_pools()

    async def _tx(self, body: Callable[[Conn], Awaitable[T]], *, write: bool = True) -> T:
        """Run `body` in one transaction (or, for `write=False`, in autocommit), mapping errors to SpoolError."""
        for attempt in range(5):
            try:
                async with self._pool.connection() as conn:
                    if not write:
                        return await body(conn)
                    async with conn.transaction():
                        return await body(conn)
            except psycopg.Error as exc:
                if exc.sqlstate in RETRY_SQLSTATES and attempt < 4:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                if isinstance(exc, psycopg.errors.DiskFull):
                    raise SpoolFullError("spool storage is full") from exc
                raise SpoolError(f"spool error: {type(exc).__name__}") from exc
            except PoolTimeout as exc:
                raise SpoolError("spool error: no database connection") from exc
        raise AssertionError("unreachable")

    # -- commit -----------------------------------------------------------------------------------------

    async def commit(self, submission: Submission, dedupe_keys: list[str], window: float,
                     quota: Sequence[quotas.QuotaCharge] = ()) -> CommitResult:
        """Group commit: commits that arrive while one transaction is in flight go together in the next one.

        Every caller's result comes only after the transaction holding its submission committed. If a group's
        transaction fails, each of its submissions is committed alone, so one bad submission refuses only itself."""
        if len(dedupe_keys) != len(submission.jobs):
            raise ValueError("one dedupe key per job")
        pending = _PendingCommit(submission, list(submission.jobs), submission.id, dedupe_keys, window,
                                 asyncio.get_running_loop().create_future(), quota)
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await pending.future

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
            try:
                results = await self._commit_in_one(group)
            except Exception as exc:
                if len(group) == 1:
                    self._settle(group[0], exc)
                    continue
                for one in group:  # find the one that failed: the others must not be refused for it
                    try:
                        self._settle(one, (await self._commit_in_one([one]))[0])
                    except Exception as single:
                        self._settle(one, single)
                continue
            for one, result in zip(group, results, strict=True):
                self._settle(one, result)

    async def _commit_in_one(self, group: list[_PendingCommit]) -> list[CommitResult]:
        async def body(conn: Conn) -> list[CommitResult]:
            return await self._commit_group(conn, group)
        return await self._tx(body)

    async def _commit_group(self, conn: Conn, group: list[_PendingCommit]) -> list[CommitResult]:
        out = []
        for one in group:
            one.submission.id, one.submission.jobs = one.given_id, list(one.jobs)  # as the caller gave it
            out.append(await self._commit(conn, one.submission, one.jobs, one.keys, one.window, one.quota))
        return out

    @staticmethod
    def _settle(one: _PendingCommit, outcome: CommitResult | Exception) -> None:
        if one.future.done():
            return
        if isinstance(outcome, Exception):
            one.future.set_exception(outcome)
            return
        if outcome.duplicate:  # nothing was stored: leave the caller's copy alone
            one.submission.id, one.submission.jobs = one.given_id, one.jobs
        one.future.set_result(outcome)

    async def _commit(
        self, conn: Conn, sub: Submission, jobs: list[Job], keys: list[str], window: float,
        quota: Sequence[quotas.QuotaCharge] = (),
    ) -> CommitResult:
        now = sub.received_at
        sid = sub.id or new_id()
        # Claim the keys first: a concurrent commit of the same key (another node) waits here for ours to end.
        cur = await conn.execute(
            "INSERT INTO dedupe AS d (key, submission_id, created_at) "
            "SELECT DISTINCT k, %(sid)s, %(now)s FROM unnest(%(keys)s::text[]) AS k "
            "ON CONFLICT (key) DO UPDATE SET submission_id = EXCLUDED.submission_id, created_at = EXCLUDED.created_at "
            "WHERE d.created_at < %(cutoff)s RETURNING key",
            {"sid": sid, "now": now, "keys": keys, "cutoff": now - window},
        )
        fresh_keys = {r["key"] for r in await cur.fetchall()}
        fresh = [job for job, key in zip(jobs, keys, strict=True) if key in fresh_keys]
        if not fresh and jobs:
            first = next(k for k in keys if k not in fresh_keys)
            cur = await conn.execute("SELECT submission_id FROM dedupe WHERE key = %s", (first,))
            row = await cur.fetchone()
            if row is None:  # cannot happen while we hold the conflict; be safe rather than lose the mail
                raise SpoolError("dedupe key vanished")
            return CommitResult(row["submission_id"], duplicate=True)
        if quota:
            await self._charge_quota(conn, quota, now)
        sub.id = sid
        sub.jobs = fresh
        await conn.execute(
            'INSERT INTO submissions (id, received_at, envelope_from, recipients, route, message_id, subject, '
            'report_to, report_suppressed, dry_run, peer, "user", extra) '
            "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (sub.id, sub.received_at, sub.envelope_from, json.dumps(sub.recipients), sub.route, sub.message_id,
             sub.subject, sub.report_to, sub.report_suppressed, sub.dry_run, sub.peer, sub.user,
             json.dumps(sub.extra)),
        )
        rows = job_rows(sub, now)
        if rows:
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO jobs (id, submission_id, seq, number, text, provider, sender, account, options, "
                    '"row", idempotency_key, state, attempts, next_attempt_at, expires_at, provider_id, code, error, '
                    "parts, encoding, notes, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"
                    "%s,%s,%s,%s,%s)",
                    rows,
                )
        if not sub.jobs or any(j.state.final for j in sub.jobs):
            await self._finish_if_final(conn, [sub.id], now)
        if time.monotonic() - self._last_purge > DEDUPE_PURGE_EVERY:
            self._last_purge = time.monotonic()
            await conn.execute("DELETE FROM dedupe WHERE created_at < %s", (now - window,))
        return CommitResult(sub.id)

    @staticmethod
    async def _charge_quota(conn: Conn, quota: Sequence[quotas.QuotaCharge], now: float) -> None:
        """Check and charge route quotas in this transaction (spool.quotas); QuotaExceeded rolls it all back.

        A transaction-scoped advisory lock per key (taken in key order, so two nodes cannot deadlock on one mail)
        makes every node's check-and-charge of one key take turns; the sums are read after the lock."""
        for key in sorted({c.key for c in quota}):
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        sums: dict[tuple[str, float], int] = {}
        for key, since in quotas.windows(quota, now):
            cur = await conn.execute(
                "SELECT COALESCE(SUM(count), 0) AS used FROM quota_charges WHERE key = %s AND at > %s", (key, since))
            row = await cur.fetchone()
            sums[(key, since)] = int(row["used"]) if row is not None else 0
        quotas.check(quota, lambda key, since: sums[(key, since)], now)
        for charge in quota:
            await conn.execute("DELETE FROM quota_charges WHERE key = %s AND at <= %s",
                               (charge.key, now - quotas.HORIZON))
        async with conn.cursor() as c:
            await c.executemany("INSERT INTO quota_charges (key, at, count) VALUES (%s,%s,%s)",
                                [(ch.key, now, ch.count) for ch in quota])

    async def quota_used(self, key: str, since: float) -> int:
        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                "SELECT COALESCE(SUM(count), 0) AS used FROM quota_charges WHERE key = %s AND at > %s", (key, since))
            row = await cur.fetchone()
            return int(row["used"]) if row is not None else 0
        return await self._tx(body, write=False)

    async def _finish_if_final(self, conn: Conn, submission_ids: Iterable[str], now: float) -> list[str]:
        sids = sorted(set(submission_ids))
        if not sids:
            return []
        # Lock the submissions (in id order: no deadlock between nodes) so that the last two jobs of one
        # submission recorded at once on two nodes cannot both see the other as still open.
        await conn.execute("SELECT id FROM submissions WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sids,))
        cur = await conn.execute(
            "UPDATE submissions s SET report_state = CASE WHEN report_to IS NULL THEN 'none' ELSE 'pending' END, "
            "finished_at = %(now)s, report_next_at = %(now)s "
            "WHERE s.id = ANY(%(sids)s) AND s.report_state = 'waiting' AND NOT EXISTS "
            "(SELECT 1 FROM jobs j WHERE j.submission_id = s.id AND j.state IN ('scheduled', 'queued', 'sending')) "
            "RETURNING s.id",
            {"now": now, "sids": sids},
        )
        done = sorted(r["id"] for r in await cur.fetchall())
        if done:
            # Body credentials are kept only until the submission is final (DESIGN.md "Storage").
            await conn.execute(
                "UPDATE jobs SET account = NULL WHERE submission_id = ANY(%s) AND account IS NOT NULL", (done,)
            )
        return done

    # -- dispatch ---------------------------------------------------------------------------------------

    async def claim(
        self, owner: str, now: float, limit: int, lease: float, skip_providers: Collection[str] = ()
    ) -> list[Job]:
        async def body(conn: Conn) -> list[Job]:
            cur = await conn.execute(
                "WITH picked AS (SELECT id FROM jobs WHERE state IN ('queued', 'scheduled') "
                "AND next_attempt_at <= %(now)s AND (lease_until IS NULL OR lease_until < %(now)s) "
                "AND provider <> ALL(%(skip)s) ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE jobs j SET lease_owner = %(owner)s, lease_until = %(until)s, state = 'queued' "
                f"FROM picked WHERE j.id = picked.id RETURNING {_CLAIMED_COLUMNS}",
                {"now": now, "skip": sorted(skip_providers), "limit": limit, "owner": owner, "until": now + lease},
            )
            jobs = [job_from_row(r) for r in await cur.fetchall()]
            jobs.sort(key=lambda j: (j.next_attempt_at, j.id))
            return jobs
        return await self._tx(body)

    async def mark_sending(self, job_ids: list[str], now: float, owner: str | None = None) -> None:
        async def body(conn: Conn) -> None:
            if owner is None:
                await conn.execute(
                    "UPDATE jobs SET state = 'sending', updated_at = %s, first_attempt_at = COALESCE(first_attempt_at, "
                    "%s) WHERE id = ANY(%s)", (now, now, job_ids)
                )
                return
            cur = await conn.execute(
                "UPDATE jobs SET state = 'sending', updated_at = %s, first_attempt_at = COALESCE(first_attempt_at, %s) "
                "WHERE id = ANY(%s) AND state = 'queued' AND lease_owner = %s", (now, now, job_ids, owner),
            )
            if cur.rowcount != len(set(job_ids)):
                raise LeaseLost("the lease on these jobs was lost; another process sends them")  # rolls back
        await self._tx(body)

    async def record(self, updates: list[JobUpdate], now: float, owner: str | None = None) -> list[str]:
        async def body(conn: Conn) -> list[str]:
            if owner is not None:
                # Lock the rows first: a node's recover() or claim() cannot take them between check and update.
                ids = sorted({u.job_id for u in updates})
                cur = await conn.execute(
                    "SELECT id FROM jobs WHERE id = ANY(%s) AND lease_owner = %s ORDER BY id FOR UPDATE", (ids, owner))
                if len(await cur.fetchall()) != len(ids):
                    raise LeaseLost("these jobs are no longer leased to this owner; its results are refused")
            async with conn.cursor() as c:
                await c.executemany(
                    "UPDATE jobs SET state = %s, attempts = %s, next_attempt_at = %s, provider_id = %s, code = %s, "
                    "error = %s, detail = %s, lease_owner = NULL, lease_until = NULL, updated_at = %s WHERE id = %s",
                    [(u.state.value, u.attempts, u.next_attempt_at, u.provider_id, u.code, u.error, u.detail, now,
                      u.job_id) for u in updates],
                )
            sids = {u.job_id.rpartition(".")[0] for u in updates if u.state.final}
            return await self._finish_if_final(conn, sids, now)
        return await self._tx(body)

    async def recover(
        self, idempotent_providers: set[str], now: float, owner_dead: Callable[[str], bool] | None = None
    ) -> tuple[int, int]:
        async def body(conn: Conn) -> tuple[int, int]:
            cur = await conn.execute(
                "SELECT id, provider, state, lease_owner, lease_until FROM jobs "
                "WHERE lease_owner IS NOT NULL AND state IN ('queued', 'sending') FOR UPDATE SKIP LOCKED"
            )
            requeued, unknown, released = [], [], []
            dead_owners: dict[str, bool] = {}
            for r in await cur.fetchall():
                expired = r["lease_until"] is None or r["lease_until"] < now
                if not expired:
                    if owner_dead is None:
                        continue
                    if r["lease_owner"] not in dead_owners:
                        dead_owners[r["lease_owner"]] = owner_dead(r["lease_owner"])
                    if not dead_owners[r["lease_owner"]]:
                        continue
                if r["state"] == "queued":
                    released.append(r["id"])
                elif r["provider"] in idempotent_providers:
                    requeued.append(r["id"])
                else:
                    unknown.append(r["id"])
            if released or requeued:
                await conn.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, state = 'queued' WHERE id = ANY(%s)",
                    (released + requeued,),
                )
            if unknown:
                await conn.execute(
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, state = 'unknown', code = 'INTERRUPTED', "
                    "error = %s, updated_at = %s WHERE id = ANY(%s)",
                    (INTERRUPTED, now, unknown),
                )
                await self._finish_if_final(conn, {i.rpartition(".")[0] for i in unknown}, now)
            return len(requeued), len(unknown)
        return await self._tx(body)

    async def expire(self, now: float) -> list[str]:
        async def body(conn: Conn) -> list[str]:
            cur = await conn.execute(
                "UPDATE jobs SET state = 'expired', updated_at = %(now)s, error = 'not sent within its lifetime' || "
                "CASE WHEN error IS NULL THEN '' ELSE '; the last problem was: ' || error END "
                "WHERE state IN ('queued', 'scheduled') AND expires_at > 0 AND expires_at < %(now)s "
                "AND (lease_until IS NULL OR lease_until < %(now)s) RETURNING submission_id",
                {"now": now},
            )
            sids = {r["submission_id"] for r in await cur.fetchall()}
            return await self._finish_if_final(conn, sids, now)
        return await self._tx(body)

    # -- reports ----------------------------------------------------------------------------------------

    async def _jobs_of(self, conn: Conn, sids: list[str]) -> dict[str, list[Job]]:
        out: dict[str, list[Job]] = {sid: [] for sid in sids}
        if sids:
            cur = await conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE submission_id = ANY(%s) ORDER BY submission_id, seq", (sids,)
            )
            for r in await cur.fetchall():
                out[r["submission_id"]].append(job_from_row(r))
        return out

    async def _reports(self, conn: Conn, rows: list[DictRow], with_attempts: bool) -> list[DueReport]:
        jobs = await self._jobs_of(conn, [r["id"] for r in rows])
        return [DueReport(submission_from_row(r), jobs[r["id"]], r["report_attempts"] if with_attempts else 0)
                for r in rows]

    async def due_reports(self, now: float, limit: int) -> list[DueReport]:
        async def body(conn: Conn) -> list[DueReport]:
            cur = await conn.execute(
                "SELECT * FROM submissions WHERE report_state = 'pending' AND report_next_at <= %s "
                "ORDER BY report_next_at LIMIT %s",
                (now, limit),
            )
            return await self._reports(conn, await cur.fetchall(), True)
        return await self._tx(body, write=False)

    async def due_delay_notices(self, older_than: float, limit: int) -> list[DueReport]:
        async def body(conn: Conn) -> list[DueReport]:
            cur = await conn.execute(
                "SELECT * FROM submissions WHERE report_state = 'waiting' AND NOT delay_notified "
                "AND report_to IS NOT NULL AND received_at <= %s ORDER BY received_at LIMIT %s",
                (older_than, limit),
            )
            return await self._reports(conn, await cur.fetchall(), False)
        return await self._tx(body, write=False)

    async def mark_delay_notified(self, submission_id: str) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute("UPDATE submissions SET delay_notified = TRUE WHERE id = %s", (submission_id,))
        await self._tx(body)

    async def take_suppressed(self, report_to: str) -> list[DueReport]:
        async def body(conn: Conn) -> list[DueReport]:
            cur = await conn.execute(
                "UPDATE submissions SET report_state = 'summarised' WHERE id IN (SELECT id FROM submissions "
                "WHERE report_state = 'suppressed' AND report_to = %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (report_to,),
            )
            rows = sorted(await cur.fetchall(), key=lambda r: (r["received_at"], r["id"]))
            return await self._reports(conn, rows, False)
        return await self._tx(body)

    async def report_done(
        self, submission_id: str, state: str, next_at: float, now: float, owner: str | None = None
    ) -> bool:
        async def body(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE submissions SET report_state = %(state)s, report_attempts = report_attempts + 1, "
                "report_next_at = %(next)s, report_owner = NULL, report_lease_until = NULL "
                "WHERE id = %(id)s AND (%(owner)s::text IS NULL OR report_owner = %(owner)s)",
                {"state": state, "next": next_at, "id": submission_id, "owner": owner},
            )
            return cur.rowcount == 1
        return await self._tx(body)

    async def _lease_submissions(self, where: str, order: str, params: dict[str, object]) -> list[str]:
        """Lease the submissions matching `where` (rows another node is leasing are skipped): their ids."""
        async def body(conn: Conn) -> list[str]:
            cur = await conn.execute(
                f"WITH picked AS (SELECT id FROM submissions WHERE {where} "
                "AND (report_lease_until IS NULL OR report_lease_until < %(now)s) "
                f"ORDER BY {order} LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE submissions s SET report_owner = %(owner)s, report_lease_until = %(until)s "
                f"FROM picked WHERE s.id = picked.id RETURNING s.id, s.{order}",
                params,
            )
            return [r["id"] for r in sorted(await cur.fetchall(), key=lambda r: (r[order], r["id"]))]
        return await self._tx(body)

    async def claim_reports(self, owner: str, now: float, limit: int, lease: float) -> list[str]:
        return await self._lease_submissions(
            "report_state = 'pending' AND report_next_at <= %(now)s", "report_next_at",
            {"now": now, "limit": limit, "owner": owner, "until": now + lease})

    async def claim_delay_notices(
        self, owner: str, older_than: float, now: float, limit: int, lease: float
    ) -> list[str]:
        # report_next_at is free while a submission is `waiting`: it holds the notice's next try.
        return await self._lease_submissions(
            "report_state = 'waiting' AND NOT delay_notified AND report_to IS NOT NULL "
            "AND received_at <= %(older)s AND report_next_at <= %(now)s", "received_at",
            {"now": now, "older": older_than, "limit": limit, "owner": owner, "until": now + lease})

    async def load_report(self, submission_id: str) -> DueReport | None:
        async def body(conn: Conn) -> DueReport | None:
            cur = await conn.execute("SELECT * FROM submissions WHERE id = %s", (submission_id,))
            row = await cur.fetchone()
            return None if row is None else (await self._reports(conn, [row], True))[0]
        return await self._tx(body, write=False)

    async def release_dead_reports(self, owner_dead: Callable[[str], bool]) -> int:
        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                "SELECT DISTINCT report_owner FROM submissions WHERE report_owner IS NOT NULL")
            dead = [r["report_owner"] for r in await cur.fetchall() if owner_dead(r["report_owner"])]
            if not dead:
                return 0
            cur = await conn.execute(
                "UPDATE submissions SET report_owner = NULL, report_lease_until = NULL "
                "WHERE report_owner = ANY(%s)", (dead,))
            return cur.rowcount
        return await self._tx(body)

    async def release_reports(self, submission_ids: list[str], owner: str) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute(
                "UPDATE submissions SET report_owner = NULL, report_lease_until = NULL "
                "WHERE id = ANY(%s) AND report_owner = %s", (submission_ids, owner))
        await self._tx(body)

    async def delay_notice_done(self, submission_id: str, owner: str, notified: bool, next_at: float) -> None:
        async def body(conn: Conn) -> None:
            # A submission that became final meanwhile got its report_next_at from _finish_if_final: keep it.
            await conn.execute(
                "UPDATE submissions SET delay_notified = %(n)s, report_next_at = CASE WHEN report_state = 'waiting' "
                "THEN %(next)s ELSE report_next_at END, report_owner = NULL, report_lease_until = NULL "
                "WHERE id = %(id)s AND report_owner = %(owner)s",
                {"n": notified, "next": next_at, "id": submission_id, "owner": owner})
        await self._tx(body)

    async def take_held(self, report_to: str, owner: str, now: float, lease: float) -> list[HeldReport]:
        async def any_held(conn: Conn) -> bool:
            cur = await conn.execute(
                "SELECT 1 FROM submissions WHERE report_state = 'suppressed' AND report_to = %s LIMIT 1", (report_to,))
            return await cur.fetchone() is not None
        # Asked for nearly every report and nearly always empty: a read first spares a write transaction.
        if not await self._tx(any_held, write=False):
            return []

        async def body(conn: Conn) -> list[HeldReport]:
            cur = await conn.execute(
                "WITH picked AS (SELECT id FROM submissions WHERE report_state = 'suppressed' AND report_to = %(to)s "
                "AND (report_lease_until IS NULL OR report_lease_until < %(now)s) FOR UPDATE SKIP LOCKED) "
                "UPDATE submissions s SET report_owner = %(owner)s, report_lease_until = %(until)s FROM picked "
                "WHERE s.id = picked.id RETURNING s.id, s.received_at, "
                "(SELECT COUNT(*) FROM jobs j WHERE j.submission_id = s.id AND j.state = 'sent') AS sent, "
                "(SELECT COUNT(*) FROM jobs j WHERE j.submission_id = s.id) AS total",
                {"to": report_to, "now": now, "owner": owner, "until": now + lease})
            rows = sorted(await cur.fetchall(), key=lambda r: (r["received_at"], r["id"]))
            return [HeldReport(r["id"], int(r["sent"]), int(r["total"])) for r in rows]
        return await self._tx(body)

    async def settle_held(self, submission_ids: list[str], owner: str, summarised: bool) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute(
                "UPDATE submissions SET report_state = %s, report_owner = NULL, report_lease_until = NULL "
                "WHERE id = ANY(%s) AND report_owner = %s AND report_state = 'suppressed'",
                ("summarised" if summarised else "suppressed", submission_ids, owner))
        await self._tx(body)

    # -- operator ---------------------------------------------------------------------------------------

    async def queue_list(self, limit: int) -> list[QueueEntry]:
        async def body(conn: Conn) -> list[QueueEntry]:
            cur = await conn.execute(
                "SELECT id, received_at, envelope_from, route, report_state FROM submissions "
                "WHERE report_state IN ('waiting', 'pending') ORDER BY received_at LIMIT %s",
                (limit,),
            )
            subs = await cur.fetchall()
            states: dict[str, dict[str, int]] = {s["id"]: {} for s in subs}
            if subs:
                cur = await conn.execute(
                    "SELECT submission_id, state, COUNT(*) AS n FROM jobs WHERE submission_id = ANY(%s) "
                    "GROUP BY submission_id, state", (list(states),),
                )
                for r in await cur.fetchall():
                    states[r["submission_id"]][r["state"]] = int(r["n"])
            return [QueueEntry(s["id"], s["received_at"], s["envelope_from"], s["route"],
                               sum(states[s["id"]].values()), states[s["id"]], s["report_state"]) for s in subs]
        return await self._tx(body, write=False)

    async def get(self, submission_id: str) -> tuple[Submission, list[Job]] | None:
        async def body(conn: Conn) -> tuple[Submission, list[Job]] | None:
            cur = await conn.execute("SELECT * FROM submissions WHERE id = %s", (submission_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            return submission_from_row(row), (await self._jobs_of(conn, [submission_id]))[submission_id]
        return await self._tx(body, write=False)

    async def retry_now(self, submission_id: str, now: float) -> int:
        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE jobs SET next_attempt_at = %s WHERE submission_id = %s AND state IN ('queued', 'scheduled')",
                (now, submission_id),
            )
            return cur.rowcount
        return await self._tx(body)

    async def cancel(self, submission_id: str, now: float) -> int:
        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE jobs SET state = 'cancelled', error = 'cancelled by the operator', lease_owner = NULL, "
                "lease_until = NULL, updated_at = %s WHERE submission_id = %s AND state IN ('queued', 'scheduled')",
                (now, submission_id),
            )
            n = cur.rowcount
            await self._finish_if_final(conn, [submission_id], now)
            return n
        return await self._tx(body)

    def problem(self) -> str | None:
        return None  # PostgreSQL checks its own pages; a failing query shows in /healthz as "not answering"

    async def counts(self) -> dict[str, int]:
        async def body(conn: Conn) -> dict[str, int]:
            cur = await conn.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            return {r["state"]: int(r["n"]) for r in await cur.fetchall()}
        return await self._tx(body, write=False)

    # -- rates ------------------------------------------------------------------------------------------

    def rate_limiter(self, rates: Mapping[str, float]) -> PostgresRateLimiter:
        """Provider request rates held for every node on this database (no division by workers or nodes)."""
        return PostgresRateLimiter(self._rate_pool, rates)


class PostgresRateLimiter:
    """`rate` requests per second per provider, across every process on every node that shares the database.

    A virtual-scheduling token bucket (burst 1): each provider's row holds the theoretical arrival time `tat` of
    the next free slot, in the database's clock. One atomic statement reserves the next slot and says how long
    to wait for it, so callers are served in order and never more often than `1/rate` apart, whatever node
    they run on. A reserved slot that is not used (the caller died) is simply lost: the limit errs low.
    """

    SQL = (
        "INSERT INTO rate_buckets AS b (provider, tat) VALUES (%(p)s, extract(epoch FROM clock_timestamp()) + %(i)s) "
        "ON CONFLICT (provider) DO UPDATE SET tat = GREATEST(b.tat, extract(epoch FROM clock_timestamp())) + %(i)s "
        "RETURNING b.tat - %(i)s - extract(epoch FROM clock_timestamp()) AS wait"
    )

    def __init__(self, pool: AsyncConnectionPool[Conn], rates: Mapping[str, float]) -> None:
        self._pool = pool
        self.rates = dict(rates)

    async def acquire(self, provider: str) -> None:
        rate = self.rates.get(provider)
        if not rate:
            return
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(self.SQL, {"p": provider, "i": 1.0 / rate})
                row = await cur.fetchone()
        except (psycopg.Error, PoolTimeout):
            # The database is unreachable: wait one interval here. The request cannot be marked `sending`
            # without the database anyway, so nothing leaves faster than this.
            row = {"wait": 1.0 / rate}
        wait = float(row["wait"]) if row else 0.0
        if wait > 0:
            await asyncio.sleep(wait)
