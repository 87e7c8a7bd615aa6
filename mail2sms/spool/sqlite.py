"""SQLite spool: one host, any number of processes, durable commits (WAL + synchronous=FULL).

Only the connection handling lives here; every state transition is `spool.core`'s, in the `spool.dialect.SQLITE`
spelling, and the tables are `spool.schema`'s (version kept in `PRAGMA user_version`).

All SQL runs on one dedicated thread per process, so the event loop never waits on the disk and the single
`sqlite3` connection is never shared between threads. Writers take `BEGIN IMMEDIATE` so that claims from several
worker processes cannot overlap. The database file is created mode 0600 (it may hold body credentials until
their submission is final); SQLite gives its -wal and -shm files the same mode.

Never log row contents here: jobs carry credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mail2sms.errors import SpoolError, SpoolFullError
from mail2sms.observability import get_logger
from mail2sms.spool import schema
from mail2sms.spool.core import Q, Result, SpoolCore, Tx, drive
from mail2sms.spool.dialect import SQLITE

T = TypeVar("T")
GROUP_MAX = 256  # writes per group-commit transaction
CHECKPOINT_EVERY = 1.0  # seconds: at most this often, a PASSIVE checkpoint when the write queue has drained
LOCK_WARN_AFTER = 1.0  # seconds waiting for the open lock before saying so (workers starting together wait briefly)
log = get_logger("mail2sms.spool")


@dataclass(frozen=True)
class _Failed:
    exc: Exception


Outcome = Any  # a write's result, or _Failed
PendingWrite = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to `schema.SCHEMA_VERSION` (inside the open lock and one transaction).

    A file of the `ADDED_COLUMNS` era has user_version 0: every migration runs, and its idempotent steps add only
    what the file lacks (its own `schema_version` table is left as it was)."""
    missing = schema.pending(conn.execute("PRAGMA user_version").fetchone()[0], SQLITE)
    for _, steps in missing:
        for step in steps:
            if isinstance(step, str):
                conn.execute(step)
            elif step.column not in {r[1] for r in conn.execute(f"PRAGMA table_info({step.table})")}:
                conn.execute(f"ALTER TABLE {step.table} ADD COLUMN {step.column} {step.declaration}")
    if missing:
        conn.execute(f"PRAGMA user_version = {missing[-1][0]}")


def _execute(conn: sqlite3.Connection, query: Q) -> Result:
    if query.many:
        return Result([], conn.executemany(query.sql, query.params).rowcount)
    cur = conn.execute(query.sql, query.params)
    return Result(cur.fetchall(), cur.rowcount)


def sqlite_path(url: str) -> Path:
    """`sqlite:///abs/path` (DESIGN.md's form) or `sqlite:relative/path`."""
    rest = url.removeprefix("sqlite:")
    if rest.startswith("//"):
        rest = rest[2:]
    if not rest:
        raise SpoolError("sqlite URL names no file")
    return Path(rest)




def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database without waiting for anyone (PASSIVE): off the commit path, and never
    blocking another process's readers or writers."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _lock_holder(fd: int) -> str:
    """" (pid N)" from the lock file, where the holding process wrote its pid; "" when it did not."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return f" (pid {pid})"
    return ""


def _is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc).lower()


class SqliteSpool(SpoolCore):
    """The `Spool` protocol on one SQLite file."""

    dialect = SQLITE

    def __init__(
        self, url: str, busy_timeout: float = 30.0, max_size: int | None = None, lock_timeout: float = 60.0
    ) -> None:
        self.path = sqlite_path(url)
        self._max_size = max_size
        self._busy_timeout = busy_timeout
        self._lock_timeout = lock_timeout
        self._last_checkpoint = 0.0
        self._damaged: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._conn: sqlite3.Connection | None = None
        self._thread_check = threading.local()
        self._pending: list[PendingWrite] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise SpoolError("spool is not open")
        try:
            return self._retry_busy(self._conn, fn)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.rollback()
            if _is_disk_full(exc):
                raise SpoolFullError("spool storage is full") from exc
            if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                self._damaged = "the spool file is damaged (SQLite reports corruption)"
            raise SpoolError(f"spool error: {type(exc).__name__}") from exc

    def _retry_busy(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn`, again while another process holds the write lock (SQLITE_BUSY), up to the busy timeout.

        SQLite's own busy handler sleeps 1, 2, 5, 10… ms between tries, which with several worker processes
        leaves each mostly asleep; these retries start at 0.1 ms. `fn` is a whole transaction (or a read), so
        running it again is safe: a busy error rolled back everything it had done."""
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.0001
        while True:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    raise
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.rollback()
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def _in_transaction(self, conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return result

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Processes opening one spool at the same moment (workers, or tests) take turns: switching a fresh file
        # to WAL and creating the schema escalate locks in ways where SQLite answers "database is locked" at once
        # instead of waiting, so a busy timeout alone does not serialise them.
        lock_fd = os.open(f"{self.path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            self._take_open_lock(lock_fd)
            self._open_locked()
        finally:
            os.close(lock_fd)  # closing releases the lock

    def _take_open_lock(self, fd: int) -> None:
        """Wait for the open lock, saying so after a moment, and give up after `lock_timeout` with the reason.

        Another process holds it only while it opens the spool (a second or so); one that holds it longer is stuck
        or is not mail2sms, and waiting silently forever would leave a service that never starts and never says."""
        started = time.monotonic()
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            holder = _lock_holder(fd)
            if waited >= self._lock_timeout:
                raise SpoolError(
                    f"the spool lock {self.path}.lock is held by another process{holder}; gave up after "
                    f"{self._lock_timeout:g} s (spool.lock_timeout): stop that process or remove its hold")
            if waited >= LOCK_WARN_AFTER and not warned:
                warned = True
                log.warning("waiting for the spool lock held by another process", lock=f"{self.path}.lock",
                            holder=holder.removeprefix(" (").removesuffix(")") or "unknown",
                            give_up_after=self._lock_timeout)
            time.sleep(0.05)
        # Name ourselves as the holder, for a process that has to wait (and for the operator).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _open_locked(self) -> None:
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # the 250 promise: the WAL is fsynced at every commit
        # No checkpoint inside a commit: an automatic one runs in whichever write crosses 1,000 WAL pages and holds
        # every session waiting on that write (a 19 s stall was seen). `_flush` checkpoints when the queue drains.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # A damaged page must stop the start, not surface later as failures of individual mails.
        damage = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
        if damage != ["ok"]:
            conn.close()
            first = " ".join(damage[0].replace("*** in database main ***", "").split())  # one line for the log
            raise SpoolError(
                f"the spool file {self.path} is damaged ({first}); mail2sms will not start on it: restore it "
                "from a backup, or move it aside to start with an empty spool")
        conn.execute("PRAGMA foreign_keys=ON")
        if self._max_size:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(16, self._max_size // page)}")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")  # while opening; then _retry_busy
        self._conn = conn

        self._in_transaction(conn, _migrate)
        conn.execute("PRAGMA busy_timeout=0")

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_sync)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        except OSError as exc:  # a read-only or missing directory, no permission: one line, not a traceback
            where = f" ({exc.filename})" if exc.filename else ""
            raise SpoolError(f"cannot open spool {self.path}: {exc.strerror or type(exc).__name__}{where}") from exc

    def problem(self) -> str | None:
        return self._damaged

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- transactions ----------------------------------------------------------------------------------

    async def _write(self, tx: Callable[[], Tx[T]]) -> T:
        return await self._grouped(lambda conn: drive(tx(), lambda q: _execute(conn, q)))

    async def _read(self, tx: Callable[[], Tx[T]]) -> T:
        return await self._run(lambda conn: drive(tx(), lambda q: _execute(conn, q)))

    async def _grouped(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write in the next group transaction (group commit) and return once that transaction is durable.

        Writes that arrive while one transaction is being written go together in the next one, each in its own
        savepoint, so one that fails is rolled back alone and its caller gets the error. Nothing waits to gather
        a group: the first write starts at once, and a group is whatever queued up meanwhile. One fsync then
        covers many `250`s (and `mark_sending`s), and worker processes take the write lock far less often."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((body, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        result: T = await future
        return result

    async def _flush(self) -> None:
        while True:
            await self._flush_pending()
            if time.monotonic() - self._last_checkpoint < CHECKPOINT_EVERY:
                return
            self._last_checkpoint = time.monotonic()
            with contextlib.suppress(Exception):  # a failed checkpoint is retried at the next one
                await self._run(_checkpoint)
            if not self._pending:  # writes that came during the checkpoint are this flusher's to run
                return

    async def _flush_pending(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]

            def write(conn: sqlite3.Connection, g: list[PendingWrite] = group) -> list[Outcome]:
                return self._in_transaction(conn, lambda c: self._run_group(c, g))
            try:
                outcomes: list[Outcome] = await self._run(write)
            except Exception as exc:  # the whole transaction failed: none of the group's writes happened
                outcomes = [_Failed(exc)] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, _Failed):
                    future.set_exception(outcome.exc)
                else:
                    future.set_result(outcome)

    def _run_group(self, conn: sqlite3.Connection, group: list[PendingWrite]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for body, _ in group:
            conn.execute("SAVEPOINT one")
            try:
                outcomes.append(body(conn))
            except sqlite3.Error as exc:
                if not conn.in_transaction:  # SQLite rolled back the whole transaction (disk full, I/O error)
                    raise
                conn.execute("ROLLBACK TO one")
                mapped = SpoolFullError("spool storage is full") if _is_disk_full(exc) else SpoolError(
                    f"spool error: {type(exc).__name__}")
                mapped.__cause__ = exc
                outcomes.append(_Failed(mapped))
            except Exception as exc:  # e.g. LeaseLost: this write's own refusal
                conn.execute("ROLLBACK TO one")
                outcomes.append(_Failed(exc))
            conn.execute("RELEASE one")
        return outcomes

