"""Small helpers the newer adapters share to put values on the wire: numbers, form bodies, times, config options.

- `international_digits()`: a job's number as most provider APIs want it (international, digits only).
- `send_valid()`: the split every adapter needs: unusable numbers refused locally, the rest in one request.
- `post()`, `status_problem()`: a request's transport failure and HTTP status mapped to a Result the same way
  for every adapter.
- `form_body()`: an `application/x-www-form-urlencoded` body in the charset the provider reads (BulkSMS:
  ISO-8859-1), raising UnicodeEncodeError instead of sending a silently altered value.
- `read_options()`: a provider's `options` table checked against the adapter's list of documented options, so a
  misspelt or out-of-range option is a ConfigError naming `providers.<name>.options.<key>` at start, not a
  mystery at the provider.
- `zone()`: a configured IANA time zone.

Pure apart from awaiting the adapter's own request in `send_valid()`. Values are never logged; an option error
quotes the option's name and the rule, never its value (an option could be a credential in a careless config).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import tzinfo
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import Batch, Job, Rejected, Result
from mail2sms.providers.base import http_status_result, surely_not_sent, transport_result
from mail2sms.providers.explain import explain, explained
from mail2sms.providers.registry import spec_for

_NUMBER_NOISE = re.compile(r"[\s\-.()/]")

Check = Callable[[Any], Any]


async def send_valid(
    batch: Batch, provider_type: str, send: Callable[[list[Job], list[str]], Awaitable[list[Result]]]
) -> list[Result]:
    """One Result per job in order: numbers that cannot go on the wire are Rejected("NUMBER") here, the rest go to
    `send(jobs, numbers)` in one request. A bad number never costs the other recipients their SMS."""
    results: list[Result | None] = [None] * len(batch.jobs)
    wired: list[tuple[int, str]] = []
    for i, job in enumerate(batch.jobs):
        number = international_digits(job.number)
        if number is None:
            results[i] = Rejected(code="NUMBER", why=explain(provider_type, "NUMBER"))
        else:
            wired.append((i, number))
    if wired:
        answers = await send([batch.jobs[i] for i, _ in wired], [n for _, n in wired])
        for (i, _), result in zip(wired, answers, strict=True):
            results[i] = result
    return [r for r in results if r is not None]


async def post(
    provider_type: str, idempotent: bool, request: Awaitable[httpx.Response]
) -> httpx.Response | Result:
    """The provider's response, or the Result a failed request means: a bad URL is refused, and a transport
    failure follows DESIGN.md's exactly-once rule (`base.transport_result`)."""
    try:
        return await request
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return Rejected(code="URL", why=explain(provider_type, "URL"))
    except httpx.HTTPError as exc:
        return explained(provider_type, transport_result(exc, idempotent))


def status_problem(provider_type: str, response: httpx.Response, idempotent: bool) -> Result | None:
    """The Result an HTTP status means before the body is read (429, 5xx, 401, other non-2xx), or None."""
    status = http_status_result(response, idempotent)
    if status is None and not response.is_success:
        status = Rejected(code=f"HTTP{response.status_code}", why="")
    return explained(provider_type, status) if status is not None else None


def international_digits(number: str) -> str | None:
    """The number in international form, digits only (no + or 00), or None when it is not a number."""
    digits = _NUMBER_NOISE.sub("", number)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not digits.isascii() or not digits.isdigit() or not 7 <= len(digits) <= 15:
        return None
    return digits


def form_body(params: list[tuple[str, str]], encoding: str = "utf-8") -> bytes:
    """URL-encode `params` with every value in `encoding`; UnicodeEncodeError when a value cannot be carried."""
    return urlencode(params, encoding=encoding, errors="strict").encode("ascii")


async def balance_request(provider_type: str, request: Awaitable[httpx.Response]) -> httpx.Response:
    """The response to a balance request, or ProviderError in plain words: the one place a balance request's
    transport failure is mapped, by exception type (`base.surely_not_sent`), never by its name."""
    try:
        return await request
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise ProviderError(explain(provider_type, "URL")) from None
    except httpx.HTTPError as exc:
        raise ProviderError(balance_failure(provider_label(provider_type), exc)) from None


def provider_label(provider_type: str) -> str:
    """How reports name a provider type ("KwtSMS"), from its registered spec."""
    spec = spec_for(provider_type)
    return spec.label if spec is not None else provider_type


def balance_failure(provider: str, exc: Exception) -> str:
    """Plain words for a balance request that failed in transport (nothing was sent, so no SMS advice)."""
    name = type(exc).__name__  # named in the words for the operator; the decision below is by type
    if surely_not_sent(exc):
        return f"mail2sms could not connect to {provider} ({name}): check the provider's url and the network"
    return f"{provider} did not answer the balance request properly ({name}): try again later"


def zone(name: str) -> tzinfo:
    """The IANA zone `name`; ValueError (in words) when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name such as UTC, Europe/London or Australia/Sydney") from None


# -- option checks: each returns the normalized value or raises ValueError saying what is allowed -------------
def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return check


def one_of(*allowed: Any) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise ValueError("must be one of " + ", ".join(repr(a) for a in allowed))
        return value

    return check


def text(max_len: int, pattern: str | None = None, what: str = "") -> Check:
    rule = re.compile(pattern) if pattern else None

    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise ValueError(f"must be a text of 1 to {max_len} characters")
        if rule is not None and not rule.fullmatch(value):
            raise ValueError(f"may only use {what}")
        return value

    return check


def timezone_name(value: Any) -> tzinfo:
    if not isinstance(value, str):
        raise ValueError("must be a time zone name such as UTC or Europe/London")
    return zone(value)


def read_options(provider: str, options: Mapping[str, Any], spec: Mapping[str, Check]) -> dict[str, Any]:
    """`options` checked against `spec`; ConfigError listing every unknown or invalid option by key path."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for key, value in options.items():
        where = f"providers.{provider}.options.{key}"
        check = spec.get(key)
        if check is None:
            problems.append(f"{where}: unknown option (known: {', '.join(sorted(spec))})")
            continue
        try:
            out[key] = check(value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ConfigError(problems)
    return out
