"""Retention: settled submissions, their jobs, settled replies, old dedupe keys and old quota charges leave the spool in
small batches.

`sweep()` removes everything past `spool.retention` (submissions and jobs; replies mailed, dropped or throttled,
by when they were fetched) and `server.dedupe_window` (dedupe keys),
a few hundred rows per write transaction and yielding to the event loop between batches, so accepting mail never
waits long behind it. `run()` sweeps periodically for `App`; `mail2sms queue purge` calls `sweep()` by hand.

It must never remove a submission that still has an open SMS, owes a report or has a reply still to be mailed
(spool.core.purge decides that), never a reply still to be mailed, and never log row contents.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from mail2sms.observability import get_logger
from mail2sms.spool import quotas
from mail2sms.spool.base import Spool

log = get_logger("mail2sms.retention")

BATCH = 500  # rows per write transaction: the SQLite write lock is held for milliseconds
EVERY = 600.0  # seconds between periodic sweeps


@dataclass
class Swept:
    """What one sweep removed."""

    submissions: int = 0
    jobs: int = 0
    memory: int = 0  # dedupe keys and quota charges
    replies: int = 0


async def sweep(spool: Spool, retention: float, dedupe_window: float, now: float | None = None,
                batch: int = BATCH) -> Swept:
    """Purge until nothing is older than the limits; between batches other tasks run (`asyncio.sleep(0)`)."""
    now = time.time() if now is None else now
    done = Swept()
    while True:
        subs, jobs = await spool.purge(now - retention, batch)
        done.submissions += subs
        done.jobs += jobs
        if not subs and not jobs:
            break
        await asyncio.sleep(0)
    while True:
        gone = await spool.purge_replies(now - retention, batch)
        done.replies += gone
        if not gone:
            break
        await asyncio.sleep(0)
    while True:
        freed = await spool.purge_memory(now - dedupe_window, now - quotas.HORIZON, batch)
        done.memory += freed
        if not freed:
            break
        await asyncio.sleep(0)
    return done


async def run(spool: Spool, retention: float, dedupe_window: float, every: float = EVERY) -> None:
    """Sweep at start and then every `every` seconds until cancelled; a failed sweep is logged and tried again."""
    while True:
        try:
            done = await sweep(spool, retention, dedupe_window)
            if done.submissions or done.jobs or done.replies:
                log.info("retention purged", submissions=done.submissions, jobs=done.jobs, replies=done.replies,
                         dedupe_and_quota_rows=done.memory)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the spool in trouble: the sender's own errors show it; try again later
            log.warning("retention sweep failed", error=type(exc).__name__)
        await asyncio.sleep(every)
