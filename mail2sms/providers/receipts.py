"""Delivery receipts, the provider side (issue 15): what an adapter offers for receipts, and the helpers adapters share
to read them.

An adapter that can say whether an SMS reached the phone has a `receipts: ReceiptSupport` attribute (poll, push,
how many ids one status request may carry) and `poll_receipts(queries) -> list[Receipt]`, one Receipt per query in
order; a provider that calls back also has `parse_receipt_push(method, query, body, content_type)`. The outbox never
delivers to a phone and has neither. `receipt_source()` is how the poller finds out, without a cast.

No outcome is better than the evidence: only a provider word that clearly says "delivered" is DELIVERED, only one
that clearly says "failed" is UNDELIVERED; an error, an unreadable answer, a transport failure or a word nobody
knows is PENDING with a code, so a later poll or the receipts window decides. Polling never raises for provider
trouble. Push parsers are pure, never raise, and read at most `MAX_PUSH_BYTES` (a bigger body yields nothing).
This module must never log, and never put a credential into a Receipt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs

import httpx

from mail2sms.model import DeliveryState, Receipt, ReceiptQuery
from mail2sms.providers.base import surely_not_sent
from mail2sms.providers.quote import quote

MAX_PUSH_BYTES = 256 * 1024  # a provider's callback carries a few receipts; BulkSMS batches stay far below this
MAX_PUSH_RECEIPTS = 1000  # receipts read from one push body at most


@dataclass(frozen=True)
class ReceiptSupport:
    """How a provider tells delivery: by a status request (`poll`), by calling us back (`push`), and how many
    message ids one status request may carry (`max_ids`; 1 = one request per id)."""

    poll: bool = True
    push: bool = False
    max_ids: int = 1


@runtime_checkable
class ReceiptSource(Protocol):
    """An adapter that can poll delivery receipts."""

    name: str
    receipts: ReceiptSupport

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """One Receipt per item, in order; provider trouble is a PENDING Receipt, never an exception."""
        ...


@runtime_checkable
class PushReceiver(Protocol):
    """An adapter whose provider calls a URL with receipts."""

    def parse_receipt_push(self, method: str, query: str, body: bytes, content_type: str) -> list[Receipt]:
        """The receipts in one callback request; [] when it carries none that can be read."""
        ...


def receipt_source(provider: object) -> ReceiptSource | None:
    """`provider` as a ReceiptSource when it polls receipts, else None (the outbox, a plugin without receipts)."""
    if isinstance(provider, ReceiptSource) and provider.receipts.poll:
        return provider
    return None


def push_receiver(provider: object) -> PushReceiver | None:
    """`provider` as a PushReceiver when its provider calls back with receipts, else None."""
    support = getattr(provider, "receipts", None)
    if isinstance(provider, PushReceiver) and isinstance(support, ReceiptSupport) and support.push:
        return provider
    return None


# -- building receipts ----------------------------------------------------------------------------------------
def pending(item: ReceiptQuery, code: str, why: str) -> Receipt:
    """A PENDING Receipt for `item`: nothing final is known."""
    return Receipt(provider_id=item.provider_id, number=item.number, state=DeliveryState.PENDING, code=code, why=why)


def masked(found: list[Receipt], secrets: Iterable[str]) -> list[Receipt]:
    """`found` with every secret blanked from codes and words: a provider may echo what it was sent."""
    hidden = [s for s in secrets if s]
    if not hidden:
        return found
    out = []
    for receipt in found:
        code, why = receipt.code or "", receipt.why
        for secret in hidden:
            code, why = code.replace(secret, "***"), why.replace(secret, "***")
        out.append(Receipt(receipt.provider_id, receipt.number, receipt.state, code or receipt.code, why, receipt.at))
    return out


def for_all(items: Iterable[ReceiptQuery], code: str, why: str) -> list[Receipt]:
    return [pending(item, code, why) for item in items]


def transport_words(provider: str, exc: httpx.HTTPError) -> tuple[str, str]:
    """(code, why) for a status request that failed in transport: asked again later, whatever the failure."""
    name = type(exc).__name__  # named for the operator; a status request changes nothing, so no rule hangs on it
    if surely_not_sent(exc):
        return name, f"mail2sms could not reach {provider} to ask for the delivery status; it asks again later"
    return name, f"{provider} did not answer the delivery status request properly ({name}); mail2sms asks again later"


async def fetch(provider: str, request: Awaitable[httpx.Response]) -> httpx.Response | tuple[str, str]:
    """The response to a status request, or (code, why) when there is none to read."""
    try:
        return await request
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return "URL", f"the provider's url is not a usable http(s) address, so {provider} cannot be asked"
    except httpx.HTTPError as exc:
        return transport_words(provider, exc)


def status_words(provider: str, response: httpx.Response) -> tuple[str, str]:
    """(code, why) for a status request answered with an HTTP error status."""
    status = response.status_code
    return f"HTTP{status}", f"{provider} answered the delivery status request with HTTP {status}; mail2sms asks again"


# -- reading words ---------------------------------------------------------------------------------------------
# Words providers use for a final failure and for delivery, matched as whole words in their answers (SMPP's
# DELIVRD/UNDELIV/REJECTD/EXPIRED included). A negation ("not delivered") is a failure, never a delivery.
# "error" and "invalid" are left out on purpose: they describe a failed *request* at least as often as a failed
# delivery, and a request problem must stay PENDING, not become "undelivered".
_FAILED = re.compile(
    r"\b(not[\s_-]*delivered|undeliv(?:ered|erable)?|fail(?:ed|ure)?|rejected|rejectd|expired|aborted|blocked|"
    r"deleted|undelivrd)\b",
    re.IGNORECASE,
)
_DELIVERED = re.compile(r"\b(delivered|delivrd|delivered[\s_-]+to[\s_-]+(?:mobile|handset|phone))\b", re.IGNORECASE)
_UPSTREAM = re.compile(r"delivered[\s_-]+(?:to[\s_-]+)?(?:upstream|network|operator|smsc|carrier)", re.IGNORECASE)


def classify(word: str) -> DeliveryState:
    """A provider's free-text status as a DeliveryState: failure words first, then a delivery to the phone, else
    PENDING ("sent", "queued", "delivered to network" and any word nobody documents)."""
    word = word.replace("_", " ")  # DELIVERY_FAILED: an underscore would hide the word boundary
    if _FAILED.search(word):
        return DeliveryState.UNDELIVERED
    if _UPSTREAM.search(word):
        return DeliveryState.PENDING
    if _DELIVERED.search(word):
        return DeliveryState.DELIVERED
    return DeliveryState.PENDING


def state_words(provider: str, state: DeliveryState, word: str) -> str:
    """Plain words for a receipt whose provider status is `word` (quoted, bounded, one line)."""
    said = quote(word)
    if state is DeliveryState.DELIVERED:
        return f"{provider} reports the SMS delivered to the phone (\"{said}\")"
    if state is DeliveryState.UNDELIVERED:
        return f"{provider} reports the SMS was not delivered: \"{said}\""
    return f"{provider} reports the SMS not delivered yet (\"{said}\")"


def digits(value: Any) -> str | None:
    """The digits of a number as a provider writes it (`+61…`, `61…`), or None when it is no number."""
    text = re.sub(r"[\s\-.()+]", "", str(value or ""))
    return text if text.isascii() and text.isdigit() and 7 <= len(text) <= 15 else None


def epoch(value: Any, zone: tzinfo) -> float | None:
    """Seconds since the epoch from a unix time or a `Y-M-D H:M:S` text read in `zone`; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return float(value)
    text = str(value or "").strip()
    if text.isdigit():
        return float(text)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            when = datetime.strptime(text.replace("Z", "+0000"), fmt)
        except ValueError:
            continue
        return (when if when.tzinfo is not None else when.replace(tzinfo=zone)).timestamp()
    return None


# -- reading push requests -------------------------------------------------------------------------------------
def push_params(query: str, body: bytes, content_type: str) -> dict[str, str] | None:
    """The first value of every query and form parameter of a callback; None when the body is too big."""
    if len(body) > MAX_PUSH_BYTES or len(query) > MAX_PUSH_BYTES:
        return None
    params: dict[str, str] = {}
    sources = [query]
    if body and content_type.split(";")[0].strip().lower() in ("", "application/x-www-form-urlencoded"):
        sources.append(body.decode("utf-8", "replace"))
    for source in sources:
        for key, values in parse_qs(source, keep_blank_values=True).items():
            if values:
                params.setdefault(key, values[0])
    return params


def push_json(body: bytes) -> list[Mapping[str, Any]] | None:
    """The objects of a JSON callback body (an array of objects, or one object); None when too big or no JSON."""
    if len(body) > MAX_PUSH_BYTES:
        return None
    try:
        data: Any = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return None
    entries = data if isinstance(data, list) else [data]
    return [e for e in entries[:MAX_PUSH_RECEIPTS] if isinstance(e, Mapping)]


def text_id(value: Any) -> str | None:
    """A provider's message id as text (ids come as strings or numbers), or None."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text if text and len(text) <= 100 and text.isprintable() else None
