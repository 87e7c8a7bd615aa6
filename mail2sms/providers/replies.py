"""Two-way replies, the provider side (issue 17): what an adapter offers for SMS sent back by phones.

An adapter whose provider keeps the replies it receives has a `replies: ReplySupport` attribute and
`fetch_replies(cursor) -> ReplyPage`: one page of replies after `cursor` (an opaque text the adapter gave with the
previous page; None = from the provider's start, or whatever it still calls unread). `acknowledge_replies(refs)`
tells the provider they are taken (mark read) where it has such a call; the poller calls it only after the spool
committed them, so a crash in between fetches them again and the spool's unique key keeps them once. A provider
that calls back with replies also has `parse_reply_push(method, query, body, content_type)`.

No reply is ever made up: a page that cannot be read raises `ReplyFetchError` (the poller keeps its cursor and
asks again later), and an entry without a provider id, a number or a text is skipped, never guessed. Push parsers
are pure, never raise, and read at most `receipts.MAX_PUSH_BYTES`. This module must never log, and never put a
credential into an InboundSms or an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mail2sms.model import InboundSms


@dataclass(frozen=True)
class ReplySupport:
    """How a provider hands over replies: by a request we make (`poll`) and/or by calling us back (`push`)."""

    poll: bool = True
    push: bool = False


@dataclass(frozen=True)
class ReplyPage:
    """One answer to a replies request: the replies in it, the cursor to ask from next time, and whether the
    provider has more right now (the poller asks again at once instead of waiting for its interval)."""

    replies: list[InboundSms] = field(default_factory=list)
    cursor: str | None = None
    more: bool = False


class ReplyFetchError(Exception):
    """A replies request failed (transport, HTTP error, an answer that cannot be read): nothing was taken."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


@runtime_checkable
class ReplySource(Protocol):
    """An adapter that can fetch replies."""

    name: str
    replies: ReplySupport

    async def fetch_replies(self, cursor: str | None) -> ReplyPage:
        """The next page of replies after `cursor`; raises ReplyFetchError when nothing can be read."""
        ...

    async def acknowledge_replies(self, refs: list[str]) -> None:
        """Tell the provider these replies (their `provider_ref`) are taken, where it has such a call; raises
        ReplyFetchError when it could not (they are then fetched again and kept once)."""
        ...


@runtime_checkable
class ReplyPushReceiver(Protocol):
    """An adapter whose provider calls a URL with replies."""

    def parse_reply_push(self, method: str, query: str, body: bytes, content_type: str) -> list[InboundSms]:
        """The replies in one callback request; [] when it carries none that can be read."""
        ...


def reply_source(provider: object) -> ReplySource | None:
    """`provider` as a ReplySource when its provider's replies can be fetched, else None."""
    support = getattr(provider, "replies", None)
    if isinstance(provider, ReplySource) and isinstance(support, ReplySupport) and support.poll:
        return provider
    return None


def reply_push_receiver(provider: object) -> ReplyPushReceiver | None:
    """`provider` as a ReplyPushReceiver when its provider calls back with replies, else None."""
    support = getattr(provider, "replies", None)
    if isinstance(provider, ReplyPushReceiver) and isinstance(support, ReplySupport) and support.push:
        return provider
    return None
