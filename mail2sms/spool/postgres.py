"""PostgreSQL spool: many mail2sms nodes on one database, durable commits (PostgreSQL commit, synchronous_commit on).

Only the connection handling lives here (a psycopg pool, commits gathered into group transactions); every state
transition is `spool.core`'s in the `spool.dialect.POSTGRESQL` spelling, which gives, for nodes on different hosts:
- claims take rows with `FOR UPDATE SKIP LOCKED` and stamp a lease (`lease_owner`, `lease_until`); a node that dies
  leaves leases that expire, and any node's `recover()` applies DESIGN.md's rule to them;
- a submission's "became final" check locks the submission row first, so two nodes recording its last two jobs at
  once cannot both miss it (write skew under READ COMMITTED);
- dedupe keys are claimed with `INSERT … ON CONFLICT`, so the same mail arriving at two nodes at once is stored once;
- `spool.schema`'s migrations are applied under an advisory lock, each recorded in `schema_version`;
- provider request rates are held globally by `PostgresRateLimiter` (one row per provider in `rate_buckets`).

Times are the callers' clocks (as with SQLite); nodes must keep their clocks in sync (NTP) for leases to mean the
same on every node. The rate limiter uses the database's clock, so it needs no such care.

Never log row contents or the URL here: jobs carry credentials and the URL may carry a password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import psycopg.errors
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mail2sms.errors import SpoolError, SpoolFullError
from mail2sms.spool import schema
from mail2sms.spool.base import CommitResult
from mail2sms.spool.core import Q, Result, SpoolCore, Tx, adrive
from mail2sms.spool.dialect import POSTGRESQL

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]
ADVISORY_LOCK = 0x6D61696C32736D73  # "mail2sms": serialises migrations between nodes starting together
RETRY_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock: the transaction is simply run again
GROUP_MAX = 128  # submissions per group-commit transaction


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
        for version, steps in schema.pending(have, POSTGRESQL):
            for step in steps:
                if not isinstance(step, str):
                    step = f"ALTER TABLE {step.table} ADD COLUMN IF NOT EXISTS {step.column} {step.declaration}"
                await conn.execute(step.encode())  # no parameters
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            have = version
    return have


async def _execute(conn: Conn, query: Q) -> Result:
    sql = POSTGRESQL.placeholders(query.sql)
    if query.many:
        async with conn.cursor() as cur:
            await cur.executemany(sql, query.params)
            return Result([], cur.rowcount)
    cur = await conn.execute(sql, query.params)
    return Result(await cur.fetchall() if cur.description else [], cur.rowcount)


@dataclass
class _PendingCommit:
    tx: Callable[[], Tx[CommitResult]]
    future: asyncio.Future[CommitResult]


class PostgresSpool(SpoolCore):
    """The `Spool` protocol on a PostgreSQL database shared by any number of nodes."""

    dialect = POSTGRESQL

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

    async def _write(self, tx: Callable[[], Tx[T]]) -> T:
        return await self._tx(lambda conn: adrive(tx(), lambda q: _execute(conn, q)))

    async def _read(self, tx: Callable[[], Tx[T]]) -> T:
        return await self._tx(lambda conn: adrive(tx(), lambda q: _execute(conn, q)), write=False)

    # -- commit -----------------------------------------------------------------------------------------

    async def _commit_write(self, tx: Callable[[], Tx[CommitResult]]) -> CommitResult:
        """Group commit: commits that arrive while one transaction is in flight go together in the next one.

        Every caller's result comes only after the transaction holding its submission committed. If a group's
        transaction fails, each of its submissions is committed alone, so one bad submission refuses only itself."""
        pending = _PendingCommit(tx, asyncio.get_running_loop().create_future())
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
            return [await adrive(one.tx(), lambda q: _execute(conn, q)) for one in group]
        return await self._tx(body)

    @staticmethod
    def _settle(one: _PendingCommit, outcome: CommitResult | Exception) -> None:
        if one.future.done():
            return
        if isinstance(outcome, Exception):
            one.future.set_exception(outcome)
        else:
            one.future.set_result(outcome)

    def problem(self) -> str | None:
        return None  # PostgreSQL checks its own pages; a failing query shows in /healthz as "not answering"

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
