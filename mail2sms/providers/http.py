"""The one place an `httpx.AsyncClient` is built for provider adapters, and the "request is leaving" hook.

Timeouts and pool limits come from config; httpx's and httpcore's own request logging is silenced because
request URLs of GET-style providers carry passwords. Adapters receive the client; they never build one.

The dispatcher must record durably that a request *may* have reached a provider before it does, and no
earlier: a crash before that point means "surely not sent" (send again), after it "may have been sent"
(`unknown`, unless the provider honours an idempotency key). httpcore's trace extension is awaited right before
the request headers are written, after the connection is up, so `LeavingClient` runs the hook exactly there.
A connection refused, a DNS or a TLS failure therefore never makes a job `unknown`.

The hook may refuse or fail (the spool cannot mark the jobs `sending`, the lease was lost, the dispatcher is
stopping). Whatever it raises leaves here as one type, `errors.RequestNotSent` with the reason as its cause, so
the dispatcher can tell "no byte left" from an adapter failure by type, never by an exception's name. Nothing
here must ever turn a hook failure into a transport error: that would read as "may have been sent".
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from mail2sms import __version__
from mail2sms.errors import RequestNotSent

USER_AGENT = f"mail2sms/{__version__}"

Hook = Callable[[], Awaitable[None]]

# Set by the dispatcher around `provider.send()`; adapters that do not use HTTP call `request_leaving()`.
BEFORE_SEND: contextvars.ContextVar[Hook | None] = contextvars.ContextVar("mail2sms_before_send", default=None)


async def request_leaving() -> None:
    """Tell the dispatcher that a request is about to leave (idempotent: the hook runs once per batch).

    Raises `RequestNotSent` (the hook's own exception as its cause) when the request must not leave."""
    hook = BEFORE_SEND.get()
    if hook is None:
        return
    try:
        await hook()
    except RequestNotSent:
        raise
    except Exception as exc:  # the one boundary: any hook failure means "not sent", whatever its type
        raise RequestNotSent("the request was stopped before its first byte") from exc


class LeavingClient(httpx.AsyncClient):
    """An AsyncClient that runs the BEFORE_SEND hook when request headers start going out."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if BEFORE_SEND.get() is not None:
            previous = request.extensions.get("trace")

            async def trace(name: str, info: dict[str, Any]) -> None:
                if name.endswith("send_request_headers.started"):
                    await request_leaving()
                if previous is not None:
                    await previous(name, info)

            request.extensions = {**request.extensions, "trace": trace}
        return await super().send(request, **kwargs)


def quiet_http_logging() -> None:
    """httpx logs every request URL at INFO; those URLs may contain credentials."""
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_client(timeout: float = 30.0, max_connections: int = 50) -> httpx.AsyncClient:
    quiet_http_logging()
    return LeavingClient(
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )
