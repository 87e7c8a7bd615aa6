"""Every spool state transition, written once for both backends.

A transition is a generator: it yields each statement (`Q`, with `?` placeholders) and is sent back its `Result`,
so SQLite can run it synchronously on its database thread inside a group-commit savepoint and PostgreSQL can run it
asynchronously on a pooled connection, each through its own `drive`. Only the spelling a `Dialect` gives (list
parameters, row locks, per-key locks) differs between them. `SpoolCore` turns the transitions into the `Spool`
protocol's methods; a backend supplies `_write` (one durable transaction) and `_read`.

Never log row contents here (jobs carry credentials), and never let a transition write outside its transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mail2sms.model import (
    Account,
    Awaiting,
    InboundSms,
    Job,
    JobState,
    ReceiptState,
    ReplyState,
    ReportState,
    Settled,
    Submission,
)
from mail2sms.spool import quotas, replies
from mail2sms.spool.base import (
    CommitResult,
    DueFollowup,
    DueReply,
    DueReport,
    HeldReport,
    JobUpdate,
    LeaseLost,
    QueueEntry,
    ReceiptView,
    ReplyRules,
    ReplyView,
    StoredReplies,
)
from mail2sms.spool.dialect import Dialect
from mail2sms.spool.ids import new_id
from mail2sms.spool.rows import INTERRUPTED, Row, job_from_row, job_rows, submission_from_row
from mail2sms.spool.tx import Q as Q
from mail2sms.spool.tx import Result as Result
from mail2sms.spool.tx import Tx as Tx
from mail2sms.spool.tx import adrive as adrive
from mail2sms.spool.tx import drive as drive

T = TypeVar("T")
DEDUPE_PURGE_EVERY = 60.0  # seconds: a key past its window is already treated as new; the purge only frees space


def _states(*states: str) -> str:
    # Literals, not parameters: the partial indexes (spool.schema) are used only when the query repeats their terms.
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"


READY = _states(JobState.QUEUED, JobState.SCHEDULED)
OPEN = _states(JobState.SCHEDULED, JobState.QUEUED, JobState.SENDING)


def _is(state: ReportState) -> str:
    return f"report_state = '{state}'"


JOB_COLUMNS = (
    'id, submission_id, number, text, provider, sender, account, options, "row", idempotency_key, state, '
    "attempts, next_attempt_at, expires_at, provider_id, code, error, parts, encoding, notes, detail, first_attempt_at"
)
_INSERT_JOB = (
    'INSERT INTO jobs (id, submission_id, seq, number, text, provider, sender, account, options, "row", '
    "idempotency_key, state, attempts, next_attempt_at, expires_at, provider_id, code, error, parts, encoding, notes, "
    f"updated_at) VALUES ({','.join('?' * 22)})"
)
_INSERT_SUBMISSION = (
    'INSERT INTO submissions (id, received_at, envelope_from, recipients, route, message_id, subject, report_to, '
    f'report_suppressed, dry_run, peer, "user", extra) VALUES ({",".join("?" * 13)})'
)
_SUM_CHARGES = "SELECT COALESCE(SUM(count), 0) AS used FROM quota_charges WHERE key = ? AND at > ?"
_UNLEASE_REPORT = "report_owner = NULL, report_lease_until = NULL"

# -- commit ---------------------------------------------------------------------------------------------


def commit(d: Dialect, sub: Submission, given_id: str, jobs: list[Job], keys: list[str], window: float,
           quota: Sequence[quotas.QuotaCharge], purge: bool) -> Tx[CommitResult]:
    """Store a submission and the jobs whose dedupe key is new; a duplicate leaves the caller's copy untouched."""
    sub.id, sub.jobs = given_id, list(jobs)  # as the caller gave it, also when a failed group runs this again
    now = sub.received_at
    sid = sub.id or new_id()
    # Claim the keys first: a concurrent commit of the same key (another node) waits here for this one to end. A
    # key older than the window is taken over, so the periodic purge is only housekeeping.
    claimed = yield Q(
        "INSERT INTO dedupe (key, submission_id, created_at) "
        f"SELECT DISTINCT e.value, ?, ? FROM {d.elements} WHERE true "
        "ON CONFLICT (key) DO UPDATE SET submission_id = excluded.submission_id, created_at = excluded.created_at "
        "WHERE dedupe.created_at < ? RETURNING key",
        (sid, now, d.listed(keys), now - window))
    fresh_keys = {r["key"] for r in claimed.rows}
    fresh = [job for job, key in zip(jobs, keys, strict=True) if key in fresh_keys]
    if not fresh and jobs:
        first = next(k for k in keys if k not in fresh_keys)
        holder = yield Q("SELECT submission_id FROM dedupe WHERE key = ?", (first,))
        return CommitResult(holder.rows[0]["submission_id"], duplicate=True)
    if quota:
        yield from charge_quota(d, quota, now)
    sub.id, sub.jobs = sid, fresh
    yield Q(_INSERT_SUBMISSION, (
        sub.id, sub.received_at, sub.envelope_from, json.dumps(sub.recipients), sub.route, sub.message_id,
        sub.subject, sub.report_to, sub.report_suppressed, sub.dry_run, sub.peer, sub.user, json.dumps(sub.extra)))
    rows = job_rows(sub, now)
    if rows:
        yield Q(_INSERT_JOB, rows, many=True)
    if not sub.jobs or any(j.state.final for j in sub.jobs):
        yield from finish_if_final(d, [sub.id], now)
    if purge:
        # Bounded: the accept path never pays for a backlog (a spool that was stopped for days); spool.retention's
        # periodic sweep frees the rest in batches off the hot path.
        yield Q("DELETE FROM dedupe WHERE key IN (SELECT key FROM dedupe WHERE created_at < ? LIMIT 100)",
                (now - window,))
    return CommitResult(sub.id)


def charge_quota(d: Dialect, quota: Sequence[quotas.QuotaCharge], now: float) -> Tx[None]:
    """Check and charge route quotas in this transaction (spool.quotas); QuotaExceeded rolls it all back.

    Where several writers run at once (PostgreSQL), a per-key lock taken in key order (no deadlock between two
    nodes charging one mail) makes their check-and-charge of one key take turns; the sums are read after it."""
    lock = d.key_lock()
    if lock is not None:
        for key in sorted({c.key for c in quota}):
            yield Q(lock, (key,))
    sums: dict[tuple[str, float], int] = {}
    for key, since in quotas.windows(quota, now):
        used = yield Q(_SUM_CHARGES, (key, since))
        sums[(key, since)] = int(used.rows[0]["used"])
    quotas.check(quota, lambda key, since: sums[(key, since)], now)
    for charge in quota:
        yield Q("DELETE FROM quota_charges WHERE key = ? AND at <= ?", (charge.key, now - quotas.HORIZON))
    yield Q("INSERT INTO quota_charges (key, at, count) VALUES (?, ?, ?)", [(c.key, now, c.count) for c in quota],
            many=True)


def quota_used(key: str, since: float) -> Tx[int]:
    used = yield Q(_SUM_CHARGES, (key, since))
    return int(used.rows[0]["used"])


def finish_if_final(d: Dialect, submission_ids: Iterable[str], now: float) -> Tx[list[str]]:
    """Submissions with no open job left become final (report due, or none wanted); their body credentials go."""
    sids = sorted(set(submission_ids))
    if not sids:
        return []
    if d.row_lock:
        # In id order (no deadlock between nodes): the last two jobs of one submission recorded at once on two
        # nodes cannot both see the other as still open (write skew under READ COMMITTED).
        yield Q(f"SELECT id FROM submissions WHERE {d.in_list('id')} ORDER BY id{d.row_lock}", (d.listed(sids),))
    finished = yield Q(
        "UPDATE submissions SET report_state = CASE WHEN report_to IS NULL THEN ? ELSE ? END, finished_at = ?, "
        f"report_next_at = ? WHERE {d.in_list('id')} AND {_is(ReportState.WAITING)} AND NOT EXISTS "
        f"(SELECT 1 FROM jobs j WHERE j.submission_id = submissions.id AND j.state IN {OPEN}) RETURNING id",
        (ReportState.NONE.value, ReportState.PENDING.value, now, now, d.listed(sids)))
    done = sorted(r["id"] for r in finished.rows)
    if done:
        yield from followup_if_settled(d, done, now)
        # Body credentials are kept only until the submission is final (DESIGN.md "Storage").
        yield Q(f"UPDATE jobs SET account = NULL WHERE {d.in_list('submission_id')} AND account IS NOT NULL",
                (d.listed(done),))
    return done


# -- dispatch -------------------------------------------------------------------------------------------


def claim(d: Dialect, owner: str, now: float, limit: int, lease: float, skip: Collection[str]) -> Tx[list[Job]]:
    not_skipped = f"AND NOT ({d.in_list('provider')}) " if skip else ""
    picked = yield Q(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {READY} AND next_attempt_at <= ? "
        f"AND (lease_until IS NULL OR lease_until < ?) {not_skipped}ORDER BY next_attempt_at LIMIT ?{d.skip_locked}",
        (now, now, *([d.listed(sorted(skip))] if skip else []), limit))
    jobs = sorted((job_from_row(r) for r in picked.rows), key=lambda j: (j.next_attempt_at, j.id))
    if jobs:
        yield Q(f"UPDATE jobs SET lease_owner = ?, lease_until = ?, state = ? WHERE {d.in_list('id')}",
                (owner, now + lease, JobState.QUEUED.value, d.listed(j.id for j in jobs)))
    return jobs


def mark_sending(d: Dialect, job_ids: list[str], now: float, owner: str | None) -> Tx[None]:
    held = "" if owner is None else f" AND state = '{JobState.QUEUED}' AND lease_owner = ?"
    marked = yield Q(
        "UPDATE jobs SET state = ?, updated_at = ?, first_attempt_at = COALESCE(first_attempt_at, ?) "
        f"WHERE {d.in_list('id')}{held}",
        (JobState.SENDING.value, now, now, d.listed(job_ids), *(() if owner is None else (owner,))))
    if owner is not None and marked.rowcount != len(set(job_ids)):
        raise LeaseLost("the lease on these jobs was lost; another process sends them")  # rolls back


def record(d: Dialect, updates: list[JobUpdate], now: float, owner: str | None,
           receipts: ReceiptTracking | None = None) -> Tx[list[str]]:
    if owner is not None:
        # Rows locked where others write at once: a node's recover() or claim() cannot take them meanwhile.
        ids = sorted({u.job_id for u in updates})
        held = yield Q(f"SELECT id FROM jobs WHERE {d.in_list('id')} AND lease_owner = ? ORDER BY id{d.row_lock}",
                       (d.listed(ids), owner))
        if len(held.rows) != len(ids):
            raise LeaseLost("these jobs are no longer leased to this owner; its results are refused")
    yield Q("UPDATE jobs SET state = ?, attempts = ?, next_attempt_at = ?, provider_id = ?, code = ?, error = ?, "
            "detail = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
            [(u.state.value, u.attempts, u.next_attempt_at, u.provider_id, u.code, u.error, u.detail, now, u.job_id)
             for u in updates], many=True)
    if receipts is not None:
        yield from await_receipts(d, receipts, [u.job_id for u in updates if u.state is JobState.SENT], now)
    final = sorted({u.job_id for u in updates if u.state.final})
    if not final:
        return []
    owners = yield Q(f"SELECT DISTINCT submission_id FROM jobs WHERE {d.in_list('id')}", (d.listed(final),))
    return (yield from finish_if_final(d, [r["submission_id"] for r in owners.rows], now))


def recover(d: Dialect, idempotent: set[str], now: float,
            owner_dead: Callable[[str], bool] | None) -> Tx[tuple[int, int]]:
    leased = yield Q(
        "SELECT id, submission_id, provider, state, lease_owner, lease_until FROM jobs "
        f"WHERE lease_owner IS NOT NULL AND state IN ('{JobState.QUEUED}', '{JobState.SENDING}'){d.skip_locked}")
    dead_owners: dict[str, bool] = {}

    def dead(owner: str) -> bool:  # asked once per owner, not per job
        if owner not in dead_owners:
            dead_owners[owner] = owner_dead is not None and owner_dead(owner)
        return dead_owners[owner]

    requeued, unknown, released, sids = [], [], [], set()
    for r in leased.rows:
        expired = r["lease_until"] is None or r["lease_until"] < now
        if r["state"] == JobState.SENDING and d.one_host and owner_dead is not None:
            # One host: whether the owner lives is known, and a live one holds the provider's answer and records it
            # as soon as the spool can write again (disk full, lock held). Declaring its request interrupted when the
            # lease ends would turn an accepted SMS into "may have been sent".
            gone = dead(r["lease_owner"])
        else:
            gone = expired or dead(r["lease_owner"])
        if not gone:
            continue
        if r["state"] == JobState.QUEUED:
            released.append(r["id"])
        elif r["provider"] in idempotent:
            requeued.append(r["id"])
        else:
            unknown.append(r["id"])
            sids.add(r["submission_id"])
    if released or requeued:
        yield Q(f"UPDATE jobs SET lease_owner = NULL, lease_until = NULL, state = ? WHERE {d.in_list('id')}",
                (JobState.QUEUED.value, d.listed(released + requeued)))
    if unknown:
        yield Q("UPDATE jobs SET lease_owner = NULL, lease_until = NULL, state = ?, code = 'INTERRUPTED', error = ?, "
                f"updated_at = ? WHERE {d.in_list('id')}",
                (JobState.UNKNOWN.value, INTERRUPTED, now, d.listed(unknown)))
        yield from finish_if_final(d, sids, now)
    return len(requeued), len(unknown)


def expire(d: Dialect, now: float) -> Tx[list[str]]:
    ended = yield Q(
        "UPDATE jobs SET state = ?, updated_at = ?, error = 'not sent within its lifetime' || "
        "CASE WHEN error IS NULL THEN '' ELSE '; the last problem was: ' || error END "
        f"WHERE state IN {READY} AND expires_at > 0 AND expires_at < ? "
        "AND (lease_until IS NULL OR lease_until < ?) RETURNING submission_id",
        (JobState.EXPIRED.value, now, now, now))
    return (yield from finish_if_final(d, {r["submission_id"] for r in ended.rows}, now))


# -- reports --------------------------------------------------------------------------------------------


def jobs_of(submission_id: str) -> Tx[list[Job]]:
    found = yield Q(f"SELECT {JOB_COLUMNS} FROM jobs WHERE submission_id = ? ORDER BY seq", (submission_id,))
    return [job_from_row(r) for r in found.rows]


def load_report(submission_id: str) -> Tx[DueReport | None]:
    found = yield Q("SELECT * FROM submissions WHERE id = ?", (submission_id,))
    if not found.rows:
        return None
    row = found.rows[0]
    return DueReport(submission_from_row(row), (yield from jobs_of(submission_id)), row["report_attempts"])


def report_done(submission_id: str, state: ReportState, next_at: float, owner: str | None) -> Tx[bool]:
    held = "" if owner is None else " AND report_owner = ?"
    done = yield Q(
        "UPDATE submissions SET report_state = ?, report_attempts = report_attempts + 1, report_next_at = ?, "
        f"{_UNLEASE_REPORT} WHERE id = ?{held}",
        (ReportState(state).value, next_at, submission_id, *(() if owner is None else (owner,))))
    return done.rowcount == 1


def lease_submissions(d: Dialect, where: str, order: str, params: tuple[Any, ...], owner: str, now: float,
                      limit: int, lease: float) -> Tx[list[str]]:
    """Lease the submissions matching `where` (those another holder's lease still covers are passed over)."""
    picked = yield Q(
        f"SELECT id, {order} FROM submissions WHERE {where} "
        f"AND (report_lease_until IS NULL OR report_lease_until < ?) ORDER BY {order} LIMIT ?{d.skip_locked}",
        (*params, now, limit))
    ids = [r["id"] for r in sorted(picked.rows, key=lambda r: (r[order], r["id"]))]
    if ids:
        yield Q(f"UPDATE submissions SET report_owner = ?, report_lease_until = ? WHERE {d.in_list('id')}",
                (owner, now + lease, d.listed(ids)))
    return ids


def claim_delay_notices(d: Dialect, owner: str, older_than: float, now: float, limit: int,
                        lease: float) -> Tx[list[str]]:
    # report_next_at is free while a submission is `waiting`: it holds the notice's next try.
    return (yield from lease_submissions(
        d, f"{_is(ReportState.WAITING)} AND NOT delay_notified AND report_to IS NOT NULL AND received_at <= ? "
        "AND report_next_at <= ?", "received_at", (older_than, now), owner, now, limit, lease))


def release_dead_reports(d: Dialect, owner_dead: Callable[[str], bool]) -> Tx[int]:
    owners = yield Q("SELECT DISTINCT report_owner FROM submissions WHERE report_owner IS NOT NULL")
    dead = [r["report_owner"] for r in owners.rows if owner_dead(r["report_owner"])]
    if not dead:
        return 0
    released = yield Q(f"UPDATE submissions SET {_UNLEASE_REPORT} WHERE {d.in_list('report_owner')}",
                       (d.listed(dead),))
    return released.rowcount


def release_reports(d: Dialect, submission_ids: list[str], owner: str) -> Tx[None]:
    yield Q(f"UPDATE submissions SET {_UNLEASE_REPORT} WHERE {d.in_list('id')} AND report_owner = ?",
            (d.listed(submission_ids), owner))


def delay_notice_done(submission_id: str, owner: str, notified: bool, next_at: float) -> Tx[None]:
    # A submission that became final meanwhile got its report_next_at from finish_if_final: keep it.
    yield Q(f"UPDATE submissions SET delay_notified = ?, report_next_at = CASE WHEN {_is(ReportState.WAITING)} "
            f"THEN ? ELSE report_next_at END, {_UNLEASE_REPORT} WHERE id = ? AND report_owner = ?",
            (notified, next_at, submission_id, owner))


def any_held(report_to: str) -> Tx[bool]:
    found = yield Q(f"SELECT 1 AS one FROM submissions WHERE {_is(ReportState.SUPPRESSED)} AND report_to = ? LIMIT 1",
                    (report_to,))
    return bool(found.rows)


def take_held(d: Dialect, report_to: str, owner: str, now: float, lease: float) -> Tx[list[HeldReport]]:
    ids = yield from lease_submissions(d, f"{_is(ReportState.SUPPRESSED)} AND report_to = ?", "received_at",
                                       (report_to,), owner, now, 1_000_000, lease)
    if not ids:
        return []
    counted = yield Q(
        f"SELECT submission_id, COUNT(*) AS total, SUM(CASE WHEN state = '{JobState.SENT}' THEN 1 ELSE 0 END) AS sent "
        f"FROM jobs WHERE {d.in_list('submission_id')} GROUP BY submission_id", (d.listed(ids),))
    counts = {r["submission_id"]: (int(r["sent"]), int(r["total"])) for r in counted.rows}
    return [HeldReport(i, *counts.get(i, (0, 0))) for i in ids]


def settle_held(d: Dialect, submission_ids: list[str], owner: str, summarised: bool) -> Tx[None]:
    state = ReportState.SUMMARISED if summarised else ReportState.SUPPRESSED
    yield Q(f"UPDATE submissions SET report_state = ?, {_UNLEASE_REPORT} WHERE {d.in_list('id')} "
            f"AND report_owner = ? AND {_is(ReportState.SUPPRESSED)}", (state.value, d.listed(submission_ids), owner))


# -- operator -------------------------------------------------------------------------------------------


def queue_list(d: Dialect, limit: int, job_states: Collection[str] | None = None) -> Tx[list[QueueEntry]]:
    """Submissions oldest first: by default those still sending or owing a report; with `job_states`, those having
    an SMS in one of them (empty: every submission the spool holds)."""
    columns = "SELECT id, received_at, envelope_from, route, report_state FROM submissions"
    if job_states is None:
        subs = yield Q(f"{columns} WHERE report_state IN {_states(ReportState.WAITING, ReportState.PENDING)} "
                       "ORDER BY received_at LIMIT ?", (limit,))
    elif not job_states:
        subs = yield Q(f"{columns} ORDER BY received_at LIMIT ?", (limit,))
    else:
        subs = yield Q(f"{columns} WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.submission_id = submissions.id AND "
                       f"j.state IN {_states(*sorted(job_states))}) ORDER BY received_at LIMIT ?", (limit,))
    states: dict[str, dict[str, int]] = {s["id"]: {} for s in subs.rows}
    if states:
        counted = yield Q(f"SELECT submission_id, state, COUNT(*) AS n FROM jobs WHERE {d.in_list('submission_id')} "
                          "GROUP BY submission_id, state", (d.listed(states),))
        for r in counted.rows:
            states[r["submission_id"]][r["state"]] = int(r["n"])
    return [QueueEntry(s["id"], s["received_at"], s["envelope_from"], s["route"], sum(states[s["id"]].values()),
                       states[s["id"]], ReportState(s["report_state"])) for s in subs.rows]


def get(submission_id: str) -> Tx[tuple[Submission, list[Job]] | None]:
    found = yield Q("SELECT * FROM submissions WHERE id = ?", (submission_id,))
    if not found.rows:
        return None
    return submission_from_row(found.rows[0]), (yield from jobs_of(submission_id))


def retry_now(submission_id: str, now: float) -> Tx[int]:
    moved = yield Q(f"UPDATE jobs SET next_attempt_at = ? WHERE submission_id = ? AND state IN {READY}",
                    (now, submission_id))
    return moved.rowcount


def cancel(d: Dialect, submission_id: str, now: float) -> Tx[int]:
    cancelled = yield Q(
        "UPDATE jobs SET state = ?, error = 'cancelled by the operator', lease_owner = NULL, lease_until = NULL, "
        f"updated_at = ? WHERE submission_id = ? AND state IN {READY}",
        (JobState.CANCELLED.value, now, submission_id))
    yield from finish_if_final(d, [submission_id], now)
    return cancelled.rowcount


def counts() -> Tx[dict[str, int]]:
    found = yield Q("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
    return {r["state"]: int(r["n"]) for r in found.rows}


def live_counts() -> Tx[dict[str, int]]:
    # Through the partial index jobs_open: a spool holding a million finished jobs answers as fast as an empty one.
    found = yield Q(f"SELECT state, COUNT(*) AS n FROM jobs WHERE state IN {OPEN} GROUP BY state")
    return {r["state"]: int(r["n"]) for r in found.rows}


# -- retention --------------------------------------------------------------------------------------------

# A submission may go once it is final and its report settled (delivered, skipped, summarised, dropped, or none
# wanted): `waiting` still has open SMS, `pending` and `suppressed` still owe a report or a summary line. The terms
# repeat the partial index submissions_settled's (spool.schema), so the oldest are found without a scan.
SETTLED = _states(ReportState.NONE, ReportState.SENT, ReportState.SKIPPED, ReportState.SUMMARISED,
                  ReportState.DROPPED)
_PURGEABLE = (f"report_state IN {SETTLED} AND finished_at < ? AND report_owner IS NULL "
              "AND (followup_state IS NULL OR followup_state NOT IN ('waiting', 'pending'))"  # no follow-up owed
              # nor a reply to it still to be mailed (its mail threads under this submission; replies_of_submission)
              " AND NOT EXISTS (SELECT 1 FROM replies r WHERE r.submission_id = submissions.id "
              "AND r.state = 'pending')")


def purge_counts(before: float) -> Tx[tuple[int, int]]:
    """What `purge` would remove: (submissions, jobs) settled before `before`."""
    subs = yield Q(f"SELECT COUNT(*) AS n FROM submissions WHERE {_PURGEABLE}", (before,))
    jobs = yield Q(f"SELECT COUNT(*) AS n FROM jobs WHERE submission_id IN (SELECT id FROM submissions WHERE "
                   f"{_PURGEABLE})", (before,))
    return int(subs.rows[0]["n"]), int(jobs.rows[0]["n"])


def purge(d: Dialect, before: float, limit: int) -> Tx[tuple[int, int]]:
    """One small batch of retention: at most `limit` jobs of the oldest settled submissions, then those submissions
    left without jobs. Returns (submissions, jobs) removed; (0, 0) when nothing is left to do.

    Jobs go first and in bounded numbers (a CSV submission has 100,000): a batch never holds the write lock long."""
    picked = yield Q(f"SELECT id FROM submissions WHERE {_PURGEABLE} ORDER BY finished_at LIMIT ?{d.row_lock}",
                     (before, max(1, limit // 10)))
    ids = [r["id"] for r in picked.rows]
    if not ids:
        return 0, 0
    jobs = yield Q(f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {d.in_list('submission_id')} LIMIT ?)",
                   (d.listed(ids), limit))
    subs = yield Q(f"DELETE FROM submissions WHERE {d.in_list('id')} AND NOT EXISTS "
                   "(SELECT 1 FROM jobs j WHERE j.submission_id = submissions.id)", (d.listed(ids),))
    return subs.rowcount, jobs.rowcount


def purge_memory(dedupe_before: float, quota_before: float, limit: int) -> Tx[int]:
    """One batch of dedupe keys past `server.dedupe_window` and quota charges past every quota's window."""
    keys = yield Q("DELETE FROM dedupe WHERE key IN (SELECT key FROM dedupe WHERE created_at < ? LIMIT ?)",
                   (dedupe_before, limit))
    charges = yield Q("DELETE FROM quota_charges WHERE (key, at) IN "
                      "(SELECT key, at FROM quota_charges WHERE at <= ? LIMIT ?)", (quota_before, limit))
    return keys.rowcount + charges.rowcount


def delete_final(submission_id: str) -> Tx[int | None]:
    """Remove one final submission (`queue delete`): its jobs count, or None when it is not final (it has open SMS:
    `cancel` it first). Its dedupe keys stay until their window ends, so the same mail is still a duplicate."""
    found = yield Q("SELECT report_state FROM submissions WHERE id = ?", (submission_id,))
    if not found.rows or found.rows[0]["report_state"] == ReportState.WAITING:
        return None
    jobs = yield Q("DELETE FROM jobs WHERE submission_id = ?", (submission_id,))
    yield Q("DELETE FROM submissions WHERE id = ?", (submission_id,))
    return jobs.rowcount


def retry(submission_id: str, now: float, force: bool) -> Tx[int]:
    """Make waiting SMS due now: retries only, unless `force`, which also sends scheduled ones before their
    sendtime. A job held by a sender's lease is left to it."""
    states = READY if force else _states(JobState.QUEUED)
    moved = yield Q(f"UPDATE jobs SET next_attempt_at = ?, state = CASE WHEN state = '{JobState.SCHEDULED}' "
                    f"THEN '{JobState.QUEUED}' ELSE state END WHERE submission_id = ? AND state IN {states} "
                    "AND next_attempt_at > ? AND (lease_until IS NULL OR lease_until < ?)",
                    (now, submission_id, now, now))
    return moved.rowcount


# -- delivery receipts ----------------------------------------------------------------------------------
# An accepted job of a provider that offers receipts awaits one (`receipt_state` 'pending') until it is settled
# once; its submission's follow-up mail is `waiting` meanwhile and becomes `pending` (due) when the submission is
# final and none of its jobs awaits a receipt any more. Follow-ups are claimed like reports (owner + lease), and
# only after the outcome report is settled, so the follow-up never arrives before the mail it answers.

_AWAITING = "receipt_state = 'pending'"  # repeats the partial indexes jobs_receipt_due and jobs_receipt_id
_AWAITING_COLUMNS = ("id, submission_id, provider, provider_id, number, account, accepted_at, receipt_polls, "
                     "receipt_next_at")
_UNLEASE_FOLLOWUP = "followup_owner = NULL, followup_lease_until = NULL"
FOLLOWUP_OPEN = ("waiting", "pending")  # a follow-up still owed: retention keeps the submission


@dataclass(frozen=True)
class ReceiptTracking:
    """Which accepted jobs await a receipt: those of `providers` (they offer one), first asked about `first_poll`
    seconds after acceptance; `owner` names the poller's claims for the operator."""

    providers: frozenset[str]
    first_poll: float
    owner: str = ""


def await_receipts(d: Dialect, tracking: ReceiptTracking, job_ids: list[str], now: float) -> Tx[None]:
    """Accepted jobs start awaiting their receipt. Not a job sent with credentials from the mail body: those are
    deleted when the submission is final (DESIGN.md "Storage"), and a status request needs them."""
    if not job_ids or not tracking.providers:
        return
    marked = yield Q(
        f"UPDATE jobs SET receipt_state = 'pending', accepted_at = ?, receipt_next_at = ?, receipt_polls = 0 "
        f"WHERE {d.in_list('id')} AND state = '{JobState.SENT}' AND provider_id IS NOT NULL AND account IS NULL "
        f"AND {d.in_list('provider')} AND receipt_state IS NULL RETURNING submission_id",
        (now, now + tracking.first_poll, d.listed(job_ids), d.listed(sorted(tracking.providers))))
    sids = sorted({r["submission_id"] for r in marked.rows})
    if sids:
        yield Q(f"UPDATE submissions SET followup_state = 'waiting' WHERE {d.in_list('id')} "
                "AND followup_state IS NULL", (d.listed(sids),))


def followup_if_settled(d: Dialect, submission_ids: list[str], now: float) -> Tx[None]:
    """Final submissions whose jobs await no receipt any more owe their follow-up now (the caller holds their rows'
    locks where nodes write at once, so two last settles cannot both miss it)."""
    yield Q(f"UPDATE submissions SET followup_state = 'pending', followup_next_at = ? WHERE {d.in_list('id')} "
            f"AND followup_state = 'waiting' AND report_state <> '{ReportState.WAITING}' AND NOT EXISTS "
            f"(SELECT 1 FROM jobs j WHERE j.submission_id = submissions.id AND j.{_AWAITING})",
            (now, d.listed(submission_ids)))


def _awaiting_from_row(r: Row) -> Awaiting:
    account = json.loads(r["account"]) if r["account"] else None
    return Awaiting(job_id=r["id"], submission_id=r["submission_id"], provider=r["provider"],
                    provider_id=r["provider_id"], number=r["number"], accepted_at=r["accepted_at"] or 0.0,
                    polls=r["receipt_polls"], next_poll_at=r["receipt_next_at"] or 0.0,
                    account=Account.from_dict(account))


def claim_due(d: Dialect, owner: str, now: float, limit: int, lease: float) -> Tx[list[Awaiting]]:
    picked = yield Q(
        f"SELECT {_AWAITING_COLUMNS} FROM jobs WHERE {_AWAITING} AND receipt_next_at <= ? "
        f"AND (receipt_lease_until IS NULL OR receipt_lease_until < ?) ORDER BY receipt_next_at LIMIT ?"
        f"{d.skip_locked}", (now, now, limit))
    due = sorted((_awaiting_from_row(r) for r in picked.rows), key=lambda a: (a.next_poll_at, a.job_id))
    if due:
        yield Q(f"UPDATE jobs SET receipt_owner = ?, receipt_lease_until = ? WHERE {d.in_list('id')}",
                (owner, now + lease, d.listed(a.job_id for a in due)))
    return due


def poll_later(job_id: str, polls: int, next_poll_at: float) -> Tx[None]:
    yield Q("UPDATE jobs SET receipt_polls = ?, receipt_next_at = ?, receipt_owner = NULL, receipt_lease_until = NULL "
            f"WHERE id = ? AND {_AWAITING}", (polls, next_poll_at, job_id))


def awaiting(provider: str, provider_id: str) -> Tx[list[Awaiting]]:
    found = yield Q(f"SELECT {_AWAITING_COLUMNS} FROM jobs WHERE provider = ? AND provider_id = ? AND {_AWAITING}",
                    (provider, provider_id))
    return [_awaiting_from_row(r) for r in found.rows]


def settle(d: Dialect, job_id: str, final: Settled, now: float) -> Tx[bool]:
    """The first final answer for a job wins; the second (push after poll, another node) changes nothing."""
    done = yield Q(
        "UPDATE jobs SET receipt_state = ?, receipt_code = ?, receipt_why = ?, receipt_at = ?, receipt_via = ?, "
        f"receipt_owner = NULL, receipt_lease_until = NULL WHERE id = ? AND {_AWAITING} RETURNING submission_id",
        (ReceiptState(final.state).value, final.code, final.why, final.at, final.via, job_id))
    if not done.rows:
        return False
    sid = done.rows[0]["submission_id"]
    if d.row_lock:  # the submission's last two receipts settled at once on two nodes: one of them sees the other
        yield Q(f"SELECT id FROM submissions WHERE id = ?{d.row_lock}", (sid,))
    yield from followup_if_settled(d, [sid], now)
    return True


def claim_followups(d: Dialect, owner: str, now: float, limit: int, lease: float) -> Tx[list[str]]:
    """Due follow-ups whose outcome report is settled (delivered, skipped, held or dropped: not still owed)."""
    picked = yield Q(
        "SELECT id, followup_next_at FROM submissions WHERE followup_state = 'pending' AND followup_next_at <= ? "
        f"AND report_state NOT IN {_states(ReportState.WAITING, ReportState.PENDING)} "
        "AND (followup_lease_until IS NULL OR followup_lease_until < ?) ORDER BY followup_next_at LIMIT ?"
        f"{d.skip_locked}", (now, now, limit))
    ids = [r["id"] for r in sorted(picked.rows, key=lambda r: (r["followup_next_at"], r["id"]))]
    if ids:
        yield Q(f"UPDATE submissions SET followup_owner = ?, followup_lease_until = ? WHERE {d.in_list('id')}",
                (owner, now + lease, d.listed(ids)))
    return ids


def load_followup(submission_id: str) -> Tx[DueFollowup | None]:
    found = yield Q("SELECT * FROM submissions WHERE id = ?", (submission_id,))
    if not found.rows:
        return None
    row = found.rows[0]
    jobs = yield from jobs_of(submission_id)
    settled = yield Q("SELECT id, receipt_state, receipt_code, receipt_why, receipt_at, receipt_via FROM jobs "
                      "WHERE submission_id = ? AND receipt_state IS NOT NULL AND receipt_state <> 'pending'",
                      (submission_id,))
    receipts = {r["id"]: Settled(ReceiptState(r["receipt_state"]), r["receipt_code"], r["receipt_why"] or "",
                                 r["receipt_at"] or 0.0, r["receipt_via"] or "") for r in settled.rows}
    return DueFollowup(submission_from_row(row), jobs, receipts, row["followup_attempts"],
                       ReportState(row["report_state"]))


def followup_done(submission_id: str, state: str, next_at: float, owner: str) -> Tx[bool]:
    """`pending` = try again at next_at; `sent`, `skipped` or `dropped` settle it. Only the holder's call counts."""
    done = yield Q(
        "UPDATE submissions SET followup_state = ?, followup_attempts = followup_attempts + 1, followup_next_at = ?, "
        f"{_UNLEASE_FOLLOWUP} WHERE id = ? AND followup_owner = ? AND followup_state = 'pending'",
        (state, next_at, submission_id, owner))
    return done.rowcount == 1


def release_followups(d: Dialect, submission_ids: list[str], owner: str) -> Tx[None]:
    yield Q(f"UPDATE submissions SET {_UNLEASE_FOLLOWUP} WHERE {d.in_list('id')} AND followup_owner = ?",
            (d.listed(submission_ids), owner))


def release_dead_receipts(d: Dialect, owner_dead: Callable[[str], bool]) -> Tx[int]:
    """Poll claims and follow-up leases held by processes that died (a killed worker on this host): free at once,
    not after their lease. Only dead owners: a live one may still record its answer."""
    owners = yield Q(f"SELECT DISTINCT receipt_owner AS owner FROM jobs WHERE {_AWAITING} "
                     "AND receipt_owner IS NOT NULL UNION SELECT DISTINCT followup_owner AS owner FROM submissions "
                     "WHERE followup_owner IS NOT NULL")
    dead = sorted({r["owner"] for r in owners.rows if owner_dead(r["owner"])})
    if not dead:
        return 0
    polls = yield Q(f"UPDATE jobs SET receipt_owner = NULL, receipt_lease_until = NULL WHERE {_AWAITING} "
                    f"AND {d.in_list('receipt_owner')}", (d.listed(dead),))
    mails = yield Q(f"UPDATE submissions SET {_UNLEASE_FOLLOWUP} WHERE {d.in_list('followup_owner')}",
                    (d.listed(dead),))
    return polls.rowcount + mails.rowcount


def receipt_views(submission_id: str) -> Tx[dict[str, ReceiptView]]:
    found = yield Q("SELECT id, receipt_state, receipt_code, receipt_why, receipt_at, receipt_via, receipt_polls, "
                    "receipt_next_at FROM jobs WHERE submission_id = ? AND receipt_state IS NOT NULL", (submission_id,))
    return {r["id"]: ReceiptView(r["receipt_state"], r["receipt_code"], r["receipt_why"], r["receipt_at"],
                                 r["receipt_via"], r["receipt_polls"],
                                 r["receipt_next_at"] if r["receipt_state"] == "pending" else None)
            for r in found.rows}


def receipt_counts() -> Tx[dict[str, int]]:
    found = yield Q("SELECT receipt_state, COUNT(*) AS n FROM jobs WHERE receipt_state IS NOT NULL "
                    "GROUP BY receipt_state")
    return {r["receipt_state"]: int(r["n"]) for r in found.rows}


def _release_dead(d: Dialect, owner_dead: Callable[[str], bool]) -> Tx[int]:
    receipts = yield from release_dead_receipts(d, owner_dead)
    return receipts + (yield from replies.release_dead_replies(d, owner_dead))


class SpoolCore:
    """The `Spool` protocol's transitions; a backend adds connection handling (`_write`, `_read`, open/close)."""

    dialect: Dialect
    _last_purge = 0.0
    receipt_tracking: ReceiptTracking | None = None  # set by track_receipts(); None: no job awaits a receipt

    async def _write(self, tx: Callable[[], Tx[T]]) -> T:
        """Run a fresh `tx()` in one durable write transaction (again from the start if the backend retries)."""
        raise NotImplementedError

    async def _read(self, tx: Callable[[], Tx[T]]) -> T:
        raise NotImplementedError

    async def _commit_write(self, tx: Callable[[], Tx[CommitResult]]) -> CommitResult:
        """The transaction a `commit()` runs in (a backend may gather commits into groups)."""
        return await self._write(tx)

    async def commit(self, submission: Submission, dedupe_keys: list[str], window: float,
                     quota: Sequence[quotas.QuotaCharge] = ()) -> CommitResult:
        if len(dedupe_keys) != len(submission.jobs):
            raise ValueError("one dedupe key per job")
        purge = time.monotonic() - self._last_purge > DEDUPE_PURGE_EVERY
        if purge:
            self._last_purge = time.monotonic()
        given_id, jobs, d = submission.id, list(submission.jobs), self.dialect
        return await self._commit_write(
            lambda: commit(d, submission, given_id, jobs, dedupe_keys, window, quota, purge))

    async def quota_used(self, key: str, since: float) -> int:
        return await self._read(lambda: quota_used(key, since))

    async def claim(
        self, owner: str, now: float, limit: int, lease: float, skip_providers: Collection[str] = ()
    ) -> list[Job]:
        return await self._write(lambda: claim(self.dialect, owner, now, limit, lease, skip_providers))

    async def mark_sending(self, job_ids: list[str], now: float, owner: str | None = None) -> None:
        await self._write(lambda: mark_sending(self.dialect, job_ids, now, owner))

    async def record(self, updates: list[JobUpdate], now: float, owner: str | None = None) -> list[str]:
        return await self._write(lambda: record(self.dialect, updates, now, owner, self.receipt_tracking))

    async def recover(
        self, idempotent_providers: set[str], now: float, owner_dead: Callable[[str], bool] | None = None
    ) -> tuple[int, int]:
        return await self._write(lambda: recover(self.dialect, idempotent_providers, now, owner_dead))

    async def expire(self, now: float) -> list[str]:
        return await self._write(lambda: expire(self.dialect, now))

    async def report_done(
        self, submission_id: str, state: ReportState, next_at: float, now: float, owner: str | None = None
    ) -> bool:
        return await self._write(lambda: report_done(submission_id, state, next_at, owner))

    async def claim_reports(self, owner: str, now: float, limit: int, lease: float) -> list[str]:
        return await self._write(lambda: lease_submissions(
            self.dialect, f"{_is(ReportState.PENDING)} AND report_next_at <= ?", "report_next_at", (now,),
            owner, now, limit, lease))

    async def claim_delay_notices(
        self, owner: str, older_than: float, now: float, limit: int, lease: float
    ) -> list[str]:
        return await self._write(lambda: claim_delay_notices(self.dialect, owner, older_than, now, limit, lease))

    async def load_report(self, submission_id: str) -> DueReport | None:
        return await self._read(lambda: load_report(submission_id))

    async def release_dead_reports(self, owner_dead: Callable[[str], bool]) -> int:
        return await self._write(lambda: release_dead_reports(self.dialect, owner_dead))

    async def release_reports(self, submission_ids: list[str], owner: str) -> None:
        await self._write(lambda: release_reports(self.dialect, submission_ids, owner))

    async def delay_notice_done(self, submission_id: str, owner: str, notified: bool, next_at: float) -> None:
        await self._write(lambda: delay_notice_done(submission_id, owner, notified, next_at))

    async def take_held(self, report_to: str, owner: str, now: float, lease: float) -> list[HeldReport]:
        # Asked for nearly every report and nearly always empty: a read first spares a write transaction (an fsync).
        if not await self._read(lambda: any_held(report_to)):
            return []
        return await self._write(lambda: take_held(self.dialect, report_to, owner, now, lease))

    async def settle_held(self, submission_ids: list[str], owner: str, summarised: bool) -> None:
        await self._write(lambda: settle_held(self.dialect, submission_ids, owner, summarised))

    async def queue_list(self, limit: int, job_states: Collection[str] | None = None) -> list[QueueEntry]:
        return await self._read(lambda: queue_list(self.dialect, limit, job_states))

    async def get(self, submission_id: str) -> tuple[Submission, list[Job]] | None:
        return await self._read(lambda: get(submission_id))

    async def retry_now(self, submission_id: str, now: float) -> int:
        return await self._write(lambda: retry_now(submission_id, now))

    async def cancel(self, submission_id: str, now: float) -> int:
        return await self._write(lambda: cancel(self.dialect, submission_id, now))

    async def counts(self) -> dict[str, int]:
        return await self._read(counts)

    async def live_counts(self) -> dict[str, int]:
        return await self._read(live_counts)

    async def purge(self, before: float, limit: int = 500) -> tuple[int, int]:
        return await self._write(lambda: purge(self.dialect, before, limit))

    async def purge_counts(self, before: float) -> tuple[int, int]:
        return await self._read(lambda: purge_counts(before))

    async def purge_memory(self, dedupe_before: float, quota_before: float, limit: int = 500) -> int:
        return await self._write(lambda: purge_memory(dedupe_before, quota_before, limit))

    async def delete_final(self, submission_id: str) -> int | None:
        return await self._write(lambda: delete_final(submission_id))

    async def retry(self, submission_id: str, now: float, force: bool = False) -> int:
        return await self._write(lambda: retry(submission_id, now, force))

    # -- delivery receipts (dispatch.receipt_store.ReceiptStore, and the reporter's follow-ups) --

    def track_receipts(self, providers: Collection[str], first_poll: float, owner: str = "") -> None:
        self.receipt_tracking = ReceiptTracking(frozenset(providers), first_poll, owner)

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Awaiting]:
        owner = self.receipt_tracking.owner if self.receipt_tracking else ""
        return await self._write(lambda: claim_due(self.dialect, owner, now, limit, lease))

    async def poll_later(self, job_id: str, polls: int, next_poll_at: float) -> None:
        await self._write(lambda: poll_later(job_id, polls, next_poll_at))

    async def awaiting(self, provider: str, provider_id: str) -> list[Awaiting]:
        return await self._read(lambda: awaiting(provider, provider_id))

    async def settle(self, job_id: str, final: Settled) -> bool:
        now = time.time()
        return await self._write(lambda: settle(self.dialect, job_id, final, now))

    async def claim_followups(self, owner: str, now: float, limit: int, lease: float) -> list[str]:
        return await self._write(lambda: claim_followups(self.dialect, owner, now, limit, lease))

    async def load_followup(self, submission_id: str) -> DueFollowup | None:
        return await self._read(lambda: load_followup(submission_id))

    async def followup_done(self, submission_id: str, state: str, next_at: float, owner: str) -> bool:
        return await self._write(lambda: followup_done(submission_id, state, next_at, owner))

    async def release_followups(self, submission_ids: list[str], owner: str) -> None:
        await self._write(lambda: release_followups(self.dialect, submission_ids, owner))

    async def receipt_views(self, submission_id: str) -> dict[str, ReceiptView]:
        return await self._read(lambda: receipt_views(submission_id))

    async def release_dead_receipts(self, owner_dead: Callable[[str], bool]) -> int:
        # The reporter's dead-owner sweep frees the reply poller's and reply mailer's claims too (issue 17).
        return await self._write(lambda: _release_dead(self.dialect, owner_dead))

    async def receipt_counts(self) -> dict[str, int]:
        return await self._read(receipt_counts)

    # -- two-way replies (dispatch.reply_store.ReplyStore; transitions in spool.replies) --

    async def claim_reply_poll(self, provider: str, owner: str, now: float, lease: float) -> tuple[bool, str | None]:
        return await self._write(lambda: replies.claim_reply_poll(provider, owner, now, lease))

    async def store_replies(
        self,
        provider: str,
        found: Sequence[InboundSms],
        rules: ReplyRules,
        now: float,
        *,
        cursor: str | None = None,
        owner: str | None = None,
        next_poll_at: float | None = None,
    ) -> StoredReplies:
        return await self._write(
            lambda: replies.store_replies(self.dialect, provider, found, rules, now, cursor, owner, next_poll_at))

    async def release_reply_poll(self, provider: str, owner: str, next_poll_at: float) -> None:
        await self._write(lambda: replies.release_reply_poll(provider, owner, next_poll_at))

    async def claim_replies(self, owner: str, now: float, limit: int, lease: float) -> list[DueReply]:
        return await self._write(lambda: replies.claim_replies(self.dialect, owner, now, limit, lease))

    async def reply_done(self, reply_id: str, owner: str, state: ReplyState, next_at: float, why: str = "") -> bool:
        return await self._write(lambda: replies.reply_done(reply_id, owner, state, next_at, why))

    async def reply_counts(self) -> dict[str, int]:
        return await self._read(replies.reply_counts)

    async def reply_views(self, submission_id: str) -> list[ReplyView]:
        return await self._read(lambda: replies.reply_views(submission_id))

    async def purge_replies(self, before: float, limit: int = 500) -> int:
        return await self._write(lambda: replies.purge_replies(self.dialect, before, limit))
