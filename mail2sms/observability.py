"""Logging: structlog with secret redaction, JSON lines to stdout (readable console output on a TTY).

Two layers keep secrets out of logs. Keys that name a secret (`password`, `key`, `token`, …) are replaced by
`***` whatever their value; and every registered secret *value* is masked wherever it appears inside any logged
string. Exceptions are rendered without local variables, since a frame's locals may hold a password.

Only secrets that are known to be secrets are registered: configured ones, and SMTP AUTH passwords once verified
(both kept while the process runs), and credentials from a mail body (forgotten when their submission is final,
`release()`, or after a time-to-live at the latest). A value
shorter than `MIN_SECRET` characters is masked by key name only: masking `info`, `error` or `2026-12` in every line
would blind the log, and a failed AUTH password is attacker-chosen text, so it is never registered at all. The
registry is bounded and registering costs O(1); `level`, `timestamp`, `event` and the other structural fields are
never scrubbed, so no registered value can hide what happened, when, or to which session.

This module must never print a secret, and nothing else in mail2sms may configure logging.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog
import structlog.tracebacks

from mail2sms.providers.http import quiet_http_logging

MASK = "***"
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|^key$|authorization|credential", re.IGNORECASE)


def secret_key(name: str) -> bool:
    """True when a key names a secret (`password`, `api_key`, `token`, …): its value is masked whatever it is.
    The one rule for log lines and for `show-config` and check-config messages (config.py)."""
    return _SECRET_KEY.search(name) is not None


MIN_SECRET = 6  # shorter values are ordinary words too often ("info", "2026", "admin"): masked by key name only
MAX_TRANSIENT = 512  # body credentials remembered at once; the oldest are forgotten first
TRANSIENT_TTL = 86400.0 + 3600.0  # a body credential is forgotten after this (a route's default lifetime + 1 h)
# Fields that describe the log line itself: never scrubbed, whatever value was registered.
STRUCTURAL = frozenset({"level", "timestamp", "event", "logger", "logger_name", "session", "submission", "peer"})


class SecretRegistry:
    """Secret values to mask in every log line. Thread-safe: the spool and parsers run in worker threads.

    Lasting secrets (config, verified AUTH passwords) stay for the process's life; transient ones (credentials
    from a mail body) expire after their time-to-live and at most `max_transient` are kept, so no sender can grow
    the set without bound. Adding is O(1): the longest-first list that `scrub()` walks is rebuilt lazily, once
    after a batch of changes, and matching is plain substring search (no regex compiled over every secret).
    """

    def __init__(self, max_transient: int = MAX_TRANSIENT, clock: Callable[[], float] = time.monotonic) -> None:
        self._lasting: set[str] = set()
        self._transient: OrderedDict[str, float] = OrderedDict()  # value → expiry, oldest registration first
        self._max_transient = max_transient
        self._clock = clock
        self._ordered: tuple[str, ...] = ()
        self._dirty = False
        self._next_expiry = float("inf")
        self._owners: dict[str, set[str]] = {}  # transient value → submissions that carry it
        self._owned: dict[str, set[str]] = {}  # submission → its transient values
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        """Register configured or verified secrets for the life of the process."""
        with self._lock:
            for value in values:
                if value and len(value) >= MIN_SECRET and value not in self._lasting:
                    self._lasting.add(value)
                    self._transient.pop(value, None)
                    self._dirty = True

    def add_transient(self, values: Iterable[str], ttl: float = TRANSIENT_TTL) -> None:
        """Register secrets that came inside a mail, forgotten after `ttl` seconds (or when the set is full)."""
        expires = self._clock() + ttl
        with self._lock:
            for value in values:
                if not value or len(value) < MIN_SECRET or value in self._lasting:
                    continue
                known = value in self._transient
                self._transient[value] = max(expires, self._transient.get(value, 0.0))
                self._transient.move_to_end(value)
                self._next_expiry = min(self._next_expiry, expires)
                if not known:
                    self._dirty = True
            while len(self._transient) > self._max_transient:
                self._transient.popitem(last=False)
                self._dirty = True

    def discard(self, values: Iterable[str]) -> None:
        """Forget transient secrets at once (their submission is final); lasting ones stay."""
        with self._lock:
            for value in values:
                if self._transient.pop(value, None) is not None:
                    self._dirty = True

    def belong_to(self, owner: str, values: Iterable[str]) -> None:
        """Tie transient secrets to a submission, so that `release(owner)` forgets them when it is final."""
        with self._lock:
            for value in values:
                if value in self._transient:
                    self._owners.setdefault(value, set()).add(owner)
                    self._owned.setdefault(owner, set()).add(value)
            while len(self._owned) > self._max_transient:  # bounded like the values: the oldest tie goes first
                self._untie(next(iter(self._owned)))

    def release(self, owners: Iterable[str]) -> None:
        """These submissions are final: forget their transient secrets, unless another live submission shares one
        (the same body account in two mails); what was never tied expires by its time-to-live."""
        with self._lock:
            for owner in owners:
                for value in self._untie(owner):
                    if self._transient.pop(value, None) is not None:
                        self._dirty = True

    def _untie(self, owner: str) -> list[str]:
        """Drop `owner`'s ties; the values no submission holds any more. Called with the lock held."""
        free = []
        for value in self._owned.pop(owner, set()):
            holders = self._owners.get(value)
            if holders is not None:
                holders.discard(owner)
                if not holders:
                    del self._owners[value]
                    free.append(value)
        return free

    def __len__(self) -> int:
        return len(self._current())

    def _current(self) -> tuple[str, ...]:
        now = self._clock()
        if not self._dirty and now < self._next_expiry:
            return self._ordered
        with self._lock:
            if now >= self._next_expiry:
                for value in [v for v, at in self._transient.items() if at <= now]:
                    del self._transient[value]
                self._next_expiry = min(self._transient.values(), default=float("inf"))
            # Longest first, so a secret that contains another is masked whole.
            self._ordered = tuple(sorted(self._lasting | self._transient.keys(), key=len, reverse=True))
            self._dirty = False
            return self._ordered

    def scrub(self, text: str) -> str:
        for value in self._current():
            if value in text:
                text = text.replace(value, MASK)
        return text

    def scrub_all(self, texts: list[str]) -> list[str] | None:
        """`scrub()` of each text, or None when no secret occurs in any (one search over the joined texts)."""
        values = self._current()
        if not values:
            return None
        joined = "\0".join(texts)
        if not any(value in joined for value in values):
            return None
        return [self.scrub(t) for t in texts]


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
    """structlog processor: mask secret-named keys and registered secret values anywhere in the event.

    Structural fields (`level`, `timestamp`, `event`, …) are left as they are, and one substring search over
    the line's plain strings decides whether any value needs a closer look, so a clean line costs little."""
    plain: list[str] = []
    for key, value in list(event_dict.items()):
        if key in STRUCTURAL:
            continue
        if _SECRET_KEY.search(key) and value:
            event_dict[key] = MASK
        elif isinstance(value, str):
            plain.append(key)
        else:
            event_dict[key] = _scrub(value)
    if plain:
        scrubbed = SECRETS.scrub_all([event_dict[k] for k in plain])
        if scrubbed is not None:
            for key, text in zip(plain, scrubbed, strict=True):
                event_dict[key] = text
    return event_dict


def _scrub_foreign_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A library's (stdlib logging) message is free text that may quote anything: its event is scrubbed too."""
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = SECRETS.scrub(event)
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
            foreign_pre_chain=[structlog.stdlib.add_logger_name, _scrub_foreign_event],
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
