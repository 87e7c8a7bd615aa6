"""Two-way replies in the spool (issue 17): the transitions behind `dispatch.reply_store.ReplyStore`, written once
for both backends (`spool.core.SpoolCore` runs them), on migration 10's `replies` and `reply_polls` tables.

A reply is stored once per (provider, provider_ref) — `INSERT … ON CONFLICT DO NOTHING`, so two nodes, a push and
a poll, or a fetch repeated after a crash give one row — and the same transaction decides where it goes
(`decide`): tied to an SMS mail2sms sent (the provider's link, else the number), to that submission's
`report_to`; tied to nothing, or to a sender who may not be mailed, to `replies.unmatched_to`, else DROPPED; over
the per-number rate, THROTTLED. A poll's cursor moves and its claim ends in that same transaction, so the cursor
never passes a reply that is not stored.

Never log here (a reply carries a phone number and a text), and never load a job's account: a reply's mail never
needs the credentials its SMS was sent with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mail2sms.model import InboundSms, Job, ReplyMatch, ReplyState, Submission
from mail2sms.spool.base import DueReply, ReplyRules, ReplyView, StoredReplies
from mail2sms.spool.dialect import Dialect
from mail2sms.spool.ids import new_id
from mail2sms.spool.rows import Row, job_from_row, submission_from_row
from mail2sms.spool.tx import Q, Tx

HOUR = 3600.0  # the span `replies.per_number_per_hour` counts over
# The columns jobs are loaded with for a reply's mail: the account is never read (NULL in its place).
_JOB_COLUMNS = (
    'id, submission_id, number, text, provider, sender, NULL AS account, options, "row", idempotency_key, state, '
    "attempts, next_attempt_at, expires_at, provider_id, code, error, parts, encoding, notes, detail, first_attempt_at"
)
# Repeat the partial indexes' terms (spool.schema migration 10), so the queries use them.
_PENDING = "state = 'pending'"
_COUNTED = "state IN ('pending', 'mailed')"
_SETTLED = "state IN ('mailed', 'dropped', 'throttled')"
_SENT_JOB = "j.state = 'sent'"
_UNLEASE = "owner = NULL, lease_until = NULL"
_INSERT = (
    'INSERT INTO replies (id, provider, provider_ref, number, text, received_at, fetched_at, in_reply_to, "match", '
    "job_id, submission_id, mail_to, state, why, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (provider, provider_ref) DO NOTHING RETURNING id"
)

NO_MATCH = "tied to no SMS mail2sms sent"
NO_UNMATCHED_TO = "replies.unmatched_to is not set"


@dataclass(frozen=True)
class Decision:
    """Where one reply goes, decided in the transaction that stores it."""

    match: ReplyMatch
    state: ReplyState
    mail_to: str | None
    why: str
    job_id: str | None = None
    submission_id: str | None = None


def sender_barred(suppressed: str | None) -> str:
    return f"its SMS's sender may not be mailed ({suppressed or 'no report address'})"


def _matched(d: Dialect, provider: str, reply: InboundSms, since: float) -> Tx[tuple[ReplyMatch, Row | None]]:
    """The SMS `reply` answers. A link given names it (or nothing: the link says it answers an SMS mail2sms did
    not send, so the number is never tried instead); without one, the newest SMS of this provider to this number
    in the window, when every such SMS came from one sender who may be mailed (two senders: nobody can tell whose
    it is)."""
    columns = "SELECT j.id, j.submission_id, s.report_to, s.report_suppressed FROM jobs j JOIN submissions s ON "
    newest = " ORDER BY j.updated_at DESC, j.id DESC LIMIT 1"
    if reply.in_reply_to:
        found = yield Q(
            f"{columns}s.id = j.submission_id WHERE j.provider = ? AND j.provider_id = ? AND j.number = ? "
            f"AND {_SENT_JOB} AND j.updated_at >= ?{newest}",
            (provider, reply.in_reply_to, reply.number, since),
        )
        return (ReplyMatch.LINKED, found.rows[0]) if found.rows else (ReplyMatch.NONE, None)
    to_number = f"s.id = j.submission_id WHERE j.provider = ? AND j.number = ? AND {_SENT_JOB} AND j.updated_at >= ?"
    found = yield Q(f"{columns}{to_number}{newest}", (provider, reply.number, since))
    if not found.rows or found.rows[0]["report_to"] is None:
        return ReplyMatch.NONE, None
    other = yield Q(
        f"SELECT 1 AS one FROM jobs j JOIN submissions s ON {to_number} "
        "AND (s.report_to IS NULL OR s.report_to <> ?) LIMIT 1",
        (provider, reply.number, since, found.rows[0]["report_to"]),
    )
    return (ReplyMatch.NONE, None) if other.rows else (ReplyMatch.NUMBER, found.rows[0])


def decide(d: Dialect, provider: str, reply: InboundSms, rules: ReplyRules, now: float) -> Tx[Decision]:
    """Match, mail destination and throttle for one reply (replies.md section 3), in the storing transaction."""
    match, row = yield from _matched(d, provider, reply, now - rules.match_window)
    job_id = row["id"] if row is not None else None
    sid = row["submission_id"] if row is not None else None
    report_to = row["report_to"] if row is not None else None
    if match is not ReplyMatch.NONE and report_to:
        mail_to, why = report_to, ""
    else:
        barred = NO_MATCH if row is None else sender_barred(row["report_suppressed"])
        if not rules.unmatched_to:
            return Decision(match, ReplyState.DROPPED, None, f"{barred} and {NO_UNMATCHED_TO}", job_id, sid)
        mail_to, why = rules.unmatched_to, f"{barred}: mailed to replies.unmatched_to"
    counted = yield Q(
        f"SELECT COUNT(*) AS n FROM replies WHERE number = ? AND {_COUNTED} AND fetched_at >= ?",
        (reply.number, now - HOUR),
    )
    if int(counted.rows[0]["n"]) >= rules.per_number_per_hour:
        why = (
            f"{rules.per_number_per_hour} replies from this number within the hour were already mailed or are "
            "being mailed (replies.per_number_per_hour): kept, not mailed"
        )
        return Decision(match, ReplyState.THROTTLED, mail_to, why, job_id, sid)
    return Decision(match, ReplyState.PENDING, mail_to, why, job_id, sid)


def store_replies(
    d: Dialect,
    provider: str,
    found: Sequence[InboundSms],
    rules: ReplyRules,
    now: float,
    cursor: str | None,
    owner: str | None,
    next_poll_at: float | None,
) -> Tx[StoredReplies]:
    """Store the replies new to the spool, each with its decision; with `owner`, save the cursor, set the next
    poll turn and end the claim — one transaction."""
    fresh: dict[str, InboundSms] = {}
    for reply in found:
        fresh.setdefault(reply.provider_ref, reply)
    if fresh:
        known = yield Q(
            f"SELECT provider_ref FROM replies WHERE provider = ? AND {d.in_list('provider_ref')}",
            (provider, d.listed(fresh)),
        )
        for r in known.rows:  # fetched again (a crash before the provider's "mark read"): decided once, long ago
            fresh.pop(r["provider_ref"], None)
    lock = d.key_lock()
    if lock is not None:
        # Two nodes storing replies of one number at once count them in turn (in number order: no deadlock).
        for number in sorted({r.number for r in fresh.values()}):
            yield Q(lock, (f"reply-number:{number}",))
    states: dict[str, ReplyState] = {}
    whys: dict[str, str] = {}
    for ref, reply in fresh.items():
        decision = yield from decide(d, provider, reply, rules, now)
        stored = yield Q(
            _INSERT,
            (
                new_id(),
                provider,
                ref,
                reply.number,
                reply.text,
                reply.received_at,
                now,
                reply.in_reply_to,
                decision.match.value,
                decision.job_id,
                decision.submission_id,
                decision.mail_to,
                decision.state.value,
                decision.why,
                now if decision.state is ReplyState.PENDING else 0.0,
            ),
        )
        if stored.rows:  # else another node stored it between our look and our insert
            states[ref] = decision.state
            if decision.state in (ReplyState.THROTTLED, ReplyState.DROPPED):
                whys[ref] = decision.why
    if owner is not None:
        yield Q(
            f"UPDATE reply_polls SET cursor = COALESCE(?, cursor), next_at = COALESCE(?, next_at), {_UNLEASE} "
            "WHERE provider = ? AND owner = ?",
            (cursor, next_poll_at, provider, owner),
        )
    return StoredReplies(len(states), states, whys)


def claim_reply_poll(provider: str, owner: str, now: float, lease: float) -> Tx[tuple[bool, str | None]]:
    """The provider's poll turn, when it is due and nobody holds a live claim; the row is made on first use."""
    yield Q("INSERT INTO reply_polls (provider, next_at) VALUES (?, 0) ON CONFLICT (provider) DO NOTHING", (provider,))
    got = yield Q(
        "UPDATE reply_polls SET owner = ?, lease_until = ? WHERE provider = ? AND next_at <= ? "
        "AND (lease_until IS NULL OR lease_until < ?) RETURNING cursor",
        (owner, now + lease, provider, now, now),
    )
    return (True, got.rows[0]["cursor"]) if got.rows else (False, None)


def release_reply_poll(provider: str, owner: str, next_poll_at: float) -> Tx[None]:
    yield Q(
        f"UPDATE reply_polls SET next_at = ?, {_UNLEASE} WHERE provider = ? AND owner = ?",
        (next_poll_at, provider, owner),
    )


def claim_replies(d: Dialect, owner: str, now: float, limit: int, lease: float) -> Tx[list[DueReply]]:
    """Up to `limit` due PENDING replies, oldest first, leased to `owner`, with the SMS and submission each
    answers."""
    picked = yield Q(
        f"SELECT id, next_at FROM replies WHERE {_PENDING} AND next_at <= ? "
        f"AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_at LIMIT ?{d.skip_locked}",
        (now, now, limit),
    )
    ids = [r["id"] for r in sorted(picked.rows, key=lambda r: (r["next_at"], r["id"]))]
    if not ids:
        return []
    yield Q(
        f"UPDATE replies SET owner = ?, lease_until = ? WHERE {d.in_list('id')}", (owner, now + lease, d.listed(ids))
    )
    rows = yield Q(f"SELECT * FROM replies WHERE {d.in_list('id')}", (d.listed(ids),))
    by_id = {r["id"]: r for r in rows.rows}
    sids = sorted({r["submission_id"] for r in rows.rows if r["submission_id"]})
    jids = sorted({r["job_id"] for r in rows.rows if r["job_id"]})
    subs: dict[str, Submission] = {}
    jobs: dict[str, Job] = {}
    if sids:
        found = yield Q(f"SELECT * FROM submissions WHERE {d.in_list('id')}", (d.listed(sids),))
        subs = {r["id"]: submission_from_row(r) for r in found.rows}
    if jids:
        found = yield Q(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {d.in_list('id')}", (d.listed(jids),))
        jobs = {r["id"]: job_from_row(r) for r in found.rows}
    return [_due(by_id[i], subs, jobs) for i in ids]


def _due(r: Row, subs: dict[str, Submission], jobs: dict[str, Job]) -> DueReply:
    match = ReplyMatch(r["match"])
    linked = match is not ReplyMatch.NONE
    return DueReply(
        id=r["id"],
        provider=r["provider"],
        number=r["number"],
        text=r["text"],
        received_at=r["received_at"],
        fetched_at=r["fetched_at"],
        match=match,
        mail_to=r["mail_to"],
        attempts=r["attempts"],
        submission=subs.get(r["submission_id"]) if linked and r["submission_id"] else None,
        job=jobs.get(r["job_id"]) if linked and r["job_id"] else None,
    )


def reply_done(reply_id: str, owner: str, state: ReplyState, next_at: float, why: str) -> Tx[bool]:
    """One mailing attempt recorded, only by the claim's holder: MAILED or DROPPED end it, PENDING waits."""
    if state is ReplyState.THROTTLED:
        raise ValueError("a reply is throttled when it is stored, never after a mailing attempt")
    done = yield Q(
        f"UPDATE replies SET state = ?, attempts = attempts + 1, next_at = ?, "
        f"why = CASE WHEN ? = '' THEN why ELSE ? END, {_UNLEASE} "
        f"WHERE id = ? AND owner = ? AND {_PENDING}",
        (state.value, next_at, why, why, reply_id, owner),
    )
    return done.rowcount == 1


def reply_counts() -> Tx[dict[str, int]]:
    found = yield Q("SELECT state, COUNT(*) AS n FROM replies GROUP BY state")
    return {r["state"]: int(r["n"]) for r in found.rows}


def release_dead_replies(d: Dialect, owner_dead: Callable[[str], bool]) -> Tx[int]:
    """Reply mail claims and poll claims of owners that died: free at once, not after their lease."""
    owners = yield Q(
        "SELECT DISTINCT owner FROM replies WHERE owner IS NOT NULL AND state = 'pending' "
        "UNION SELECT DISTINCT owner FROM reply_polls WHERE owner IS NOT NULL"
    )
    dead = sorted({r["owner"] for r in owners.rows if owner_dead(r["owner"])})
    if not dead:
        return 0
    mails = yield Q(f"UPDATE replies SET {_UNLEASE} WHERE {_PENDING} AND {d.in_list('owner')}", (d.listed(dead),))
    polls = yield Q(f"UPDATE reply_polls SET {_UNLEASE} WHERE {d.in_list('owner')}", (d.listed(dead),))
    return mails.rowcount + polls.rowcount


def purge_replies(d: Dialect, before: float, limit: int) -> Tx[int]:
    """One batch of settled replies (mailed, dropped, throttled) fetched before `before`: retention's."""
    gone = yield Q(
        f"DELETE FROM replies WHERE id IN (SELECT id FROM replies WHERE {_SETTLED} AND fetched_at < ? LIMIT ?)",
        (before, limit),
    )
    return gone.rowcount


def reply_views(submission_id: str) -> Tx[list[ReplyView]]:
    """The replies tied to one submission's SMS, oldest first."""
    found = yield Q(
        'SELECT job_id, number, text, state, "match", mail_to, why, fetched_at, provider FROM replies '
        "WHERE submission_id = ? ORDER BY fetched_at, id",
        (submission_id,),
    )
    return [
        ReplyView(r["job_id"], r["number"], r["text"], r["state"], r["match"], r["mail_to"], r["why"] or None,
                  r["fetched_at"], r["provider"])
        for r in found.rows
    ]
