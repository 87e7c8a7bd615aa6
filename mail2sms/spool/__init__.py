"""Spool backends, chosen by URL: `sqlite:` (one host) or `postgresql://` (many hosts).

`open_spool()` is the only place that maps a URL to a backend; it imports psycopg only for a PostgreSQL URL, so a
SQLite-only install never needs it. It must never log the URL: a PostgreSQL URL may carry a password.
"""

from __future__ import annotations

from mail2sms.errors import SpoolError
from mail2sms.spool.base import Spool


def open_spool(url: str, max_size: int | None = None, lock_timeout: float = 60.0) -> Spool:
    """The spool for a URL (not opened yet: the caller awaits `open()`); `lock_timeout` bounds a SQLite spool's
    wait for its open lock."""
    if url.startswith("sqlite:"):
        from mail2sms.spool.sqlite import SqliteSpool

        return SqliteSpool(url, max_size=max_size, lock_timeout=lock_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from mail2sms.spool.postgres import PostgresSpool
        except ImportError as exc:
            raise SpoolError("a postgresql:// spool needs psycopg: pip install 'mail2sms[postgres]'") from exc
        return PostgresSpool(url)
    raise SpoolError(f"unsupported spool URL scheme in {url.split(':', 1)[0]!r}")
