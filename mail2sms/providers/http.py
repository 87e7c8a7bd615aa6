"""The one place an `httpx.AsyncClient` is built for provider adapters.

Timeouts and pool limits come from config; httpx's and httpcore's own request logging is silenced because
request URLs of GET-style providers carry passwords. Adapters receive the client; they never build one.
"""

from __future__ import annotations

import logging

import httpx

from mail2sms import __version__

USER_AGENT = f"mail2sms/{__version__}"


def quiet_http_logging() -> None:
    """httpx logs every request URL at INFO; those URLs may contain credentials."""
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_client(timeout: float = 30.0, max_connections: int = 50) -> httpx.AsyncClient:
    quiet_http_logging()
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=False,
    )
