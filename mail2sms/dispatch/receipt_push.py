"""The door for pushed delivery receipts (`/receipts/<provider name>/<token>` on the `[http]` listener).

A provider that calls back (Kapow's `dlr`, Cellcast's and BulkSMS's webhooks) reaches web.py, which asks this
door: is the token this provider's (compared in constant time; a provider without a configured token, or one that
does not push, admits nobody), is the body within `MAX_BODY`, and then hands what the adapter's
`parse_receipt_push` read to the sink (the store's writer). Message ids nobody awaits are the sink's concern and
the provider still gets 200, so it does not retry a receipt mail2sms cannot use; only a sink in trouble gets 503,
so the provider retries later.

The same door takes pushed SMS replies (issue 17): for a provider whose adapter is a reply push receiver, the body
is also read by `parse_reply_push` and its replies go to the reply sink (`reply_poller.ReplyPushSink`: stored once
per provider reference, whatever pushed or polled them before). A push carrying receipts, replies or both gets 200
once each sink has taken its part; 503 when either sink is in trouble (a receipt settled twice and a reply stored
twice are both harmless, so the provider's retry is safe).

It must never log, echo or count by a token, a number, a reply's text or a message id, and never answer
differently for an unknown provider and a wrong token (both 404), so the endpoint tells a scanner nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from mail2sms import metrics
from mail2sms.dispatch.receipt_store import PushSink
from mail2sms.model import InboundSms
from mail2sms.observability import get_logger
from mail2sms.providers.receipts import MAX_PUSH_BYTES, PushReceiver
from mail2sms.providers.replies import ReplyPushReceiver

log = get_logger("mail2sms.receipts")

MAX_BODY = MAX_PUSH_BYTES  # what the adapters' parsers read at most; a bigger body gets 413
PREFIX = "/receipts/"
_NOBODY = "\x00" * 32  # compared against when no token exists, so timing does not tell which names exist
# Stores pushed replies of a provider; how many were new (reply_poller.ReplyPushSink).
ReplySink = Callable[[str, Sequence[InboundSms]], Awaitable[int]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


NOT_FOUND = Answer(404, b"not found\n")
TOO_BIG = Answer(413, b"too big\n")
OK = Answer(200, b"ok\n")
BUSY = Answer(503, b"try again later\n")


def split_path(path: str) -> tuple[str, str] | None:
    """(provider name, token) from `/receipts/<name>/<token>` (percent-decoded), or None for another path."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return unquote(parts[0]), unquote(parts[1])


class ReceiptDoor:
    """Checks pushes against per-provider tokens and hands their receipts to `sink` and their replies (from the
    providers in `reply_receivers`) to `reply_sink`."""

    def __init__(
        self,
        receivers: Mapping[str, PushReceiver],
        tokens: Mapping[str, str],
        sink: PushSink,
        *,
        reply_receivers: Mapping[str, ReplyPushReceiver] | None = None,
        reply_sink: ReplySink | None = None,
    ) -> None:
        self.receivers = dict(receivers)
        self.reply_receivers = dict(reply_receivers or {}) if reply_sink is not None else {}
        self.tokens = {
            name: token
            for name, token in tokens.items()
            if token and (name in self.receivers or name in self.reply_receivers)
        }
        self.sink = sink
        self.reply_sink = reply_sink

    def admits(self, provider: str, token: str) -> bool:
        """The token is `provider`'s, by a constant-time comparison."""
        expected = self.tokens.get(provider)
        same = hmac.compare_digest(token.encode("utf-8"), (expected or _NOBODY).encode("utf-8"))
        return same and expected is not None

    def refuse(self, provider: str) -> Answer:
        """404 for a wrong token or provider, counted under the provider's name when it is a configured one."""
        known = provider in self.receivers or provider in self.reply_receivers
        metrics.RECEIPT_PUSH_REFUSED.labels(provider if known else "").inc()
        return NOT_FOUND

    async def deliver(self, provider: str, method: str, query: str, body: bytes, content_type: str) -> Answer:
        """Parse an admitted push and hand its receipts and its replies to their sinks."""
        if len(body) > MAX_BODY or len(query) > MAX_BODY:
            return TOO_BIG
        receipts = self.receivers.get(provider)
        replies = self.reply_receivers.get(provider)
        found = receipts.parse_receipt_push(method, query, body, content_type) if receipts is not None else []
        texts = replies.parse_reply_push(method, query, body, content_type) if replies is not None else []
        if not found and not texts:
            nothing = "receipt push carried no receipt" if replies is None else "push carried no receipt or reply"
            log.warning(f"{nothing} mail2sms could read", provider=provider, method=method, size=len(body))
            return OK
        if found:
            try:
                settled = await self.sink(provider, found)
            except Exception:
                log.exception("receipt push could not be stored", provider=provider)
                return BUSY
            metrics.RECEIPT_PUSHES.labels(provider).inc()
            log.info("receipt push", provider=provider, receipts=len(found), settled=settled)
        if texts and self.reply_sink is not None:
            try:
                new = await self.reply_sink(provider, texts)
            except Exception as exc:  # the type only: a spool error may quote the row (a number, a text)
                log.warning("reply push could not be stored", provider=provider, error=type(exc).__name__)
                return BUSY
            log.info("reply push", provider=provider, replies=len(texts), new=new)
        return OK
