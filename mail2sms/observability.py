"""Logging: structlog with secret redaction, JSON lines to stdout (readable console output on a TTY).

Two layers keep secrets out of logs. Keys that name a secret (`password`, `key`, `token`, …) are replaced by
`***` whatever their value; and every registered secret *value* (config secrets, credentials found in mail
bodies, AUTH passwords) is masked wherever it appears inside any logged string. Exceptions are rendered
without local variables, since a frame's locals may hold a password.

This module must never print a secret, and nothing else in mail2sms may configure logging.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
import structlog.tracebacks

from mail2sms.providers.http import quiet_http_logging

MASK = "***"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|^key$|authorization|credential", re.IGNORECASE)


class SecretRegistry:
    """Secret values to mask in every log line. Thread-safe: the spool and parsers run in worker threads."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        # Very short values would mask ordinary words; a 1–3 character password is masked by key name only.
        new = {v for v in values if v and len(v) >= 4} - self._values
        if not new:
            return
        with self._lock:
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text


SECRETS = SecretRegistry()


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return SECRETS.scrub(value)
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_KEY.search(str(k)) and v else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and registered secret values anywhere in the event."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and value:
            event_dict[key] = MASK
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _processors(json: bool) -> list[Any]:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        return [
            *shared,
            # Frames' local variables may hold passwords: never render them.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
            ),
            redact,
            structlog.processors.JSONRenderer(),
        ]
    return [
        *shared,
        structlog.processors.format_exc_info,
        redact,
        structlog.dev.ConsoleRenderer(colors=False),
    ]


def setup(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once for the process. `json=None` picks JSON unless `stream` is a TTY."""
    out = stream or sys.stdout
    use_json = not out.isatty() if json is None else json
    structlog.configure(
        processors=_processors(use_json),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (aiosmtpd, asyncio) go through the same redaction.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_processors(use_json),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # aiosmtpd logs every command at DEBUG and session trouble at INFO/ERROR with tracebacks; keep warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    quiet_http_logging()


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
