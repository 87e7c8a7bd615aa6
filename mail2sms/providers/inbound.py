"""Helpers the reply adapters share (issue 17): one replies request made, its trouble turned into a
`ReplyFetchError` in plain words, and the fields of an inbound SMS read the same way for every provider.

A replies request either yields a response to read or raises `ReplyFetchError(code, why)`: nothing is taken, the
poller keeps its cursor and asks again later. The words name the provider and what to check, never a credential:
every text that may echo the request (a provider's own error words) goes through `masked` with the account's
secrets. This module must never log, and never guess a field: a value it cannot read is None, and the adapter
skips the entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

import httpx

from mail2sms.providers.base import surely_not_sent
from mail2sms.providers.quote import quote
from mail2sms.providers.receipts import digits
from mail2sms.providers.replies import ReplyFetchError

CONFIG_STATUSES = frozenset({301, 302, 303, 307, 308, 401, 403, 404})  # wrong host, path or login: no retry helps


def masked(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret blanked: a provider may echo what it was sent."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def failure(code: str, why: str, secrets: Iterable[str] = ()) -> ReplyFetchError:
    """A ReplyFetchError whose code and words carry no secret."""
    hidden = list(secrets)
    return ReplyFetchError(masked(code, hidden), masked(why, hidden))


async def fetch(provider: str, request: Awaitable[httpx.Response]) -> httpx.Response:
    """The response to a replies request; ReplyFetchError when there is none to read (transport, bad URL)."""
    try:
        return await request
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise ReplyFetchError("URL", f"the provider's url is not a usable http(s) address, so {provider} cannot be "
                              "asked for replies") from None
    except httpx.HTTPError as exc:
        name = type(exc).__name__  # the class name only: an exception's text may carry the request URL
        if surely_not_sent(exc):
            raise ReplyFetchError(name, f"mail2sms could not reach {provider} to fetch SMS replies; it asks again "
                                  "later") from None
        raise ReplyFetchError(name, f"{provider} did not answer the replies request properly ({name}); mail2sms "
                              "asks again later") from None


def http_failure(provider: str, status: int, said: str = "", secrets: Iterable[str] = ()) -> ReplyFetchError:
    """The ReplyFetchError for an HTTP error status, with the provider's own words when it gave some."""
    words = f' ({provider} said: "{quote(said)}")' if said.strip() else ""
    if status in CONFIG_STATUSES:
        why = (f"{provider} refused the replies request with HTTP {status}: check the provider's url and login "
               "(username, password or key)")
    elif status == 429:
        why = f"{provider} asked mail2sms to slow down (HTTP 429); it fetches replies again later"
    else:
        why = f"{provider} answered the replies request with HTTP {status}; mail2sms asks again later"
    return failure(f"HTTP{status}", why + words, secrets)


def sms_number(value: Any) -> str | None:
    """The phone a reply came from as E.164 digits (`+61412…`, `61412…`, `0061412…`), or None."""
    text = str(value or "").strip()
    if text.startswith("00"):
        text = text[2:]
    return digits(text)


def sms_text(value: Any) -> str | None:
    """A reply's text, or None when there is none to mail (not a string, or only white space)."""
    return value if isinstance(value, str) and value.strip() else None
