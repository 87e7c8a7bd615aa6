"""The provider contract: what every adapter offers the dispatcher, and the helpers adapters share.

An adapter turns one `Batch` into one provider request and the provider's reply into one `Result` per recipient.
Provider trouble is *data* (a `Result`), never an exception: the dispatcher must be able to record every outcome.
Adapters never log request parameters (they carry passwords) and never put a secret into a `Result`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.model import Account, Balance, Batch, Job, Rejected, Result, Retry, Unknown


@dataclass(frozen=True)
class Limits:
    """What one request to a provider may carry, and how often requests may go.

    Checked before anything is sent (`check_job`), so a mail that cannot go is refused at DATA with the reason
    instead of failing later at the provider.
    """

    max_recipients: int = 1
    max_parts: int | None = None  # SMS parts one message may use
    max_chars: int | None = None  # characters one message may use
    rate: float = 5.0  # requests per second
    idempotent: bool = False  # the provider honours a per-job idempotency key
    sender_alnum_max: int = 11  # alphanumeric sender ids: at most this many characters (GSM rule)
    sender_digits_max: int = 16  # numeric sender ids: at most this many digits
    schedule_days: int | None = None  # the provider schedules up to this far ahead; None: mail2sms holds the job
    flash: bool = False  # the provider can send flash SMS
    flash_unicode: bool = True  # ... also when the text needs UCS-2 (KoboMobile: no)
    max_parts_ucs2: int | None = None  # a stricter parts limit for UCS-2 text (BulkSMS: 16-bit is one part)
    max_messages: int | None = None  # messages with different texts one request may carry; None: one text each


def sender_problem(sender: str, limits: Limits) -> str | None:
    """Why a sender id cannot be used, in words; None when it can."""
    if sender.lstrip("+").isdigit():
        digits = sender.lstrip("+")
        if len(digits) > limits.sender_digits_max:
            return f"the sender {sender!r} has {len(digits)} digits; at most {limits.sender_digits_max} are allowed"
        return None
    if len(sender) > limits.sender_alnum_max:
        return (f"the sender {sender!r} has {len(sender)} characters; an alphanumeric sender may have at most "
                f"{limits.sender_alnum_max}")
    if not all(ch.isascii() and (ch.isalnum() or ch in " -._&") for ch in sender):
        return f"the sender {sender!r} may only use letters A-Z, digits, spaces and - . _ &"
    return None


def parts_limit(limits: Limits, encoding: str) -> int | None:
    """The provider's parts limit for a text in `encoding`."""
    if encoding == "ucs2" and limits.max_parts_ucs2 is not None:
        return min(limits.max_parts_ucs2, limits.max_parts or limits.max_parts_ucs2)
    return limits.max_parts


def check_job(job: Job, limits: Limits, provider: str) -> str | None:
    """Why this job cannot go to this provider as it is (length, parts, sender, flash), or None."""
    if limits.max_chars is not None and len(job.text) > limits.max_chars:
        return f"the text has {len(job.text)} characters; {provider} takes at most {limits.max_chars}"
    max_parts = parts_limit(limits, job.encoding)
    if max_parts is not None and job.parts > max_parts:
        return (f"the text needs {job.parts} SMS parts ({job.encoding.upper()}); {provider} takes at most "
                f"{max_parts}")
    if job.sender:
        problem = sender_problem(job.sender, limits)
        if problem is not None:
            return problem
    if job.options.flash and not limits.flash:
        return f"{provider} cannot send flash SMS"
    if job.options.flash and job.encoding == "ucs2" and not limits.flash_unicode:
        return f"{provider} cannot send a flash SMS whose text needs UCS-2 (Unicode): send it as a normal SMS"
    return None


class Provider(Protocol):
    """One configured SMS provider."""

    name: str
    limits: Limits

    async def send(self, batch: Batch) -> list[Result]:
        """Send one batch; return one Result per job of the batch, in order. Never raises for provider trouble."""
        ...

    async def balance(self, account: Account | None = None) -> Balance:
        """The account's credit."""
        ...


def account_for(config: ProviderConfig, batch_account: Account | None) -> Account:
    """The account a request uses: credentials from the mail body when given, else the configured ones."""
    if batch_account is not None and (batch_account.username or batch_account.password or batch_account.key):
        return batch_account
    return Account(
        username=config.username,
        password=config.password.get_secret_value(),
        key=config.key.get_secret_value(),
    )


def transport_result(exc: httpx.HTTPError, idempotent: bool) -> Result:
    """Map a transport failure to a Result by DESIGN.md's exactly-once rule.

    Retry only when the request surely did not arrive (connection refused, DNS, TLS handshake, connect timeout),
    or when the provider honours an idempotency key. Anything after the request may have left us → Unknown.
    """
    surely_not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    name = type(exc).__name__
    if surely_not_sent:
        return Retry(code=name, why="could not connect to the provider; the SMS was not sent yet")
    if idempotent:
        return Retry(code=name, why="the provider did not answer; retrying safely with the same message id")
    return Unknown(
        code=name,
        why="the connection failed after the request was sent; the provider may have sent the SMS",
    )


def http_status_result(response: httpx.Response, idempotent: bool) -> Result | None:
    """Results for HTTP statuses that mean the same for every provider; None when the adapter must decide."""
    status = response.status_code
    if status == 429:
        return Retry(code="HTTP429", why="the provider asked us to slow down", after=retry_after(response))
    if status in (502, 503, 504) or (status >= 500 and idempotent):
        return Retry(code=f"HTTP{status}", why=f"the provider is temporarily unavailable (HTTP {status})",
                     after=retry_after(response))
    if status >= 500:
        return Unknown(code=f"HTTP{status}", why=f"the provider failed while handling the request (HTTP {status})")
    if status in (401, 403):
        return Rejected(code=f"HTTP{status}", why="the provider refused the account's credentials")
    return None


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header, given as seconds or as an HTTP date."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import time
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
