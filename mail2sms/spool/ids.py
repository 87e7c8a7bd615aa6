"""Identifiers: short, unique across processes and hosts, and sortable by time (like Postfix queue ids)."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"  # no vowels: ids never spell words


def _encode(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def new_id() -> str:
    """12 characters of milliseconds since the epoch, then 8 random ones (≈ 39 bits)."""
    return _encode(time.time_ns() // 1_000_000, 9) + _encode(secrets.randbits(40), 8)
