"""SQLite spool: one host, any number of processes, durable commits (WAL + synchronous=FULL).

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
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mail2sms.errors import SpoolError, SpoolFullError
from mail2sms.model import FINAL_STATES, Job, JobState, Submission
from mail2sms.observability import get_logger
from mail2sms.spool import quotas
from mail2sms.spool.base import CommitResult, DueReport, HeldReport, JobUpdate, LeaseLost, QueueEntry
from mail2sms.spool.ids import new_id
from mail2sms.spool.rows import INTERRUPTED, job_from_row, job_rows, submission_from_row

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
SCHEMA_VERSION = 1
_OPEN_SQL = ",".join(f"'{s.value}'" for s in JobState if s not in FINAL_STATES)

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    envelope_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    route TEXT NOT NULL,
    message_id TEXT,
    subject TEXT NOT NULL DEFAULT '',
    report_to TEXT,
    report_suppressed TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    peer TEXT NOT NULL DEFAULT '',
    user TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    report_state TEXT NOT NULL DEFAULT 'waiting',
    report_attempts INTEGER NOT NULL DEFAULT 0,
    report_next_at REAL NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS submissions_open ON submissions (report_state, delay_notified, received_at);
CREATE INDEX IF NOT EXISTS submissions_report ON submissions (report_state, report_next_at);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    number TEXT NOT NULL,
    text TEXT NOT NULL,
    provider TEXT NOT NULL,
    sender TEXT,
    account TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    row INTEGER,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    provider_id TEXT,
    code TEXT,
    error TEXT,
    parts INTEGER NOT NULL DEFAULT 1,
    encoding TEXT NOT NULL DEFAULT 'gsm7',
    notes TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_submission_state ON jobs (submission_id, state);
CREATE TABLE IF NOT EXISTS dedupe (
    key TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe (created_at);
CREATE TABLE IF NOT EXISTS quota_charges (key TEXT NOT NULL, at REAL NOT NULL, count INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS quota_charges_key ON quota_charges (key, at);
"""

JOB_COLUMNS = (
    "id, submission_id, number, text, provider, sender, account, options, row, idempotency_key, state, "
    "attempts, next_attempt_at, expires_at, provider_id, code, error, parts, encoding, notes, detail, first_attempt_at"
)


# Columns added after a table was first released: a spool file made by an earlier mail2sms gets them at open
# (ALTER TABLE ... ADD COLUMN with a default keeps every existing row valid, and older code never names them).
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "jobs": (("notes", "TEXT NOT NULL DEFAULT '[]'"), ("detail", "TEXT"), ("first_attempt_at", "REAL")),
    "submissions": (("report_owner", "TEXT"), ("report_lease_until", "REAL")),
}


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in have:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as exc:  # another worker process added it a moment ago
                    if "duplicate column" not in str(exc).lower():
                        raise
    # Leased reports, found without a scan (the lease is cleared when a report is settled: the index stays small).
    conn.execute("CREATE INDEX IF NOT EXISTS submissions_report_owner ON submissions (report_owner) "
                 "WHERE report_owner IS NOT NULL")


def sqlite_path(url: str) -> Path:
    """`sqlite:///abs/path` (DESIGN.md's form) or `sqlite:relative/path`."""
    rest = url.removeprefix("sqlite:")
    if rest.startswith("//"):
        rest = rest[2:]
    if not rest:
        raise SpoolError("sqlite URL names no file")
    return Path(rest)




def _quota_used(conn: sqlite3.Connection, key: str, since: float) -> int:
    row = conn.execute("SELECT COALESCE(SUM(count), 0) FROM quota_charges WHERE key = ? AND at > ?", (key, since))
    return int(row.fetchone()[0])


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


class SqliteSpool:
    """The `Spool` protocol on one SQLite file."""

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

    def _write(self, conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
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

        def migrate(c: sqlite3.Connection) -> None:
            c.executescript(SCHEMA)  # executescript commits; it runs before BEGIN below
            _add_columns(c)
        migrate(conn)

        def version(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise SpoolError(f"spool schema {row[0]} is newer than this mail2sms ({SCHEMA_VERSION})")
        self._write(conn, version)
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

    # -- commit -----------------------------------------------------------------------------------------

    async def commit(self, submission: Submission, dedupe_keys: list[str], window: float,
                     quota: Sequence[quotas.QuotaCharge] = ()) -> CommitResult:
        if len(dedupe_keys) != len(submission.jobs):
            raise ValueError("one dedupe key per job")
        return await self._grouped(lambda c: self._commit(c, submission, dedupe_keys, window, quota))

    async def quota_used(self, key: str, since: float) -> int:
        return await self._run(lambda c: _quota_used(c, key, since))

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
                return self._write(conn, lambda c: self._run_group(c, g))
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

    def _commit(
        self, conn: sqlite3.Connection, sub: Submission, keys: list[str], window: float,
        quota: Sequence[quotas.QuotaCharge] = (),
    ) -> CommitResult:
        now = sub.received_at
        conn.execute("DELETE FROM dedupe WHERE created_at < ?", (now - window,))
        fresh: list[tuple[Job, str]] = []
        duplicate_of: str | None = None
        for job, key in zip(sub.jobs, keys, strict=True):
            row = conn.execute("SELECT submission_id FROM dedupe WHERE key = ?", (key,)).fetchone()
            if row is None:
                fresh.append((job, key))
            elif duplicate_of is None:
                duplicate_of = row[0]
        if not fresh and duplicate_of is not None:
            return CommitResult(duplicate_of, duplicate=True)
        if quota:  # checked and charged in this transaction: the write lock serialises every process
            quotas.check(quota, lambda key, since: _quota_used(conn, key, since), now)
            for charge in quota:
                conn.execute("DELETE FROM quota_charges WHERE key = ? AND at <= ?", (charge.key, now - quotas.HORIZON))
            conn.executemany("INSERT INTO quota_charges (key, at, count) VALUES (?,?,?)",
                             [(c.key, now, c.count) for c in quota])
        sub.id = sub.id or new_id()
        sub.jobs = [job for job, _ in fresh]
        conn.execute(
            "INSERT INTO submissions (id, received_at, envelope_from, recipients, route, message_id, subject, "
            "report_to, report_suppressed, dry_run, peer, user, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (sub.id, sub.received_at, sub.envelope_from, json.dumps(sub.recipients), sub.route, sub.message_id,
             sub.subject, sub.report_to, sub.report_suppressed, int(sub.dry_run), sub.peer, sub.user,
             json.dumps(sub.extra)),
        )
        rows = job_rows(sub, now)
        conn.executemany(
            "INSERT INTO jobs (id, submission_id, seq, number, text, provider, sender, account, options, row, "
            "idempotency_key, state, attempts, next_attempt_at, expires_at, provider_id, code, error, parts, "
            "encoding, notes, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.executemany(
            "INSERT OR REPLACE INTO dedupe (key, submission_id, created_at) VALUES (?,?,?)",
            [(key, sub.id, now) for _, key in fresh],
        )
        self._finish_if_final(conn, [sub.id], now)
        return CommitResult(sub.id)

    def _finish_if_final(self, conn: sqlite3.Connection, submission_ids: Iterable[str], now: float) -> list[str]:
        done = []
        for sid in submission_ids:
            # IN the open states, not NOT IN the final ones: the (submission_id, state) index then finds an open
            # job at once instead of scanning every finished job of a 100,000-row submission on each record().
            open_jobs = conn.execute(
                f"SELECT 1 FROM jobs WHERE submission_id = ? AND state IN ({_OPEN_SQL}) LIMIT 1", (sid,)
            ).fetchone()
            if open_jobs is not None:
                continue
            cur = conn.execute(
                "UPDATE submissions SET report_state = CASE WHEN report_to IS NULL THEN 'none' ELSE 'pending' END, "
                "finished_at = ?, report_next_at = ? WHERE id = ? AND report_state = 'waiting'",
                (now, now, sid),
            )
            if cur.rowcount:
                # Body credentials are kept only until the submission is final (DESIGN.md "Storage").
                conn.execute("UPDATE jobs SET account = NULL WHERE submission_id = ?", (sid,))
                done.append(sid)
        return done

    # -- dispatch ---------------------------------------------------------------------------------------

    async def claim(
        self, owner: str, now: float, limit: int, lease: float, skip_providers: Collection[str] = ()
    ) -> list[Job]:
        skip = sorted(skip_providers)
        not_in = f"AND provider NOT IN ({','.join('?' * len(skip))}) " if skip else ""

        def body(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'scheduled') AND next_attempt_at <= ? "
                f"AND (lease_until IS NULL OR lease_until < ?) {not_in}ORDER BY next_attempt_at LIMIT ?",
                (now, now, *skip, limit),
            ).fetchall()
            jobs = [job_from_row(r) for r in rows]
            conn.executemany(
                "UPDATE jobs SET lease_owner = ?, lease_until = ?, state = 'queued' WHERE id = ?",
                [(owner, now + lease, j.id) for j in jobs],
            )
            return jobs
        return await self._grouped(body)

    async def mark_sending(self, job_ids: list[str], now: float, owner: str | None = None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            if owner is None:
                conn.executemany(
                    "UPDATE jobs SET state = 'sending', updated_at = ?, "
                    "first_attempt_at = COALESCE(first_attempt_at, ?) WHERE id = ?", [(now, now, j) for j in job_ids]
                )
                return
            before = conn.total_changes
            conn.executemany(
                "UPDATE jobs SET state = 'sending', updated_at = ?, first_attempt_at = COALESCE(first_attempt_at, ?) "
                "WHERE id = ? AND state = 'queued' AND lease_owner = ?",
                [(now, now, job_id, owner) for job_id in job_ids])
            marked = conn.total_changes - before
            if marked != len(job_ids):
                raise LeaseLost("the lease on these jobs was lost; another process sends them")  # rolls back
        await self._grouped(body)

    async def record(self, updates: list[JobUpdate], now: float, owner: str | None = None) -> list[str]:
        def body(conn: sqlite3.Connection) -> list[str]:
            if owner is not None:
                self._check_owner(conn, [u.job_id for u in updates], owner)
            conn.executemany(
                "UPDATE jobs SET state = ?, attempts = ?, next_attempt_at = ?, provider_id = ?, code = ?, "
                "error = ?, detail = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
                [(u.state.value, u.attempts, u.next_attempt_at, u.provider_id, u.code, u.error, u.detail, now,
                  u.job_id) for u in updates],
            )
            sids = {u.job_id.rpartition(".")[0] for u in updates if u.state.final}
            return self._finish_if_final(conn, sorted(sids), now)
        return await self._grouped(body)

    @staticmethod
    def _check_owner(conn: sqlite3.Connection, job_ids: list[str], owner: str) -> None:
        """LeaseLost unless `owner` holds every one of these jobs (inside the caller's write transaction)."""
        ids = sorted(set(job_ids))
        held = 0
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[i:i + 500]
            held += conn.execute(
                f"SELECT COUNT(*) FROM jobs WHERE lease_owner = ? AND id IN ({','.join('?' * len(chunk))})",
                (owner, *chunk)).fetchone()[0]
        if held != len(ids):
            raise LeaseLost("these jobs are no longer leased to this owner; its results are refused")

    async def recover(
        self, idempotent_providers: set[str], now: float, owner_dead: Callable[[str], bool] | None = None
    ) -> tuple[int, int]:
        def body(conn: sqlite3.Connection) -> tuple[int, int]:
            rows = conn.execute(
                "SELECT id, provider, state, lease_owner, lease_until FROM jobs "
                "WHERE lease_owner IS NOT NULL AND state IN ('queued', 'sending')"
            ).fetchall()
            requeued, unknown, released = [], [], []
            for r in rows:
                expired = r["lease_until"] is None or r["lease_until"] < now
                if r["state"] == "sending" and owner_dead is not None:
                    # One host: whether the owner lives is known, and a live one holds the provider's answer
                    # and records it as soon as the spool can write again (disk full, lock held). Declaring its
                    # request interrupted when the lease ends would turn an accepted SMS into "may have been sent".
                    dead = owner_dead(r["lease_owner"])
                else:
                    dead = expired or (owner_dead is not None and owner_dead(r["lease_owner"]))
                if not dead:
                    continue
                if r["state"] == "queued":
                    released.append(r["id"])
                elif r["provider"] in idempotent_providers:
                    requeued.append(r["id"])
                else:
                    unknown.append(r["id"])
            conn.executemany(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, state = 'queued' WHERE id = ?",
                [(i,) for i in released + requeued],
            )
            conn.executemany(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, state = 'unknown', code = 'INTERRUPTED', "
                "error = ?, updated_at = ? WHERE id = ?",
                [(INTERRUPTED, now, i) for i in unknown],
            )
            sids = sorted({i.rpartition(".")[0] for i in unknown})
            self._finish_if_final(conn, sids, now)
            return len(requeued), len(unknown)
        return await self._grouped(body)

    async def expire(self, now: float) -> list[str]:
        def body(conn: sqlite3.Connection) -> list[str]:
            where = ("state IN ('queued', 'scheduled') AND expires_at > 0 AND expires_at < ? "
                     "AND (lease_until IS NULL OR lease_until < ?)")
            sids = [r[0] for r in conn.execute(f"SELECT DISTINCT submission_id FROM jobs WHERE {where}", (now, now))]
            if not sids:
                return []
            conn.execute(
                "UPDATE jobs SET state = 'expired', updated_at = ?, error = 'not sent within its lifetime' || "
                f"CASE WHEN error IS NULL THEN '' ELSE '; the last problem was: ' || error END WHERE {where}",
                (now, now, now),
            )
            return self._finish_if_final(conn, sids, now)
        return await self._grouped(body)

    # -- reports ----------------------------------------------------------------------------------------

    def _jobs_of(self, conn: sqlite3.Connection, sid: str) -> list[Job]:
        rows = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE submission_id = ? ORDER BY seq", (sid,))
        return [job_from_row(r) for r in rows]

    async def due_reports(self, now: float, limit: int) -> list[DueReport]:
        def body(conn: sqlite3.Connection) -> list[DueReport]:
            rows = conn.execute(
                "SELECT * FROM submissions WHERE report_state = 'pending' AND report_next_at <= ? "
                "ORDER BY report_next_at LIMIT ?",
                (now, limit),
            ).fetchall()
            return [DueReport(submission_from_row(r), self._jobs_of(conn, r["id"]), r["report_attempts"])
                    for r in rows]
        return await self._run(body)

    async def due_delay_notices(self, older_than: float, limit: int) -> list[DueReport]:
        def body(conn: sqlite3.Connection) -> list[DueReport]:
            rows = conn.execute(
                "SELECT * FROM submissions WHERE report_state = 'waiting' AND delay_notified = 0 "
                "AND report_to IS NOT NULL AND received_at <= ? ORDER BY received_at LIMIT ?",
                (older_than, limit),
            ).fetchall()
            return [DueReport(submission_from_row(r), self._jobs_of(conn, r["id"]), 0) for r in rows]
        return await self._run(body)

    async def mark_delay_notified(self, submission_id: str) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE submissions SET delay_notified = 1 WHERE id = ?", (submission_id,))
        await self._grouped(body)

    async def take_suppressed(self, report_to: str) -> list[DueReport]:
        def body(conn: sqlite3.Connection) -> list[DueReport]:
            rows = conn.execute(
                "SELECT * FROM submissions WHERE report_state = 'suppressed' AND report_to = ? ORDER BY received_at",
                (report_to,),
            ).fetchall()
            conn.executemany("UPDATE submissions SET report_state = 'summarised' WHERE id = ?",
                             [(r["id"],) for r in rows])
            return [DueReport(submission_from_row(r), self._jobs_of(conn, r["id"]), 0) for r in rows]
        return await self._grouped(body)

    async def report_done(
        self, submission_id: str, state: str, next_at: float, now: float, owner: str | None = None
    ) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE submissions SET report_state = ?, report_attempts = report_attempts + 1, "
                "report_next_at = ?, report_owner = NULL, report_lease_until = NULL "
                "WHERE id = ? AND (? IS NULL OR report_owner = ?)",
                (state, next_at, submission_id, owner, owner),
            )
            return cur.rowcount == 1
        return await self._grouped(body)

    async def claim_reports(self, owner: str, now: float, limit: int, lease: float) -> list[str]:
        def body(conn: sqlite3.Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM submissions WHERE report_state = 'pending' AND report_next_at <= ? "
                "AND (report_lease_until IS NULL OR report_lease_until < ?) ORDER BY report_next_at LIMIT ?",
                (now, now, limit))]
            conn.executemany("UPDATE submissions SET report_owner = ?, report_lease_until = ? WHERE id = ?",
                             [(owner, now + lease, i) for i in ids])
            return ids
        return await self._grouped(body)

    async def claim_delay_notices(
        self, owner: str, older_than: float, now: float, limit: int, lease: float
    ) -> list[str]:
        def body(conn: sqlite3.Connection) -> list[str]:
            # report_next_at is free while a submission is `waiting`: it holds the notice's next try.
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM submissions WHERE report_state = 'waiting' AND delay_notified = 0 "
                "AND report_to IS NOT NULL AND received_at <= ? AND report_next_at <= ? "
                "AND (report_lease_until IS NULL OR report_lease_until < ?) ORDER BY received_at LIMIT ?",
                (older_than, now, now, limit))]
            conn.executemany("UPDATE submissions SET report_owner = ?, report_lease_until = ? WHERE id = ?",
                             [(owner, now + lease, i) for i in ids])
            return ids
        return await self._grouped(body)

    async def load_report(self, submission_id: str) -> DueReport | None:
        def body(conn: sqlite3.Connection) -> DueReport | None:
            row = conn.execute("SELECT * FROM submissions WHERE id = ?", (submission_id,)).fetchone()
            if row is None:
                return None
            return DueReport(submission_from_row(row), self._jobs_of(conn, submission_id), row["report_attempts"])
        return await self._run(body)

    async def release_dead_reports(self, owner_dead: Callable[[str], bool]) -> int:
        def body(conn: sqlite3.Connection) -> int:
            owners = [r[0] for r in conn.execute(
                "SELECT DISTINCT report_owner FROM submissions WHERE report_owner IS NOT NULL")]
            dead = [(o,) for o in owners if owner_dead(o)]
            before = conn.total_changes
            conn.executemany("UPDATE submissions SET report_owner = NULL, report_lease_until = NULL "
                             "WHERE report_owner = ?", dead)
            return conn.total_changes - before
        return await self._grouped(body)

    async def release_reports(self, submission_ids: list[str], owner: str) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE submissions SET report_owner = NULL, report_lease_until = NULL "
                "WHERE id = ? AND report_owner = ?",
                [(i, owner) for i in submission_ids])
        await self._grouped(body)

    async def delay_notice_done(self, submission_id: str, owner: str, notified: bool, next_at: float) -> None:
        def body(conn: sqlite3.Connection) -> None:
            # A submission that became final meanwhile got its report_next_at from _finish_if_final: keep it.
            conn.execute(
                "UPDATE submissions SET delay_notified = ?, report_next_at = CASE WHEN report_state = 'waiting' "
                "THEN ? ELSE report_next_at END, report_owner = NULL, report_lease_until = NULL "
                "WHERE id = ? AND report_owner = ?",
                (int(notified), next_at, submission_id, owner))
        await self._grouped(body)

    async def take_held(self, report_to: str, owner: str, now: float, lease: float) -> list[HeldReport]:
        # Asked for nearly every report and nearly always empty: a read first spares a write transaction (an fsync).
        held = await self._run(lambda c: c.execute(
            "SELECT 1 FROM submissions WHERE report_state = 'suppressed' AND report_to = ? LIMIT 1", (report_to,)
        ).fetchone())
        if held is None:
            return []

        def body(conn: sqlite3.Connection) -> list[HeldReport]:
            rows = conn.execute(
                "SELECT s.id, (SELECT COUNT(*) FROM jobs j WHERE j.submission_id = s.id AND j.state = 'sent'), "
                "(SELECT COUNT(*) FROM jobs j WHERE j.submission_id = s.id) FROM submissions s "
                "WHERE s.report_state = 'suppressed' AND s.report_to = ? "
                "AND (s.report_lease_until IS NULL OR s.report_lease_until < ?) ORDER BY s.received_at, s.id",
                (report_to, now)).fetchall()
            conn.executemany("UPDATE submissions SET report_owner = ?, report_lease_until = ? WHERE id = ?",
                             [(owner, now + lease, r[0]) for r in rows])
            return [HeldReport(r[0], r[1], r[2]) for r in rows]
        return await self._grouped(body)

    async def settle_held(self, submission_ids: list[str], owner: str, summarised: bool) -> None:
        state = "summarised" if summarised else "suppressed"

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE submissions SET report_state = ?, report_owner = NULL, report_lease_until = NULL "
                "WHERE id = ? AND report_owner = ? AND report_state = 'suppressed'",
                [(state, i, owner) for i in submission_ids])
        await self._grouped(body)

    # -- operator ---------------------------------------------------------------------------------------

    async def queue_list(self, limit: int) -> list[QueueEntry]:
        def body(conn: sqlite3.Connection) -> list[QueueEntry]:
            subs = conn.execute(
                "SELECT id, received_at, envelope_from, route, report_state FROM submissions "
                "WHERE report_state IN ('waiting', 'pending') ORDER BY received_at LIMIT ?",
                (limit,),
            ).fetchall()
            out = []
            for s in subs:
                states = {r[0]: r[1] for r in conn.execute(
                    "SELECT state, COUNT(*) FROM jobs WHERE submission_id = ? GROUP BY state", (s["id"],))}
                out.append(QueueEntry(s["id"], s["received_at"], s["envelope_from"], s["route"],
                                      sum(states.values()), states, s["report_state"]))
            return out
        return await self._run(body)

    async def get(self, submission_id: str) -> tuple[Submission, list[Job]] | None:
        def body(conn: sqlite3.Connection) -> tuple[Submission, list[Job]] | None:
            row = conn.execute("SELECT * FROM submissions WHERE id = ?", (submission_id,)).fetchone()
            if row is None:
                return None
            return submission_from_row(row), self._jobs_of(conn, submission_id)
        return await self._run(body)

    async def retry_now(self, submission_id: str, now: float) -> int:
        def body(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET next_attempt_at = ? WHERE submission_id = ? AND state IN ('queued', 'scheduled')",
                (now, submission_id),
            )
            return cur.rowcount
        return await self._grouped(body)

    async def cancel(self, submission_id: str, now: float) -> int:
        def body(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE jobs SET state = 'cancelled', error = 'cancelled by the operator', lease_owner = NULL, "
                "lease_until = NULL, updated_at = ? WHERE submission_id = ? AND state IN ('queued', 'scheduled')",
                (now, submission_id),
            )
            self._finish_if_final(conn, [submission_id], now)
            return cur.rowcount
        return await self._grouped(body)

    async def counts(self) -> dict[str, int]:
        def body(conn: sqlite3.Connection) -> dict[str, int]:
            return {r[0]: r[1] for r in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}
        return await self._run(body)

