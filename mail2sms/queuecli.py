"""`mail2sms queue …`: look at and act on the spool like postqueue/postsuper — list, show, retry, cancel, delete, purge.

Every command takes a submission id where it acts on one; an id the spool does not hold is an error (exit 1) for
all of them. `--json` output is for scripts and carries the same facts as the text. Nothing here prints a secret:
body credentials are never read out of a job (they are gone once a submission is final anyway).

It must never touch a job another process is sending, turn an SMS that may have been sent into a retry, or delete
a submission that still has open SMS.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from collections import Counter
from typing import Any

from mail2sms.config import Config, parse_duration
from mail2sms.model import Job, JobState, Submission
from mail2sms.spool import open_spool, retention
from mail2sms.spool.base import QueueEntry, ReceiptView, ReplyView, Spool

LIST_LIMIT = 10_000
# --state word → job states; "queued" includes SMS held for their sendtime, "failed" is the provider's refusals.
STATES: dict[str, tuple[str, ...] | None] = {
    "live": None,
    "queued": (JobState.QUEUED.value, JobState.SCHEDULED.value),
    "sending": (JobState.SENDING.value,),
    "unknown": (JobState.UNKNOWN.value,),
    "expired": (JobState.EXPIRED.value,),
    "failed": (JobState.REJECTED.value,),
    "all": (),
}


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def add_commands(queue: argparse.ArgumentParser, with_config: Any) -> None:
    """The `queue` subcommands, each accepting --config after it too (`with_config`)."""
    actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = with_config(actions.add_parser("list", help="submissions still sending or owing a report (--state: more)"))
    lst.add_argument("--state", choices=[s for s in STATES if s != "live"],
                     help="submissions with an SMS in this state (queued includes scheduled; failed = refused); "
                          "all: every submission kept")
    lst.add_argument("--json", action="store_true", help="one JSON array")
    show = with_config(actions.add_parser("show", help="one submission: its SMS, texts, schedule and attempts"))
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="one JSON object")
    retry = with_config(actions.add_parser("retry", help="retries due now; scheduled SMS keep their sendtime"))
    retry.add_argument("id")
    retry.add_argument("--now", action="store_true", help="also send SMS held for a later sendtime now")
    cancel = with_config(actions.add_parser("cancel", help="SMS not sent yet are not sent; the report says so"))
    cancel.add_argument("id")
    delete = with_config(actions.add_parser("delete", help="remove a final submission from the spool"))
    delete.add_argument("id")
    purge = with_config(actions.add_parser("purge", help="remove settled submissions older than spool.retention"))
    purge.add_argument("--older-than", metavar="DURATION", type=parse_duration,
                       help="instead of spool.retention (e.g. 7d, 12h)")
    purge.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")


async def run(args: argparse.Namespace, config: Config) -> int:
    spool = open_spool(config.spool.url)
    await spool.open()
    try:
        if args.action == "list":
            return await _list(spool, args)
        if args.action == "purge":
            return await _purge(spool, args, config)
        found = await spool.get(args.id)
        if found is None:
            print(f"mail2sms: no submission {args.id} in the spool", file=sys.stderr)
            return 1
        sub, jobs = found
        if args.action == "show":
            return _show(sub, jobs, args.json, await spool.receipt_views(sub.id), await spool.reply_views(sub.id))
        if args.action == "retry":
            return await _retry(spool, sub, jobs, args.now)
        if args.action == "cancel":
            return await _cancel(spool, sub, jobs)
        return await _delete(spool, sub, jobs)
    finally:
        await spool.close()


def _entry_json(e: QueueEntry) -> dict[str, Any]:
    return {"id": e.submission_id, "received_at": e.received_at, "from": e.envelope_from, "route": e.route,
            "total": e.total, "states": e.states, "report": e.report_state.value}


async def _list(spool: Spool, args: argparse.Namespace) -> int:
    entries = await spool.queue_list(LIST_LIMIT, STATES[args.state or "live"])
    if args.json:
        print(json.dumps([_entry_json(e) for e in entries], indent=1))
        return 0
    if not entries:
        print("the queue is empty" if args.state is None else f"no submission has an SMS {args.state}")
    for e in entries:
        states = ", ".join(f"{k} {v}" for k, v in sorted(e.states.items()))
        print(f"{e.submission_id}  {when(e.received_at)}  {e.envelope_from or '<>'}  {e.route}  "
              f"{e.total} SMS: {states}  report {e.report_state}")
    if len(entries) == LIST_LIMIT:
        print(f"(the first {LIST_LIMIT} only)", file=sys.stderr)
    return 0


def _job_json(j: Job) -> dict[str, Any]:
    return {"id": j.id, "number": j.number, "text": j.text, "provider": j.provider, "sender": j.sender,
            "state": j.state.value, "sendtime": j.options.sendtime, "attempts": j.attempts,
            "next_attempt_at": j.next_attempt_at if not j.state.final else None, "expires_at": j.expires_at or None,
            "provider_id": j.provider_id, "code": j.code, "error": j.error, "detail": j.detail, "parts": j.parts,
            "row": j.row}


def _receipt_line(r: ReceiptView) -> str:
    """An SMS's delivery receipt (issue 15) in one line: awaited, or how and when it was settled."""
    if r.state == "pending":
        return f"awaited, next ask {when(r.next_poll_at)} ({r.polls} asked so far)"
    return f"{r.state.replace('_', ' ')} ({r.via}, {when(r.at)})" + (f": {r.why}" if r.why else "")


def _reply_line(r: ReplyView) -> str:
    """An SMS reply (issue 17) in one line: when it came, its text, and where it went."""
    went = {"mailed": f"mailed to {r.mail_to}", "pending": f"to be mailed to {r.mail_to}"}.get(r.state, r.state)
    return f"{when(r.fetched_at)} {r.text!r}: {went} ({r.match})" + (f": {r.why}" if r.why else "")


def _show(sub: Submission, jobs: list[Job], as_json: bool, receipts: dict[str, ReceiptView] | None = None,
          replies: list[ReplyView] | None = None) -> int:
    receipts = receipts or {}
    by_job: dict[str, list[ReplyView]] = {}
    for reply in replies or []:
        by_job.setdefault(reply.job_id, []).append(reply)
    if as_json:
        print(json.dumps({"id": sub.id, "received_at": sub.received_at, "from": sub.envelope_from,
                          "route": sub.route, "subject": sub.subject, "report_to": sub.report_to,
                          "dry_run": sub.dry_run,
                          "jobs": [{**_job_json(j), "receipt": dataclasses.asdict(receipts[j.id])
                                    if j.id in receipts else None,
                                    "replies": [dataclasses.asdict(r) for r in by_job.get(j.id, [])]}
                                   for j in jobs]}, indent=1))
        return 0
    print(f"submission {sub.id}\n  received  {when(sub.received_at)} from {sub.envelope_from or '<>'} "
          f"(route {sub.route})\n  report to {sub.report_to or '- (none)'}" + ("\n  dry run" if sub.dry_run else ""))
    for j in jobs:
        print(f"  +{j.number}  {j.state.value}  via {j.provider}" + (f" from {j.sender}" if j.sender else ""))
        print(f"    text      {j.text!r} ({j.parts} part{'s' if j.parts != 1 else ''})")
        if j.options.sendtime:
            print(f"    schedule  {j.options.sendtime}")
        print(f"    attempts  {j.attempts}" + ("" if j.state.final else f", next {when(j.next_attempt_at)}")
              + (f", expires {when(j.expires_at)}" if j.expires_at and not j.state.final else ""))
        for label, value in (("provider id", j.provider_id), ("code", j.code), ("detail", j.detail),
                             ("error", j.error)):
            if value:
                print(f"    {label:<9} {value}")
        if j.id in receipts:
            print(f"    receipt   {_receipt_line(receipts[j.id])}")
        for reply in by_job.get(j.id, []):
            print(f"    reply     {_reply_line(reply)}")
    return 0


def _why_not_retried(jobs: list[Job], now: float) -> str:
    """Why `retry` moved nothing, from the jobs' states."""
    by_state = Counter(j.state for j in jobs)
    reasons = []
    held = [j for j in jobs if j.state == JobState.SCHEDULED]
    if held:
        first = min(j.next_attempt_at for j in held)
        reasons.append(f"{len(held)} SMS scheduled for {when(first)} (add --now to send them now)")
    due = [j for j in jobs if j.state == JobState.QUEUED and j.next_attempt_at <= now]
    if due:
        reasons.append(f"{len(due)} SMS already due (being sent, or waiting for the provider's rate or breaker)")
    if by_state[JobState.SENDING]:
        reasons.append(f"{by_state[JobState.SENDING]} SMS being sent right now")
    final = sum(n for s, n in by_state.items() if s.final)
    if final:
        words = ", ".join(f"{s.value} {n}" for s, n in sorted(by_state.items()) if s.final)
        reasons.append(f"{final} SMS final ({words}); an SMS that may have been sent is never sent again")
    if not jobs:
        reasons.append("it has no SMS")
    return "; ".join(reasons) or "no SMS waits for a retry"


async def _retry(spool: Spool, sub: Submission, jobs: list[Job], now_too: bool) -> int:
    now = time.time()
    moved = await spool.retry(sub.id, now, force=now_too)
    if moved:
        print(f"{moved} SMS of {sub.id} will be tried now")
        return 0
    print(f"nothing retried in {sub.id}: {_why_not_retried(jobs, now)}")
    return 1


async def _cancel(spool: Spool, sub: Submission, jobs: list[Job]) -> int:
    cancelled = await spool.cancel(sub.id, time.time())
    if cancelled:
        print(f"{cancelled} SMS of {sub.id} cancelled; the outcome mail says so")
        return 0
    sending = sum(1 for j in jobs if j.state == JobState.SENDING)
    why = f"{sending} SMS being sent right now cannot be called back" if sending else "every SMS is final already"
    print(f"nothing cancelled in {sub.id}: {why}")
    return 1


async def _delete(spool: Spool, sub: Submission, jobs: list[Job]) -> int:
    removed = await spool.delete_final(sub.id)
    if removed is None:
        open_sms = sum(1 for j in jobs if not j.state.final)
        print(f"mail2sms: {sub.id} is not final ({open_sms} SMS not sent yet): "
              f"run `mail2sms queue cancel {sub.id}` first, or let it finish", file=sys.stderr)
        return 1
    print(f"{sub.id} deleted ({removed} SMS)")
    return 0


async def _purge(spool: Spool, args: argparse.Namespace, config: Config) -> int:
    older = args.older_than if args.older_than is not None else config.spool.retention
    now = time.time()
    if args.dry_run:
        subs, jobs = await spool.purge_counts(now - older)
        print(f"would purge {subs} submissions ({jobs} SMS) settled before {when(now - older)}")
        return 0
    done = await retention.sweep(spool, older, config.server.dedupe_window, now)
    print(f"purged {done.submissions} submissions ({done.jobs} SMS) and {done.replies} SMS replies settled before "
          f"{when(now - older)}, and {done.memory} expired dedupe keys and quota charges")
    return 0
