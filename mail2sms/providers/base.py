"""The provider contract: what every adapter offers the dispatcher, and the helpers adapters share.

An adapter turns one `Batch` into one provider request and the provider's reply into one `Result` per recipient.
Provider trouble is *data* (a `Result`), never an exception: the dispatcher must be able to record every outcome.
Adapters never log request parameters (they carry passwords) and never put a secret into a `Result`.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.limits import Limits as Limits  # re-exported: adapters build their Limits from here
from mail2sms.limits import check_job as check_job
from mail2sms.limits import parts_limit as parts_limit
from mail2sms.limits import sender_problem as sender_problem
from mail2sms.model import Account, Balance, Batch, Rejected, Result, Retry, Unknown


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


# Transport failures that prove no byte of the request reached the provider (connection refused, DNS, TLS
# handshake, connect or pool timeout): httpx raises these before the request is written. Decided by type, here only.
NOT_SENT: tuple[type[httpx.HTTPError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def surely_not_sent(exc: BaseException) -> bool:
    """Whether a transport failure proves the request never reached the provider."""
    return isinstance(exc, NOT_SENT)


def transport_result(exc: httpx.HTTPError, idempotent: bool) -> Result:
    """Map a transport failure to a Result by DESIGN.md's exactly-once rule.

    Retry only when the request surely did not arrive (connection refused, DNS, TLS handshake, connect timeout),
    or when the provider honours an idempotency key. Anything after the request may have left us → Unknown.
    """
    name = type(exc).__name__  # the code Results carry and explain.py's generic table is keyed by
    if surely_not_sent(exc):
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
