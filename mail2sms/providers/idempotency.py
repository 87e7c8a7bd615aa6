"""Per-request idempotency keys for providers that honour one (BulkSMS `stop_dup_id`, KoboMobile `message_uuid`).

A job's idempotency key is fixed at commit, but both providers take one key per *request*, and a request carries
a batch of jobs. Both providers answer a repeated key with the reply to the first request and send nothing; that
reply covers exactly the numbers of the first request. So a request key must name the exact set of jobs it
carries: it is derived from the *sorted* keys of the batch's jobs.

- The same batch, retried, gets the same request key: the provider sends it at most once.
- A batch of other jobs never gets that key (up to a hash collision), so a job can never be reported Sent
  because of a reply to a request that did not carry it. A rule such as "the first job's key" would allow that
  when a retried batch gains jobs the first request did not carry, which would lose SMS silently.
- The price: if the jobs of one ambiguous request come back in a different grouping, the new group gets a new
  key and may be sent again (a duplicate, never a loss). Keeping a retried batch together is the dispatcher's part.

`stop_dup_id` is an integer in 1..2147483647: a 31-bit hash, so two *different* requests share one with a chance
of about n²/2³² among n requests in BulkSMS's window of a few hours. `message_uuid` is a name-based UUID (36
characters, KoboMobile takes at most 64).

A provider remembers a key only for a while (BulkSMS: `stop_dup_id` "a few hours", `deduplication-id` "about 12
hours"). Past that, asking again with the same key is no protection: if the first request did arrive, the SMS goes
twice. `key_expired()` says when a retry may no longer lean on the key: the job's first attempt is older than the
provider's window *and* its last answer was ambiguous (the first request may have been processed). Such a job is
`Unknown` ("may have been sent"), never retried. A job whose earlier attempts surely did not arrive (connection
refused, a documented "not processed" code) is still safe to send: the key was never consumed.

Pure functions: no I/O, no clock (the caller passes `now`), no randomness; a key is never logged.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable

from mail2sms.model import Job

STOP_DUP_ID_MAX = 2_147_483_647
# A fixed namespace so that message_uuid values are stable across versions and hosts.
_NAMESPACE = uuid.UUID("5b0d3c1e-7f0a-4c5e-9d2b-6a1f3e8c9d40")


def batch_digest(keys: Iterable[str]) -> bytes | None:
    """SHA-256 over the sorted job keys; None when any job has no key (nothing can then be promised)."""
    ordered = sorted(keys)
    if not ordered or any(not k for k in ordered):
        return None
    return hashlib.sha256("\n".join(ordered).encode("utf-8")).digest()


def stop_dup_id(keys: Iterable[str]) -> int | None:
    """BulkSMS's `stop_dup_id` for a request carrying jobs with these keys, in 1..2147483647."""
    digest = batch_digest(keys)
    if digest is None:
        return None
    return int.from_bytes(digest[:8], "big") % STOP_DUP_ID_MAX + 1


def message_uuid(keys: Iterable[str]) -> str | None:
    """KoboMobile's `message_uuid` for a request carrying jobs with these keys: a name-based UUID."""
    digest = batch_digest(keys)
    if digest is None:
        return None
    return str(uuid.uuid5(_NAMESPACE, digest.hex()))


# Codes after which the request surely did not reach the provider (or it said it did not process it): the key was not
# consumed, so a later attempt is a first one. Anything else recorded after an attempt counts as ambiguous.
NOT_PROCESSED = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout", "HTTP429", "URL", "CHARSET"})


def key_expired(job: Job, now: float, window: float, safe_codes: Collection[str] = ()) -> bool:
    """True when the job's first attempt is more than `window` seconds old and its last answer was ambiguous (not in
    NOT_PROCESSED or the adapter's `safe_codes`): a retry with the same key could send it twice."""
    if job.first_attempt_at is None or now - job.first_attempt_at <= window:
        return False
    return job.code is None or (job.code not in NOT_PROCESSED and job.code not in safe_codes)
